"""From de-identified outputs to study packages (sha256, size, path) and the studies' facts.

The packages are built from the de-identification run's own outcomes (this run's
outputs, nothing else left in the staging folder). Each study's real date, needed for
``days_to_study``, is recovered at the site from the de-identified StudyDate and the
patient's date offset (shifted date minus offset): the original files are not read again,
and the gateway, which keeps no originals, does the same. The offset is the deid outcome's,
the one the images were shifted by (the registry's for a patient recorded there before),
and goes on with the study to the clinical conversion, which shifts the study year by it.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pydicom

from radcommons.client import file_sha256
from radcommons.clinical import ImagingStudy
from radcommons.deid import DEIDENTIFIED, FileOutcome
from radcommons.pipelines.contribute_upload import PackagedFile, StudyPackage


@dataclass(frozen=True)
class StagedFile:
    """One de-identified file with what the package and the converter need of its header."""

    file: PackagedFile
    study_uid: str
    patient_id: str  #: the original Patient ID (private; from the deid outcome)
    pseudonym: str
    date_offset_days: int
    study_date: str  #: the de-identified (shifted) DA, or ""
    description: str
    modality: str
    body_part: str
    source: str = ""  #: the exported file it came from (private: for the site's report)
    original_study_uid: str = ""  #: private, as source
    accession: str = ""  #: private, as source


def _staged(root: Path, outcome: FileOutcome) -> StagedFile:
    path = root / str(outcome.output)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
            "StudyInstanceUID", "PatientID", "StudyDate", "StudyDescription", "Modality", "BodyPartExamined"])
    patient = outcome.patient
    assert patient is not None  # a de-identified outcome always names its patient
    return StagedFile(
        file=PackagedFile(path, file_sha256(path), path.stat().st_size, str(outcome.output)),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        patient_id=patient.patient_id,
        pseudonym=str(ds.get("PatientID", "")),
        date_offset_days=patient.date_offset_days,
        study_date=str(ds.get("StudyDate", "") or ""),
        description=str(ds.get("StudyDescription", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""),
        source=outcome.input,
        original_study_uid=outcome.study.study_uid if outcome.study else "",
        accession=outcome.study.accession_number if outcome.study else "",
    )


def stage(root: Path, outcomes: Iterable[FileOutcome], workers: int = 8) -> list[StagedFile]:
    """Hash and read the header of every de-identified output of a run (in threads)."""
    chosen = [o for o in outcomes if o.status == DEIDENTIFIED and o.output and o.patient is not None]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sorted(pool.map(lambda o: _staged(Path(root), o), chosen), key=lambda s: s.file.path_in_package)


def real_date(shifted: str, offset_days: int) -> _dt.date | None:
    """The original date of a de-identified DA value (the shift undone, at the site only)."""
    try:
        return _dt.datetime.strptime(shifted.strip(), "%Y%m%d").date() - _dt.timedelta(days=offset_days)
    except ValueError:
        return None


def packages(staged: Iterable[StagedFile]) -> list[StudyPackage]:
    """One package per study, files in path order."""
    by_study: dict[str, list[PackagedFile]] = defaultdict(list)
    for item in staged:
        by_study[item.study_uid].append(item.file)
    return [StudyPackage(uid, tuple(sorted(files, key=lambda f: f.path_in_package)))
            for uid, files in sorted(by_study.items())]


def imaging_studies(staged: Iterable[StagedFile]) -> list[ImagingStudy]:
    """The converter's view of each (study, patient): a study seen with two patients appears twice."""
    grouped: dict[tuple[str, str], list[StagedFile]] = defaultdict(list)
    for item in staged:
        grouped[(item.study_uid, item.patient_id)].append(item)
    studies = []
    for (uid, patient_id), items in sorted(grouped.items()):
        dates = sorted({real_date(i.study_date, i.date_offset_days) for i in items} - {None})
        studies.append(ImagingStudy(
            patient_id=patient_id,
            study_uid=uid,
            study_date=dates[0] if dates else None,
            description=next((i.description for i in items if i.description), ""),
            modalities=tuple(sorted({i.modality for i in items if i.modality})),
            body_part=next((i.body_part for i in items if i.body_part), ""),
            original_uid=next((i.original_study_uid for i in items if i.original_study_uid), ""),
            accession=next((i.accession for i in items if i.accession), ""),
            files=tuple(sorted(i.source for i in items)),
            date_offset_days=items[0].date_offset_days,  # one patient: one offset
        ))
    return studies
