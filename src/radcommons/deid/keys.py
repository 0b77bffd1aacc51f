"""The site's secret key: creating and reading the key file.

Every pseudonym, UID and date offset is a keyed HMAC-SHA-256 of the original value,
so nobody without the key can recompute the mapping from an MRN or a UID (the weakness
of unkeyed hashes in CTP, dicognito and pydicom/deid). The key file holds 32 random
bytes, hex encoded, readable by its owner only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from radcommons.errors import UserError
from radcommons.inputs import read_input_text, warn_if_others_can_read

KEY_BYTES = 32


def generate_key_file(path: Path) -> Path:
    """Create ``path`` with a fresh random key (mode 0600); never overwrites a file."""
    path = Path(path)
    if path.exists():
        raise UserError(
            f"the key file {path} already exists; refusing to overwrite it",
            "a new key would give every patient, study and UID new pseudonyms; "
            "choose another path or delete the old key deliberately",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise UserError(f"the key file {path} already exists; refusing to overwrite it") from error
    except OSError as error:
        raise UserError(f"cannot create the key file {path}: {error.strerror}") from error
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")
    os.chmod(path, 0o600)  # the umask may have narrowed it further; never wider
    return path


def parse_key(text: str) -> bytes:
    """Decode key file text (hex or base64) into at least 32 bytes."""
    value = text.strip()
    key: bytes | None = None
    try:
        key = bytes.fromhex(value)
    except ValueError:
        try:
            key = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) < KEY_BYTES:
        raise UserError(
            "the key file does not hold a key of 32 or more bytes (hex or base64)",
            "create one with: radcommons keygen KEYFILE",
        )
    return key


def read_key_file(path: Path) -> bytes:
    """Read and decode a key file, with a clear error when it is missing or unusable."""
    path = Path(path)
    try:
        text = read_input_text(path, "ascii")
    except FileNotFoundError as error:
        raise UserError(
            f"key file {path} not found", "create one with: radcommons keygen KEYFILE"
        ) from error
    except OSError as error:
        raise UserError(f"cannot read the key file {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise UserError(f"the key file {path} is not plain text: byte {error.start} is not ASCII (not UTF-8 text?)",
                        "a key file holds the 64 hex digits radcommons keygen wrote, as ASCII: an editor may have "
                        "saved it as UTF-16 or with a byte order mark; write it again as plain text") from error
    try:
        key = parse_key(text)
    except UserError as error:
        raise UserError(f"key file {path}: {error.message}", error.hint) from None
    warn_if_others_can_read(path, "key file")
    return key


def key_fingerprint(key: bytes) -> str:
    """A short public fingerprint of the key, to tell keys apart without revealing them."""
    return hmac.new(key, b"radcommons/key-fingerprint", hashlib.sha256).hexdigest()[:16]
