"""Checking and converting one submitted value against one :class:`Property`.

Values arrive as text (TSV/CSV cells) or as JSON scalars and lists. :func:`check_value`
returns the value converted to its Python type plus the problems found, as plain
messages; :mod:`radcommons.dictionary.validate` adds the file, row and column.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from radcommons.dictionary.model import NOT_REPORTED, Property, PropertyType

# Calendar dates are identifying (HIPAA Safe Harbor); the commons stores day offsets only.
# ISO-like 2021-03-04 / 2021/3/4, with or without a time after it.
_ISO_DATE = re.compile(r"(?<!\d)(19|20)\d\d([-/])(0?[1-9]|1[0-2])\2(0?[1-9]|[12]\d|3[01])(?!\d)")
# US / European 03/04/2021, 3-4-21.
_DMY_DATE = re.compile(r"(?<!\d)(0?[1-9]|[12]\d|3[01])([-/])(0?[1-9]|[12]\d|3[01])\2((19|20)\d\d|\d\d)(?!\d)")
# DICOM DA 20210304, only as a token on its own (not inside SITE_20220308 or a UID).
_COMPACT_DATE = re.compile(r"(?<![\w.])(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?![\w.])")
# Month names: "March 4, 2021", "4 Mar 2021".
_MONTHS = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_NAMED_DATE = re.compile(
    rf"(?i)(?<![a-z])({_MONTHS}\s+\d{{1,2}},?\s+(19|20)\d\d|\d{{1,2}}\s+{_MONTHS}\s+(19|20)\d\d)(?!\d)"
)

# Spellings of "unknown" that must be written as the enumerated "Not Reported".
_UNKNOWN_SPELLINGS = {
    "unknown", "unknown/declined", "declined", "refused", "not reported", "not-reported",
    "notreported", "n/a", "na", "none", "null", "nan", "unk", "not available", "not specified",
    "missing", "?", "-", "not given", "patient declined", "unknown or not reported",
}
# Spellings of booleans sent where a Yes/No enumeration is defined (MIDRC uses True/False).
_YES_NO = {"true": "Yes", "false": "No", "y": "Yes", "n": "No", "1": "Yes", "0": "No"}
_TRUE = {"true"}
_FALSE = {"false"}
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")
#: What a spreadsheet program writes in a cell whose formula failed (#N/A: a lookup found nothing).
_SPREADSHEET_ERRORS = frozenset({"#n/a", "#value!", "#ref!", "#div/0!", "#num!", "#name?", "#null!", "#spill!",
                                 "#calc!", "#getting_data", "#field!", "#blocked!", "#connect!", "#busy!",
                                 "#unknown!"})
#: How programs write "no value" in a cell (lower case): pandas NaN, SQL NULL, R's NA, N/A, a dash.
_NO_VALUE_MARKERS = frozenset({"n/a", "na", "nan", "null", "none", "nil", "-", "--", "?", "."})
#: A ZIP code (or ZIP+4) whose leading zero a spreadsheet dropped: 2139, 2139-1234, 21391234.
_FOUR_DIGIT_ZIP = re.compile(r"\d{4}(?:-?\d{4})?")
# Separators of list values in TSV/CSV cells (DICOM multi-values use a backslash).
_LIST_SPLIT = re.compile(r"\s*[,\\]\s*")


@dataclass(frozen=True)
class ValueProblem:
    """One thing wrong with a value: a message and, for enumerations, the allowed values."""

    code: str
    message: str
    allowed: tuple[str, ...] = ()
    suggestion: str | None = None


def looks_like_date(text: str) -> str | None:
    """The calendar-date-looking part of ``text``, or None.

    >>> looks_like_date("scan on 2021-03-04")
    '2021-03-04'
    >>> looks_like_date("RSNA_20220308") is None
    True
    """
    for pattern in (_ISO_DATE, _DMY_DATE, _COMPACT_DATE, _NAMED_DATE):
        match = pattern.search(text)
        if match:
            return match.group(0)
    return None


def is_blank(value: Any) -> bool:
    """True for a missing value: None, an empty or whitespace-only string, or an empty list."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return not value
    return False


def missing_value_kind(text: str) -> str | None:
    """``"spreadsheet_error"`` when ``text`` is what a spreadsheet writes for a failed formula
    (``#N/A``, ``#REF!``), ``"no_value_marker"`` when it stands for no value (``N/A``, ``NULL``,
    ``NaN``, ``-``), else None: such a cell is no value, whatever its column expects."""
    folded = " ".join(text.split()).lower()
    if folded in _SPREADSHEET_ERRORS:
        return "spreadsheet_error"
    return "no_value_marker" if folded in _NO_VALUE_MARKERS else None


def zip_without_leading_zero(text: str) -> str | None:
    """What is wrong with a ZIP code of four digits (ZIP+4 too), else None: a spreadsheet read the
    column as numbers and dropped its leading zero, and its first three digits are another area's."""
    text = text.strip()
    if not _FOUR_DIGIT_ZIP.fullmatch(text):
        return None
    return (f"{text!r} has four digits where a ZIP code has five: its leading zero was dropped (a spreadsheet "
            "program reads a ZIP column as numbers)")


def date_problem(value: str) -> ValueProblem | None:
    """A privacy problem when ``value`` contains something that looks like a calendar date."""
    found = looks_like_date(value)
    if found is None:
        return None
    return ValueProblem(
        "calendar_date",
        f"looks like a calendar date ({found!r}); calendar dates are not allowed: convert it to "
        "an integer number of days from the case's index event (days_to_* columns)",
    )


