"""What happened to one input file of a de-identification run, and where its output goes."""

from __future__ import annotations

from dataclasses import dataclass, field

from radcommons.deid.engine import PatientRecord, StudyRecord


#: The routes a file takes through the engine (:attr:`FileOutcome.route`).
STREAM, PYDICOM = "stream", "pydicom"


@dataclass
class FileOutcome:
    """What happened to one input file (one entry of the report)."""

    input: str
    status: str  #: deidentified / withheld / rejected
    reason: str = ""
    output: str | None = None  #: relative to the destination root
    patient: PatientRecord | None = None
    study: StudyRecord | None = None
    pixels_cleaned: bool = False
    pixel_regions: tuple[tuple[int, int, int, int], ...] = ()
    skipped_existing: bool = False
    notes: list[str] = field(default_factory=list)
    route: str = ""  #: STREAM (the element stream, radcommons.deid.streamed) or PYDICOM
    why_pydicom: str = ""  #: why the streamed path left the file to the pydicom path
    stream_failure: str = ""  #: the streamed path failed on the file (a fault to report): how

    def to_json(self) -> dict:
        data: dict = {"input": self.input, "outcome": self.status}
        if self.reason:
            data["reason"] = self.reason
        if self.output:
            data["output"] = self.output
        if self.patient:
            data["patient_id"] = self.patient.patient_id
            data["pseudonym"] = self.patient.pseudonym
        if self.study:
            data["study_uid"] = self.study.study_uid
            data["new_study_uid"] = self.study.new_study_uid
        if self.pixels_cleaned:
            data["pixels_cleaned"] = True
            data["pixel_regions"] = [list(r) for r in self.pixel_regions]
        if self.skipped_existing:
            data["already_present"] = True
        if self.notes:
            data["notes"] = self.notes
        if self.route:
            data["route"] = self.route
        if self.why_pydicom:
            data["why_pydicom"] = self.why_pydicom
        if self.stream_failure:
            data["stream_failure"] = self.stream_failure
        return data


def output_relpath(study: str, series: str, sop: str) -> str:
    """``<study uid>/<series uid>/<sop uid>.dcm``: built only from new identifiers."""
    return f"{study}/{series}/{sop}.dcm"


__all__ = ["PYDICOM", "STREAM", "FileOutcome", "output_relpath"]
