"""The datasheet (README.md) of an export: provenance, counts per split and subgroup, caveats.

In the spirit of "Datasheets for Datasets" (Gebru et al.): what the export is (cohort id
and content hash, format, options), who is in it (patients, studies, files per split, by
sex, race, ethnicity, COVID status and age bin), what was left out (sequestered members,
files that failed to convert) and what a user must know (shifted dates, de-identification).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radcommons.export.labels import age_bin

#: Subgroups counted per split (patients).
SUBGROUPS = ("sex", "race", "ethnicity", "covid19_positive", "age_bin")

CAVEATS = (
    "Dates are not real: every time is a day offset from a per-case index event, and study years may be "
    "shifted (study_year_shifted). Do not read calendar seasons or trends into them.",
    "Images were de-identified at the contributing site (DICOM PS3.15 Annex E) and re-checked at ingest; "
    "UIDs are pseudonyms, consistent within the commons.",
    "Ages of 90 and over are blanked (age_at_index_gt89 = Yes) and counted in the 85+ bin.",
    "Splits are by patient: no patient appears in two splits. Small strata are assigned by probability, so "
    "split proportions within them are approximate.",
    "Sequestered projects (held back for independent evaluation) are never exported without explicit "
    "administrator rights; members excluded for that reason are counted below.",
)


@dataclass
class ExportFacts:
    """Everything the datasheet states about one export."""

    cohort_id: str
    content_hash: str
    cohort_name: str
    format: str
    options: Mapping[str, Any]
    software_version: str
    created: str
    rows: Sequence[Mapping[str, Any]]
    excluded: Mapping[str, int] = field(default_factory=dict)  # reason -> count of instances
    recipient: str = ""  # whom the export was made for (its access applied)
    query: Mapping[str, Any] | None = None  # {"node", "filter"} of a query run at export time (no snapshot)
    failures: Sequence[str] = ()
    skipped: Sequence[str] = ()
    #: members of a frozen cohort whose instance changed in the index since the freeze
    changed: Sequence[str] = ()


def _patients(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    out: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        out.setdefault((str(row.get("project_id")), str(row.get("case_submitter_id"))), row)
    return out


def _value(row: Mapping[str, Any], name: str) -> str:
    if name == "age_bin":
        return age_bin(row.get("age_at_index"), row.get("age_at_index_gt89"))
    value = row.get(name)
    return "Not Reported" if value in (None, "") else str(value)


def _one_line(text: str) -> str:
    """A user's text (a cohort or query name) as one line of Markdown: line breaks in it would
    start headings or list items of their own in the datasheet."""
    return " ".join(text.split())


def render_datasheet(facts: ExportFacts) -> str:
    """The README.md text."""
    rows = facts.rows
    splits = sorted({str(r.get("split") or "all") for r in rows})
    name = _one_line(facts.cohort_name)
    if facts.query is None:
        what = (f"- cohort: `{facts.cohort_id}` ({name}); content hash (sha256 of the member list): "
                f"`{facts.content_hash}`")
    else:
        what = (f"- {_one_line(facts.cohort_id)} ({name}), run at export time (not a frozen cohort: rerunning it "
                f"later may select other records; freeze it to cite it): `{json.dumps(facts.query, sort_keys=True)}`")
    lines = [
        f"# RadCommons export of {_one_line(facts.cohort_id)}", "",
        what,
        *([f"- made for: {facts.recipient}; it holds only what they may read"] if facts.recipient else []),
        f"- format: {facts.format}; options: "
        + ", ".join(f"{k}={v}" for k, v in facts.options.items() if v not in (None, "")),
        f"- software: radcommons {facts.software_version}",
        f"- created: {facts.created}",
        "- files: `labels.parquet` and `labels.csv` (one row per file, with its split), this README",
        "",
        "## Counts per split", "",
        "| split | patients | studies | series | files |", "|---|---:|---:|---:|---:|",
    ]
    for split in splits:
        chosen = [r for r in rows if str(r.get("split") or "all") == split]
        lines.append(
            f"| {split} | {len(_patients(chosen))} | {len({r.get('study_uid') for r in chosen})} | "
            f"{len({r.get('series_uid') for r in chosen})} | {len(chosen)} |"
        )
    lines.append(f"| **total** | {len(_patients(rows))} | {len({r.get('study_uid') for r in rows})} | "
                 f"{len({r.get('series_uid') for r in rows})} | {len(rows)} |")
    lines += ["", "## Patients per subgroup and split", ""]
    for name in SUBGROUPS:
        table: dict[str, Counter[str]] = defaultdict(Counter)
        for split in splits:
            for row in _patients([r for r in rows if str(r.get("split") or "all") == split]).values():
                table[_value(row, name)][split] += 1
        lines += [f"### {name}", "", "| value | " + " | ".join(splits) + " |",
                  "|---|" + "---:|" * len(splits)]
        for value in sorted(table):
            lines.append(f"| {value} | " + " | ".join(str(table[value][s]) for s in splits) + " |")
        lines.append("")
    lines += ["## Left out", ""]
    if facts.excluded:
        for reason, count in sorted(facts.excluded.items()):
            lines.append(f"- {count} instance(s) excluded: {reason}")
    else:
        lines.append("- no cohort member was excluded for access reasons")
    for item in facts.skipped:
        lines.append(f"- skipped: {item}")
    for item in facts.failures:
        lines.append(f"- failed: {item}")
    if facts.changed:
        lines += ["", "## Changed since the freeze", "",
                  f"{len(facts.changed)} file(s) of the cohort were replaced in the commons (a corrected study "
                  "version) or removed from its index after the cohort was frozen. This export holds the files "
                  "as frozen, which the content hash names; the label columns are the index's values now.", ""]
        lines += [f"- {item}" for item in facts.changed]
    lines += ["", "## Caveats", ""] + [f"- {c}" for c in CAVEATS] + [""]
    return "\n".join(lines)
