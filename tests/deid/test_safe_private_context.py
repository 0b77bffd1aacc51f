"""Private elements are kept only where TCIA's knowledge base reviewed them.

The knowledge base names the context of every row (top level, or the chain of enclosing
sequences); the engine keeps a safe private element only in that context, so a vendor
element reviewed at the top level is still removed when it turns up nested, and an element
TCIA reviewed only inside a given sequence is removed at the top level.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radcommons.deid import deidentify_dataset
from radcommons.deid.safe_private import _innermost, build_allow_list, disposition_in_context, load_allow_list

from deid_support import make_ct


def _nested_item(creator: str, group: int, offset: int, value: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.5"
    item.private_block(group, creator, create=True).add_new(offset, "LO", value)
    return item


def test_context_rules():
    allow = load_allow_list()
    assert disposition_in_context(allow, 0x0019, "SIEMENS CT VA0  COAD", 0x1090, "") == "k"
    assert disposition_in_context(allow, 0x0019, "SIEMENS CT VA0  COAD", 0x1090, "00081140") is None
    assert disposition_in_context(allow, 0x0009, "ELEKTA GAMMAPLAN", 0x1020, "300a0010") == "k"
    assert disposition_in_context(allow, 0x0009, "ELEKTA GAMMAPLAN", 0x1020, "") is None


def test_innermost_signature_of_nested_private_patterns():
    match = _innermost('(0009,"GEIIS",10)[<0>](0029,"SIEMENS MEDCOM HEADER",49)')
    assert match is not None and match.groups() == ("0029", "SIEMENS MEDCOM HEADER", "49")
    assert _innermost("(0009,\"GEIIS\",10)[<0>](0008,1150)") is None


def test_engine_keeps_private_elements_only_in_their_context(context):
    ds = make_ct()
    ds.ReferencedImageSequence = Sequence([_nested_item("SIEMENS CT VA0  COAD", 0x0019, 0x90, "NESTED-SAFE-AT-TOP")])
    ds.private_block(0x0009, "ELEKTA GAMMAPLAN", create=True).add_new(0x20, "LO", "TOP-SAFE-ONLY-NESTED")
    assert deidentify_dataset(ds, context, pixels_cleaned=False).ok
    assert 0x00191090 in ds  # top level: kept (make_ct puts it in block 0x10)
    item = ds.ReferencedImageSequence[0]
    assert not [e for e in item if e.tag.is_private]  # nested: removed, creator too
    assert not [e for e in ds if e.tag.group == 0x0009]


def test_packaged_contexts_are_derived_from_the_tcia_kb():
    from test_table_profiles import TCIA_KB  # the same knowledge base path

    import json
    from pathlib import Path

    import pytest

    if not TCIA_KB.exists():
        pytest.skip("TCIA knowledge base not available")
    from radcommons.deid.safe_private import build_contexts

    packaged = json.loads((Path(__file__).parents[2] / "src/radcommons/deid/data/safe_private.json").read_text())
    entries = build_allow_list(TCIA_KB)
    assert build_contexts(TCIA_KB, entries) == packaged["contexts"]
