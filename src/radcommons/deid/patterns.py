"""Identifier patterns: identifiers known by their form, in the text of any dataset.

E-mail addresses, UIDs, phone numbers (7 and 10 digits), dates (numeric, with month
names, month and year, day and month), ages over 89, runs of 5 or more digits,
social-security-like numbers and names after Dr./Mr./Mrs./Ms./Prof. (PS3.15 E.3.5 Clean
Descriptors Option: removed from kept descriptors by
:class:`radcommons.deid.text.TextCleaner`; the unambiguous ones are looked for again by
the checker, :mod:`radcommons.deid.check`). Also the ways people write a DA value.
"""

from __future__ import annotations

import re

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?(?![a-z])"
)
#: an optional weekday before a date (the known dates' patterns reuse it)
WEEKDAY = r"(?:(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|sday|urday)?\.?,?\s+)?"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
#: an optional ordinal ending after a day ("12th")
ORDINAL = r"(?:st|nd|rd|th)?"

#: Identifier patterns, by name; ``True`` marks the unambiguous ones (checked even in
#: vendor private values, where runs of digits are often version numbers); the last
#: value says whether the checker (:func:`find_patterns`) reports them too (the ones added
#: for cleaning only would flag version numbers and counts in kept text).
NAMED_PATTERNS: tuple[tuple[str, bool, bool, re.Pattern[str]], ...] = (
    ("email", True, True, re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    # a UID (digits with 3+ dots, the first 0-2): before dates and digits cut it up
    ("uid", True, False, re.compile(r"(?<![\w.])[0-2](?:\.\d+){3,}(?!\.?\w)")),
    (
        "titled-name",
        True,
        True,
        # "Dr." in any case, "Dr" / "DOCTOR" without the dot, never "MR" or "DR" alone
        # (modalities: "MR BRAIN", "DR CHEST"); a second word only when capitalised
        re.compile(
            r"(?:\b(?i:dr|mr|mrs|ms|miss|prof|doctor)\.\s*|\b(?:Dr|Mr|Mrs|Ms|Miss|Prof|Doctor|DOCTOR|MISS|PROF)\b\s*)"
            r"[A-Za-z][\w'-]*(?:[\s,^]+[A-Z][a-z][\w'-]*)?"
        ),
    ),
    ("ssn", True, True, re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("ssn-spaced", False, False, re.compile(r"(?<![\d-])\d{3}[ -]\d{2}[ -]\d{4}(?![\d-])")),
    ("phone", False, True, re.compile(r"(?:\+\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}\b")),
    ("phone-local", False, False, re.compile(r"(?<![\d/:-])(?<!\d[.,])\d{3}[-. ]\d{4}(?![\d/:-]|[.,]\d)")),
    (
        "date",
        True,
        True,
        re.compile(
            r"\b\d{1,2}[/\-]\d{1,2}[/\-](?:\d{4}|\d{2})\b"  # 08/29/1951, 8-29-51
            r"|\b(?:19|20)\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}(?!\d)"  # 2017-03-02, 2017.03.02, 2017-03-02T10:11
            r"|\b\d{1,2}\.\d{1,2}\.(?:19|20)\d{2}\b"  # 29.08.1951
        ),
    ),
    (
        "date-more",
        True,
        False,
        re.compile(
            rf"(?<![\d.]){_DAY}\.{_MONTH}\.\d{{2}}(?![\d.])"  # 12.3.19
            rf"|\b(?:19|20)\d{{2}} {_MONTH} {_DAY}\b"  # 2019 03 12
            rf"|\b{_DAY} {_MONTH} (?:19|20)\d{{2}}\b"  # 12 03 2019
            rf"|(?<![\d/.-]){_MONTH}[/.-](?:19|20)\d{{2}}\b",  # 03/2019
        ),
    ),
    (
        "date-words",
        True,
        True,
        re.compile(
            rf"(?<![a-z]){WEEKDAY}\b{_DAY}{ORDINAL}[\s.-]*{_MONTHS}(?:[\s,.-]*(?:\d{{4}}|\d{{2}})\b)?"  # 12th March 2019, 12-MAR
            rf"|(?<![a-z]){WEEKDAY}{_MONTHS}\s+{_DAY}{ORDINAL},?\s+\d{{2,4}}\b"  # March 12, 2019
            rf"|(?<![a-z]){_MONTHS}[\s,.-]*(?:19|20)\d{{2}}\b",  # March 2019
            re.IGNORECASE,
        ),
    ),
    (
        "age-over-89",
        False,
        False,
        re.compile(
            r"\b(?:aged?|age:)\s*[:=]?\s*(?:9\d|1[0-4]\d)\b"  # age 93
            r"|\b(?:9\d|1[0-4]\d)\s*-?\s*(?:y/o|y\.o\.?|yo|yrs?|years?)(?:[\s-]*old)?(?![a-z])",  # 93 yo, 93 YEARS OLD
            re.IGNORECASE,
        ),
    ),
    ("digits", False, True, re.compile(r"\d{5,}")),  # MRNs, accession numbers, compact dates
)
_PATTERNS = tuple(pattern for _, _, _, pattern in NAMED_PATTERNS)


MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)


def date_variants(da: str) -> list[str]:
    """A DA value written the ways people write dates in free text."""
    match = re.match(r"^(\d{4})(\d{2})(\d{2})$", da.strip())
    if not match:
        return []
    y, m, d = match.groups()
    mi, di = str(int(m)), str(int(d))
    if not 1 <= int(m) <= 12:
        month, mon = "", ""
    else:
        month = MONTH_NAMES[int(m) - 1]
        mon = month[:3]
    numeric = {
        f"{y}{m}{d}", f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}", f"{y} {m} {d}", f"{y}/{mi}/{di}",
        f"{m}/{d}/{y}", f"{mi}/{di}/{y}", f"{d}/{m}/{y}", f"{di}/{mi}/{y}", f"{d}.{m}.{y}", f"{di}.{mi}.{y}",
        f"{m}-{d}-{y}", f"{d}-{m}-{y}", f"{d} {m} {y}", f"{m} {d} {y}",
        f"{m}/{d}/{y[2:]}", f"{mi}/{di}/{y[2:]}", f"{d}.{m}.{y[2:]}", f"{di}.{mi}.{y[2:]}",
    }
    if month:
        numeric |= {
            f"{di} {month} {y}", f"{d}-{mon}-{y}", f"{d}{mon}{y}", f"{d}{mon}{y[2:]}", f"{month} {di}, {y}",
            f"{mon} {di}, {y}", f"{month} {di} {y}",
        }
    return sorted(numeric, key=lambda s: (-len(s), s))


def find_patterns(text: str, strong_only: bool = False) -> list[str]:
    """Identifier patterns present in ``text`` (used by the checker)."""
    found: list[str] = []
    for _, strong, checked, pattern in NAMED_PATTERNS:
        if checked and (strong or not strong_only):
            found.extend(m.group(0) for m in pattern.finditer(text))
    return found



#: a CPT Category I code, 00100-99499: "CT CHEST (CPT=71250)", "XR CHEST 1 VIEW 71045", "THORACENTESIS 32555"
_CPT = re.compile(r"\d{5}")


def is_cpt_code(hit: str) -> bool:
    """Whether a run of digits found by :func:`find_patterns` is exactly a CPT Category I code
    (00100-99499, five digits): a procedure code in a procedure description, not an identifier."""
    return _CPT.fullmatch(hit) is not None and 100 <= int(hit) <= 99499
