"""The export's README.md (datasheet) with names a user chose."""

from __future__ import annotations

from radcommons.export.datasheet import ExportFacts, render_datasheet


def test_a_name_with_line_breaks_stays_on_its_line() -> None:
    """A query name with line breaks was pasted raw: its lines became headings and list items."""
    facts = ExportFacts(cohort_id="query q.json", content_hash="", cohort_name="CT\n# Injected heading\n- item",
                        format="dicom", options={}, software_version="0", created="2026-12-06 00:00 UTC", rows=[],
                        query={"node": "series", "filter": {}})
    text = render_datasheet(facts)
    assert "(CT # Injected heading - item)" in text
    assert not any(line.startswith(("# Injected", "- item")) for line in text.splitlines())
