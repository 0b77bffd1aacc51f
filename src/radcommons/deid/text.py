"""Free text: cleaning descriptors (PS3.15 E.3.5 Clean Descriptors Option).

Descriptors research needs (Study / Series Description, Protocol Name ...) are cleaned,
not dropped: clinical words stay, while

* every identifier known from the same dataset is removed: every person name in it (the
  patient's name parts of two letters and its CJK / kana / hangul parts of any length
  included, also joined without a separator, with a plural or possessive ending, glued to
  digits, with or without diacritics or a transliteration, hyphenated and apostrophe parts
  apart and together, a name of 4 letters or more typed with a hyphen, an apostrophe or a
  space inside: :func:`_name_regex`), patient IDs, accession number, study ID and other IDs (also their
  digit core without letters or leading zeros, written with separators), phone numbers,
  institution, station, serial numbers, the original Study / Series / Frame of Reference
  UIDs (and UIDs under their root), and its dates written in any common format; and
* identifier patterns are removed: e-mail addresses, UIDs, phone numbers (7 and 10 digits),
  dates (numeric, with month names, month and year, day and month), ages over 89, runs of
  5 or more digits, social-security-like numbers, and names after Dr./Mr./Mrs./Ms./Prof.

The known identifiers are also scrubbed from every other text element the profile
keeps (a safety net for PHI typed into attributes Table E.1-1 does not list).

Known identifiers are matched on a folded copy of the text (case, diacritics and
ligatures removed: "Müller", "MULLER" and "Mu\\u0308ller" fold alike), and what matched
is cut from the original text through a map of positions. The identifiers are gathered
by :mod:`radcommons.deid.identifiers`, the patterns live in :mod:`radcommons.deid.patterns`
and the folding in :mod:`radcommons.deid.folding`; this module compiles the known
identifiers into one matcher and cleans text with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

from radcommons.deid.folding import folded_with_map, spellings
from radcommons.deid.identifiers import Identifiers
from radcommons.deid.patterns import MONTH_NAMES, NAMED_PATTERNS, ORDINAL, WEEKDAY

_DIGIT = re.compile(r"\d")
_NOT_DIGITS = re.compile(r"\D+")
#: the patterns with what a text needs for them to match at all: a digit (all but two), "@"
_CLEAN_STEPS = tuple(
    (pattern, name not in ("email", "titled-name"), "@" if name == "email" else "")
    for name, _, _, pattern in NAMED_PATTERNS
)


# ---- compiled identifiers

_LETTER_BEFORE = r"(?<![^\W\d_])"  # not after a letter
_LETTER_AFTER = r"(?![^\W\d_])"
_WORD_BEFORE = r"(?<![^\W_])"  # not after a letter or digit
_WORD_AFTER = r"(?![^\W_])"
_SEPARATOR = r"[\s./_-]?"
#: what may be typed inside a name of 4 or more letters ("Zyx-wort", "O'Brien", "Smith - Jones"
#: for ZYXWORT, OBRIEN, SMITHJONES): a hyphen or an apostrophe anywhere, a plain space only
#: between two parts of 3 letters or more ("Smith Jones", not "Chest er" for CHESTER)
_NAME_BREAK = r"(?:\s*['\u2019`\-\u2010]\s*)?"
_NAME_BREAK_OR_SPACE = r"(?:\s*['\u2019`\-\u2010]\s*|\s+)?"
_BREAKS = re.compile(r"[\s'\u2019`\-\u2010]+")
_MIN_BROKEN_NAME = 4
_MIN_SPACED_PART = 3
_MONTH_SPELLINGS = tuple(
    (name.lower(), name[:3].lower()) for name in MONTH_NAMES
)


def _date_regex(da: str) -> str:
    """One folded DA value written any common way (numbers in any order, 2- or 4-digit
    year, month names, weekday, ordinal, day and month alone)."""
    y, m, d = da[:4], da[4:6], da[6:8]
    mi, di = str(int(m)), str(int(d))
    day = f"0?{di}" if len(di) == 1 else di
    month = f"0?{mi}" if len(mi) == 1 else mi
    year = f"(?:{y}|{y[2:]})"
    sep = r"(?:\s*[./-]\s*|\s+)"
    numeric = [
        f"{y}{sep}{month}{sep}{day}", f"{day}{sep}{month}{sep}{year}", f"{month}{sep}{day}{sep}{year}",
        f"{y}{m}{d}", f"{y[2:]}{m}{d}", f"{d}{m}{y}", f"{m}{d}{y}",
        f"{day}/{month}(?!/)", f"{month}/{day}(?!/)", f"{month}{sep}{y}",
    ]
    regex = r"(?<![\d/.])(?:" + "|".join(numeric) + ")"
    if 1 <= int(m) <= 12:
        full, short = _MONTH_SPELLINGS[int(m) - 1]
        names = f"(?:{full}|{short}" + ("|sept" if int(m) == 9 else "") + r")\.?(?![a-z])"
        weekday = WEEKDAY
        words = [
            rf"{weekday}{day}{ORDINAL}[\s,.-]*{names}(?:[\s,.-]*{year})?",
            rf"{weekday}{names}[\s,.-]*{day}{ORDINAL}(?:,?[\s.-]*{year})?",
            rf"{names}[\s,.-]*{y}",
        ]
        regex += r"|(?<![\d/.])" + _LETTER_BEFORE + "(?:" + "|".join(words) + ")"
    return "(?:" + regex + r")(?!\d)"


def _digits_regex(core: str) -> str:
    """An ID's digits, separators between them allowed, leading zeros too."""
    return r"(?<!\d)(?:0" + _SEPARATOR + ")*" + _SEPARATOR.join(core) + r"(?!\d)"


