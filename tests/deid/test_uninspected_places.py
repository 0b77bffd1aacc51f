"""Identifiers where the engine used to copy bytes without looking (found by a privacy sweep).

Each input is a small CT built here with the same planted identifiers; one ``radcommons deid``
run takes them all, and every output is searched byte for byte:

* text, a sequence or an unknown attribute written in a binary VR (OB, or UN of 64 KiB or more,
  which pydicom leaves as bytes) was kept raw, whatever it held;
* a safe private element (TCIA "k") seen in OB was kept raw, the accession number in it;
* free text Table E.1-1 does not list was only scrubbed of the dataset's own identifiers;
* a Content Sequence nested in another sequence, and an overlay kept in Pixel Data's high
  bits, were released;
* Patient's Name as UN of 64 KiB or more, and a Study Instance UID with two values, ended in an
  internal error message or a wrong output; two members of one name in a zip were both reported
  de-identified while only the last was read.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from radcommons.deid import check_deidentified

from deid_support import planted_ct, run_deid_cli

NAME, MRN, ACCESSION = "Zyxwort^Quennel", "QX48213977", "A7731592"
ROOT = "1.2.826.0.1.3680043.8.498"
PAYLOAD = f"{NAME} {MRN} {ACCESSION} {ROOT}.3.1".encode()
#: What no output may hold (the original Study and Series UIDs are in every input).
PLANTED = (b"Zyxwort", b"Quennel", MRN.encode(), ACCESSION.encode(), f"{ROOT}.1".encode(), f"{ROOT}.2".encode())


def _ct(number: int, **values: object) -> Dataset:
    return planted_ct(number, ROOT, (NAME, MRN, ACCESSION), **values)


def _implicit_item_bytes(item: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, item)
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(fp.getvalue())) + fp.getvalue()


def _inputs() -> dict[str, Dataset]:
    cases: dict[str, Dataset] = {}
    ds = _ct(1)
    ds.add_new(0x00400400, "OB", PAYLOAD)  # Comments on the Scheduled Procedure Step (LT), as OB
    cases["unlisted_text_as_ob"] = ds
    ds = _ct(2)
    ds.add_new(0x00109999, "UN", PAYLOAD)  # no such attribute in the dictionary
    cases["unknown_attribute_as_un"] = ds
    ds = _ct(3)
    ds.add_new(0x00400400, "UN", PAYLOAD + b" " * 70_000)
    cases["text_as_long_un"] = ds
    item = Dataset()
    item.SeriesInstanceUID = f"{ROOT}.2"
    item.add_new(0x0040A123, "PN", NAME)
    item.add_new(0x0040A160, "UT", "x" * 70_000)
    ds = _ct(4)
    ds.add_new(0x00081115, "UN", _implicit_item_bytes(item))  # Referenced Series Sequence, as UN
    cases["sequence_as_long_un"] = ds
    ds = _ct(5)
    ds.add_new(0x00090010, "LO", "SECTRA_Ident_01")
    ds.add_new(0x00091002, "OB", ACCESSION.encode())  # TCIA: Examination number, "k"
    cases["safe_private_as_ob"] = ds
    ds = _ct(6)
    ds.add_new(0x00400400, "LT", "seen 12/03/2019, call 555-867-5309")
    cases["unlisted_free_text"] = ds
    reference = Dataset()
    reference.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    reference.ReferencedSOPInstanceUID = f"{ROOT}.3.1"
    content = Dataset()
    content.RelationshipType, content.ValueType, content.TextValue = "CONTAINS", "TEXT", "Dr. Frobisher said"
    reference.ContentSequence = [content]
    cases["nested_content"] = _ct(7, ReferencedImageSequence=[reference])
    pixels = np.full((8, 8), 100, np.uint16)
    pixels[2, 1:7] |= 0x8000
    ds = _ct(8, PixelData=pixels.tobytes())
    for element, vr, value in ((0x0010, "US", 8), (0x0011, "US", 8), (0x0100, "US", 1), (0x0102, "US", 15),
                               (0x0040, "CS", "G"), (0x0050, "SS", [1, 1])):
        ds.add_new(0x60000000 | element, vr, value)
    cases["overlay_in_high_bits"] = ds
    ds = _ct(9)
    ds.add_new(0x0040A123, "PN", "Frobisher^Ottoline")  # Person Name: action D
    cases["person_name_dummy"] = ds
    ds = _ct(10)
    del ds.PatientName
    ds.add_new(0x00100010, "UN", NAME.encode() + b" " * 70_001)
    cases["patient_name_as_long_un"] = ds
    cases["two_study_uids"] = _ct(11, StudyInstanceUID=[f"{ROOT}.1", f"{ROOT}.9"])
    cases["jpeg_comment"] = _jpeg_ct(12)
    ds = _jpeg_ct(13)  # an overlay group sends the file down the pydicom path
    for element, vr, value in ((0x0010, "US", 8), (0x0011, "US", 8), (0x0100, "US", 1), (0x0102, "US", 0),
                               (0x0040, "CS", "G"), (0x0050, "SS", [1, 1]), (0x3000, "OW", b"\0" * 8)):
        ds.add_new(0x60000000 | element, vr, value)
    cases["jpeg_comment_pydicom_path"] = ds
    return cases


def _jpeg(comment: bytes) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(out, format="JPEG", comment=comment,
                                                                     exif=b"Exif\0\0" + PAYLOAD)
    return out.getvalue()


def _jpeg_ct(number: int) -> Dataset:
    from pydicom.encaps import encapsulate

    ds = _ct(number, BitsAllocated=8, BitsStored=8, HighBit=7)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.PixelData = encapsulate([_jpeg(PAYLOAD)])
    ds["PixelData"].VR = "OB"
    return ds


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("uninspected")
    src = root / "src"
    src.mkdir()
    for name, ds in _inputs().items():
        ds.save_as(src / f"{name}.dcm", enforce_file_format=True)
    same_name = [_ct(20), _ct(21, StudyDescription="the other one")]
    with zipfile.ZipFile(src / "export.zip", "w") as archive:
        for ds in same_name:
            ds.SOPInstanceUID = f"{ROOT}.3.{20 + same_name.index(ds)}"
            fp = DicomBytesIO()
            ds.save_as(fp, enforce_file_format=True)
            archive.writestr("a.dcm", fp.getvalue())
    out, files = run_deid_cli(src, root)
    rows: dict[str, list[dict]] = {}
    for row in files:
        rows.setdefault(row["input"].removesuffix(".dcm"), []).append(row)
    return out, {name: found[0] if len(found) == 1 else found for name, found in rows.items()}


def _output(run: tuple[Path, dict], name: str) -> Path:
    out, rows = run
    assert rows[name]["outcome"] == "deidentified", rows[name]
    return out / rows[name]["output"]


@pytest.mark.parametrize("name", ["unlisted_text_as_ob", "unknown_attribute_as_un", "text_as_long_un",
                                  "sequence_as_long_un", "safe_private_as_ob", "patient_name_as_long_un",
                                  "jpeg_comment", "jpeg_comment_pydicom_path"])
def test_nothing_planted_survives_in_a_binary_vr(run: tuple[Path, dict], name: str) -> None:
    data = _output(run, name).read_bytes()
    assert [planted for planted in PLANTED if planted in data] == []


def test_a_sequence_read_as_bytes_is_decoded_and_cleaned(run: tuple[Path, dict]) -> None:
    ds = pydicom.dcmread(_output(run, "sequence_as_long_un"))
    item = ds.ReferencedSeriesSequence[0]
    assert item.SeriesInstanceUID == ds.SeriesInstanceUID  # remapped as everywhere else
    assert item[0x0040A160].value == "x" * 70_000  # free text without identifiers stays


def test_patient_name_read_as_bytes_becomes_the_pseudonym(run: tuple[Path, dict]) -> None:
    out, rows = run
    ds = pydicom.dcmread(_output(run, "patient_name_as_long_un"))
    assert ds.PatientName == ds.PatientID == rows["patient_name_as_long_un"]["pseudonym"]


def test_unlisted_free_text_is_cleaned_not_only_scrubbed(run: tuple[Path, dict]) -> None:
    text = pydicom.dcmread(_output(run, "unlisted_free_text"))[0x00400400].value
    assert "12/03/2019" not in text and "867-5309" not in text and "seen" in text


def test_the_engines_dummy_person_name_passes_the_gate(run: tuple[Path, dict]) -> None:
    ds = pydicom.dcmread(_output(run, "person_name_dummy"))
    assert not [finding for finding in check_deidentified(ds) if finding.code == "person-name"]


@pytest.mark.parametrize(("name", "outcome", "reason"), [
    ("nested_content", "withheld", "Content Sequence"),
    ("overlay_in_high_bits", "withheld", "overlay embedded in the pixel data"),
    ("two_study_uids", "rejected", "more than one value in StudyInstanceUID"),
])
def test_what_is_not_cleaned_is_withheld_or_rejected_with_the_reason(
        run: tuple[Path, dict], name: str, outcome: str, reason: str) -> None:
    row = run[1][name]
    assert row["outcome"] == outcome and reason in row["reason"], row


def test_two_members_of_one_name_in_a_zip_are_both_refused(run: tuple[Path, dict]) -> None:
    rows = run[1]["export.zip/a"]
    assert len(rows) == 2 and all(r["outcome"] == "rejected" and "cannot be told apart" in r["reason"]
                                  for r in rows), rows


@pytest.mark.parametrize(("name", "route"), [("jpeg_comment", "stream"), ("jpeg_comment_pydicom_path", "pydicom")])
def test_jpeg_comments_are_blanked_and_the_image_is_the_same(run: tuple[Path, dict], name: str, route: str) -> None:
    assert run[1][name]["route"] == route
    ds = pydicom.dcmread(_output(run, name))
    original = _inputs()[name]
    assert len(ds.PixelData) == len(original.PixelData)  # in place: no offset moves
    assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_a_jpeg_2000_comment_is_blanked_in_memory() -> None:
    from pydicom.encaps import encapsulate

    from radcommons.deid.codestream import blank_in_memory

    comment = b"\xff\x64" + struct.pack(">HH", 4 + len(PAYLOAD), 1) + PAYLOAD
    siz = b"\xff\x51" + struct.pack(">H", 6) + b"\0" * 4
    codestream = b"\xff\x4f" + siz + comment + b"\xff\x90" + struct.pack(">H", 10) + b"\0" * 8 + b"\xff\xd9"
    value = encapsulate([codestream])
    blanked = blank_in_memory(value)
    assert len(blanked) == len(value) and PAYLOAD not in blanked
    assert blanked.replace(b" " * len(PAYLOAD), PAYLOAD) == value  # only the comment changed
