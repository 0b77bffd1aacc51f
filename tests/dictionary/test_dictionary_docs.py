"""The generated documentation: checked in, never stale."""

from __future__ import annotations

from pathlib import Path

from radcommons.dictionary import load_dictionary
from radcommons.dictionary.docs import render_html, render_markdown, write_docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "data-dictionary.md"


def test_checked_in_docs_match_the_dictionary() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_markdown(), (
        "docs/data-dictionary.md is stale: run `radcommons dictionary docs docs/data-dictionary.md`"
    )


def test_markdown_lists_every_node_and_property() -> None:
    text = render_markdown()
    dictionary = load_dictionary()
    assert f"# {dictionary.title} {dictionary.version}" in text
    for node in dictionary.nodes:
        assert f"### {node.name}" in text
        for prop in node.properties:
            assert f"| `{prop.name}` |" in text


def test_html_is_escaped_and_complete(tmp_path: Path) -> None:
    html = render_html()
    assert html.startswith("<!DOCTYPE html>") and 'id="series"' in html
    assert "&lt;link&gt;.submitter_id" in html  # conventions text is escaped
    out = write_docs(tmp_path / "sub" / "dd.html")
    assert out.read_text(encoding="utf-8") == html
    assert write_docs(tmp_path / "dd.md").read_text(encoding="utf-8") == render_markdown()