def _name_regex(spelling: str) -> str:
    """A name's folded spelling, with what may be typed inside it (:data:`_NAME_BREAK`) where it
    has 4 letters or more."""
    if len(spelling) < _MIN_BROKEN_NAME or not spelling.isalpha():
        return re.escape(spelling)
    parts = [re.escape(spelling[0])]
    for index in range(1, len(spelling)):
        spaced = min(index, len(spelling) - index) >= _MIN_SPACED_PART
        parts.append(_NAME_BREAK_OR_SPACE if spaced else _NAME_BREAK)
        parts.append(re.escape(spelling[index]))
    return "".join(parts)


def _uid_root(uid: str) -> str | None:
    """The root a UID shares with its siblings (its components but the last two), when
    that still names an organisation (at least 4 components, 8 characters)."""
    components = uid.split(".")
    root = ".".join(components[:-2])
    return root if len(components) - 2 >= 4 and len(root) >= 8 else None


@dataclass(frozen=True)
class _Alternative:
    regex: str
    ascii: bool  #: can match ASCII text (what the lowered fast path compiles)
    needles: tuple[str, ...]  #: a match contains one of these literals (none: see the digit cores)
    #: a name the match may spell with breaks inside (:func:`_name_regex`): the needle is then
    #: in the text once the breaks are left out
    broken: str = ""


def _alternatives(identifiers: Identifiers) -> list[_Alternative]:
    alternatives: list[_Alternative] = []
    seen: set[str] = set()

    def add(regex: str, literal: str | None, *needles: str, broken: str = "") -> None:
        if regex in seen:
            return
        seen.add(regex)
        alternatives.append(_Alternative(regex, literal is None or literal.isascii(), needles, broken))

    for root in sorted({r for r in map(_uid_root, identifiers.uids) if r}, key=len, reverse=True):
        add(r"(?<![\d.])" + re.escape(root) + r"(?:\.\d+)+(?!\.?\d)", root, root)
    for uid in identifiers.uids:
        add(r"(?<![\d.])" + re.escape(uid) + r"(?!\.?\d)", uid, uid)
    for da in identifiers.dates:
        if re.fullmatch(r"\d{8}", da):
            add(_date_regex(da), None, str(int(da[6:])), da[:4])  # every form has its day or year
    literals = sorted({s for p in identifiers.phrases for s in spellings(p, False)}, key=lambda s: (-len(s), s))
    for literal in literals:
        add(re.escape(literal), literal, literal)
    for core in identifiers.digits:
        add(_digits_regex(core), core)
    names = set(identifiers.names)
    spelled = []
    for word in identifiers.words:
        for spelling in spellings(word, word in names):
            spelled.append((spelling, word in names))
    spelled.sort(key=lambda item: (-len(item[0]), item))
    for spelling, name in spelled:
        if name:  # Zyxworts, Zyxwort's, zyxwort2019, Zyx-wort
            regex = _LETTER_BEFORE + _name_regex(spelling) + r"(?:['\u2019]?s|es)?" + _LETTER_AFTER
            add(regex, spelling, spelling, broken=spelling if len(spelling) >= _MIN_BROKEN_NAME else "")
        else:
            add(_WORD_BEFORE + re.escape(spelling) + _WORD_AFTER, spelling, spelling)
    return alternatives


class _Hit:
    """What one known identifier matched (the part of :class:`re.Match` callers use)."""

    __slots__ = ("_text", "_start", "_end")

    def __init__(self, text: str, start: int, end: int) -> None:
        self._text, self._start, self._end = text, start, end

    def group(self, index: int = 0) -> str:
        return self._text[self._start : self._end]

    def span(self) -> tuple[int, int]:
        return self._start, self._end


