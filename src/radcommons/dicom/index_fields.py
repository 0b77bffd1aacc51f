"""The index fields of a DICOM instance: its study, series and instance properties.

Maps header attributes (PS3.3) to the data dictionary's ``imaging_study``, ``series`` and
``instance`` properties. Pure: it takes a :class:`pydicom.Dataset` (read with
``stop_before_pixels=True`` is enough) and returns plain dictionaries; values are already
converted to the dictionary's types (strings, ints, floats, lists), blanks left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue

#: DICOM Patient's Sex (0010,0040) code -> the dictionary's ``case.sex`` value.
SEX_VALUES = {"F": "Female", "M": "Male"}

# (keyword, dictionary property, converter) for the series node; modality-specific attributes
# simply come out blank for other modalities.
_SERIES_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("SeriesNumber", "series_number", "int"),
    ("SeriesDescription", "series_description", "str"),
    ("BodyPartExamined", "body_part_examined", "str"),
    ("Manufacturer", "manufacturer", "str"),
    ("ManufacturerModelName", "manufacturer_model_name", "str"),
    ("SoftwareVersions", "software_versions", "str"),
    ("LossyImageCompression", "lossy_image_compression", "str"),
    ("ImageType", "image_type", "list"),
    ("PixelSpacing", "pixel_spacing", "floats"),
    ("Rows", "rows", "int"),
    ("Columns", "columns", "int"),
    ("PhotometricInterpretation", "photometric_interpretation", "str"),
    ("ViewPosition", "view_position", "str"),
    ("DetectorType", "detector_type", "str"),
    ("SliceThickness", "slice_thickness", "float"),
    ("SpacingBetweenSlices", "spacing_between_slices", "float"),
    ("ConvolutionKernel", "convolution_kernel", "str"),
    ("ContrastBolusAgent", "contrast_bolus_agent", "str"),
    ("KVP", "kvp", "float"),
    ("MagneticFieldStrength", "magnetic_field_strength", "float"),
    ("MRAcquisitionType", "mr_acquisition_type", "str"),
    ("ScanningSequence", "scanning_sequence", "str"),
    ("EchoTime", "echo_time", "float"),
    ("RepetitionTime", "repetition_time", "float"),
    ("TransducerType", "transducer_type", "str"),
)


@dataclass(frozen=True)
class InstanceFields:
    """What the index records of one instance, grouped by the node each value belongs to."""

    patient_id: str
    study: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)
    sex: str = "Not Reported"
    study_date: str = ""
    patient_age_years: int | None = None


def _convert(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return None
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "floats":
            values = value if isinstance(value, (list, MultiValue)) else [value]
            return [float(v) for v in values]
        if kind == "list":
            values = value if isinstance(value, (list, MultiValue)) else [value]
            return [str(v) for v in values]
    except (TypeError, ValueError):
        # A malformed numeric string in a header is not worth refusing the instance over.
        return None
    text = str(value).strip()
    return text or None


#: Converted values already seen: ``(tag, VR, raw bytes, character set, kind)`` -> value. The
#: instances of a series repeat most of these attributes byte for byte, and pydicom's decoding of
#: a value costs more than everything else done with it; cleared when full.
_SEEN: dict[tuple[int, str, bytes, Any, str], Any] = {}
_SEEN_MAX = 16384
_CHARSET = 0x00080005


@lru_cache(maxsize=256)
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return tag


def _field(ds: Dataset, keyword: str, kind: str) -> Any:
    """``_convert(ds.get(keyword), kind)``, remembered by the element's undecoded bytes."""
    tag = _tag(keyword)
    item = ds.get_item(tag)
    if item is None:
        return None
    if not isinstance(item, RawDataElement) or item.VR in (None, "UN"):
        return _convert(ds[tag].value, kind)
    charset = ds.get_item(_CHARSET)
    key = (tag, item.VR, item.value, None if charset is None else repr(charset.value), kind)
    if key in _SEEN:
        value = _SEEN[key]
        return list(value) if isinstance(value, list) else value  # each instance gets its own list
    value = _convert(ds[tag].value, kind)
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[key] = list(value) if isinstance(value, list) else value
    return value


def _text(ds: Dataset, keyword: str) -> str:
    return _field(ds, keyword, "str") or ""


def age_in_years(age_string: str) -> int | None:
    """Patient's Age (0010,1010), an AS value such as ``045Y`` or ``006M``, in whole years."""
    text = age_string.strip().upper()
    if len(text) < 2 or not text[:-1].isdigit():
        return None
    number, unit = int(text[:-1]), text[-1]
    divisor = {"Y": 1, "M": 12, "W": 52, "D": 365}.get(unit)
    return None if divisor is None else number // divisor


def instance_fields(ds: Dataset, *, object_id: str, size: int) -> InstanceFields:
    """The index fields of ``ds``, stored under ``object_id`` (sha256) with ``size`` bytes."""
    series: dict[str, Any] = {
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "modality": _text(ds, "Modality") or "OT",
    }
    for keyword, name, kind in _SERIES_FIELDS:
        converted = _field(ds, keyword, kind)
        if converted is not None:
            series[name] = converted
    frames = _field(ds, "NumberOfFrames", "int")
    instance: dict[str, Any] = {
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "sop_class_uid": _text(ds, "SOPClassUID"),
        "object_id": object_id,
        "size": size,
    }
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        instance["transfer_syntax"] = str(meta.TransferSyntaxUID)
    number = _field(ds, "InstanceNumber", "int")
    if number is not None:
        instance["instance_number"] = number
    if frames is not None:
        instance["number_of_frames"] = frames
    study: dict[str, Any] = {"study_uid": _text(ds, "StudyInstanceUID")}
    description = _text(ds, "StudyDescription")
    if description:
        study["study_description"] = description
    body_part = _text(ds, "BodyPartExamined")
    if body_part:
        study["body_part_examined"] = body_part
    study_date = _text(ds, "StudyDate")
    if len(study_date) == 8 and study_date.isdigit():
        study["study_year"] = int(study_date[:4])
        # Dates leave the site shifted (PS3.15 Retain Longitudinal Modified Dates), see (0028,0303).
        study["study_year_shifted"] = _text(ds, "LongitudinalTemporalInformationModified") == "MODIFIED"
    age = age_in_years(_text(ds, "PatientAge"))
    return InstanceFields(
        patient_id=_text(ds, "PatientID"),
        study=study,
        series=series,
        instance=instance,
        sex=SEX_VALUES.get(_text(ds, "PatientSex").upper(), "Not Reported"),
        study_date=study_date,
        patient_age_years=age,
    )
