"""The pure helpers behind DICOMweb: query parsing and matching (PS3.4 C.2.2.2), DICOM JSON, rendering."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from radcommons.dicom.dicomweb_json import attribute_tag, dataset_json, element_json
from radcommons.dicom.qido import matches, parse_match, parse_query
from radcommons.dicom.rendering import Window, encode_image, render_frame
from radcommons.errors import UserError


def test_parse_query_kinds() -> None:
    query = parse_query([("PatientID", "AB*"), ("StudyDate", "20200101-"), ("StudyInstanceUID", "1.2,1.3"),
                         ("00080061", "CT\\MR"), ("SeriesNumber", "3"), ("AccessionNumber", ""),
                         ("includefield", "StudyTime,00081030"), ("includefield", "all"), ("limit", "5"),
                         ("offset", "10"), ("fuzzymatching", "false")])
    kinds = {m.keyword: m.kind for m in query.matches}
    assert kinds == {"PatientID": "wildcard", "StudyDate": "range", "StudyInstanceUID": "uid_list",
                     "ModalitiesInStudy": "list", "SeriesNumber": "single", "AccessionNumber": "universal"}
    assert query.include == {0x00080030, 0x00081030} and query.include_all
    assert (query.limit, query.offset, query.fuzzymatching) == (5, 10, False)
    for bad in ([("Nope", "x")], [("limit", "x")], [("fuzzymatching", "maybe")], [("includefield", "Nope")],
                [("SeriesNumber", "one")], [("00400275.0020000D", "1")]):
        with pytest.raises(UserError):
            parse_query(bad)


@pytest.mark.parametrize("name, value", [
    ("StudyDate", "abc-def"), ("StudyDate", "2020"), ("StudyDate", "20201331"), ("StudyDate", "2020.01.31"),
    ("StudyDate", "20200101-2020123"), ("StudyDate", "2020*"), ("StudyDate", "\u0662\u0660\u0662\u0660\u0660\u0661\u0660\u0661"),
    ("StudyTime", "25h"), ("AcquisitionDateTime", "2020-01-01T10:00"), ("StudyInstanceUID", "1..2"),
    ("StudyInstanceUID", "1.2,abc"), ("SOPInstanceUID", "1." + "2" * 70),
])
def test_a_date_time_or_uid_without_its_form_is_refused(name: str, value: str) -> None:
    """They matched nothing: a typo looked like an empty archive."""
    with pytest.raises(UserError) as refused:
        parse_query([(name, value)])
    assert name in refused.value.message and repr(value) in refused.value.message


@pytest.mark.parametrize("name, value", [
    ("StudyDate", "20200229"), ("StudyDate", "-20201231"), ("StudyTime", "13"), ("StudyTime", "133000.5-"),
    ("AcquisitionDateTime", "2020"), ("AcquisitionDateTime", "20200131235959.123456"), ("StudyInstanceUID", "2.25.1"),
])
def test_dates_times_and_uids_in_their_forms_are_taken(name: str, value: str) -> None:
    assert parse_query([(name, value)]).matches


@pytest.mark.parametrize("tag, query, values, expected", [
    ("PatientID", "AB*", ["ABC"], True),
    ("PatientID", "AB*", ["XABC"], False),
    ("PatientID", "A?C", ["ABC"], True),
    ("PatientID", "a*", ["ABC"], False),  # LO: case-sensitive
    ("PatientName", "smith*", ["SMITH^JOHN"], True),  # PN: not (Orthanc's default)
    ("PatientID", "A[B]*", ["A[B]C"], True),  # only * and ? are wildcards
    ("StudyDate", "20200101-20201231", ["20200615"], True),
    ("StudyDate", "-20191231", ["20200615"], False),
    ("StudyDate", "20200615", ["20200615"], True),
    ("StudyInstanceUID", "1.2\\1.3", ["1.3"], True),
    ("SeriesNumber", "3", ["3"], True),
    ("AccessionNumber", "", [], True),
    ("AccessionNumber", "X*", [], False),
])
def test_matching(tag: str, query: str, values: list[str], expected: bool) -> None:
    tag_value = attribute_tag(tag)
    assert tag_value is not None
    assert matches(parse_match(int(tag_value), query), values) is expected


def test_dicom_json_elements() -> None:
    assert element_json(0x00100010, "A^B") == {"vr": "PN", "Value": [{"Alphabetic": "A^B"}]}
    assert element_json(0x00201208, 3) == {"vr": "IS", "Value": [3]}
    assert element_json(0x00080050, None) == {"vr": "SH"}
    assert element_json(0x00080061, ["CT", "MR"]) == {"vr": "CS", "Value": ["CT", "MR"]}
    assert list(dataset_json({0x0020000D: "1.2", 0x00080020: "20200101"})) == ["00080020", "0020000D"]


def _image(photometric: str, pixels: np.ndarray, **attributes: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    for name, value in attributes.items():
        setattr(ds, name, value)
    return ds


def test_rendering_window_and_inversion() -> None:
    ramp = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (4, 1))
    plain = render_frame(_image("MONOCHROME2", ramp))
    assert plain[0, 0] == 0 and plain[0, -1] == 255  # min-max without a window
    inverted = render_frame(_image("MONOCHROME1", ramp))
    assert np.array_equal(inverted, 255 - plain)
    windowed = render_frame(_image("MONOCHROME2", ramp, WindowCenter=1024, WindowWidth=512))
    assert windowed[0, ramp[0] <= 768].max() == 0 and windowed[0, ramp[0] >= 1280].min() == 255
    hu = render_frame(_image("MONOCHROME2", ramp, RescaleSlope=1, RescaleIntercept=-1024), window=Window(40, 400))
    values = ramp[0].astype(int) - 1024
    assert hu[0, values <= -160].max() == 0 and hu[0, values >= 240].min() == 255
    png = Image.open(io.BytesIO(encode_image(inverted, "image/png")))
    assert png.size == (ramp.shape[1], ramp.shape[0]) and np.array_equal(np.asarray(png), inverted)
    with pytest.raises(ValueError):
        render_frame(_image("MONOCHROME2", ramp), frame=2)
