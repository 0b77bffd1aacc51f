"""Shared small corpora: generated once per test session (a couple of seconds each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from radcommons.synth.generate import Manifest, generate


@pytest.fixture(scope="session")
def phi_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest, dict[str, Any]]:
    out = tmp_path_factory.mktemp("synth") / "phi"
    manifest = generate(out, 3, 5, 11, small=True, phi=True)
    phi = json.loads((out / "phi_manifest.json").read_text())
    return out, manifest, phi


@pytest.fixture(scope="session")
def defects_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("synth") / "defects"
    manifest = generate(out, 2, 3, 5, small=True, defects=True, phi=True)
    return out, manifest
