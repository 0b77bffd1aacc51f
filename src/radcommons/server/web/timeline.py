"""A case's clinical timeline as inline SVG: days from the index event, never calendar dates.

Events come from the case's linked records (DOMAIN.md section 2): COVID-19 tests
(``measurement.days_to_test``), hospital and ICU stays (``visit``), breathing support
(``procedure``) and imaging studies (``imaging_study.days_to_study``). Stays and support are
drawn as spans, the rest as points, one lane per kind, on one axis in days (day 0 = index event).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from markupsafe import Markup

#: Lanes, top to bottom: key, label, CSS class.
LANES = (("test", "COVID-19 tests"), ("hospital", "Hospital stay"), ("icu", "ICU stay"),
         ("support", "Breathing support"), ("imaging", "Imaging"))
LABEL_W, PLOT_W, LANE_H, AXIS_H = 150, 620, 30, 30


@dataclass(frozen=True)
class Event:
    """One thing on the timeline: a day (``end`` for spans), its lane, a short text, highlighted or not."""

    lane: str
    start: int
    end: int | None
    text: str
    current: bool = False


def events_of(tests: Sequence[dict[str, Any]], visits: Sequence[dict[str, Any]],
              procedures: Sequence[dict[str, Any]], studies: Sequence[dict[str, Any]],
              current_study: str | None = None) -> list[Event]:
    """Events from a case's measurement, visit, procedure and imaging_study rows."""
    out: list[Event] = []
    for t in tests:
        if t.get("days_to_test") is not None:
            text = " ".join(str(x) for x in (t.get("test_method"), t.get("test_result_text")) if x) or "test"
            out.append(Event("test", int(t["days_to_test"]), None, text))
    for v in visits:
        start = v.get("days_to_hospital_admission")
        if start is None:
            start = v.get("days_to_visit")
        if start is not None:
            end = v.get("days_to_hospital_discharge")
            out.append(Event("hospital", int(start), int(end) if end is not None else None,
                             v.get("visit_type") or "visit"))
        if v.get("days_to_icu_admission") is not None:
            end = v.get("days_to_icu_discharge")
            out.append(Event("icu", int(v["days_to_icu_admission"]), int(end) if end is not None else None, "ICU"))
    for p in procedures:
        if p.get("days_to_procedure_start") is not None:
            end = p.get("days_to_procedure_end")
            out.append(Event("support", int(p["days_to_procedure_start"]), int(end) if end is not None else None,
                             p.get("breathing_support_type") or p.get("procedure_type") or "procedure"))
    for s in studies:
        if s.get("days_to_study") is not None:
            modality = ", ".join(s.get("study_modality") or []) or "study"
            out.append(Event("imaging", int(s["days_to_study"]), None, modality,
                             current=s.get("study_uid") == current_study))
    return out


def timeline_svg(events: Sequence[Event], title: str = "Clinical timeline") -> Markup:
    """The timeline of ``events`` (an explanatory sentence when there are none)."""
    if not events:
        return Markup('<p class="muted">No dated clinical events are recorded for this case.</p>')
    days = [e.start for e in events] + [e.end for e in events if e.end is not None] + [0]
    low, high = min(days), max(days)
    pad = max(1, (high - low) // 20)
    low, high = low - pad, high + pad

    def x(day: int) -> float:
        return LABEL_W + PLOT_W * (day - low) / (high - low)

    lanes = [key for key, _ in LANES]
    height = LANE_H * len(LANES) + AXIS_H
    parts = [f'<svg class="timeline" role="img" viewBox="0 0 {LABEL_W + PLOT_W + 20} {height}" width="100%" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, (key, label) in enumerate(LANES):
        y = i * LANE_H
        parts.append(f'<text x="{LABEL_W - 10}" y="{y + 19}" text-anchor="end" class="tl-label">{escape(label)}</text>'
                     f'<line x1="{LABEL_W}" x2="{LABEL_W + PLOT_W}" y1="{y + 15}" y2="{y + 15}" class="tl-lane"/>')
    zero = x(0)
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="0" y2="{LANE_H * len(LANES)}" class="tl-zero"/>')
    for tick in _ticks(low, high):
        tx = x(tick)
        parts.append(f'<text x="{tx:.1f}" y="{LANE_H * len(LANES) + 18}" text-anchor="middle" class="tl-tick">'
                     f'{"day 0" if tick == 0 else f"{tick:+d}"}</text>')
    for e in events:
        y = lanes.index(e.lane) * LANE_H + 15
        when = f"day {e.start}" + (f" to {e.end}" if e.end is not None else "")
        tip = f"<title>{escape(e.text)}: {when}</title>"
        cls = f"tl-{e.lane}" + (" tl-current" if e.current else "")
        if e.end is not None:
            x1, x2 = x(e.start), x(max(e.end, e.start))
            parts.append(f'<g>{tip}<rect x="{x1:.1f}" y="{y - 6}" width="{max(3.0, x2 - x1):.1f}" height="12" rx="3" '
                         f'class="{cls}"/></g>')
        else:
            r = 7 if e.current else 5
            parts.append(f'<g>{tip}<circle cx="{x(e.start):.1f}" cy="{y}" r="{r}" class="{cls}"/></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _ticks(low: int, high: int) -> list[int]:
    span = max(1, high - low)
    step = next(s for s in (1, 2, 5, 7, 10, 14, 30, 60, 90, 180, 365, 730, 10**9) if span / s <= 10)
    first = -(-low // step) * step
    return list(range(first, high + 1, step))
