"""Human-readable documentation of the data dictionary (Markdown or HTML) from Jinja2 templates.

The output is deterministic (no timestamps), so the generated
``docs/data-dictionary.md`` can be checked in and compared in the test suite.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from radcommons.dictionary.loader import load_dictionary
from radcommons.dictionary.model import Category, Dictionary, NodeType, Property, PropertyType

TEMPLATES_DIR = Path(__file__).parent / "templates"
_CATEGORY_ORDER = (Category.ADMINISTRATIVE, Category.IMAGING, Category.CLINICAL)


def render_markdown(dictionary: Dictionary | None = None) -> str:
    """The dictionary as Markdown."""
    return _render("data-dictionary.md", dictionary or load_dictionary(), autoescape=False)


def render_html(dictionary: Dictionary | None = None) -> str:
    """The dictionary as a standalone HTML page."""
    return _render("data-dictionary.html", dictionary or load_dictionary(), autoescape=True)


def write_docs(out: str | Path, dictionary: Dictionary | None = None) -> Path:
    """Write Markdown to ``out`` (HTML when it ends with ``.html``/``.htm``); returns the path."""
    path = Path(out)
    text = render_html(dictionary) if path.suffix.lower() in (".html", ".htm") else render_markdown(dictionary)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:  # a failed write (a full disk) does not name its file
        raise OSError(error.errno, error.strerror, str(path)) from None
    return path


def allowed_values(prop: Property) -> str:
    """A short description of what values a property accepts (for docs and ``show``)."""
    parts: list[str] = []
    if prop.enum:
        parts.append(" | ".join(prop.enum))
    if prop.minimum is not None or prop.maximum is not None:
        low = _num(prop.minimum) if prop.minimum is not None else "-inf"
        high = _num(prop.maximum) if prop.maximum is not None else "inf"
        parts.append(f"{low} to {high}")
    if prop.pattern:
        parts.append(f"pattern {prop.pattern}")
    if prop.max_length and not prop.pattern:
        parts.append(f"up to {prop.max_length} characters")
    return "; ".join(parts)


def type_label(prop: Property) -> str:
    """``integer``, ``enum``, ``list of integer``..."""
    if prop.type is PropertyType.ARRAY and prop.items:
        return f"list of {prop.items.value}"
    return prop.type.value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _render(template: str, dictionary: Dictionary, autoescape: bool) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["allowed"] = allowed_values
    env.filters["type_label"] = type_label
    env.filters["md"] = _md_cell
    groups = [
        (category.value.capitalize(), [n for n in dictionary.nodes if n.category is category])
        for category in _CATEGORY_ORDER
    ]
    return env.get_template(template).render(
        dictionary=dictionary, groups=groups, children=_children(dictionary)
    )


def _children(dictionary: Dictionary) -> dict[str, list[NodeType]]:
    return {node.name: list(dictionary.children(node.name)) for node in dictionary.nodes}


def _md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")
