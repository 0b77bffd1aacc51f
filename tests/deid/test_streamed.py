"""The streamed path (:mod:`radcommons.deid.streamed`) writes exactly what the pydicom path
writes, byte for byte, and hands every file it cannot take to that path.

The corpus is built to exercise what the streamed path remembers between files: series
whose slices differ in their per-slice values (instance numbers, positions, date-times,
private values, UIDs), two patients whose series-level bytes are the same but for the
patient, and the odd encodings the path must either reproduce (implicit VR, undefined
lengths, UN, non-ASCII text, multi-valued UIDs, encapsulated pixels) or leave to pydicom
(a NUL-padded private creator, data after Pixel Data, overlays).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ImplicitVRLittleEndian
from rich.console import Console

from radcommons.deid import DEIDENTIFIED, DeidContext, load_profile, streamed
from radcommons.deid.fileio import file_meta_bytes, new_file_meta
from radcommons.deid.identifiers import Identifiers
from radcommons.deid.patterns import _PATTERNS
from radcommons.deid.report import render_summary
from radcommons.deid.streamed import deidentify_streamed
from radcommons.deid.text import TextCleaner, _compile, _tidy
from radcommons.deid.tree import deidentify_tree
from radcommons.dicom.elements import NotPlain, read_head

from deid_support import KEY, make_ct, write

BASE = "1.2.826.0.1.3680043.8.498.7"


def make_plain_ct(**kwargs) -> Dataset:
    """:func:`make_ct` without its overlay and curve groups (which the streamed path leaves
    to pydicom: a removed overlay takes its whole repeating group)."""
    ds = make_ct(**kwargs)
    for tag in [t for t in ds.keys() if t.group in (0x6000, 0x5000)]:
        del ds[tag]
    return ds


def _slice(patient: int, series: int, index: int, **kwargs) -> Dataset:
    names = {0: "DOE^JOHN^Q", 1: "ROE^RICHARD"}
    ds = make_plain_ct(
        patient_id=f"MRN{patient:04d}",
        patient_name=names[patient],
        study_uid=f"{BASE}.{patient}",
        series_uid=f"{BASE}.{patient}.{series}",
        sop_uid=f"{BASE}.{patient}.{series}.{index}",
        **kwargs,
    )
    ds.InstanceNumber = str(index + 1)
    ds.ImagePositionPatient = ["-100", "-100", f"{index * 1.25:.2f}"]
    ds.SliceLocation = f"{index * 1.25:.2f}"
    ds.AcquisitionDateTime = f"20210304101502.{index:03d}"
    ds.ContentTime = f"1015{index:02d}"
    ds.IrradiationEventUID = [f"{BASE}.9.{patient}.{index}", f"{BASE}.9.{patient}.{index + 100}"]
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = f"{BASE}.{patient}.{series}.{index + 1}"
    ds.private_block(0x0019, "SIEMENS CT VA0  COAD")[0x90].value = str(index)  # safe, per slice
    # identical bytes for both patients: patient 0's name, which for patient 1 is just text
    ds.ImageComments = "compared with DOE study"
    return ds


def _corpus(root: Path) -> tuple[list[Path], list[Path]]:
    """(files the streamed path must take, files it must hand to pydicom)."""
    plain: list[Path] = []
    for patient in (0, 1):
        for series in (1, 2):
            for index in range(4):
                plain.append(write(_slice(patient, series, index), root / f"p{patient}/s{series}/{index}.dcm"))
    for index in range(3):  # implicit VR little endian
        ds = _slice(0, 3, index)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        path = root / f"implicit/{index}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
        plain.append(path)
    odd = _slice(1, 4, 0)
    odd.StudyDescription = "CT THORAX Müller Krankenhaus"  # ISO_IR 100, not ASCII
    odd.PatientName = "MÜLLER^JÖRG"
    odd.ReferencedImageSequence.is_undefined_length = True
    odd["ReferencedImageSequence"][0].is_undefined_length_sequence_item = True
    odd.add_new(0x00181030, "UN", b"CHEST ROUTINE ")  # Protocol Name written as UN
    plain.append(write(odd, root / "odd/encodings.dcm"))
    plain.append(write(_slice(0, 5, 0, encapsulated=True), root / "odd/jpeg.dcm"))
    handed: list[Path] = []
    padded = _slice(0, 6, 0)
    padded[0x00190010].value = "SIEMENS CT VA0  COAD\0"  # creators compare after pydicom strips NULs
    handed.append(write(padded, root / "handed/nul_creator.dcm"))
    trailing = _slice(0, 6, 1)
    handed.append(write(trailing, root / "handed/trailing.dcm"))
    with open(handed[-1], "ab") as out:  # Data Set Trailing Padding after Pixel Data
        out.write(b"\xfc\xff\xfc\xff" + b"OB\0\0" + (4).to_bytes(4, "little") + b"\0\0\0\0")
    handed.append(write(make_ct(sop_uid=f"{BASE}.99"), root / "handed/overlay.dcm"))
    return plain, handed


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("profile", ["default", "basic"])
def test_streamed_path_equals_pydicom_path(tmp_path, profile):
    plain, handed = _corpus(tmp_path / "src")
    context = DeidContext(key=KEY, site="SITE_A", profile=load_profile(profile), review_pixels=False)
    for path in plain:
        assert deidentify_streamed(path, tmp_path / "probe", context, label=path.name).status == DEIDENTIFIED, path
    for path in handed:
        with pytest.raises(NotPlain):
            deidentify_streamed(path, tmp_path / "probe", context, label=path.name)
    trees = {}
    for fast in (True, False):
        ctx = DeidContext(key=KEY, site="SITE_A", profile=load_profile(profile), review_pixels=False, fast_paths=fast)
        report = deidentify_tree(tmp_path / "src", tmp_path / f"out-{fast}", ctx, state_dir=tmp_path / f"st-{fast}",
                                 workers=1)
        counts = report.counts()
        assert counts["deidentified"] == len(plain) + len(handed) and not counts["stream_failures"]
        routes = (len(plain), len(handed)) if fast else (0, len(plain) + len(handed))
        assert (counts["streamed"], counts["pydicom_path"]) == routes
        trees[fast] = _tree(tmp_path / f"out-{fast}")
    assert trees[True].keys() == trees[False].keys()
    for name, data in trees[False].items():
        assert trees[True][name] == data, name


def test_a_fault_of_the_streamed_path_is_reported_and_the_pydicom_path_decides(tmp_path, monkeypatch):
    plain, handed = _corpus(tmp_path / "src")

    def broken(self):
        raise RuntimeError("a fault")

    monkeypatch.setattr(streamed._Writer, "dataset", broken)
    streamed._SERIES_CACHE.clear()
    context = DeidContext(key=KEY, site="SITE_A", profile=load_profile("default"), review_pixels=False)
    report = deidentify_tree(tmp_path / "src", tmp_path / "out", context, state_dir=tmp_path / "st", workers=1)
    counts = report.counts()
    assert counts["streamed"] == 0
    # Every plain file failed, and the handed ones that the streamed path gives up on only once it
    # writes (a NUL in a private creator, an overlay); trailing padding is seen before, when it reads.
    failed = {f["input"] for f in report.to_json()["files"] if f.get("stream_failure")}
    assert failed == {p.relative_to(tmp_path / "src").as_posix() for p in [*plain, *handed] if p.name != "trailing.dcm"}
    assert counts["stream_failures"] == len(plain) + len(handed) - 1
    assert counts["deidentified"] == counts["pydicom_path"] == counts["total"] == len(plain) + len(handed)
    entry = next(f for f in report.to_json()["files"] if f["input"].endswith(plain[0].name))
    assert entry["route"] == "pydicom" and entry["stream_failure"] == "the streamed path failed: RuntimeError: a fault"
    console = Console(record=True, width=200)
    render_summary(report, console)
    assert f"{counts['stream_failures']} file(s) made the streamed path fail" in console.export_text()


def test_remembered_values_never_cross_patients(tmp_path, context):
    """Two patients, the same series-level bytes: each output is scrubbed of its own
    patient's identifiers, and the UIDs of every slice are its own."""
    outputs = {}
    for patient in (0, 1):
        for index in range(2):
            path = write(_slice(patient, 1, index), tmp_path / f"{patient}-{index}.dcm")
            outcome = deidentify_streamed(path, tmp_path / "out", context, label=path.name)
            assert outcome.status == DEIDENTIFIED
            outputs[patient, index] = pydicom.dcmread(tmp_path / "out" / outcome.output)
    assert outputs[0, 0].PatientID != outputs[1, 0].PatientID
    assert outputs[0, 0].PatientID == outputs[0, 1].PatientID
    assert len({str(ds.SOPInstanceUID) for ds in outputs.values()}) == 4
    assert "DOE" not in str(outputs[0, 0].get("ImageComments", ""))  # patient 0's own name goes
    for ds in outputs.values():
        assert "JOHN" not in str(ds.get("StudyDescription", "")) and "RICHARD" not in str(ds.PatientName)


