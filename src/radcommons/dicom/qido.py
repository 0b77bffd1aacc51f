"""QIDO-RS query parameters (PS3.18 8.3.4) parsed into plain data, and attribute matching.

A search is ``{attributeID}={value}`` pairs plus ``includefield``, ``fuzzymatching``,
``limit`` and ``offset``. Each value becomes a :class:`Match` whose kind follows the matching
rules of PS3.4 C.2.2.2, which QIDO-RS adopts (PS3.18 8.3.4.6):

* empty value: **universal** matching (everything matches; the attribute is returned);
* UI with ``,`` or ``\\``: **UID list** matching;
* DA, TM, DT with ``-``: **range** matching (``20200101-20201231``, ``-20201231``, ``20200101-``);
* string VRs with ``*`` or ``?``: **wildcard** matching;
* otherwise **single value** matching; a list (``ModalitiesInStudy=CT\\MR``, or ``CT,CR`` as OHIF
  sends it) matches when any of its values does (:data:`LIST_VRS`: ``\\`` always separates values
  there; a comma only where no value can hold one, :func:`comma_separates`). A key given twice
  (``ModalitiesInStudy=CT&ModalitiesInStudy=CR``, as dicomweb-client sends a list) is the list of
  both values where list matching applies, and refused otherwise.

:func:`matches` evaluates a match against header values (for attributes the index does not
hold); the database layer compiles the same :class:`Match` to SQL. Pure: no storage, no HTTP.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR

from radcommons.dicom.dicomweb_json import BULK_VRS, attribute_tag, keyword, vr_of
from radcommons.dicom.uid import UID_MAX_LENGTH, UID_SYNTAX
from radcommons.errors import UserError

#: VRs on which ``*`` and ``?`` are wildcards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
DATE_TIME_VRS = frozenset({"DA", "TM", "DT"})
INTEGER_VRS = frozenset({"IS", "SL", "SS", "UL", "US"})
#: VRs whose key may list values, any of which matches: the separator ``\\`` cannot be part of one of
#: their values (PS3.5 6.2); LT, ST, UT and UR may hold a backslash, dates and times take ranges.
LIST_VRS = frozenset({"AE", "CS", "LO", "PN", "SH", "UC", "UI", "DS", "IS", "SL", "SS", "UL", "US", "SV", "UV"})
#: VRs whose values never hold a comma, so that a comma separates values as in ``StudyInstanceUID=1.2,1.3``
#: (PS3.18 8.3.4.1 for UIDs; OHIF sends ``ModalitiesInStudy=CT,CR``). In names and free text (LO, SH,
#: PN, UC) a comma is part of the value ("CHEST, PA"), except in identifiers: :func:`comma_separates`.
COMMA_VRS = frozenset({"AE", "CS", "UI", "DS", "IS", "SL", "SS", "UL", "US", "SV", "UV"})
#: Query parameters that are not attributes (PS3.18 8.3.4).
CONTROL_PARAMETERS = frozenset({"includefield", "fuzzymatching", "limit", "offset"})


@dataclass(frozen=True)
class Match:
    """One matching key: the attribute, how to match, and the value(s).

    ``kind`` is universal | single | list | uid_list | wildcard | range; ``values`` holds the
    value(s) (the pattern for wildcard); ``low`` / ``high`` bound a range ("" = open).
    """

    tag: int
    kind: str
    values: tuple[str, ...] = ()
    low: str = ""
    high: str = ""

    @property
    def keyword(self) -> str:
        return keyword(self.tag)

    @property
    def vr(self) -> str:
        return vr_of(self.tag)


@dataclass(frozen=True)
class QidoQuery:
    """A parsed search: matching keys, attributes to add, paging and the fuzzy flag."""

    matches: tuple[Match, ...] = ()
    include: frozenset[int] = field(default_factory=frozenset)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzymatching: bool = False

    def match_for(self, tag: int) -> Match | None:
        return next((m for m in self.matches if m.tag == tag), None)


def _bad(message: str, hint: str = "see docs/DICOMWEB.md for the supported query parameters") -> UserError:
    return UserError(message, hint)


def _count(name: str, value: str) -> int:
    if not value.strip().isdigit():
        raise _bad(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


#: The values a query may give (PS3.5 Table 6.2-1; a DT or TM may stop after any component,
#: PS3.4 C.2.2.2.5); PS3.18 8.3.4.1 asks for these forms, without the ACR-NEMA ``.`` and ``:``.
_FORMS = {
    "DA": (re.compile(r"[0-9]{8}"), "YYYYMMDD, e.g. 20200131"),
    "TM": (re.compile(r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?"), "HHMMSS.FFFFFF or a prefix of it, e.g. 1330"),
    "DT": (re.compile(r"[0-9]{4}([0-9]{2}([0-9]{2}([0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?)?)?)?"),
           "YYYYMMDDHHMMSS.FFFFFF or a prefix of it, e.g. 20200131"),
    "UI": (re.compile(f"(?=.{{1,{UID_MAX_LENGTH}}}$){UID_SYNTAX}"),
           f"digits and dots, at most {UID_MAX_LENGTH} characters, e.g. 1.2.840.113619.2.55"),
}


def _checked(tag: int, vr: str, value: str, given: str) -> str:
    """``value`` (part of the query value ``given``) when it has the form of its VR; a clear
    refusal otherwise (it used to match nothing, so a typo looked like an empty archive)."""
    form = _FORMS.get(vr)
    where = "" if given == value else f" in {given!r}"
    if form is not None and not form[0].fullmatch(value):
        hint = ("several UIDs: separate them with commas (1.2.3,1.2.4)" if vr == "UI" else
                "a range is FROM-TO with either end open (20200101-, -20201231)")
        raise _bad(f"{keyword(tag)} ({vr}) must be {form[1]}; got {value!r}{where}", f"{hint}; see docs/DICOMWEB.md")
    if vr == "DA":
        try:
            _dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            raise _bad(f"{keyword(tag)} {value!r}{where} is not a date in the calendar", "dates are YYYYMMDD") from None
    return value


def comma_separates(tag: int) -> bool:
    """Whether a comma separates values in a key on ``tag``: where no value can hold one
    (:data:`COMMA_VRS`), and in identifiers (PatientID, AccessionNumber, StudyID, ...: the keyword
    ends in ID or Number), which never hold one in practice and which clients list with commas."""
    vr = vr_of(tag)
    name = keyword(tag)
    return vr in COMMA_VRS or (vr in ("LO", "SH") and (name.endswith("ID") or name.endswith("Number")))


def bulk_data(tag: int) -> bool:
    """Whether the attribute is binary bulk data (Pixel Data: OB or OW): never matched nor returned by QIDO."""
    try:
        choices = {v.strip() for v in dictionary_VR(tag).split(" or ")}
    except KeyError:
        return False  # a private or unknown tag: read as UN from the header like any other
    return bool(choices) and choices <= (BULK_VRS - {"UN"})


def _refuse_bulk(tag: int, how: str) -> None:
    if bulk_data(tag):
        raise _bad(f"{keyword(tag)} is bulk data ({dictionary_VR(tag)}): QIDO-RS does not {how} it",
                   "retrieve pixel data with WADO-RS (.../frames/1 or the instance); see docs/DICOMWEB.md")


_TIME_LIMITS = ((0, 23), (0, 59), (0, 60))  # HH, MM, SS (60: a leap second, PS3.5 Table 6.2-1)


def _time_error(text: str) -> str | None:
    """Why a TM (or the time of a DT) is not a time of day, or None."""
    digits = text.partition(".")[0]
    for index, (low, high) in enumerate(_TIME_LIMITS):
        part = digits[2 * index: 2 * index + 2]
        if part and not low <= int(part) <= high:
            return f"{('hours', 'minutes', 'seconds')[index]} {part} are not {low:02d} to {high:02d}"
    return None


def _date_error(text: str) -> str | None:
    """Why a DA (or the date of a DT, which may stop after the year or month) is not in the calendar."""
    year, month, day = text[:4], text[4:6], text[6:8]
    try:
        _dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return "not a date in the calendar"
    return None


def _checked_value(tag: int, vr: str, value: str, given: str) -> str:
    value = _checked(tag, vr, value, given)
    error = None
    if vr == "TM":
        error = _time_error(value)
    elif vr == "DT":
        error = _date_error(value[:8]) if len(value) > 4 else None
        error = error or _time_error(value[8:])
    if error:
        where = "" if given == value else f" in {given!r}"
        raise _bad(f"{keyword(tag)} {value!r}{where}: {error}", f"{vr} values are {_FORMS[vr][1]}")
    return value


def _list_values(tag: int, vr: str, value: str) -> list[str] | None:
    """The values of a list key (``CT\\MR``, ``CT,MR``), or None when ``value`` is one value."""
    separators = "[,\\\\]" if comma_separates(tag) else "[\\\\]"
    if vr not in LIST_VRS or not re.search(separators, value):
        return None
    if "*" in value or "?" in value:
        raise _bad(f"{keyword(tag)}={value!r} mixes a list and wildcards",
                   "list values (CT\\MR) or give one wildcard pattern (C*), not both")
    return [v.strip() for v in re.split(separators, value) if v.strip()]


def _single(tag: int, vr: str, value: str, given: str) -> str:
    """One value of a single-value or list key, checked against its VR (integers normalised)."""
    if vr in _FORMS:
        return _checked(tag, vr, value, given)
    if vr in INTEGER_VRS:
        try:
            return str(int(value))
        except ValueError:
            where = "" if given == value else f" in {given!r}"
            raise _bad(f"{keyword(tag)} is a number ({vr}), got {value!r}{where}") from None
    return value


def parse_match(tag: int, value: str) -> Match:
    """The :class:`Match` of ``{attributeID}={value}`` by the attribute's VR; raises
    :class:`UserError` for a date, time or UID that does not have its VR's form, a reversed range,
    and bulk data (Pixel Data), which QIDO-RS does not match."""
    _refuse_bulk(tag, "match")
    vr = vr_of(tag)
    value = value.strip()
    if value == "" or value == "*":
        return Match(tag, "universal")
    listed = _list_values(tag, vr, value)
    if listed is not None:
        values = tuple(dict.fromkeys(_single(tag, vr, v, value) for v in listed))
        if not values:
            return Match(tag, "universal")
        if len(values) == 1:
            return Match(tag, "single", values)
        return Match(tag, "uid_list" if vr == "UI" else "list", values)
    if vr in DATE_TIME_VRS and "-" in value:
        low, _, high = (part.strip() for part in value.partition("-"))
        low = low and _checked_value(tag, vr, low, value)
        high = high and _checked_value(tag, vr, high, value)
        if low and high and low[: len(high)] > high[: len(low)]:
            raise _bad(f"{keyword(tag)} range {value!r} ends before it starts",
                       "a range is FROM-TO with FROM not after TO (20200101-20201231)")
        return Match(tag, "range", low=low, high=high)
    if vr in _FORMS:
        _checked_value(tag, vr, value, value)
    if vr in WILDCARD_VRS and ("*" in value or "?" in value):
        return Match(tag, "wildcard", (value,))
    return Match(tag, "single", (_single(tag, vr, value, value),))


def _combined(earlier: Match, later: Match, given: str) -> Match:
    """One match of a key given twice: the list of both values where list matching applies
    (dicomweb-client sends a list as the key repeated); a clear refusal otherwise."""
    if earlier.kind == "universal":
        return later
    if later.kind == "universal":
        return earlier
    kinds = ("single", "list", "uid_list")
    if earlier.vr in LIST_VRS and earlier.kind in kinds and later.kind in kinds:
        values = tuple(dict.fromkeys(earlier.values + later.values))
        return Match(earlier.tag, "uid_list" if earlier.vr == "UI" else "list", values)
    raise _bad(f"{earlier.keyword} is given more than once (last {given!r}): a {earlier.vr} key "
               + ("with a range or wildcard cannot be combined with another value" if earlier.vr in LIST_VRS
                  else "takes one value or range"),
               "give the key once; several values of a list key: CT\\MR or CT,MR; see docs/DICOMWEB.md")


def parse_query(params: Iterable[tuple[str, str]]) -> QidoQuery:
    """Parse the query string pairs of a search; raises :class:`UserError` for a malformed one.

    ``includefield`` may repeat and hold comma-separated keywords or tags, or ``all``.
    """
    matches: dict[int, Match] = {}
    include: set[int] = set()
    include_all = False
    limit: int | None = None
    offset = 0
    fuzzy = False
    for name, value in params:
        if name == "includefield":
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                if item.lower() == "all":
                    include_all = True
                    continue
                tag = attribute_tag(item)
                if tag is None:
                    raise _bad(f"includefield names an unknown attribute {item!r}",
                               "use DICOM keywords (StudyDate) or tags (00080020)")
                _refuse_bulk(int(tag), "return")
                include.add(int(tag))
        elif name == "limit":
            limit = _count("limit", value)
        elif name == "offset":
            offset = _count("offset", value)
        elif name == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise _bad(f"fuzzymatching must be true or false, got {value!r}")
            fuzzy = value.lower() == "true"
        else:
            tag = attribute_tag(name)
            if tag is None:
                raise _bad(f"unknown query parameter or attribute {name!r}",
                           "match on DICOM keywords (PatientID=...) or tags (00100020=...); control parameters: "
                           + ", ".join(sorted(CONTROL_PARAMETERS)))
            # A dotted sequence path (00400275.0020000D) never parses as one tag: refused above.
            match = parse_match(int(tag), value)
            earlier = matches.get(int(tag))
            matches[int(tag)] = match if earlier is None else _combined(earlier, match, value)
    return QidoQuery(tuple(matches.values()), frozenset(include), include_all, limit, offset, fuzzy)


def _glob(pattern: str) -> re.Pattern[str]:
    # Only * and ? are wildcards in DICOM: [ ] and everything else match themselves.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", re.DOTALL)


def matches(match: Match, values: Sequence[str]) -> bool:
    """Whether an attribute with ``values`` (strings; empty when absent) satisfies ``match``.

    Person names are compared without regard to case, as Orthanc does by default
    (``CaseSensitivePN: false``; PS3.4 C.2.2.2.1 leaves it to the implementation); other
    strings are compared exactly. A multi-valued attribute matches when one value does.
    """
    if match.kind == "universal":
        return True
    fold = match.vr == "PN"

    def norm(text: str) -> str:
        text = text.strip()
        return text.casefold() if fold else text

    candidates = [norm(v) for v in values if v is not None]
    if match.kind == "range":
        return any(_in_range(v, match.low, match.high) for v in candidates)
    if match.kind == "wildcard":
        pattern = _glob(norm(match.values[0]))
        return any(pattern.match(v) for v in candidates)
    if match.vr in INTEGER_VRS:
        wanted_ints = set(match.values)
        return any(_int_text(v) in wanted_ints for v in candidates)
    wanted = {norm(v) for v in match.values}
    return any(v in wanted for v in candidates)


def _int_text(value: str) -> str:
    try:
        return str(int(float(value)))
    except ValueError:
        return value


def _in_range(value: str, low: str, high: str) -> bool:
    # DA/TM/DT values compare as strings once the same length: YYYYMMDD, HHMMSS.FFFFFF, ...
    if not value:
        return False
    if low and value[: len(low)] < low:
        return False
    if high and value[: len(high)] > high:
        return False
    return True


