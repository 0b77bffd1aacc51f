"""Attribute Types (PS3.3) that decide the Type-dependent actions of Table E.1-1.

PS3.15 E.1.1 defines the compound actions by the attribute's Type in the IOD:
X/Z = X unless Z is needed (Type 2), X/D = X unless D is needed (Type 1/2),
X/Z/D = X unless Z (Type 2) or D (Type 1), Z/D = Z unless D (Type 1),
X/Z/U* = X unless Z or U is needed for conformance.

pydicom ships no IOD Type tables, so this module holds the Types of the attributes
that carry a compound action (and of the common number strings, IS and DS, which go by
their Type when their value cannot stay), for the IODs RadCommons receives and produces: the
classic image IODs (CR, DX, CT, MR, US, SC, MG, PT, NM, XA ...) built from the General
Study / Series / Equipment / Image modules, and the "enhanced" multi-frame IODs whose
Enhanced General Equipment and Image modules raise some of them to Type 1. Types are
for the top level of the dataset; inside sequences the Type is not known here and the
engine takes the choice that keeps the element present (see :func:`resolve`).
"""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword

#: Types in the classic composite image IODs (PS3.3 C.7.2.1 General Study, C.7.3.1
#: General Series, C.7.5.1 General Equipment, C.7.6.1 General Image, C.7.6.4
#: Contrast/Bolus, C.12.1 SOP Common). 2C is treated as 2 (present when the condition
#: holds, and we only act on attributes that are present).
_CLASSIC: dict[str, int] = {
    "AccessionNumber": 2,
    "StudyDate": 2,
    "StudyTime": 2,
    "StudyID": 2,
    "ReferringPhysicianName": 2,
    "PatientName": 2,
    "PatientID": 2,
    "PatientBirthDate": 2,
    "PatientSex": 2,
    "PatientSexNeutered": 2,
    "SeriesDate": 3,
    "SeriesTime": 3,
    "ProtocolName": 3,
    "OperatorsName": 3,
    "OperatorIdentificationSequence": 3,
    "ReferencedPerformedProcedureStepSequence": 3,
    "RequestedProcedureDescription": 3,
    "ReferencedStudySequence": 3,
    "InstitutionName": 3,
    "InstitutionCodeSequence": 3,
    "StationName": 3,
    "DeviceSerialNumber": 3,
    "ContentDate": 2,
    "ContentTime": 2,
    "AcquisitionDate": 3,
    "AcquisitionTime": 3,
    "AcquisitionDateTime": 3,
    "InstanceCreationDate": 3,
    "InstanceCreationTime": 3,
    "ReferencedImageSequence": 3,
    "SourceImageSequence": 3,
    "ContrastBolusAgent": 2,
    "AcquisitionDeviceProcessingDescription": 3,
    "DateOfLastDetectorCalibration": 3,
    "TimeOfLastDetectorCalibration": 3,
    "DetectorID": 3,
    "ObservationDateTime": 3,
    # Number strings (IS, DS) Table E.1-1 does not list or keeps: an IS / DS value that is not a
    # number, or spells an ID or a date of the dataset, is removed, emptied or zeroed by its Type
    # (radcommons.deid.engine, NUMBER). C.7.1.3 Patient Study, C.7.3.1 General Series, C.7.6.1
    # General Image, C.7.6.2 Image Plane, C.7.6.3 Image Pixel, C.7.6.6 Multi-frame, C.11.2 VOI
    # LUT (1C: 1), C.8.2.1 CT Image, C.8.3.1 MR Image (2C: 2), C.8.11.7 DX Detector.
    "PatientSize": 3,
    "PatientWeight": 3,
    "SeriesNumber": 2,
    "InstanceNumber": 2,
    "AcquisitionNumber": 3,
    "SliceThickness": 2,
    "SliceLocation": 3,
    "ImagePositionPatient": 1,
    "ImageOrientationPatient": 1,
    "PixelSpacing": 1,
    "ImagerPixelSpacing": 1,
    "NumberOfFrames": 1,
    "WindowCenter": 1,
    "WindowWidth": 1,
    "RescaleIntercept": 1,
    "RescaleSlope": 1,
    "KVP": 2,
    "DataCollectionDiameter": 3,
    "ReconstructionDiameter": 3,
    "DistanceSourceToDetector": 3,
    "DistanceSourceToPatient": 3,
    "GantryDetectorTilt": 3,
    "TableHeight": 3,
    "ExposureTime": 3,
    "XRayTubeCurrent": 3,
    "Exposure": 3,
    "RepetitionTime": 2,
    "EchoTime": 2,
    "InversionTime": 2,
    "EchoTrainLength": 2,
    "EchoNumbers": 3,
    "MagneticFieldStrength": 3,
    "FlipAngle": 3,
}

