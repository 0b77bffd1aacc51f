"""A small synthetic corpus (three sites: CSV, TSV, Excel clinical files), made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinical_support import Radiograph, find_radiograph

from radcommons.synth.generate import generate


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clinical") / "synth"
    generate(out, 3, 4, 1, small=True, defects=True)
    return out


@pytest.fixture(scope="session")
def radiograph(corpus: Path) -> Radiograph:
    return find_radiograph(corpus)
