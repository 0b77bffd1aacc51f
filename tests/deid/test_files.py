"""deidentify_file on real samples and synthetic files: validity, bytes, bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from radcommons.deid import DEIDENTIFIED, DeidContext, check_deidentified, deidentify_file, load_profile
from radcommons.deid.fileio import read_header

from deid_support import KEY, dciodvfy_errors, make_ct, needs_dciodvfy, samples_dir, write


def _pixel_bytes(path: Path) -> bytes:
    header = read_header(path)
    start, end = header.pixel_span
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


@pytest.mark.parametrize("name", ["ctbrain1.dcm", "ctbrain2.dcm"])
def test_samples_header_only_valid_and_clean(tmp_path, name, context):
    needs_dciodvfy()
    source = samples_dir() / name
    outcome = deidentify_file(source, tmp_path / "out", context)
    assert outcome.status == DEIDENTIFIED, outcome.reason
    output = tmp_path / "out" / outcome.output
    new_errors = dciodvfy_errors(output) - dciodvfy_errors(source)
    assert not new_errors, new_errors
    ds = pydicom.dcmread(output)
    # Secondary Captures: ``context`` skips the pixel cleaner (review_pixels=False), so 113101 is not
    # claimed and the commons' gate holds them for burned-in text; nothing else is found.
    assert [f.code for f in check_deidentified(ds)] == ["pixels-not-cleaned"]
    raw = output.read_bytes()
    for phi in (b"SIMPSON", b"00007041776", b"999887722", b"SPRINGFIELD", b"HIBBARD", b"SGHCT01A",
                b"11223", b"M1212121", b"Evergreen", b"20200704", b"RIVERIA"):
        assert phi not in raw, phi
    assert raw[:128] == b"\x00" * 128
    assert _pixel_bytes(output) == _pixel_bytes(source)  # byte for byte, JPEG untouched


def test_two_files_of_one_patient_share_pseudonym_and_study(tmp_path, context):
    root = samples_dir()
    a = deidentify_file(root / "ctbrain1.dcm", tmp_path / "a", context)
    b = deidentify_file(root / "ctbrain2.dcm", tmp_path / "b", context)
    assert a.patient.pseudonym == b.patient.pseudonym
    assert a.study.new_study_uid == b.study.new_study_uid


@pytest.mark.slow
@pytest.mark.parametrize("name", ["GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm"])
def test_burned_in_ultrasound_end_to_end(tmp_path, name):
    """The two US samples go to the pixel cleaner: cleaned and flagged, or withheld."""
    pytest.importorskip("radcommons.deid.pixels")
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract not installed")
    needs_dciodvfy()
    source = samples_dir() / name
    context = DeidContext(KEY, "SITE_A", load_profile("default"))
    outcome = deidentify_file(source, tmp_path / "out", context)
    if outcome.status != DEIDENTIFIED:
        assert outcome.status == "withheld" and outcome.reason
        return
    assert outcome.pixels_cleaned
    output = tmp_path / "out" / outcome.output
    ds = pydicom.dcmread(output)
    assert ds.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert check_deidentified(ds) == []
    assert not dciodvfy_errors(output) - dciodvfy_errors(source)
    # re-read the top banner with tesseract: the known strings must be gone
    pixels = ds.pixel_array
    grey = pixels.mean(axis=-1) if pixels.ndim == 3 else pixels
    banner = np.clip(grey[:120], 0, 255).astype(np.uint8)
    pgm = tmp_path / "banner.pgm"
    pgm.write_bytes(b"P5 %d %d 255\n" % (banner.shape[1], banner.shape[0]) + banner.tobytes())
    text = subprocess.run(["tesseract", str(pgm), "-", "--psm", "11"], capture_output=True, text=True).stdout
    for phi in ("ZZZ", "PATIENTFI", "CLEVELAN", "DOWNTIME", "08/29/1951", "00047431395", "120907058"):
        assert phi not in text.upper(), phi


def test_synthetic_ct_valid_and_pixels_identical(tmp_path, ct_file, context):
    needs_dciodvfy()
    outcome = deidentify_file(ct_file, tmp_path / "out", context)
    output = tmp_path / "out" / outcome.output
    assert not dciodvfy_errors(output) - dciodvfy_errors(ct_file)
    assert _pixel_bytes(output) == _pixel_bytes(ct_file)
    assert b"DOE" not in output.read_bytes() and b"HOSPITALPACS" not in output.read_bytes()
    assert "IM0001" not in outcome.output and "DOE" not in outcome.output


def test_encapsulated_pixel_data_passes_through(tmp_path, context):
    source = write(make_ct(encapsulated=True, frames=3), tmp_path / "in" / "enc.dcm")
    outcome = deidentify_file(source, tmp_path / "out", context)
    assert outcome.status == DEIDENTIFIED, outcome.reason
    output = tmp_path / "out" / outcome.output
    assert _pixel_bytes(output) == _pixel_bytes(source)
    ds = pydicom.dcmread(output)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert check_deidentified(ds) == []


def test_trailing_elements_after_pixel_data_are_deidentified(tmp_path, context):
    ds = make_ct()
    block = ds.private_block(0x7FE1, "ACME TRAILER", create=True)
    block.add_new(0x01, "LO", "DOE^JOHN")
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)
    source = write(ds, tmp_path / "in" / "t.dcm")
    outcome = deidentify_file(source, tmp_path / "out", context)
    output = tmp_path / "out" / outcome.output
    raw = output.read_bytes()
    assert b"DOE" not in raw and b"ACME" not in raw
    assert pydicom.dcmread(output).PixelData == pydicom.dcmread(source).PixelData


def test_outputs_are_deterministic(tmp_path, ct_file, context):
    a = deidentify_file(ct_file, tmp_path / "a", context)
    b = deidentify_file(ct_file, tmp_path / "b", context)
    assert (tmp_path / "a" / a.output).read_bytes() == (tmp_path / "b" / b.output).read_bytes()


def test_existing_output_is_not_rewritten(tmp_path, ct_file, context):
    first = deidentify_file(ct_file, tmp_path / "out", context)
    second = deidentify_file(ct_file, tmp_path / "out", context)
    assert second.skipped_existing and second.output == first.output
    assert len(list((tmp_path / "out").rglob("*"))) == 3  # study dir, series dir, file


def _dicomdir(path: Path) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.FileSetID = "X"
    ds.DirectoryRecordSequence = []
    ds.save_as(path, enforce_file_format=True)
    return path


def test_bad_inputs_are_rejected_with_a_reason(tmp_path, ct_file, context):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.dcm").write_bytes(b"")
    (bad / "text.txt").write_text("hello, not DICOM")
    data = ct_file.read_bytes()
    (bad / "truncated_pixels.dcm").write_bytes(data[:-100])
    (bad / "truncated_header.dcm").write_bytes(data[:400])
    # cut inside Series Instance UID: pydicom reads "1.2." without a word, and the file was de-identified
    series = data.index(b"\x20\x00\x0e\x00")
    (bad / "cut_in_an_element.dcm").write_bytes(data[:series + 12])
    (bad / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4)
    _dicomdir(bad / "DICOMDIR")
    no_uid = make_ct()
    del no_uid.StudyInstanceUID
    write(no_uid, bad / "no_uid.dcm")
    # 5,000 nested sequences (undefined lengths) before Pixel Data: the streamed path's RecursionError
    # was reported as a fault of ours ("please report them to the RadCommons developers").
    head = data[:data.index(b"\xe0\x7f\x10\x00")]
    level = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"
    close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    (bad / "deep.dcm").write_bytes(head + level * 5000 + close * 5000)
    for path in sorted(bad.iterdir()):
        outcome = deidentify_file(path, tmp_path / "out", context)
        assert outcome.status == "rejected", (path.name, outcome)
        assert outcome.reason and not outcome.stream_failure, (path.name, outcome)
        if path.name == "cut_in_an_element.dcm":
            assert "truncated: the file ends inside element (0020,000E)" in outcome.reason, outcome
    assert not list((tmp_path / "out").rglob("*.dcm"))
