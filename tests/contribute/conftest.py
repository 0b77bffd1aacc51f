"""Fixtures for the contribution tests: a synthetic corpus, a key file, prepared plans per site."""

from __future__ import annotations

from pathlib import Path

import pytest

from radcommons.clinical import load_mapping
from radcommons.deid import DeidContext
from radcommons.pipelines.contribute import ContributeRequest, ContributionPlan, prepare
from radcommons.synth.generate import generate

KEY = bytes(range(32))


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


def make_request(corpus: Path, site: str, state: Path, *, corrections: bool = False) -> ContributeRequest:
    clinical = sorted(p for p in (corpus / site / "clinical").iterdir() if corrections or "corrections" not in p.name)
    return ContributeRequest(
        src=corpus / site, clinical=tuple(clinical), site=site.upper(), project="Open-T1",
        context=DeidContext(key=KEY, site=site.upper(), review_pixels=False), state_dir=state,
        mapping=load_mapping(), dataset=f"{site.upper()}_TEST", workers=1,
    )


@pytest.fixture(scope="session")
def plans(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ContributionPlan]:
    """One prepared (dry-run) plan per site, without the defect corrections file."""
    return {site: prepare(make_request(corpus, site, tmp_path_factory.mktemp(f"state-{site}")))
            for site in ("site_a", "site_b", "site_c")}
