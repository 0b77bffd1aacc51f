"""One reading of an IS / DS element's text (:func:`radcommons.deid.engine.number_bytes`) for the engine,
which keeps a plain number as read, and the gate's check, which judges it: the check dropped an empty
(``None``) value of a decoded element, so it judged other bytes than the engine kept (``1\\2`` for
``1\\\\2``: two values for three)."""

from __future__ import annotations

import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag

from radcommons.deid.check import check_deidentified
from radcommons.deid.engine import number_bytes

from deid_support import make_ct

#: (0020,0013) Instance Number, IS; (0018,0050) Slice Thickness, DS
INSTANCE_NUMBER, SLICE_THICKNESS = 0x00200013, 0x00180050


def _as_read(tag: int, vr: str, value: object) -> DataElement | RawDataElement:
    """The element ``tag`` with ``value`` written and read back as pydicom's reader gives it (undecoded,
    unless empty; explicit VR little endian)."""
    ds = Dataset()
    ds.add_new(tag, vr, value)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    buffer.seek(0)
    return read_dataset(buffer, False, True).get_item(Tag(tag))


@pytest.mark.parametrize("vr, tag", [("IS", INSTANCE_NUMBER), ("DS", SLICE_THICKNESS)])
@pytest.mark.parametrize("value, text", [
    (None, b""),
    ("", b""),
    (["1", None, "2"], b"1\\\\2"),
    (["", "3"], b"\\3"),
    (["4", ""], b"4\\"),
    ("5", b"5"),
])
def test_decoded_and_undecoded_read_as_the_same_text(vr: str, tag: int, value: object, text: bytes) -> None:
    """A value set in memory (an empty one is ``None``) reads as the text a file holds for it."""
    assert number_bytes(DataElement(tag, vr, value)) == text
    # the text as a file holds it (pydicom writes a None among values as 'None'), read back
    assert number_bytes(_as_read(tag, vr, text.decode())).rstrip(b" ") == text  # padded to even length


def test_the_check_judges_empty_values_as_the_engine_keeps_them() -> None:
    """A decoded IS with an empty value between two numbers passes the check, as the engine keeps it;
    a date-like value beside an empty one is found."""
    ds = make_ct()
    ds.PatientIdentityRemoved = "YES"
    ds.add_new(INSTANCE_NUMBER, "IS", ["1", None, "2"])
    codes = {f.code for f in check_deidentified(ds) if f.path == "(0020,0013)"}
    assert codes == set()
    ds.add_new(INSTANCE_NUMBER, "IS", [None, "20190312"])
    codes = {f.code for f in check_deidentified(ds) if f.path == "(0020,0013)"}
    assert codes == {"number-identifier"}
