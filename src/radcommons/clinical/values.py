"""Reading one cell: calendar dates, enumerations ("Unknown" -> "Not Reported"), ZIP3, ages.

Each function returns either the value or a :class:`CellProblem` saying what is wrong and
how to fix it; the converter adds the file, row and column. Pure functions of the cell
and the :class:`~radcommons.clinical.mapping.SiteMapping`.

Enumerations are normalised by :mod:`radcommons.harmonize.enumerations` (the commons'
one normaliser), with the site's value maps consulted first.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from dataclasses import dataclass
from typing import Any

from radcommons.clinical.mapping import COUNTRY, ENUM_FIELDS, SiteMapping
from radcommons.dictionary import NOT_REPORTED, Dictionary
from radcommons.dictionary.values import missing_value_kind, zip_without_leading_zero
from radcommons.harmonize.enumerations import ValueNormalizer

#: Ages above this are blanked and flagged ``age_at_index_gt89 = Yes`` (HIPAA Safe Harbor).
MAX_AGE = 89
#: What a restricted three-digit ZIP area becomes.
RESTRICTED_ZIP3 = "000"
#: Older than this at the index event is not a person's age but a wrong or placeholder birth date.
MAX_PLAUSIBLE_AGE = 120


@dataclass(frozen=True)
class CellProblem:
    """What is wrong with one cell, with the fix; the caller knows where the cell is."""

    code: str
    message: str
    fix: str
    allowed: tuple[str, ...] = ()


def is_blank(value: Any) -> bool:
    """Empty cells: None, empty or white-space text."""
    return value is None or (isinstance(value, str) and not value.strip())


_NO_VALUE_FIX = ("leave the cell empty when the value is not known (export empty cells rather than N/A, NULL or "
                 "NaN), or write the value")


def marker_problem(value: Any) -> CellProblem | None:
    """A problem when ``value`` is not a value but a spreadsheet error (``#N/A``, ``#REF!``) or a
    marker of no value (``N/A``, ``NULL``, ``NaN``, ``-``): read as a date, a ZIP code, an MRN or
    text it would be refused as malformed with the wrong fix, or sent as if it were the value."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    kind = missing_value_kind(text)
    if kind == "spreadsheet_error":
        return CellProblem(kind, f"{text!r} is a spreadsheet error: the formula that computed the "
                           "cell failed" + (" (a lookup found nothing)" if text.lower() == "#n/a" else ""),
                           "correct the formula in the spreadsheet (or type the value, or leave the cell empty "
                           "when it is not known) and save again")
    if kind == "no_value_marker":
        return CellProblem(kind, f"{text!r} stands for a missing value", _NO_VALUE_FIX)
    return None


#: Excel holds numbers to 15 significant digits: a longer MRN stored as a number has lost digits.
_EXCEL_DIGITS = 15
_MRN_FIX = ("format the MRN column as text in the spreadsheet and paste the MRNs again from the source system "
            "(or export the file from the source system again), so that every MRN has its own digits")


def mrn_problem(value: Any) -> CellProblem | None:
    """A problem when an MRN cell cannot be the patient's MRN as the source system wrote it: a
    spreadsheet error or a no-value marker (``#N/A``, ``N/A``: every such row would be one patient
    named "#N/A"), a number longer than a spreadsheet keeps, a number in scientific notation
    (``2.03185E+19``: how a spreadsheet shows, and saves to CSV, a long number) or a decimal
    number (``123.0``: an MRN column read as numbers, its leading zeros likely lost too)."""
    marker = marker_problem(value)
    if marker is not None:
        return CellProblem(marker.code, f"the MRN is missing: {marker.message}",
                           "fill in the patient's MRN, or remove the row")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value).is_integer() and len(str(abs(int(value)))) > _EXCEL_DIGITS:
            return CellProblem("mrn_digits_lost", f"the MRN is stored as a number of more than {_EXCEL_DIGITS} "
                               "digits, more than a spreadsheet program keeps: its last digits are lost", _MRN_FIX)
        return None
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+", text):
        return CellProblem("mrn_digits_lost", f"the MRN {text!r} is a number in scientific notation, as a "
                           "spreadsheet program shows a long number: its digits are lost", _MRN_FIX)
    if re.fullmatch(r"\d+\.0+", text):
        return CellProblem("mrn_digits_lost", f"the MRN {text!r} is written as a decimal number, as a program that "
                           "read the MRN column as numbers writes it (leading zeros are lost that way too)", _MRN_FIX)
    return None


def parse_date(value: Any, formats: tuple[str, ...]) -> _dt.date | CellProblem:
    """A calendar date from an Excel date cell or text in one of ``formats``."""
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):  # the cache's key: formats given as a list (the mapping's YAML) are a tuple
        return _parse_text_date(value, tuple(formats))
    return _parse_date(value, formats)


