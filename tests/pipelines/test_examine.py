"""The commons reads a header in one pass (:func:`radcommons.pipelines.examine.read_header`)
and gets what ``pydicom.dcmread(..., stop_before_pixels=True)`` gets: the same elements and
values, File Meta Information and encoding, so the gate and the index fields see the same.
Files the one-pass reader does not take (undefined lengths are read by pydicom's reader;
big endian, truncated, not DICOM) still give dcmread's answer and messages. A file whose
pixel data was cut short (its header reads well) is refused, whichever reader read it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from radcommons.deid import check_deidentified, deidentify_dataset
from radcommons.dicom.elements import read_head
from radcommons.dicom.index_fields import instance_fields
from radcommons.pipelines.examine import _read_plain, read_header

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deid"))
from deid_support import make_ct, write  # noqa: E402
from deid_support import context  # noqa: E402,F401 - a fixture


def _variants(tmp_path: Path, context) -> list[Path]:
    raw = write(make_ct(), tmp_path / "raw.dcm")  # PHI everywhere: the gate has findings
    ds = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.334")
    assert deidentify_dataset(ds, context, pixels_cleaned=False).ok
    clean = write(ds, tmp_path / "clean.dcm")
    implicit = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.335")
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit.save_as(tmp_path / "implicit.dcm", implicit_vr=True, little_endian=True, enforce_file_format=True)
    undefined = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.336")
    undefined.RequestAttributesSequence.is_undefined_length = True
    jpeg = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.337", encapsulated=True)
    empty = make_ct(sop_uid="1.2.826.0.1.3680043.8.498.338")
    empty.StudyID = ""  # zero-length values
    empty.PatientWeight = None
    return [raw, clean, tmp_path / "implicit.dcm", write(undefined, tmp_path / "undefined.dcm"),
            write(jpeg, tmp_path / "jpeg.dcm"), write(empty, tmp_path / "empty.dcm")]


def test_one_pass_header_equals_dcmread(tmp_path, context):
    for path in _variants(tmp_path, context):
        reference = pydicom.dcmread(path, stop_before_pixels=True)
        with open(path, "rb") as handle:
            plain = _read_plain(handle, path.stat().st_size)
        assert plain is not None and plain[1] == "", path.name
        ours = plain[0]
        assert list(ours.keys()) == list(reference.keys()), path.name
        assert all(ours[tag] == reference[tag] for tag in reference.keys()), path.name
        assert ours.file_meta == reference.file_meta and ours.preamble == reference.preamble
        assert ours.original_encoding == reference.original_encoding
        assert [str(f) for f in check_deidentified(ours)] == [str(f) for f in check_deidentified(reference)]
        assert instance_fields(ours, object_id="x", size=1) == instance_fields(reference, object_id="x", size=1)
        with open(path, "rb") as handle:  # a file object of known size, as from the object store
            from_handle = read_header(handle, path.stat().st_size)
            assert not isinstance(from_handle, str) and list(from_handle.keys()) == list(reference.keys())
            assert handle.tell() == 0


@pytest.mark.parametrize(
    "data, message",
    [
        (b"not dicom at all" * 20, "not a DICOM Part 10 file"),
        (None, "truncated: the file ends inside element"),  # dcmread reads what is there, an element cut short
    ],
)
def test_bad_files_keep_dcmread_messages(tmp_path, data, message):
    path = tmp_path / "bad.dcm"
    if data is None:
        data = write(make_ct(), tmp_path / "whole.dcm").read_bytes()[:700]  # truncated in the header
    path.write_bytes(data)
    with open(path, "rb") as handle:
        assert _read_plain(handle, len(data)) is None
    found = read_header(str(path))
    assert isinstance(found, str) and message in found
    assert isinstance(read_header(io.BytesIO(data), len(data)), str)


@pytest.mark.parametrize(
    "variant, cut, message",
    [
        ("native", -10, "Pixel Data needs 10 more bytes"),
        ("native", "pixel_start", "image attributes present but no Pixel Data"),
        ("jpeg", -8, "no sequence delimiter"),  # the last fragment whole, the delimiter gone
        ("jpeg", -20, "fragment runs past the end"),
        ("big_endian", -10, "Pixel Data needs 10 more bytes"),  # read by dcmread, checked the same
    ],
)
def test_pixel_data_cut_short_is_refused(tmp_path, variant, cut, message):
    """A transfer cut short leaves a header that reads well: it was stored and indexed as a
    success, and a viewer then failed on it."""
    ds = make_ct(encapsulated=variant == "jpeg")
    if variant == "big_endian":
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
        ds.save_as(tmp_path / "whole.dcm", implicit_vr=False, little_endian=False, enforce_file_format=True)
        whole = tmp_path / "whole.dcm"
    else:
        whole = write(ds, tmp_path / "whole.dcm")
    assert not isinstance(read_header(str(whole)), str)
    data = whole.read_bytes()
    data = data[:read_head(io.BytesIO(data), len(data)).pixel_start] if cut == "pixel_start" else data[:cut]
    for found in (read_header(io.BytesIO(data), len(data)), read_header(_write(tmp_path / "cut.dcm", data))):
        assert isinstance(found, str) and message in found and "send" in found, found


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)