class _Known:
    """Every known identifier of one dataset as patterns over folded text (one for any
    text, one of the alternatives that can match ASCII for ASCII text, which folds to its
    lower case with the same positions)."""

    def __init__(self, alternatives: list[_Alternative]) -> None:
        self.pattern = re.compile("|".join(a.regex for a in alternatives))
        ascii_parts = [a.regex for a in alternatives if a.ascii]
        self.ascii_pattern = re.compile("|".join(ascii_parts)) if ascii_parts else None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where known identifiers are in ``text`` (original positions, in order)."""
        if text.isascii():
            if self.ascii_pattern is None:
                return []
            return [m.span() for m in self.ascii_pattern.finditer(text.lower()) if m.end() > m.start()]
        folded, starts, ends = folded_with_map(text)
        return [(starts[m.start()], ends[m.end() - 1]) for m in self.pattern.finditer(folded) if m.end() > m.start()]

    def search(self, text: str) -> bool:
        return bool(self.spans(text))

    def finditer(self, text: str) -> Iterator[_Hit]:
        for start, end in self.spans(text):
            yield _Hit(text, start, end)

    def sub(self, replacement: str, text: str) -> str:
        return _cut(text, self.spans(text), replacement)


def _cut(text: str, spans: list[tuple[int, int]], replacement: str = " ") -> str:
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        pieces.append(replacement)
        last = max(last, end)
    pieces.append(text[last:])
    return "".join(pieces)


def _compile(identifiers: Identifiers) -> _Known | None:
    """The known identifiers as one matcher (:class:`_Known`), ``None`` if there are none."""
    alternatives = _alternatives(identifiers)
    return _Known(alternatives) if alternatives else None


class TextCleaner:
    """Cleans free text of one dataset's identifiers.

    The known identifiers are compiled into a pattern only when a text may contain one
    of them (for ASCII text, a plain substring test of the literals every match contains,
    and a test on its digits): most kept text contains none.
    """

    def __init__(self, identifiers: Identifiers) -> None:
        self.identifiers = identifiers
        alternatives = _alternatives(identifiers)
        self._alternatives = alternatives
        self._needles = tuple(dict.fromkeys(n for a in alternatives if a.ascii for n in a.needles))
        self._broken = tuple(dict.fromkeys(a.broken for a in alternatives if a.ascii and a.broken))
        self._cores = tuple(identifiers.digits)
        self._compiled: list[_Known | None] = []

    @property
    def _known(self) -> _Known | None:
        """The identifiers as one matcher (``None``: there are none)."""
        if not self._compiled:
            self._compiled.append(_Known(self._alternatives) if self._alternatives else None)
        return self._compiled[0]

    @staticmethod
    def for_identifiers(identifiers: Identifiers) -> "TextCleaner":
        """The cleaner for ``identifiers``, shared by the files that have the same ones.

        The slices of a series (and usually the series of a study) carry the same
        identifiers: compiling their pattern once per distinct set, not once per file,
        saves most of the cost. The cache holds original identifiers in memory only.
        """
        return _cached_cleaner(identifiers)

    def _may_contain(self, lowered: str) -> bool:
        """Could an ASCII text (lowered) contain a known identifier? (Every ASCII
        alternative needs one of its needles or, for an ID's digits, the digits in a row
        once everything else is left out.)"""
        if any(needle in lowered for needle in self._needles):
            return True
        if self._broken and _BREAKS.search(lowered):  # a name typed with a hyphen inside
            squeezed = _BREAKS.sub("", lowered)
            if any(name in squeezed for name in self._broken):
                return True
        if self._cores and _DIGIT.search(lowered):
            digits = _NOT_DIGITS.sub("", lowered)
            return any(core in digits for core in self._cores)
        return False

    def _without_known(self, text: str) -> str | None:
        """``text`` with every known identifier replaced by a space, ``None`` if it has none."""
        if text.isascii() and not self._may_contain(text.lower()):
            return None
        known = self._known
        if known is None:
            return None
        spans = known.spans(text)
        return _cut(text, spans) if spans else None

    def scrub_known(self, text: str) -> str:
        """Remove only the dataset's own identifiers (the safety net for kept text)."""
        if not text:
            return text
        removed = self._without_known(text)
        return text if removed is None else _tidy(removed)

    def clean(self, text: str) -> str:
        """Clean a descriptor: known identifiers and identifier patterns removed."""
        if not text:
            return text
        result = text
        has_digit = _DIGIT.search(text) is not None
        # patterns first: "Dr. Hibbert" and "john.doe@x.org" go whole, before the known
        # name parts inside them are cut out and leave "Dr." or "@x.org" behind
        for pattern, needs_digit, needs in _CLEAN_STEPS:
            if (has_digit or not needs_digit) and needs in result:
                result = pattern.sub(" ", result)
        if result:
            removed = self._without_known(result)
            if removed is not None:
                result = removed
        return _tidy(result) if result != text else text


@lru_cache(maxsize=64)
def _cached_cleaner(identifiers: Identifiers) -> TextCleaner:
    return TextCleaner(identifiers)


def _tidy(text: str) -> str:
    text = re.sub(r"\s{2,}", " ", text)
    text = re.sub(r"(\s*[,;:/\-]\s*){2,}", " ", text)
    return text.strip(" ,;:/-_^")


def known_hits(cleaner: TextCleaner, values: Iterable[str]) -> list[str]:
    """Known identifiers still present in ``values``."""
    known = cleaner._known
    if known is None:
        return []
    return [m.group(0) for v in values for m in known.finditer(v)]
