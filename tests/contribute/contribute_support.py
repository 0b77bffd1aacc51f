"""Helpers shared by the contribution tests (a module of its own: conftest modules cannot be imported)."""

from __future__ import annotations

from pathlib import Path

from radcommons.clinical import load_mapping
from radcommons.deid import DeidContext
from radcommons.pipelines.contribute import ContributeRequest

KEY = bytes(range(32))


def make_request(corpus: Path, site: str, state: Path, *, corrections: bool = False) -> ContributeRequest:
    clinical = sorted(p for p in (corpus / site / "clinical").iterdir() if corrections or "corrections" not in p.name)
    return ContributeRequest(
        src=corpus / site, clinical=tuple(clinical), site=site.upper(), project="Open-T1",
        context=DeidContext(key=KEY, site=site.upper(), review_pixels=False), state_dir=state,
        mapping=load_mapping(), dataset=f"{site.upper()}_TEST", workers=1,
    )