def test_a_full_cache_of_remembered_values_loses_nothing(tmp_path, context, monkeypatch):
    """A long series fills the cache of remembered values; emptying it never drops a value a
    file still needs (it once did, half way through a file: a KeyError)."""
    paths = [write(_slice(0, 1, index), tmp_path / f"src/{index}.dcm") for index in range(6)]
    expected = {}
    for path in paths:
        outcome = deidentify_streamed(path, tmp_path / "roomy", context, label=path.name)
        expected[outcome.output] = (tmp_path / "roomy" / outcome.output).read_bytes()
    streamed._SERIES_CACHE.clear()
    monkeypatch.setattr(streamed, "MAX_REMEMBERED", 3)
    for path in paths:
        outcome = deidentify_streamed(path, tmp_path / "tight", context, label=path.name)
        assert outcome.status == DEIDENTIFIED
        assert (tmp_path / "tight" / outcome.output).read_bytes() == expected[outcome.output]


def test_read_head_locates_elements_without_decoding(tmp_path):
    path = write(_slice(0, 1, 0), tmp_path / "ct.dcm")
    data = path.read_bytes()
    with open(path, "rb") as fp:
        head = read_head(fp, len(data))
    reference = pydicom.dcmread(path, stop_before_pixels=True)
    assert [e[0] for e in head.elements] == [int(t) for t in reference.keys()]
    assert head.transfer_syntax == reference.file_meta.TransferSyntaxUID
    assert head.native_pixels() == (head.pixel_start, len(data))
    by_tag = {e[0]: e for e in head.elements}
    assert head.value(by_tag[0x00100020]).rstrip(b" ") == b"MRN0000"


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda b: b"\0" * 132 + b[132:], "no DICM prefix"),
        (lambda b: b[:400], "ends inside an element"),
        (lambda b: b.replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.2\0", 1), "transfer syntax"),
    ],
)
def test_read_head_refuses_what_it_does_not_handle(tmp_path, damage, reason):
    data = damage(write(_slice(0, 1, 0), tmp_path / "ct.dcm").read_bytes())
    with pytest.raises(NotPlain, match=reason):
        read_head(io.BytesIO(data), len(data))


