"""Where a site's export puts each file: folder and file names, varying by site.

Real exports name folders after the patient and the study, which puts
identifiers into paths: a de-identifier has to rename them too.

* style 0: ``DOE_JOHN_MRN12345678/20210304_XR CHEST 2 VIEWS/IM0001.dcm``
  (one folder per study, instances numbered across its series)
* style 1: ``12345678/ACC0042/2_CHEST LAT/<SOPInstanceUID>.dcm``
* style 2: ``DICOM/PA000003/ST000001/SE000002/IM000001`` (PACS media style,
  no extension, no identifiers in the path)
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def safe_name(text: str, limit: int = 60) -> str:
    """A single path component from free text: separators and control characters become ``_``."""
    cleaned = _UNSAFE.sub("_", text).strip().rstrip(".")
    return (cleaned or "_")[:limit]


def study_folder(
    style: int,
    *,
    patient_index: int,
    family: str,
    given: str,
    mrn: str,
    study_index: int,
    study_date: str,
    description: str,
    accession: str,
) -> PurePosixPath:
    """The study's folder relative to the site folder."""
    if style == 0:
        return PurePosixPath(
            safe_name(f"{family}_{given}_MRN{mrn}".replace(" ", "")), safe_name(f"{study_date}_{description}")
        )
    if style == 1:
        return PurePosixPath(safe_name(mrn), safe_name(accession))
    return PurePosixPath("DICOM", f"PA{patient_index:06d}", f"ST{study_index:06d}")


def instance_name(
    style: int,
    *,
    series_number: int,
    series_description: str,
    series_index: int,
    instance_in_study: int,
    instance_in_series: int,
    sop_instance_uid: str,
) -> PurePosixPath:
    """The instance's path relative to its study folder."""
    if style == 0:
        return PurePosixPath(f"IM{instance_in_study:04d}.dcm")
    if style == 1:
        return PurePosixPath(safe_name(f"{series_number}_{series_description}"), f"{sop_instance_uid}.dcm")
    return PurePosixPath(f"SE{series_index:06d}", f"IM{instance_in_series:06d}")
