"""Helpers shared by the contribution tests (a module of its own: conftest modules cannot be imported)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from radcommons.clinical import load_mapping
from radcommons.deid import DeidContext
from radcommons.pipelines.contribute import ContributeRequest

KEY = bytes(range(32))


def make_request(corpus: Path, site: str, state: Path, *, corrections: bool = False,
                 project: str = "Open-T1", key: bytes = KEY) -> ContributeRequest:
    clinical = sorted(p for p in (corpus / site / "clinical").iterdir() if corrections or "corrections" not in p.name)
    return ContributeRequest(
        src=corpus / site, clinical=tuple(clinical), site=site.upper(), project=project,
        context=DeidContext(key=key, site=site.upper(), review_pixels=False), state_dir=state,
        mapping=load_mapping(), dataset=f"{site.upper()}_TEST", workers=1,
    )


def radiograph_study(corpus: Path, site: str = "site_a") -> Path:
    """The folder of one CR or DX study of ``site``: a source for the tests in which the images are
    not what is checked (radiographs need no pixel review, so their de-identification runs no OCR)."""
    studies = sorted({p.parent for p in (corpus / site).rglob("*.dcm") if "CDROM" not in p.parts})
    for study in studies:
        headers = [pydicom.dcmread(p, stop_before_pixels=True, force=True) for p in sorted(study.glob("*.dcm"))]
        if {str(ds.get("Modality", "")) for ds in headers} <= {"CR", "DX"}:
            return study
    raise AssertionError(f"no radiograph study under {corpus / site}")


#: The projects every test contributor may submit to: one per test that needs a commons of its own.
PROJECTS = ("Open-T1", *(f"Send-{n}" for n in range(1, 14)))


@dataclass(frozen=True)
class RealCommons:
    """A running ``radcommons serve`` (SQLite index, local object store) and a contributor's token
    file per site (SITE_A, SITE_B, SITE_C), each of them granted :data:`PROJECTS`."""

    url: str
    root: Path
    token_files: dict[str, Path]

    def token(self, site: str) -> str:
        return self.token_files[site].read_text().strip()