def test_file_meta_bytes_equal_pydicom(tmp_path):
    ds = _slice(0, 1, 0)
    for syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"):
        for sop in ("2.25.1234", "2.25.12345"):  # even and odd lengths
            ds.SOPInstanceUID = sop
            buffer = DicomBytesIO()
            buffer.is_little_endian, buffer.is_implicit_VR = True, False
            write_file_meta_info(buffer, new_file_meta(ds, syntax), enforce_standard=True)
            assert file_meta_bytes(str(ds.SOPClassUID), sop, syntax) == buffer.getvalue()


def _reference_scrub(identifiers: Identifiers, text: str) -> str:
    known = _compile(identifiers)
    if known is None or not text:
        return text
    return _tidy(known.sub(" ", text)) if known.search(text) else text


def _reference_clean(identifiers: Identifiers, text: str) -> str:
    if not text:
        return text
    result = text
    for pattern in _PATTERNS:
        result = pattern.sub(" ", result)
    known = _compile(identifiers)
    if known is not None:
        result = known.sub(" ", result)
    return _tidy(result) if result != text else text


def test_text_cleaner_matches_the_case_insensitive_pattern():
    """The cleaner matches ASCII text against lowered literals, compiled only when a text
    contains one; over random texts it removes exactly what one IGNORECASE pattern does
    (non-ASCII identifiers, which fold differently, included)."""
    rng = random.Random(3)
    values = ["NGUYEN", "Olu", "SGH82198834", "Springfield General Hospital", "20170607", "2017-06-07",
              "06/07/2017", "DUBOIS", "Ahmed", "ÉMILE", "straße", "ſam"]
    alphabet = "abcXYZ019 ,;:/-_^.@()"
    checked = 0
    for _ in range(600):
        chosen = rng.sample(values, rng.randint(0, 6))
        phrases = tuple(sorted({v for v in chosen if " " in v or v[0].isdigit()}, key=lambda s: (-len(s), s)))
        words = tuple(sorted(set(chosen) - set(phrases), key=lambda s: (-len(s), s)))
        identifiers = Identifiers(phrases, words)
        cleaner = TextCleaner(identifiers)
        for _ in range(5):
            bits = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(4)]
            for _ in range(rng.randint(0, 3)):
                value = rng.choice(values)
                bits.insert(rng.randint(0, len(bits)), rng.choice([value, value.lower(), value.upper(), value.swapcase()]))
            text = " ".join(bits) + ("é" if rng.random() < 0.1 else "")
            assert cleaner.scrub_known(text) == _reference_scrub(identifiers, text), (identifiers, text)
            assert cleaner.clean(text) == _reference_clean(identifiers, text), (identifiers, text)
            checked += 1
    assert checked == 3000
