"""HTTP clients of the commons: the uploader used by contribute and the gateway, later the researcher client.

See :class:`CommonsClient` and docs/API.md.
"""

from __future__ import annotations

from radcommons.client.commons import (
    BATCH_FILES,
    CHANGED_SINCE_READ,
    DEFAULT_CHUNK_SIZE,
    ClinicalResult,
    CommonsClient,
    ManifestEntry,
    Receipt,
    Submission,
    UploadResult,
    file_sha256,
    read_token_file,
)
from radcommons.client.errors import (
    AuthenticationError,
    CommonsError,
    ConflictError,
    ConnectionFailedError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    TokenFileError,
)

__all__ = [
    "BATCH_FILES",
    "CHANGED_SINCE_READ",
    "DEFAULT_CHUNK_SIZE",
    "AuthenticationError",
    "ClinicalResult",
    "CommonsClient",
    "CommonsError",
    "ConflictError",
    "ConnectionFailedError",
    "InvalidRequestError",
    "ManifestEntry",
    "NotFoundError",
    "PermissionDeniedError",
    "Receipt",
    "ServerError",
    "Submission",
    "TokenFileError",
    "UploadResult",
    "file_sha256",
    "read_token_file",
]
