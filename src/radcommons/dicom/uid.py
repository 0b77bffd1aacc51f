"""DICOM unique identifiers (PS3.5 §9, "Unique Identifiers (UIDs)").

UIDs made here use the ``2.25`` root of ISO/IEC 9834-8 / ITU-T X.667 (PS3.5
Annex B.2): ``2.25.`` followed by the decimal form of a 128-bit integer. That
needs no registered organisation root, and a 128-bit random or keyed-hash value
makes collisions negligible. Decimal components have no leading zeros and the
whole UID is at most 64 characters (``2.25.`` + at most 39 digits = 44).
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

#: Implementation Class UID written into File Meta Information (PS3.10 §7.1) by
#: RadCommons. Fixed, so that files are byte-identical across runs; derived once
#: as ``2.25.`` + int(sha256(b"radcommons implementation class")[:16]).
IMPLEMENTATION_CLASS_UID = "2.25." + str(
    int.from_bytes(hashlib.sha256(b"radcommons implementation class").digest()[:16], "big")
)
#: Implementation Version Name (0002,0013), SH, at most 16 characters.
IMPLEMENTATION_VERSION_NAME = "RADCOMMONS_1"

#: UIDs defined by the standard itself start with this root (PS3.6 Annex A).
DICOM_ROOT = "1.2.840.10008."

#: At most 64 characters (PS3.5 9.1).
UID_MAX_LENGTH = 64
#: The form of a UID that a client names (PS3.5 9.1: components of digits, dots between);
#: leading zeros are tolerated, since other systems' UIDs have them.
UID_SYNTAX = r"[0-9]+(\.[0-9]+)*"
#: :data:`UID_SYNTAX` anchored, as a path or query parameter's pattern.
UID_PATTERN = f"^{UID_SYNTAX}$"


def uid_from_int(value: int) -> str:
    """Return the ``2.25`` UID for a non-negative integer below 2**128."""
    if not 0 <= value < 2**128:
        raise ValueError("a 2.25 UID component must be a 128-bit unsigned integer")
    return f"2.25.{value}"


def random_uid(rng: np.random.Generator) -> str:
    """A ``2.25`` UID from 128 random bits of ``rng`` (deterministic for a seeded generator)."""
    high, low = (int(x) for x in rng.integers(0, 2**64, size=2, dtype=np.uint64))
    return uid_from_int((high << 64) | low)


def keyed_uid(key: bytes, *parts: str) -> str:
    """A ``2.25`` UID from an HMAC-SHA-256 of ``parts`` under ``key``.

    The same key and parts always give the same UID (so a resent study keeps its
    UIDs), yet nobody without the key can recompute the mapping from the inputs,
    unlike the unkeyed hashes of common de-identifiers.
    """
    message = "\x1f".join(parts).encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return uid_from_int(int.from_bytes(digest[:16], "big"))


def is_valid_uid(uid: str) -> bool:
    """True where ``uid`` obeys PS3.5 §9.1: digits and dots, no empty or zero-led component, <= 64 chars."""
    if not uid or len(uid) > UID_MAX_LENGTH:
        return False
    for component in uid.split("."):
        if not component.isdigit() or not component.isascii():
            return False
        if len(component) > 1 and component[0] == "0":
            return False
    return True
