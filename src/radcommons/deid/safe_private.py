"""The safe-private allow list (PS3.15 E.3.10 Retain Safe Private Option).

PS3.15 E.3.10 lets a de-identifier decide which private attributes are safe "by some
other means" than Table E.3.10-1. RadCommons uses The Cancer Imaging Archive's Private
Tag Knowledge Base (TCIA's reviewed dispositions for 8,786 vendor private elements) and
ships a compact list derived from it as package data (``data/safe_private.json``).

Private elements are matched the way the standard identifies them (PS3.5 7.8.1): by
odd group, *private creator string* and the low byte of the element number (the
offset inside the creator's block), never by raw tag number, because the block a
creator lands in (``gggg,10xx`` or ``gggg,11xx``...) differs from file to file.

Dispositions kept in the list (TCIA letters):

* ``k`` keep the value as it is;
* ``h`` keep, but the value is a UID: replace it like any other UID (TCIA "hash uid");
* ``o`` keep, but the value is a date: shift it like any other date (TCIA "offset").

An element is on the list only when *every* row TCIA has for it agrees on one of those
(an element that TCIA deletes in some VR or context is dropped): the safe choice.

The knowledge base also says *where* it saw each element: at the top level, or nested
inside sequences (``(0008,1115)[<0>](0008,1140)[<1>](0009,"GEIIS_RA1000",01)``). The list
keeps those contexts (``contexts`` in the JSON): an element is kept only in a context
(the chain of enclosing sequences, standard or private) where TCIA reviewed it, so a
vendor element that TCIA knows at the top level is still removed when it turns up
inside, say, a Referenced Image Sequence item. This only ever removes more.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping

#: item markers between the segments of a nested TCIA pattern
_ITEM_MARKER = re.compile(r"\[<\d+>\]")
#: one private element signature, e.g. ``(0019,"GEMS_ACQU_01",1c)``; the quoting in the
#: file is irregular
_PRIVATE_SEGMENT = re.compile(r'^\(([0-9a-fA-F]{4}),"?(.*?)"?,([0-9a-fA-F]{2})\)$')
_STANDARD_SEGMENT = re.compile(r"^\(([0-9a-fA-F]{4}),([0-9a-fA-F]{4})\)$")


def _innermost(pattern: str) -> re.Match[str] | None:
    """The private signature of the element a TCIA pattern is about (its last segment),
    or ``None`` when that is a standard element inside a private sequence."""
    return _PRIVATE_SEGMENT.match(_ITEM_MARKER.split(pattern.strip())[-1])
_KEEP = {"k", "h", "o"}

AllowList = Mapping[str, Mapping[int, Mapping[int, str]]]


def normalise_creator(creator: str) -> str:
    """The form private creator strings are compared in: trimmed, upper case."""
    return creator.strip().upper()


def build_allow_list(csv_path: Path) -> dict[str, dict[str, dict[str, str]]]:
    """Derive the compact allow list from TCIA's Private Tag Knowledge Base CSV.

    Returns ``{creator: {group hex: {offset hex: disposition}}}`` (JSON-ready).
    """
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            match = _innermost(row["element_sig_pattern"])
            if not match:
                continue  # innermost element is a standard one inside a private sequence
            group, creator, offset = match.groups()
            if int(group, 16) % 2 == 0:
                continue
            key = (normalise_creator(creator), group.lower(), offset.lower())
            seen[key].add(row["private_disposition"].strip().lower())
    result: dict[str, dict[str, dict[str, str]]] = {}
    for (creator, group, offset), dispositions in sorted(seen.items()):
        if not dispositions <= _KEEP:
            continue
        if len(dispositions) == 1:
            disposition = next(iter(dispositions))
        elif dispositions == {"k", "h"}:
            disposition = "h"
        elif dispositions == {"k", "o"}:
            disposition = "o"
        else:
            continue
        result.setdefault(creator, {}).setdefault(group, {})[offset] = disposition
    return result


def sequence_signature(group: int, element: int, creator: str | None = None) -> str:
    """How one enclosing sequence is named in a context: ``00081140`` for a standard
    tag, ``0019,GEMS_ACQU_01,1c`` (group, normalised creator, offset) for a private one."""
    if creator is None:
        return f"{group:04x}{element:04x}"
    return f"{group:04x},{normalise_creator(creator)},{element & 0xFF:02x}"


def _context(pattern: str) -> str | None:
    """The enclosing-sequence chain of a TCIA pattern (``""`` at the top level), joined by ``/``."""
    segments = _ITEM_MARKER.split(pattern.strip())[:-1]
    names = []
    for segment in segments:
        standard = _STANDARD_SEGMENT.match(segment)
        if standard:
            names.append(sequence_signature(int(standard.group(1), 16), int(standard.group(2), 16)))
            continue
        private = _PRIVATE_SEGMENT.match(segment)
        if not private:
            return None
        names.append(sequence_signature(int(private.group(1), 16), int(private.group(3), 16), private.group(2)))
    return "/".join(names)


def build_contexts(csv_path: Path, entries: Mapping[str, Mapping[str, Mapping[str, str]]]) -> dict:
    """Where TCIA saw each allowed element: ``{creator: {group: {offset: [contexts]}}}``."""
    found: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            pattern = row["element_sig_pattern"].strip()
            match = _innermost(pattern)
            context = _context(pattern)
            if not match or context is None:
                continue
            group, creator, offset = match.groups()
            key = (normalise_creator(creator), group.lower(), offset.lower())
            if entries.get(key[0], {}).get(key[1], {}).get(key[2]):
                found[key].add(context)
    result: dict[str, dict[str, dict[str, list[str]]]] = {}
    for (creator, group, offset), contexts in sorted(found.items()):
        result.setdefault(creator, {}).setdefault(group, {})[offset] = sorted(contexts)
    return result


def write_allow_list(csv_path: Path, out_path: Path) -> int:
    """Build the list from ``csv_path`` and write it as JSON; returns the entry count."""
    entries = build_allow_list(csv_path)
    document = {
        "source": "TCIA Private Tag Knowledge Base TCIAPrivateTagKB-02-01-2024-formatted.csv",
        "source_sha256": "68e38b67778ddb8ffa60f46bef894f3931330781e375c52bc06fc86cad44d111",
        "match": "normalised private creator + odd group + element offset (low byte)",
        "dispositions": {"k": "keep", "h": "keep, replace UID", "o": "keep, shift date"},
        "entries": entries,
        "contexts": build_contexts(csv_path, entries),
    }
    out_path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return sum(len(offsets) for groups in entries.values() for offsets in groups.values())


@lru_cache(maxsize=1)
def load_allow_list() -> dict[str, dict[int, dict[int, str]]]:
    """The shipped allow list as ``{creator: {group: {offset: disposition}}}`` (ints)."""
    text = resources.files("radcommons.deid").joinpath("data/safe_private.json").read_text("utf-8")
    entries = json.loads(text)["entries"]
    return {
        creator: {
            int(group, 16): {int(offset, 16): disp for offset, disp in offsets.items()}
            for group, offsets in groups.items()
        }
        for creator, groups in entries.items()
    }


def disposition(allow: AllowList, group: int, creator: str | None, element: int) -> str | None:
    """``k``/``h``/``o`` when the private element is safe, else ``None``."""
    if creator is None:
        return None
    return allow.get(normalise_creator(creator), {}).get(group, {}).get(element & 0xFF)


@lru_cache(maxsize=1)
def load_contexts() -> dict[tuple[str, int, int], frozenset[str]]:
    """Where TCIA reviewed each allowed element: ``{(creator, group, offset): contexts}``."""
    text = resources.files("radcommons.deid").joinpath("data/safe_private.json").read_text("utf-8")
    contexts = json.loads(text).get("contexts", {})
    return {
        (creator, int(group, 16), int(offset, 16)): frozenset(where)
        for creator, groups in contexts.items()
        for group, offsets in groups.items()
        for offset, where in offsets.items()
    }


def disposition_in_context(
    allow: AllowList, group: int, creator: str | None, element: int, context: str
) -> str | None:
    """Like :func:`disposition`, and only where TCIA saw the element: ``context`` is the
    chain of enclosing sequences (:func:`sequence_signature` joined by ``/``, ``""`` at
    the top level)."""
    verdict = disposition(allow, group, creator, element)
    if verdict is None or creator is None:
        return None
    if context not in load_contexts().get((normalise_creator(creator), group, element & 0xFF), frozenset()):
        return None
    return verdict


if __name__ == "__main__":  # python -m radcommons.deid.safe_private CSV OUT
    import sys

    count = write_allow_list(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{count} safe private elements")
