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

#: innermost private element signature at the end of a TCIA pattern, e.g.
#: ``(0019,"GEMS_ACQU_01",1c)``; the quoting in the file is irregular.
_SIGNATURE = re.compile(r'\(([0-9a-fA-F]{4}),"?(.*?)"?,([0-9a-fA-F]{2})\)$')
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
            match = _SIGNATURE.search(row["element_sig_pattern"].strip())
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


def write_allow_list(csv_path: Path, out_path: Path) -> int:
    """Build the list from ``csv_path`` and write it as JSON; returns the entry count."""
    entries = build_allow_list(csv_path)
    document = {
        "source": "TCIA Private Tag Knowledge Base TCIAPrivateTagKB-02-01-2024-formatted.csv",
        "source_sha256": "68e38b67778ddb8ffa60f46bef894f3931330781e375c52bc06fc86cad44d111",
        "match": "normalised private creator + odd group + element offset (low byte)",
        "dispositions": {"k": "keep", "h": "keep, replace UID", "o": "keep, shift date"},
        "entries": entries,
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


if __name__ == "__main__":  # python -m radcommons.deid.safe_private CSV OUT
    import sys

    count = write_allow_list(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{count} safe private elements")
