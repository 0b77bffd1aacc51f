"""Modules shared by every synthetic IOD, and writing of DICOM Part 10 files.

Module and attribute choices follow PS3.3 (Patient C.7.1.1, General Study
C.7.2.1, Patient Study C.7.2.2, General Series C.7.3.1, General Equipment
C.7.5.1, General Image C.7.6.1, SOP Common C.12.1); the file format follows
PS3.10 §7 (128-byte preamble, ``DICM``, File Meta Information group 0002).
Identifier values arrive already built (and marked, in ``--phi`` mode) in a
:class:`StudyContext`; this module only places them where real exports do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, UID

from radcommons.dicom.uid import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from radcommons.synth.vendors import Device, PrivateBlock

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: Referenced SOP Class for a study in Referenced Study Sequence (PS3.3 C.7.2.1: Study Component Management).
STUDY_COMPONENT_CLASS = "1.2.840.10008.3.1.2.3.2"

SOP_CLASS_NAMES = {
    CR_IMAGE_STORAGE: "CR Image Storage",
    DX_PRESENTATION_STORAGE: "Digital X-Ray Image Storage - For Presentation",
    CT_IMAGE_STORAGE: "CT Image Storage",
    US_IMAGE_STORAGE: "Ultrasound Image Storage",
    SC_IMAGE_STORAGE: "Secondary Capture Image Storage",
}


@dataclass(frozen=True)
class StudyContext:
    """Everything patient- and study-level that goes into each instance of a study.

    Strings are final DICOM values: identifiers already carry their markers in
    ``--phi`` mode, and lengths already fit their VRs.
    """

    patient_name: str
    patient_id: str
    issuer_of_patient_id: str
    other_patient_id: str
    birth_date: str
    sex: str
    age: str
    size_m: str
    weight_kg: str
    address: str
    phone: str
    patient_comments: str
    additional_history: str
    study_uid: str
    study_date: str
    study_time: str
    study_id: str
    accession: str
    referring_physician: str
    reading_physician: str
    description: str
    clean_description: str
    requested_procedure_id: str
    requested_procedure_description: str
    scheduled_step_id: str
    reason_for_request: str
    prior_study_uid: str
    institution: str
    institution_address: str
    department: str
    station: str
    serial: str
    operator: str
    performing_physician: str
    device: Device
    private_blocks: tuple[PrivateBlock, ...]
    implicit_vr: bool
    character_set: str


@dataclass(frozen=True)
class SeriesContext:
    """Series-level values (General Series, PS3.3 C.7.3.1)."""

    uid: str
    number: int
    modality: str
    description: str
    clean_description: str
    date: str
    time: str
    body_part: str
    image_comments: str


def new_dataset(sop_class_uid: str, sop_instance_uid: str, ctx: StudyContext) -> Dataset:
    """A dataset with File Meta Information (PS3.10 §7.1) and the SOP Common module (PS3.3 C.12.1)."""
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if ctx.implicit_vr else ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    if ctx.character_set:
        ds.SpecificCharacterSet = ctx.character_set
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = ctx.study_date
    ds.InstanceCreationTime = ctx.study_time
    return ds


def add_patient_and_study(ds: Dataset, ctx: StudyContext) -> None:
    """Patient (C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2) modules."""
    ds.PatientName = ctx.patient_name
    ds.PatientID = ctx.patient_id
    ds.IssuerOfPatientID = ctx.issuer_of_patient_id
    ds.PatientBirthDate = ctx.birth_date
    ds.PatientSex = ctx.sex
    if ctx.other_patient_id:
        other = Dataset()
        other.PatientID = ctx.other_patient_id
        other.IssuerOfPatientID = ctx.issuer_of_patient_id + " ENTERPRISE"
        other.TypeOfPatientID = "TEXT"
        ds.OtherPatientIDsSequence = Sequence([other])
    if ctx.patient_comments:
        ds.PatientComments = ctx.patient_comments

    ds.StudyInstanceUID = ctx.study_uid
    ds.StudyDate = ctx.study_date
    ds.StudyTime = ctx.study_time
    ds.ReferringPhysicianName = ctx.referring_physician
    ds.StudyID = ctx.study_id
    ds.AccessionNumber = ctx.accession
    ds.StudyDescription = ctx.description
    if ctx.reading_physician:
        ds.NameOfPhysiciansReadingStudy = ctx.reading_physician
    if ctx.prior_study_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = STUDY_COMPONENT_CLASS
        ref.ReferencedSOPInstanceUID = ctx.prior_study_uid
        ds.ReferencedStudySequence = Sequence([ref])

    ds.PatientAge = ctx.age
    ds.PatientSize = ctx.size_m
    ds.PatientWeight = ctx.weight_kg
    if ctx.additional_history:
        ds.AdditionalPatientHistory = ctx.additional_history


def add_patient_demographics(ds: Dataset, ctx: StudyContext) -> None:
    """Patient Demographic attributes (C.2.3, carried in images by many PACS): address and phone."""
    ds.PatientAddress = ctx.address
    ds.PatientTelephoneNumbers = ctx.phone


def add_series(ds: Dataset, ctx: StudyContext, series: SeriesContext, *, position: str = "") -> None:
    """General Series (C.7.3.1) with its request attributes (the RIS order that led to the series)."""
    ds.Modality = series.modality
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.SeriesDate = series.date
    ds.SeriesTime = series.time
    ds.SeriesDescription = series.description
    ds.PerformingPhysicianName = ctx.performing_physician
    ds.OperatorsName = ctx.operator
    ds.BodyPartExamined = series.body_part
    if position:
        ds.PatientPosition = position
    request = Dataset()
    request.RequestedProcedureID = ctx.requested_procedure_id
    request.ScheduledProcedureStepID = ctx.scheduled_step_id
    request.AccessionNumber = ctx.accession
    request.RequestedProcedureDescription = ctx.requested_procedure_description
    request.ReasonForTheRequestedProcedure = ctx.reason_for_request
    request.StudyInstanceUID = ctx.study_uid
    ds.RequestAttributesSequence = Sequence([request])
    ds.PerformedProcedureStepStartDate = series.date
    ds.PerformedProcedureStepStartTime = series.time
    ds.PerformedProcedureStepID = ctx.scheduled_step_id
    ds.PerformedProcedureStepDescription = ctx.requested_procedure_description


def add_equipment(ds: Dataset, ctx: StudyContext) -> None:
    """General Equipment (C.7.5.1): who made the device, where it stands, its serial number."""
    ds.Manufacturer = ctx.device.manufacturer
    ds.InstitutionName = ctx.institution
    ds.InstitutionAddress = ctx.institution_address
    ds.StationName = ctx.station
    ds.InstitutionalDepartmentName = ctx.department
    ds.ManufacturerModelName = ctx.device.model
    ds.DeviceSerialNumber = ctx.serial
    ds.SoftwareVersions = ctx.device.software


def add_general_image(
    ds: Dataset, series: SeriesContext, instance_number: int, *, content_time: str | None = None
) -> None:
    """General Image (C.7.6.1) timing and comments."""
    ds.InstanceNumber = instance_number
    ds.ContentDate = series.date
    ds.ContentTime = content_time or series.time
    ds.AcquisitionDate = series.date
    ds.AcquisitionTime = content_time or series.time
    if series.image_comments:
        ds.ImageComments = series.image_comments


def add_private_blocks(ds: Dataset, blocks: tuple[PrivateBlock, ...]) -> None:
    """Vendor private blocks with proper private creator elements (PS3.5 §7.8.1)."""
    for block in blocks:
        private = ds.private_block(block.group, block.creator, create=True)
        for element in block.elements:
            private.add_new(element.offset, element.vr, element.value)


def write_part10(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as a Part 10 file; the same dataset always gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
