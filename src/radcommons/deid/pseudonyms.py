"""Patient pseudonyms: keyed HMAC-SHA-256 namespaced by site.

The pseudonym of a patient is HMAC-SHA-256(key, site, patient ID), written in base32.
Namespacing by site means the same MRN at two sites gives two different patients (MRNs
are only unique within their issuer), and the key means nobody can recompute the
pseudonym from an MRN. The site keeps the mapping in its registry
(:mod:`radcommons.deid.registry`) to answer "which of my patients is this".
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "RC"


def patient_pseudonym(key: bytes, site: str, patient_id: str) -> str:
    """The pseudonymous Patient ID (also used as Patient's Name): ``RC`` + 20 base32 chars."""
    message = b"radcommons/patient\x00" + site.encode("utf-8") + b"\x00" + patient_id.encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return PREFIX + base64.b32encode(digest).decode("ascii")[:20]


def patient_key(patient_id: str | None, study_uid: str | None) -> str:
    """The identity a pseudonym and date offset are derived from.

    A file without a Patient ID cannot be linked to its patient; it is treated as its
    own patient keyed by its Study Instance UID, so its study still holds together and
    its dates still move (never one shared pseudonym for every anonymous file).
    """
    pid = (patient_id or "").strip()
    if pid:
        return pid
    return "study:" + (study_uid or "").strip()