def _parse_date(value: Any, formats: tuple[str, ...]) -> _dt.date | CellProblem:
    serial = _excel_serial(value)
    if serial is not None:
        return CellProblem("bad_date", f"{_shown_number(value)} looks like an Excel date serial number "
                           f"({serial.isoformat()}?): the date column is formatted as a number",
                           "format the column as a date in the spreadsheet (or write dates as YYYY-MM-DD) and "
                           "export again")
    text = _without_time(str(value))
    possible = False
    for fmt in formats:
        try:
            return _dt.datetime.strptime(text, fmt).date()
        except ValueError as error:
            # "day is out of range for month" means the format fits but the date does not exist.
            possible = possible or "out of range" in str(error) or "must be in" in str(error)
    if possible or _looks_possible(text):
        return CellProblem("bad_date", f"{text!r} is not a real calendar date",
                           "correct the date in the source system and export again")
    return CellProblem(
        "bad_date",
        f"{text!r} is not a date in a known format ({', '.join(formats)})",
        "write dates as YYYY-MM-DD, or add the site's format to date_formats in the mapping file",
    )


#: A date written as text, parsed once: a column repeats its dates (a day's tests, a birthday), and the
#: day-first check reads each date before the row does. strptime is most of a conversion's time.
_parse_text_date = functools.lru_cache(maxsize=1 << 16)(_parse_date)

#: Day 0 of Excel's serial dates (1900 date system, with its fictitious 29 February 1900).
_EXCEL_EPOCH = _dt.date(1899, 12, 30)


