"""QIDO-RS query parameters (PS3.18 8.3.4) parsed into plain data, and attribute matching.

A search is ``{attributeID}={value}`` pairs plus ``includefield``, ``fuzzymatching``,
``limit`` and ``offset``. Each value becomes a :class:`Match` whose kind follows the matching
rules of PS3.4 C.2.2.2, which QIDO-RS adopts (PS3.18 8.3.4.6):

* empty value: **universal** matching (everything matches; the attribute is returned);
* UI with ``,`` or ``\\``: **UID list** matching;
* DA, TM, DT with ``-``: **range** matching (``20200101-20201231``, ``-20201231``, ``20200101-``);
* string VRs with ``*`` or ``?``: **wildcard** matching;
* otherwise **single value** matching; for CS with ``\\`` (``ModalitiesInStudy=CT\\MR``) any of
  the values matches (PS3.4 C.2.2.2.1, multiple values).

:func:`matches` evaluates a match against header values (for attributes the index does not
hold); the database layer compiles the same :class:`Match` to SQL. Pure: no storage, no HTTP.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from radcommons.dicom.dicomweb_json import attribute_tag, keyword, vr_of
from radcommons.dicom.uid import UID_MAX_LENGTH, UID_SYNTAX
from radcommons.errors import UserError

#: VRs on which ``*`` and ``?`` are wildcards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
DATE_TIME_VRS = frozenset({"DA", "TM", "DT"})
INTEGER_VRS = frozenset({"IS", "SL", "SS", "UL", "US"})
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


def parse_match(tag: int, value: str) -> Match:
    """The :class:`Match` of ``{attributeID}={value}`` by the attribute's VR; raises
    :class:`UserError` for a date, time or UID that does not have its VR's form."""
    vr = vr_of(tag)
    value = value.strip()
    if value == "" or value == "*":
        return Match(tag, "universal")
    if vr == "UI" and ("," in value or "\\" in value):
        return Match(tag, "uid_list", tuple(_checked(tag, vr, v.strip(), value) for v in re.split(r"[,\\]", value)
                                            if v.strip()))
    if vr in DATE_TIME_VRS and "-" in value:
        low, _, high = (part.strip() for part in value.partition("-"))
        return Match(tag, "range", low=low and _checked(tag, vr, low, value),
                     high=high and _checked(tag, vr, high, value))
    if vr in _FORMS:
        _checked(tag, vr, value, value)
    if vr in WILDCARD_VRS and ("*" in value or "?" in value):
        return Match(tag, "wildcard", (value,))
    if vr in INTEGER_VRS:
        try:
            return Match(tag, "single", (str(int(value)),))
        except ValueError:
            raise _bad(f"{keyword(tag)} is a number ({vr}), got {value!r}") from None
    if vr == "CS" and "\\" in value:
        return Match(tag, "list", tuple(v.strip() for v in value.split("\\") if v.strip()))
    return Match(tag, "single", (value,))


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
            matches[int(tag)] = parse_match(int(tag), value)
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


