"""Folding text for matching: case, diacritics and ligatures removed, names transliterated.

Known identifiers are matched on a folded copy of the text ("Müller", "MULLER" and
"Mu\\u0308ller" fold alike), and what matched is cut from the original text through a
map of positions (:func:`folded_with_map`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

#: letters NFKD leaves alone, and their plain spelling
_SPECIAL_FOLDS = {
    "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ł": "l", "ı": "i", "ß": "ss",
    "ħ": "h", "ŧ": "t", "ŀ": "l", "ĸ": "k",
}
#: other spellings of a name: German umlauts and Scandinavian letters written out
_TRANSLITERATIONS = {"ä": "ae", "ö": "oe", "ü": "ue", "ø": "oe", "å": "aa"}
_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya".split(),
    )
)


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """One character folded: lower case (casefold), without diacritics, ligatures spelled out."""
    if ch.isascii():
        return ch.lower()
    decomposed = unicodedata.normalize("NFKD", ch.casefold())
    return "".join(_SPECIAL_FOLDS.get(c, c) for c in decomposed if not unicodedata.combining(c))


def fold(text: str) -> str:
    """``text`` folded (ASCII text: its lower case, with the same positions)."""
    return text.lower() if text.isascii() else "".join(_fold_char(c) for c in text)


def folded_with_map(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` folded, with the original start and end of each folded character.

    An end reaches over the combining marks that follow (they fold to nothing), so a cut
    takes a name's diacritics with it.
    """
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, ch in enumerate(text):
        folded = _fold_char(ch)
        if not folded:
            if ends:  # a mark (or nothing) after the last character: it goes with it
                last = len(ends) - 1
                while last >= 0 and ends[last] == index:
                    ends[last] = index + 1
                    last -= 1
            continue
        pieces.append(folded)
        starts.extend([index] * len(folded))
        ends.extend([index + 1] * len(folded))
    return "".join(pieces), starts, ends


def misread(value: str) -> set[str]:
    """``value`` as it reads when its bytes were decoded with the wrong character set (a file
    whose Specific Character Set does not say how one element was written: a description
    typed in UTF-8 in a file declared ISO_IR 100, a Latin-1 name in a file declared ISO_IR
    192): UTF-8 read as Latin-1 ("MÃ¼ller"), Latin-1 read as UTF-8 (pydicom puts U+FFFD for
    each byte that is not UTF-8: "M\ufffdller"), and back from the first ("MÃ¼ller": "Müller").
    Empty for ASCII, which reads alike in every character set the engine accepts."""
    if value.isascii():
        return set()
    found = {value.encode("utf-8").decode("latin-1")}
    if all(ord(c) < 0x100 for c in value):
        found.add("".join(c if c.isascii() else "\ufffd" for c in value))
        try:
            found.add(value.encode("latin-1").decode("utf-8"))
        except UnicodeDecodeError:
            pass
    found.discard(value)
    return found


def spellings(value: str, name: bool) -> set[str]:
    """The folded forms a value is matched in: itself and as it reads in a wrong character set
    (:func:`misread`), and for a name its transliterations (Müller: muller, mueller; Mueller:
    mueller, muller; Пётр: петр, petr)."""
    lowered = value.casefold()
    found = {fold(value)} | {fold(other) for other in misread(value)}
    if not name:
        return found
    found.add(fold("".join(_TRANSLITERATIONS.get(c, c) for c in lowered)))
    if any(c in _CYRILLIC for c in lowered):
        found.add(fold("".join(_CYRILLIC.get(c, c) for c in lowered).replace("-", "")))
    for spelling in list(found):
        if spelling.isascii() and re.search(r"[aou]e", spelling):
            short = re.sub(r"([aou])e", r"\1", spelling)
            if len(short) >= 4:
                found.add(short)
    return {s for s in found if s}