def _excel_serial(value: Any) -> _dt.date | None:
    """The date an Excel serial number (44927 is 2023-01-01) stands for, when ``value`` is one: a
    date cell formatted as a number, or exported as such to text. Four or five digits only (1000 to
    99999: 1902 to 2173); eight digits are a YYYYMMDD date."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif re.fullmatch(r"\d{4,5}(?:\.0+)?", str(value).strip()):
        number = float(str(value).strip())
    else:
        return None
    if not number.is_integer() or not 1000 <= number <= 99999:
        return None
    return _EXCEL_EPOCH + _dt.timedelta(days=int(number))


def _shown_number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()


#: A time of day after a date (a date-time column of a database export): 14:30, 14:30:00.000, 8:15 AM.
_TIME = re.compile(r"(?:[ T]|, ?)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?[AaPp]\.?[Mm]\.?)?(?: ?(?:Z|[+-]\d{2}:?\d{2}))?")


def _without_time(text: str) -> str:
    """``text`` without a time of day after its date: only the date is used (for day offsets)."""
    text = text.strip()
    match = _TIME.search(text)
    return text[: match.start()] if match and match.end() == len(text) and match.start() > 0 else text


def day_first_format(value: Any, formats: tuple[str, ...]) -> str | None:
    """The format, of ``formats`` with day and month swapped, that reads ``value`` when none of
    ``formats`` does: a site that writes 15/11/2023 writes 08/01/2023 for 8 January, which
    ``%m/%d/%Y`` reads, silently, as 1 August. Only formats that begin with the month and the day
    are swapped: a year-first date (2023-13-05) is a mistyped date, not a day-first one."""
    if not isinstance(value, str) or not isinstance(parse_date(value, formats), CellProblem):
        return None
    for fmt in formats:
        swapped = fmt.replace("%m", "\0").replace("%d", "%m").replace("\0", "%d")
        if not fmt.startswith("%m") or "%d" not in fmt or swapped in formats:
            continue
        try:
            _dt.datetime.strptime(_without_time(value), swapped)
        except ValueError:
            continue
        return swapped
    return None


def _looks_possible(text: str) -> bool:
    """A date-shaped text that no format accepted: a date that does not exist (2021-02-30)."""
    return bool(re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{4}", text))


def enum_normalizer(mapping: SiteMapping) -> ValueNormalizer:
    """The commons' value normaliser (:mod:`radcommons.harmonize`) with the site's value maps first."""
    site: dict[str, dict[str, str]] = {}
    for field, values in mapping.values.items():
        if field not in ENUM_FIELDS:
            continue  # the country: its own function, country_code
        node, prop = ENUM_FIELDS[field]
        site[f"{node}.{prop}"] = dict(values)
    for field, (node, prop) in ENUM_FIELDS.items():
        # The site's own spellings of "unknown" (mapping: not_reported) apply to every field.
        scope = site.setdefault(f"{node}.{prop}", {})
        for spelling in mapping.not_reported:
            scope.setdefault(spelling, NOT_REPORTED)
    return ValueNormalizer(site)


def normalise_enum(
    field: str, value: Any, mapping: SiteMapping, dictionary: Dictionary, normalizer: ValueNormalizer | None = None
) -> str | CellProblem:
    """The dictionary's spelling of ``value`` for the enumerated ``field``.

    Delegates to :class:`radcommons.harmonize.ValueNormalizer` (one normalisation for
    the whole commons), with the site's ``values`` and ``not_reported`` entries first.
    """
    node, prop_name = ENUM_FIELDS[field]
    allowed = dictionary[node].get(prop_name).enum
    text = " ".join(str(value).split())
    result = (normalizer or enum_normalizer(mapping)).normalize(f"{node}.{prop_name}", text)
    if result.value is None:
        return CellProblem(
            "unknown_value",
            f"{text!r} is not a known {prop_name}",
            f"correct the value, or add it to the mapping file: values: {{{field}: {{{text!r}: <one of the allowed>}}}}",
            allowed,
        )
    if result.value not in allowed:
        return CellProblem(
            "bad_value_map",
            f"the mapping file maps {text!r} to {result.value!r}, which is not a {prop_name} value",
            f"map it to one of the allowed values under values.{field}",
            allowed,
        )
    return result.value


class EnumReader:
    """:func:`normalise_enum` for one conversion: each field's spelling is worked out once (a column
    of 100,000 rows holds a handful of spellings)."""

    def __init__(self, mapping: SiteMapping, dictionary: Dictionary) -> None:
        self._mapping = mapping
        self._dictionary = dictionary
        self._normalizer = enum_normalizer(mapping)
        self._read: dict[tuple[str, str], str | CellProblem] = {}

    def __call__(self, field: str, value: Any) -> str | CellProblem:
        key = (field, " ".join(str(value).split()))  # all normalise_enum sees of the value
        found = self._read.get(key)
        if found is None:
            found = self._read[key] = normalise_enum(field, value, self._mapping, self._dictionary, self._normalizer)
        return found


def country_code(text: str, mapping: SiteMapping) -> str | CellProblem:
    """The ISO 3166-1 alpha-2 code of a country as the site wrote it: its ``values: country``
    entry ("USA", "United States" -> US), else a two-letter code itself, else a problem (the
    dictionary has no list of countries; "USA" and "US" sent as typed were two countries)."""
    found = mapping.values.get(COUNTRY, {}).get(" ".join(text.split()).lower())
    if found:
        return found
    if re.fullmatch(r"[A-Za-z]{2}", text.strip()):
        return text.strip().upper()
    return CellProblem("unknown_country", f"{text!r} is not a two-letter ISO 3166-1 country code",
                       f"write the country's code (e.g. US), or add it to the mapping file: values: "
                       f"{{{COUNTRY}: {{{text!r}: <code>}}}}")


def zip3(value: Any, restricted: frozenset[str]) -> str | CellProblem:
    """The first three digits of a US ZIP code, or ``"000"`` for a restricted area."""
    text = str(value).strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() and value >= 0:
        # Excel stores a ZIP as a number and drops its leading zeros: 02138 is 2138, ZIP3 036 is 36,
        # ZIP+4 00501-1234 is 5011234. Under 1000 it is a three-digit ZIP, up to 99999 a ZIP, above a ZIP+4.
        number = int(value)
        text = f"{number:03d}" if number < 1000 else f"{number:05d}" if number < 100000 else f"{number:09d}"
    match = re.fullmatch(r"(\d{5})(?:-?\d{4})?|(\d{3})", text)
    if not match and (lost_zero := zip_without_leading_zero(text)):
        return CellProblem("bad_zip", lost_zero,
                           "write the ZIP code with its leading zero (02139); format the ZIP column as text (or as "
                           "Special > Zip Code) in the spreadsheet before saving it as CSV")
    if not match:
        return CellProblem("bad_zip", f"{text!r} is not a US ZIP code",
                           "write the 5-digit ZIP code (or its first three digits)")
    digits = (match.group(1) or match.group(2))[:3]
    return RESTRICTED_ZIP3 if digits in restricted else digits


def whole_years(birth: _dt.date, on: _dt.date) -> int:
    """Age in whole years on the date ``on`` (birthdays count on the day)."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_fields(birth: _dt.date | None, on: _dt.date | None) -> tuple[int | None, str]:
    """(age_at_index, age_at_index_gt89): ages over 89 are blanked and flagged ``Yes``."""
    if birth is None or on is None:
        return None, NOT_REPORTED
    years = whole_years(birth, on)
    if years > MAX_AGE:
        return None, "Yes"
    return max(years, 0), "No"
