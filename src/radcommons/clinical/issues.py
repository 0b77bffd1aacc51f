"""Issues found while converting and checking a site's clinical data: where, what, and the fix.

An :class:`Issue` names the site's own file, row and column (not the converted record),
because that is what the data manager opens to fix it. Issues hold original values
(dates, MRNs): they belong in the site's private report, never in anything uploaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from radcommons.dictionary import Problem

ERROR = "error"
WARNING = "warning"
NOTE = "note"


@dataclass(frozen=True)
class Issue:
    """One problem with the site's data, as plain data."""

    severity: str  #: error (blocks sending), warning or note
    code: str
    message: str
    fix: str
    file: str | None = None  #: the site file (``file [sheet]`` for a workbook), or "images"
    row: int | None = None
    column: str | None = None  #: the site's column (or the dictionary field when no column)
    value: str | None = None
    node: str | None = None
    allowed: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """``file row 3 column Sex``: a short location for people."""
        parts = [self.file or "(all files)"]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(f"column {self.column}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["allowed"] = list(self.allowed)
        return data


#: Fixes for the data dictionary's problem codes (its messages already say what is wrong).
_FIXES = {
    "enum": "use one of the allowed values, or map the site's value under values: in the mapping file",
    "required": "fill in the value in the source file ('Not Reported' where the enumeration allows it)",
    "calendar_date": "remove the date; only day offsets from the index event may leave the site",
    "range": "correct the value in the source file",
    "duplicate": "remove the duplicate row, or correct the identifier",
    "consistency": "correct the values so they agree",
    "pattern": "correct the value's format",
}


def from_problem(problem: Problem, file: str | None, row: int | None, column: str | None) -> Issue:
    """An :class:`Issue` from a data dictionary :class:`Problem` about a converted record."""
    fix = _FIXES.get(problem.code, "correct the value in the source file")
    if problem.suggestion:
        fix = f"did you mean {problem.suggestion!r}? " + fix
    field = problem.column or ""
    where_column = f"{column} (-> {field})" if column and field and column != field else (column or field or None)
    return Issue(ERROR, problem.code, problem.message, fix, file, row, where_column, problem.value,
                 problem.node, problem.allowed)
