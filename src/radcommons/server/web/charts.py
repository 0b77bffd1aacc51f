"""Bar charts as server-rendered inline SVG: no JavaScript chart library, readable without scripts.

Each chart is an ``<svg role="img">`` with a ``<title>`` and, per bar, the label and count as text,
so screen readers and text browsers get the numbers; suppressed counts (``None``) are drawn as
an empty bar marked "<10".
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

#: Geometry of a horizontal bar chart (pixels in the SVG's own units; it scales to its box).
LABEL_WIDTH, BAR_WIDTH, COUNT_WIDTH, ROW_HEIGHT = 170, 250, 60, 24


def bar_percent(count: int | None, largest: int) -> float:
    """The length of ``count``'s bar as a percentage of the largest (0 for suppressed or empty)."""
    if not count or largest <= 0:
        return 0.0
    return round(max(2.0, 100.0 * count / largest), 1)


def count_text(count: int | None, min_count: int | None = 10) -> str:
    """A count as shown: thousands separated, ``<10`` when suppressed."""
    return f"<{min_count or 10}" if count is None else f"{count:,}"


def bar_chart(title: str, items: Sequence[tuple[str, int | None]], *, unit: str = "") -> Markup:
    """A horizontal bar chart of ``items`` (label, count) titled ``title``."""
    width = LABEL_WIDTH + BAR_WIDTH + COUNT_WIDTH
    height = max(1, len(items)) * ROW_HEIGHT + 4
    largest = max((c or 0 for _, c in items), default=0)
    rows = []
    for i, (label, count) in enumerate(items):
        y = i * ROW_HEIGHT + 2
        bar = BAR_WIDTH * bar_percent(count, largest) / 100
        short = label if len(label) <= 28 else label[:27] + "…"
        rows.append(
            f'<g><title>{escape(label)}: {escape(count_text(count))} {escape(unit)}</title>'
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 16}" text-anchor="end" class="chart-label">{escape(short)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{bar:.1f}" height="{ROW_HEIGHT - 7}" rx="2" class="chart-bar"/>'
            f'<text x="{LABEL_WIDTH + bar + 6:.1f}" y="{y + 16}" class="chart-count">{escape(count_text(count))}</text></g>'
        )
    if not items:
        rows.append('<text x="0" y="16" class="chart-label">No records</text>')
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        + "".join(rows) + "</svg>"
    )
