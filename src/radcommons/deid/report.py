"""The run report: every input file with its outcome, nothing silently dropped.

The report names original files and identifiers, so it is written to the site's private
state directory (never inside the de-identified output). JSON for machines, and a
short Rich summary for the person at the console.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radcommons.deid.engine import DEIDENTIFIED, REJECTED, WITHHELD
from radcommons.deid.outcome import PYDICOM, STREAM, FileOutcome
from radcommons.durable import write_atomic

STATUSES = (DEIDENTIFIED, WITHHELD, REJECTED)
#: What to do after a run stopped (a report with ``stopped``): outputs appear only whole, so a rerun resumes.
RESUME_HINT = ("this report lists only the files finished before the run stopped: run the same command again "
               "(after fixing what stopped it); finished outputs are kept and the run resumes")


def report_stamp() -> str:
    """The time of a run for its report's name (UTC, to the millisecond: two runs in one second
    got one name, and the second report replaced the first)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z"


@dataclass
class RunReport:
    """All file outcomes of one ``deid`` run plus what the run was."""

    source: str
    destination: str
    site: str
    profile: str
    key_fingerprint: str
    outcomes: list[FileOutcome] = field(default_factory=list)
    path: Path | None = None
    #: outputs of an earlier run with other settings, removed before this run wrote them again
    outputs_removed: int = 0
    #: why the run stopped before its end ("" : it ran to its end); its outcomes are then those of the
    #: files it finished, and the same command resumes it
    stopped: str = ""

    def counts(self) -> dict[str, int]:
        counter = Counter(o.status for o in self.outcomes)
        counts = {status: counter.get(status, 0) for status in STATUSES}
        counts["total"] = len(self.outcomes)
        counts["already_present"] = sum(
            1 for o in self.outcomes if o.skipped_existing and o.status == DEIDENTIFIED
        )
        counts["pixels_cleaned"] = sum(
            1 for o in self.outcomes if o.pixels_cleaned and o.status == DEIDENTIFIED
        )
        routes = Counter(o.route for o in self.outcomes)
        counts["streamed"], counts["pydicom_path"] = routes[STREAM], routes[PYDICOM]
        counts["stream_failures"] = sum(1 for o in self.outcomes if o.stream_failure)
        return counts

    def to_json(self) -> dict[str, Any]:
        from radcommons import __version__

        return {
            "radcommons_version": __version__,
            "source": self.source,
            "destination": self.destination,
            "site": self.site,
            "profile": self.profile,
            "key_fingerprint": self.key_fingerprint,
            "counts": self.counts(),
            "outputs_removed": self.outputs_removed,
            **({"stopped": {"reason": self.stopped, "resumable": True, "hint": RESUME_HINT}} if self.stopped else {}),
            "files": [o.to_json() for o in sorted(self.outcomes, key=lambda o: o.input)],
        }

    def write(self, path: Path) -> Path:
        """Write atomically (temp file, then rename), readable by the owner only."""
        path = Path(path)
        write_atomic(path, json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n", private=True)
        self.path = path
        return path


def reasons(report: RunReport, status: str) -> Counter[str]:
    """How often each reason occurs among outcomes with ``status`` (first clause only)."""
    return Counter(o.reason.split(":")[0] if o.reason else "" for o in report.outcomes if o.status == status)


def outputs_removed_line(report: RunReport) -> str:
    """What the run did with outputs of an earlier run with other settings (for the console)."""
    return (f"{report.outputs_removed} output(s) of an earlier run with other settings (profile, overrides, "
            "pixel review or RadCommons version) were removed and written again with these")


def render_summary(report: RunReport, console) -> None:
    """Print a short Rich summary of the run."""
    from rich.table import Table

    counts = report.counts()
    console.print(
        f"de-identified {report.source} -> {report.destination} "
        f"(site {report.site}, profile {report.profile})",
        highlight=False,
    )
    table = Table()
    table.add_column("outcome")
    table.add_column("files", justify="right")
    table.add_row("[green]de-identified[/]", str(counts[DEIDENTIFIED]))
    table.add_row("[yellow]withheld[/]", str(counts[WITHHELD]))
    table.add_row("[red]rejected[/]", str(counts[REJECTED]))
    table.add_row("total", str(counts["total"]))
    console.print(table)
    if report.outputs_removed:
        console.print(outputs_removed_line(report), highlight=False)
    if counts["already_present"]:
        console.print(f"{counts['already_present']} output(s) were already complete and were not rewritten")
    if counts["pixels_cleaned"]:
        console.print(f"{counts['pixels_cleaned']} image(s) had burned-in text cleaned")
    if counts["stream_failures"]:
        console.print(f"[yellow]{counts['stream_failures']} file(s) made the streamed path fail[/] and were "
                      "de-identified by the pydicom path instead (slower, the same result); the report has each "
                      "error under stream_failure: please report them to the RadCommons developers",
                      highlight=False)
    for status, colour in ((WITHHELD, "yellow"), (REJECTED, "red")):
        for reason, count in reasons(report, status).most_common(5):
            console.print(f"  [{colour}]{status}[/] {count} x {reason}", highlight=False)
    if report.path is not None:
        console.print(f"report (private, holds original identifiers): {report.path}", highlight=False)