#: Enhanced multi-frame IODs (PS3.3 C.7.5.2 Enhanced General Equipment: Manufacturer,
#: Model, Device Serial Number, Software Versions Type 1; C.8.15.2 / C.8.13.1 Enhanced
#: CT / MR Image: Acquisition DateTime 1C, Content Date/Time 1).
_ENHANCED: dict[str, int] = {
    **_CLASSIC,
    "DeviceSerialNumber": 1,
    "InstanceNumber": 1,  # C.7.6.16 Multi-frame Functional Groups
    "AcquisitionDateTime": 1,
    "ContentDate": 1,
    "ContentTime": 1,
}

_ENHANCED_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
        "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
        "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA
        "1.2.840.10008.5.1.4.1.1.12.2.1",  # Enhanced XRF
        "1.2.840.10008.5.1.4.1.1.13.1.1",  # X-Ray 3D Angiographic
        "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis
        "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
        "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET
    }
)


def _by_tag(types: dict[str, int]) -> dict[int, int]:
    result = {}
    for keyword, type_ in types.items():
        tag = tag_for_keyword(keyword)
        if tag is None:  # pragma: no cover - a typo here is a bug
            raise KeyError(keyword)
        result[tag] = type_
    return result


_CLASSIC_BY_TAG = _by_tag(_CLASSIC)
_ENHANCED_BY_TAG = _by_tag(_ENHANCED)

#: SOP classes whose Types :data:`_CLASSIC` describes (the others fall back to the safe
#: choice): CR, DX/MG/IO (3 each), CT, MR, US (multi-frame too), SC (all five), NM, PT,
#: XA, RF, VL photographic.
_CLASSIC_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.1",  # CR, DX, MG, IO
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.6.1",  # US
    "1.2.840.10008.5.1.4.1.1.3.1",  # US multi-frame
    "1.2.840.10008.5.1.4.1.1.7",  # SC
    "1.2.840.10008.5.1.4.1.1.20",  # NM
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.12.1",  # XA
    "1.2.840.10008.5.1.4.1.1.12.2",  # RF
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic
)


#: PET Image Storage: the PET Series module makes Series Date and Time Type 1 and the PET Image
#: module Acquisition Date and Time Type 2 (PS3.3 C.8.9.1, C.8.9.4), where :data:`_CLASSIC` has 3.
PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
_PET_BY_TAG = _by_tag({"SeriesDate": 1, "SeriesTime": 1, "AcquisitionDate": 2, "AcquisitionTime": 2})


def attribute_type(sop_class_uid: str | None, tag: int) -> int | None:
    """The Type (1, 2 or 3) of a top-level attribute in the IOD, or ``None`` if unknown."""
    if not sop_class_uid:
        return None
    uid = str(sop_class_uid).strip()
    if uid in _ENHANCED_SOP_CLASSES:
        return _ENHANCED_BY_TAG.get(tag)
    if uid == PET_IMAGE and tag in _PET_BY_TAG:
        return _PET_BY_TAG[tag]
    if any(uid == p or uid.startswith(p + ".") for p in _CLASSIC_PREFIXES):
        return _CLASSIC_BY_TAG.get(tag)
    return None


def resolve(action: str, type_: int | None, sequence: bool = False) -> str:
    """Turn a (possibly compound) Table E.1-1 action into one of X, Z, D, K, C, U.

    ``type_`` is the attribute's Type, or ``None`` when unknown: then the engine keeps
    the element present with a dummy (D) or empty (Z) value, the choice that cannot
    break a Type 1 or 2 requirement and leaks nothing. ``X/Z/U*`` resolves to U (keep
    the sequence, replace the instance UIDs in it): references stay valid inside the
    de-identified study, and every UID is replaced consistently anyway. A *sequence*
    of unknown Type is kept with its content de-identified item by item (D): emptying
    it could break a "1-n items" rule, and every attribute inside is protected anyway.
    """
    if "/" not in action:
        return action
    if action == "X/Z/U*":
        return "U"
    choices = action.split("/")
    if type_ == 3:
        return "X" if "X" in choices else choices[0]
    if type_ == 2:
        return "Z" if "Z" in choices else "D"
    if type_ == 1:
        return "D" if "D" in choices else "Z"
    if sequence:
        return "D"
    return "D" if "D" in choices else "Z"
