"""Fixtures for the contribution tests: a synthetic corpus, a key file, prepared plans per site."""

from __future__ import annotations

from pathlib import Path

import pytest
from contribute_support import KEY, make_request

from radcommons.pipelines.contribute import ContributionPlan, prepare
from radcommons.synth.generate import generate


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contribute") / "synth"
    generate(out, 3, 3, 2, small=True, defects=True)
    return out


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "deid.key"
    path.write_text(KEY.hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def plans(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ContributionPlan]:
    """One prepared (dry-run) plan per site, without the defect corrections file."""
    return {site: prepare(make_request(corpus, site, tmp_path_factory.mktemp(f"state-{site}")))
            for site in ("site_a", "site_b", "site_c")}
