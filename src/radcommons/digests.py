"""The SHA-256 of a file: the content address that the object store, the uploader, the
downloader and the server's upload spools share (lowercase hex)."""

from __future__ import annotations

import hashlib
import os

#: Bytes read at a time: a file is never held whole in memory.
READ_SIZE = 1024 * 1024


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Lowercase hex SHA-256 of the file at ``path``, read in pieces of :data:`READ_SIZE`."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(READ_SIZE):
            hasher.update(piece)
    return hasher.hexdigest()