def suggest_enum(value: str, allowed: tuple[str, ...]) -> str | None:
    """The allowed value the submitter most likely meant, or None."""
    lowered = value.strip().lower()
    if NOT_REPORTED in allowed and lowered in _UNKNOWN_SPELLINGS:
        return NOT_REPORTED
    if "Yes" in allowed and "No" in allowed and lowered in _YES_NO:
        return _YES_NO[lowered]
    for option in allowed:
        if option.lower() == lowered:
            return option
    close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.75)
    if not close:
        lowered_options = {option.lower(): option for option in allowed}
        close = [lowered_options[m] for m in difflib.get_close_matches(lowered, lowered_options, n=1, cutoff=0.75)]
    return close[0] if close else None


def check_value(prop: Property, value: Any) -> tuple[Any, list[ValueProblem]]:
    """Convert ``value`` (text or JSON) to the type of ``prop`` and list its problems.

    Blank values are not checked here (the caller decides whether blank is allowed).
    Returns ``(converted, problems)``; ``converted`` is None when there are problems.
    """
    if isinstance(value, str):
        problem = date_problem(value)
        if problem:
            return None, [problem]
    if prop.type is PropertyType.ARRAY:
        return _check_array(prop, value)
    return _check_scalar(prop, prop.type, value)


def _check_array(prop: Property, value: Any) -> tuple[Any, list[ValueProblem]]:
    if isinstance(value, str):
        elements: list[Any] = [part for part in _LIST_SPLIT.split(value.strip()) if part != ""]
    elif isinstance(value, list):
        elements = value
    else:
        return None, [ValueProblem("type", f"expected a list of {prop.element_type.value} values")]
    converted: list[Any] = []
    problems: list[ValueProblem] = []
    for element in elements:
        if isinstance(element, str):
            date = date_problem(element)
            if date:
                problems.append(date)
                continue
        item, item_problems = _check_scalar(prop, prop.element_type, element, in_list=True)
        converted.append(item)
        problems.extend(item_problems)
    return (None if problems else converted), problems


def _check_scalar(
    prop: Property, ptype: PropertyType, value: Any, in_list: bool = False
) -> tuple[Any, list[ValueProblem]]:
    of = "each list element" if in_list else "value"
    if isinstance(value, (list, dict)):
        return None, [ValueProblem("type", f"{of} must be a single {ptype.value}, not a {type(value).__name__}")]
    if ptype is PropertyType.STRING:
        return _check_string(prop, str(value) if not isinstance(value, str) else value, of)
    if ptype is PropertyType.ENUM:
        return _check_enum(prop, str(value) if not isinstance(value, bool) else str(value).lower(), of)
    if ptype is PropertyType.BOOLEAN:
        if isinstance(value, bool):
            return value, []
        text = str(value).strip().lower()
        if text in _TRUE:
            return True, []
        if text in _FALSE:
            return False, []
        return None, [ValueProblem("type", f"{of} must be true or false", ("true", "false"))]
    if ptype is PropertyType.INTEGER:
        number: float | int
        if isinstance(value, bool):
            return None, [ValueProblem("type", f"{of} must be a whole number, not true/false")]
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _INTEGER.match(value.strip()):
            number = int(float(value.strip())) if "." in value else int(value.strip())
        else:
            return None, [ValueProblem("type", f"{of} must be a whole number (integer)")]
        return _check_range(prop, number, of)
    if ptype is PropertyType.NUMBER:
        if isinstance(value, bool):
            return None, [ValueProblem("type", f"{of} must be a number, not true/false")]
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None, [ValueProblem("type", f"{of} must be a number")]
        if not math.isfinite(number):
            return None, [ValueProblem("type", f"{of} must be a finite number")]
        return _check_range(prop, number, of)
    raise AssertionError(f"unhandled type {ptype}")  # arrays are split before this


def _check_string(prop: Property, value: str, of: str) -> tuple[Any, list[ValueProblem]]:
    value = value.strip()
    problems: list[ValueProblem] = []
    if "\0" in value:  # no text: PostgreSQL cannot store it, and the pattern checks would not see it
        problems.append(ValueProblem("type", f"{of} holds a NUL byte; remove it"))
    elif prop.pattern and not re.search(prop.pattern, value):
        problems.append(ValueProblem("pattern", f"{of} does not match the pattern {prop.pattern}"))
    elif prop.max_length is not None and len(value) > prop.max_length:
        problems.append(
            ValueProblem("too_long", f"{of} is {len(value)} characters long; at most {prop.max_length} allowed")
        )
    return (None if problems else value), problems


def _check_enum(prop: Property, value: str, of: str) -> tuple[Any, list[ValueProblem]]:
    if value in prop.enum:
        return value, []
    stripped = value.strip()
    if stripped in prop.enum:
        return stripped, []  # surrounding spaces are a spreadsheet artefact, not an error
    suggestion = suggest_enum(value, prop.enum)
    message = f"{of} is not one of the allowed values: " + ", ".join(repr(v) for v in prop.enum)
    if suggestion == NOT_REPORTED:
        message += f"; for unknown values use {NOT_REPORTED!r}"
    elif suggestion is not None:
        message += f"; did you mean {suggestion!r}?"
    return None, [ValueProblem("enum", message, prop.enum, suggestion)]


def _check_range(prop: Property, number: float, of: str) -> tuple[Any, list[ValueProblem]]:
    low, high = prop.minimum, prop.maximum
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            bounds = f"between {_fmt(low)} and {_fmt(high)}"
        elif low is not None:
            bounds = f"at least {_fmt(low)}"
        else:
            bounds = f"at most {_fmt(high)}"
        return None, [ValueProblem("range", f"{of} must be {bounds}")]
    return number, []


def _fmt(number: float | None) -> str:
    return str(int(number)) if number is not None and float(number).is_integer() else str(number)
