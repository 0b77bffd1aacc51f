"""Dates: per-patient offsets and the shifting of DA, DT and AS values.

PS3.15 E.3.6 Retain Longitudinal Temporal Information with Modified Dates: every date
of a patient moves by the same number of days, so intervals between studies, and
between imaging and the clinical record, survive exactly while the calendar dates do
not (the TCIA/RSNA "incrementdate" practice; HIPAA Safe Harbor would keep only years,
so the shifted dates are documented as Modified Dates, not Safe Harbor).

The offset is derived from HMAC-SHA-256(key, site, patient ID): reproducible for the
site (two machines with the same key give a new patient the same offset, whatever their
state directories), different for every patient (unlike dicognito's one offset for
everybody), and never small. Range: -365..-30 and +30..+365 days, uniform over those 672
values. At least :data:`MIN_OFFSET_DAYS` (30) either way, because a shift of a few days
protects nothing: anyone who knows one real date of the patient (an admission, an
accident in the news) finds the shifted study a day or two away from it, and so learns
the offset and every other true date of the patient. With 30 days or more no true date is
within a month of the date shown, the day of the month says nothing, and the true date is
any of 672 days. At most :data:`MAX_OFFSET_DAYS` (one year) keeps season and era close
enough for research (the study year moves by at most one, which the commons flags as
"year shifted").

Which offset a patient gets (the rule): a patient already in the site's pseudonym
registry keeps the offset recorded there, forever; only a patient not yet recorded gets
:func:`date_offset_days`. Before the minimum existed the range was -365..-1 and +1..+365,
and a site that de-identified patients then has their offsets, small ones included, in
its registry: a study sent again, or later studies and the clinical dates of such a
patient, must move by the same days as the images sent before. The engine takes the
recorded offsets from the registry (:meth:`radcommons.deid.registry.Registry.bind`) and
the clinical conversion takes each study's offset from its de-identified images, so the
registry is the one source for both.

The derivation keeps every earlier offset it can: its first draw is the earlier one
(the first 8 bytes of the HMAC modulo 730), kept when it is 30 days or more either way;
a draw under 30 days (8% of patients) is replaced by a second, independent draw over the
allowed values (the next 8 bytes modulo 672). Rejection sampling: the result is uniform
over the allowed values, and a patient whose earlier offset was 30 days or more gets that
same offset with or without the registry. So the registry only holds different offsets for
the patients first recorded with an offset under 30 days.

Times (TM) are not changed: a whole-day shift leaves the time of day intact. A TM value
that is not a time of day (a writer that put a date or a date-time there: "20190312101502")
is removed (:func:`time_of_day`), since it would carry the real date.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re

#: The smallest shift either way (days); see the module's docstring for why 30.
MIN_OFFSET_DAYS = 30
MAX_OFFSET_DAYS = 365
#: How many offsets are allowed: -365..-30 and 30..365.
_ALLOWED = 2 * (MAX_OFFSET_DAYS - MIN_OFFSET_DAYS + 1)

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DA_OLD = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")  # ACR-NEMA 2.0 form, still seen
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_AS = re.compile(r"^(\d{1,4})\s*([DWMY])$")


def date_offset_days(key: bytes, site: str, patient_id: str) -> int:
    """The day offset derived for ``patient_id`` at ``site``: in -365..-30 or 30..365.

    For a patient not yet in the site's registry; one recorded there keeps the recorded
    offset (:meth:`radcommons.deid.engine.DeidContext.offset_for`).
    """
    message = b"radcommons/date-offset\x00" + site.encode("utf-8") + b"\x00" + patient_id.encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    step = int.from_bytes(digest[:8], "big") % (2 * MAX_OFFSET_DAYS)  # the first draw: 0..729
    first = step - MAX_OFFSET_DAYS if step < MAX_OFFSET_DAYS else step - MAX_OFFSET_DAYS + 1
    if abs(first) >= MIN_OFFSET_DAYS:
        return first
    step = int.from_bytes(digest[8:16], "big") % _ALLOWED  # the second draw: 0..671
    half = _ALLOWED // 2
    return -(MIN_OFFSET_DAYS + step) if step < half else MIN_OFFSET_DAYS + step - half


def _shift(year: int, month: int, day: int, days: int) -> _dt.date:
    return _dt.date(year, month, day) + _dt.timedelta(days=days)


def shift_da(value: str, days: int) -> str | None:
    """Shift one DA value; ``""`` stays ``""``; ``None`` if it is not a date."""
    text = value.strip()
    if not text:
        return ""
    match = _DA.match(text) or _DA_OLD.match(text)
    if not match:
        return None
    try:
        return _shift(*map(int, match.groups()), days).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        return None


def shift_dt(value: str, days: int) -> str | None:
    """Shift the date part of one DT value, keeping its precision, time and UTC offset.

    A DT with only a year or year and month is shifted from the middle of that period
    and written back at the same precision.
    """
    text = value.strip()
    if not text:
        return ""
    match = _DT.match(text)
    if not match:
        return None
    year, month, day, time, zone = match.groups()
    try:
        if day is not None:
            shifted = _shift(int(year), int(month), int(day), days)
            head = shifted.strftime("%Y%m%d")
        elif month is not None:
            shifted = _shift(int(year), int(month), 15, days)
            head = shifted.strftime("%Y%m")
        else:
            shifted = _shift(int(year), 7, 2, days)
            head = shifted.strftime("%Y")
    except (ValueError, OverflowError):
        return None
    if time and day is None:
        return None  # a time without a full date is not a valid DT
    return head + (time or "") + (zone or "")


def shift_date_range(value: str, days: int, shift) -> str | None:
    """Shift a value that may be a range ``A-B`` (seen in query-like attributes)."""
    if "-" in value.strip()[1:] and not re.search(r"[+-]\d{4}$", value.strip()):
        parts = value.strip().split("-")
        if len(parts) == 2:
            shifted = [shift(p, days) if p else "" for p in parts]
            if None in shifted:
                return None
            return "-".join(shifted)  # type: ignore[arg-type]
    return shift(value, days)


_TIME = re.compile(r"(?:[01]\d|2[0-3])(?::?[0-5]\d(?::?(?:[0-5]\d|60)(?:\.\d{1,6})?)?)?")


_DATE_TIME = re.compile(r"(?:1[89]|20)\d{6}(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?")


def time_of_day(value: str) -> str:
    """``value`` when it is a TM value (PS3.5 6.2: HH, HHMM, HHMMSS[.F...], the ACR-NEMA
    HH:MM:SS too, or a range of them); the time of a date-time written there instead
    ("20190312101502": "101502"); else ``""``: anything else (a date, text) could hold the real
    date, which shifting dates is there to hide."""
    text = value.strip()
    date_time = _DATE_TIME.fullmatch(text)
    if date_time:
        return date_time.group(1) or ""
    parts = text.split("-") if "-" in text else [text]
    if len(parts) > 2 or not all(not part or _TIME.fullmatch(part) for part in parts):
        return ""
    return value


def normalise_age(value: str) -> str | None:
    """Make a Patient's Age (AS) valid and aggregate ages over 89 into ``090Y``.

    HIPAA Safe Harbor and PS3.15 E.3.1 (Retain Patient Characteristics) both allow age,
    with ages above 89 grouped into one category. Malformed values ("75Y", "75",
    "75 Y") are repaired; values that cannot be read give ``None`` (remove them).
    """
    text = value.strip().upper()
    if not text:
        return ""
    if text.isdigit():
        text += "Y"
    match = _AS.match(text)
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2)
    years = {"D": number / 365.25, "W": number / 52.18, "M": number / 12, "Y": number}[unit]
    if years > 89:
        return "090Y"
    if number > 999:  # too many digits for AS: express it in the next larger unit
        return f"{int(years):03d}Y"
    return f"{number:03d}{unit}"
