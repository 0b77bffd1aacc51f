"""UID replacement (PS3.15 E.1.1 action U) with keyed, consistent ``2.25`` UIDs.

Each original UID maps to ``2.25.<integer>`` where the integer is a 128-bit UUID
(version 8, RFC 9562 "custom") built from HMAC-SHA-256(key, UID): the same UID under
the same key always gets the same replacement, so a study resent later, or from
another machine with the same key, gets the same new UIDs and references between
objects stay intact; without the key nobody can link the two. UIDs are not namespaced
by site: sites have their own keys anyway.

Registry UIDs (SOP classes, transfer syntaxes, coding schemes, anything under the DICOM
root ``1.2.840.10008``) name kinds of things, not people or instances: they are kept.
"""

from __future__ import annotations

import hashlib
import hmac

from pydicom.uid import UID_dictionary

#: RadCommons' Implementation Class UID (PS3.7 D.3.3.2), a fixed 2.25 UID.
IMPLEMENTATION_CLASS_UID = "2.25.250277635561533273184557650707828414120"
IMPLEMENTATION_VERSION_NAME = "RADCOMMONS_0_1"

_DICOM_ROOT = "1.2.840.10008."
_UID_LABEL = b"radcommons/uid\x00"

#: UI elements whose value names a class or definition, not an instance: kept even when
#: the UID is private (a vendor's private SOP class UID identifies nobody).
CLASS_UID_KEYWORDS = frozenset(
    {
        "SOPClassUID",
        "MediaStorageSOPClassUID",
        "ReferencedSOPClassUID",
        "ReferencedSOPClassUIDInFile",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "SOPClassesInStudy",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResourceUID",
        "PrivateInformationCreatorUID",
        "ContextUID",
        "TemplateExtensionCreatorUID",
        "TemplateExtensionOrganizationUID",
        "ApplicationSetupCheck",
    }
)


def clean_uid(value: str) -> str:
    """Strip the padding and stray blanks some writers leave around UIDs."""
    return str(value).strip().strip("\x00").strip()


def is_well_known(uid: str) -> bool:
    """A registry UID (kept as is), not an instance UID."""
    uid = clean_uid(uid)
    return uid.startswith(_DICOM_ROOT) or uid in UID_dictionary or uid == IMPLEMENTATION_CLASS_UID


def uuid_int(key: bytes, label: bytes, value: str) -> int:
    """A 128-bit UUIDv8 integer from HMAC-SHA-256(key, label || value)."""
    digest = bytearray(hmac.new(key, label + value.encode("utf-8"), hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 9562 variant
    return int.from_bytes(digest, "big")


def new_uid(key: bytes, uid: str) -> str:
    """The replacement for ``uid`` (registry UIDs come back unchanged)."""
    uid = clean_uid(uid)
    if not uid or is_well_known(uid):
        return uid
    return "2.25." + str(uuid_int(key, _UID_LABEL, uid))


class UIDMapper:
    """A per-key cache around :func:`new_uid` (one file references the same UIDs often)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cache: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        try:
            return self._cache[uid]
        except KeyError:
            result = self._cache[uid] = new_uid(self._key, uid)
            return result


def is_deidentified_uid(uid: str) -> bool:
    """``2.25.<decimal>`` form (what the checker expects for instance UIDs)."""
    uid = clean_uid(uid)
    return uid.startswith("2.25.") and uid[5:].isdigit() and not uid[5:].startswith("0")
