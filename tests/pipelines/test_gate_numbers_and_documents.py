"""The verification gate's last gaps, through ``radcommons ingest`` (files start from ``radcommons deid``
output, which passes, each changed in one way):

* Integer and Decimal Strings (IS, DS) were never looked at: text in one, a date as Series Number, a
  record number as Acquisition Number (nested too) passed. Ordinary numbers (pixel spacing, window
  values, slice locations, a dose in Bq, exponents, a decimal comma) still pass.
* An SR or encapsulated PDF without any content item or document passed: the SOP Class now decides
  (an SR passes only with Clean Structured Content, 113104, claimed; a PDF never).
* A Deflated Explicit VR Little Endian file's elements after the Pixel Data were never read: a private
  group above 7FE0 passed in one. The deflate stream is now read past the pixel data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from test_gate_bypass import ingest_variants

#: a value that must not reach the reason shown to the operator, the sender and the curator
SECRET = "48213977"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def _raw(ds: Dataset, tag: int, vr: str, value: bytes) -> None:
    """An element written with exactly these bytes (pydicom refuses to write text in an IS or DS)."""
    if len(value) % 2:
        value += b" "
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _nested_frame_number(ds: Dataset) -> None:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = generate_uid(prefix=None)
    _raw(item, 0x00081160, "IS", SECRET.encode())
    ds.ReferencedImageSequence = [item]


def _document(sop_class: str, *codes: str) -> Callable[[Dataset], None]:
    """The image made a document of ``sop_class`` with nothing in it (no pixel data, no content item,
    no document), with the method codes ``codes`` claimed besides the image's."""

    def change(ds: Dataset) -> None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        for keyword in [k for k in ds.dir() if k.startswith(("Bits", "Pixel", "Photometric", "Samples", "Rows",
                                                              "Columns", "HighBit", "Window", "Rescale"))]:
            delattr(ds, keyword)
        for code in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "DCM", "Clean Structured Content"
            ds.DeidentificationMethodCodeSequence.append(item)
    return change


def _deflated(change: Callable[[Dataset], None] | None) -> Callable[[Dataset], None]:
    def deflate(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        if change is not None:
            change(ds)
    return deflate


def _private_after_pixels(ds: Dataset) -> None:
    ds.private_block(0x7FE1, "ACME HOSPITAL", create=True).add_new(0x01, "LO", f"MRN {SECRET}")


def _ordinary_numbers(ds: Dataset) -> None:
    _raw(ds, 0x00280030, "DS", b"0.703125\\0.703125")  # Pixel Spacing
    _raw(ds, 0x00281050, "DS", b"-600")  # Window Center
    _raw(ds, 0x00201041, "DS", b"-1234.56789012345")  # Slice Location, a double printed in full
    _raw(ds, 0x00281053, "DS", b"1E+00")  # Rescale Slope
    _raw(ds, 0x00180050, "DS", b"1,5")  # Slice Thickness with a decimal comma: a vendor's error, a number
    _raw(ds, 0x00181074, "DS", b"370000000")  # Radionuclide Total Dose in Bq: long, but a measured value
    _raw(ds, 0x00200013, "IS", b"123456")  # Instance Number: 6 digits, a long series
    _raw(ds, 0x00181170, "DS", b"12.5")  # Generator Power, an IS, written as DS: a number either way


#: name -> (change, finding code, element path the reason must name); code None: must be indexed
CASES: dict[str, tuple[Callable[[Dataset], None] | None, str | None, str]] = {
    "control": (None, None, ""),
    "ordinary-numbers": (_ordinary_numbers, None, ""),
    "text-in-ds": (lambda ds: _raw(ds, 0x00180050, "DS", b"Zyxw"), "not-a-number", "(0018,0050)"),
    "mrn-in-is": (lambda ds: _raw(ds, 0x00200012, "IS", b"MRN48213977"), "not-a-number", "(0020,0012)"),
    "date-as-series-number": (lambda ds: _raw(ds, 0x00200011, "IS", b"20190312"), "number-identifier",
                              "(0020,0011)"),
    "record-number-as-acquisition": (lambda ds: _raw(ds, 0x00200012, "IS", SECRET.encode()), "number-identifier",
                                     "(0020,0012)"),
    "record-number-nested": (_nested_frame_number, "number-identifier", "(0008,1140)[0].(0008,1160)"),
    "date-in-ds": (lambda ds: _raw(ds, 0x00101030, "DS", b"20190312"), "number-identifier", "(0010,1030)"),
    "empty-sr": (_document(BASIC_TEXT_SR), "sop-class", "(0008,0016)"),
    "empty-pdf": (_document(ENCAPSULATED_PDF), "sop-class", "(0008,0016)"),
    "empty-pdf-113104": (_document(ENCAPSULATED_PDF, "113104"), "sop-class", "(0008,0016)"),
    "empty-sr-113104": (_document(BASIC_TEXT_SR, "113104"), None, ""),
    "deflated": (_deflated(None), None, ""),
    "deflated-private-after-pixels": (_deflated(_private_after_pixels), "private", "(7FE1,1001)"),
}


def test_ingest_gates_numbers_documents_and_deflated_tails(deid_tree: Path, tmp_path: Path, run_cli) -> None:
    source = next(p for p in sorted(deid_tree.rglob("*.dcm"))
                  if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT")
    files, output = ingest_variants(source, {name: change for name, (change, _, _) in CASES.items()}, tmp_path,
                                    run_cli)
    wrong = {}
    for name, (_, code, path) in CASES.items():
        entry = files[name]
        if code is None and entry["status"] != "indexed":
            wrong[name] = entry
        elif code is not None and (entry["status"] != "quarantined" or f"{code} at {path}" not in entry["reason"]):
            wrong[name] = entry
    assert not wrong, json.dumps(wrong, indent=1)
    assert "Basic Text SR Storage (1.2.840.10008.5.1.4.1.1.88.11)" in files["empty-sr"]["reason"]
    assert "Encapsulated PDF Storage" in files["empty-pdf"]["reason"]
    assert SECRET not in output + json.dumps(files)
