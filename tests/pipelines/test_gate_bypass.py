"""Files that claim de-identification (Patient Identity Removed YES, the method codes) but were made
by another tool or edited by hand, sent through ``radcommons ingest``: each still holds something
the verification gate can see, and each is quarantined with a reason naming the element, never its
value. The files start from ``radcommons deid`` output (which passes), each changed in one way."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

#: a value that must not reach the reason shown to the operator, the sender and the curator
SECRET = "EVERGREEN"


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _wrong_vr_name(ds: Dataset) -> None:
    """Patient's Name written as LO: as PN it is a person name; as LO the gate read it as a code."""
    ds[0x00100010] = pydicom.DataElement(0x00100010, "LO", f"{SECRET}^JOHN")


def _unreadable_sequence(ds: Dataset) -> None:
    """Referenced Image Sequence written as OB with bytes that are no sequence."""
    ds[0x00081140] = pydicom.DataElement(0x00081140, "OB", b"\x01\x02\x03\x04" + SECRET.encode())


def _private_after_pixels(ds: Dataset) -> None:
    """A private group above the pixel data: a header read up to Pixel Data never saw it."""
    ds.private_block(0x7FE1, "ACME HOSPITAL", create=True).add_new(0x01, "LO", f"{SECRET}^JOHN")


def _signature_after_pixels(ds: Dataset) -> None:
    ds.DigitalSignaturesSequence = Sequence([_item(DigitalSignatureUID=generate_uid(prefix=None),
                                                   CertificateOfSigner=f"CN={SECRET}".encode())])


def _other_file_meta_uid(ds: Dataset) -> None:
    """The dataset's UIDs rewritten, File Meta not: a 2.25 UID (some devices mint them) that is not the SOP's."""
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=None)


def _ultrasound_not_cleaned(ds: Dataset) -> None:
    """An ultrasound (banners burned into the pixels) without Clean Pixel Data claimed."""
    ds.Modality = "US"
    if "BurnedInAnnotation" in ds:
        del ds.BurnedInAnnotation


def _deep(ds: Dataset) -> None:
    """Sequences nested 1500 deep: deeper than the gate's walk can recurse. It held the whole ingest
    run up with a RecursionError traceback; such a header is now quarantined (gate-error)."""
    inner = _item(ImageComments="deep")
    for _ in range(1500):
        inner = _item(ReferencedImageSequence=Sequence([inner]))
    ds.ReferencedImageSequence = inner.ReferencedImageSequence


def _pdf(ds: Dataset) -> None:
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = f"%PDF-1.4 {SECRET} report".encode()


#: name -> (change, finding code, element path that the reason must name)
CASES: dict[str, tuple[Callable[[Dataset], None], str, str]] = {
    "other-patient-ids": (lambda ds: setattr(ds, "OtherPatientIDs", "H7Q2K9"), "not-removed", "(0010,1000)"),
    "issuer-nested": (lambda ds: setattr(ds, "OtherPatientIDsSequence", Sequence([_item(
        PatientID="H7Q2K9", IssuerOfPatientID=f"{SECRET} GENERAL")])), "not-removed", "(0010,1002)[0].(0010,0021)"),
    "address": (lambda ds: setattr(ds, "PatientAddress", f"742 {SECRET} Terrace"), "not-removed", "(0010,1040)"),
    "birth-time": (lambda ds: setattr(ds, "PatientBirthTime", "101500"), "not-removed", "(0010,0032)"),
    "icon": (lambda ds: setattr(ds, "IconImageSequence", Sequence([_item(
        Rows=8, Columns=8, BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0, SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2", PixelData=b"\0" * 64)])), "not-removed", "(0088,0200)"),
    "overlay": (lambda ds: [ds.add_new(0x60000010, "US", 8), ds.add_new(0x60000011, "US", 8),
                            ds.add_new(0x60003000, "OW", b"\xff" * 8)], "not-removed", "(6000,3000)"),
    "structured-text": (lambda ds: setattr(ds, "ContentSequence", Sequence([_item(
        RelationshipType="CONTAINS", ValueType="TEXT", TextValue=f"discussed with {SECRET}")])),
        "not-removed", "(0040,A730)"),
    "pdf": (_pdf, "not-removed", "(0042,0011)"),
    "meta-uid": (_other_file_meta_uid, "meta-uid", "(0002,0003)"),
    "ultrasound": (_ultrasound_not_cleaned, "pixels-not-cleaned", "(7FE0,0010)"),
    "name-as-lo": (_wrong_vr_name, "person-name", "(0010,0010)"),
    "unreadable-vr": (_unreadable_sequence, "wrong-vr", "(0008,1140)"),
    "private-after-pixels": (_private_after_pixels, "private", "(7FE1,1001)"),
    "signature-after-pixels": (_signature_after_pixels, "not-removed", "(FFFA,FFFA)"),
    "deep-nesting": (_deep, "gate-error", "(dataset)"),
}


def _variant(source: Path, target: Path, change: Callable[[Dataset], None] | None) -> None:
    """``source`` with new 2.25 instance UIDs (another instance of its series) and ``change`` made."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=None)
    if change is not None:
        change(ds)
    target.parent.mkdir(parents=True, exist_ok=True)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)  # pydicom writes nested sequences recursively
    try:
        ds.save_as(target, enforce_file_format=False)
    finally:
        sys.setrecursionlimit(limit)


def ingest_variants(source: Path, changes: dict[str, Callable[[Dataset], None] | None], tmp_path: Path, run_cli
                    ) -> tuple[dict[str, dict], str]:
    """``radcommons ingest`` of a tree of :func:`_variant` files of ``source``, one per change, named by
    the change: the report's entries by name, and what the run printed (no traceback in it)."""
    tree = tmp_path / "tree"
    for name, change in changes.items():
        _variant(source, tree / f"{name}.dcm", change)
    url = f"sqlite:///{tmp_path / 'index.db'}"
    assert run_cli("db", "upgrade", "--url", url).returncode == 0
    result = run_cli("ingest", str(tree), "--project", "Gate-B", "--site", "SITE_A", "--workers", "1", "--url", url,
                     "--store", str(tmp_path / "objects"), "--report", "report.json")
    assert "Traceback" not in result.stderr, result.stderr
    files = {Path(f["path"]).stem: f for f in json.loads((tmp_path / "report.json").read_text())["files"]}
    return files, result.stdout + result.stderr


def test_ingest_quarantines_what_other_tools_leave_in(deid_tree: Path, tmp_path: Path, run_cli) -> None:
    source = next(p for p in sorted(deid_tree.rglob("*.dcm"))
                  if pydicom.dcmread(p, stop_before_pixels=True).Modality in ("CR", "DX", "CT")
                  and "PixelData" in pydicom.dcmread(p))
    files, output = ingest_variants(
        source, {"control": None, **{name: change for name, (change, _, _) in CASES.items()}}, tmp_path, run_cli)
    assert files["control"]["status"] == "indexed", files["control"]
    wrong = {}
    for name, (_, code, path) in CASES.items():
        entry = files[name]
        if entry["status"] != "quarantined" or f"{code} at {path}" not in entry["reason"]:
            wrong[name] = entry
    assert not wrong, json.dumps(wrong, indent=1)
    assert SECRET not in output + json.dumps(files)
