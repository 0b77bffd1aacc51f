"""docs/deid-conformance.md is generated from Table E.1-1 and the profiles."""

from __future__ import annotations

from pathlib import Path

from radcommons.deid.conformance import render

DOC = Path(__file__).parents[2] / "docs" / "deid-conformance.md"


def test_checked_in_doc_equals_generated():
    assert DOC.read_text(encoding="utf-8") == render(), (
        "regenerate: python -m radcommons.deid.conformance > docs/deid-conformance.md"
    )


def test_doc_lists_every_attribute():
    text = render()
    assert text.count("\n| (") == 621
