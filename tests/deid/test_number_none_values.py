"""A decoded IS / DS element whose values hold an empty one as ``None`` (a data set built in memory
and handed to deidentify_dataset; pydicom's reader gives '' there) was kept by the engine as it was,
and pydicom writes that None as the text 'None': not a number (PS3.5 6.2), so the commons'
verification gate quarantined RadCommons' own output. The engine now writes an empty value in its
place, the count of values kept."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radcommons.deid import DeidContext
from radcommons.deid.check import check_deidentified
from radcommons.deid.engine import DEIDENTIFIED, deidentify_dataset
from radcommons.deid.fileio import write_whole

from deid_support import make_ct

#: (tag, VR, value set in memory, the text the output must hold): numbers the engine judges and keeps
#: (the shipped profiles keep or remove every IS / DS; a site's override may keep one unjudged, and the
#: empty value is written alike before any step)
NUMBERS = [
    (0x00200013, "IS", ["1", None, "2"], b"1\\\\2"),  # Instance Number
    (0x00200032, "DS", ["0.5", None, "-3"], b"0.5\\\\-3"),  # Image Position (Patient)
    (0x00180050, "DS", [None, "1.25"], b"\\1.25"),  # Slice Thickness
]
#: (0018,1150) Exposure Time, IS, inside an item of Referenced Series Sequence (0008,1115)
EXPOSURE_TIME, REFERENCED_SERIES = 0x00181150, 0x00081115


def _written_back(ds: Dataset, path: Path) -> Dataset:
    write_whole(path, ds, str(ds.file_meta.TransferSyntaxUID))
    return pydicom.dcmread(path)


@pytest.mark.parametrize("tag, vr, value, text", NUMBERS, ids=["IS", "DS-kept", "DS-first-empty"])
def test_an_empty_value_held_as_none_is_written_empty_and_passes_the_gate(
        tmp_path: Path, context: DeidContext, tag: int, vr: str, value: list, text: bytes) -> None:
    ds = make_ct()
    ds.add_new(tag, vr, value)
    item = Dataset()
    item.add_new(EXPOSURE_TIME, "IS", ["7", None])
    ds.add_new(REFERENCED_SERIES, "SQ", Sequence([item]))
    outcome = deidentify_dataset(ds, context, pixels_cleaned=False)
    assert outcome.status == DEIDENTIFIED, outcome.reason
    back = _written_back(ds, tmp_path / "out.dcm")
    assert back.get_item(tag).value.rstrip(b" ") == text
    assert back[REFERENCED_SERIES][0].get_item(EXPOSURE_TIME).value.rstrip(b" ") == b"7\\"
    assert [(f.code, f.path) for f in check_deidentified(back)] == []
