"""``multipart/related`` bodies (RFC 2387, PS3.18 8.6.1.2): streamed out and streamed in.

WADO-RS answers and STOW-RS requests carry one DICOM instance per part. Neither side ever
holds a whole body in memory: :func:`write_parts` yields the bytes of an answer part by part,
chunk by chunk; :class:`PartSpool` feeds a request body, as it arrives, to a streaming parser
that writes every part to its own temporary file and hashes it (SHA-256) on the way, so a part
can be moved into the content-addressed object store without being read again.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, MultipartState

from radcommons.store.objects import CHUNK_SIZE


def new_boundary() -> str:
    """A boundary that cannot occur in the content by chance (128 random bits)."""
    return f"radcommons-{secrets.token_hex(16)}"


def content_type(media_type: str, boundary: str) -> str:
    """The Content-Type of a multipart/related answer whose parts are ``media_type``."""
    return f'multipart/related; type="{media_type}"; boundary={boundary}'


@dataclass(frozen=True)
class OutPart:
    """One part of an answer: its headers and a function that yields its content in chunks."""

    headers: dict[str, str]
    chunks: Iterable[bytes]


def write_parts(parts: Iterable[OutPart], boundary: str) -> Iterator[bytes]:
    """The bytes of a multipart body, part after part; each part's content is streamed."""
    for part in parts:
        head = "".join(f"{name}: {value}\r\n" for name, value in part.headers.items())
        yield f"--{boundary}\r\n{head}\r\n".encode("latin-1")
        for chunk in part.chunks:
            if chunk:
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")


def file_chunks(handle: IO[bytes], chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The content of an open file in chunks; the file is closed at the end (or on an early stop)."""
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``multipart/related; type="application/dicom"; boundary=x`` -> (media type, parameters)."""
    message = Message()
    message["content-type"] = value
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


@dataclass
class SpooledPart:
    """A received part: its headers (lower-case names), the file holding its content, its size and
    SHA-256 (lowercase hex, set when the part is complete)."""

    headers: dict[str, str]
    path: Path
    size: int = 0
    sha256: str = ""

    @property
    def media_type(self) -> str:
        return parse_content_type(self.headers.get("content-type", "application/dicom"))[0]


@dataclass
class PartSpool:
    """Parses a multipart body fed in chunks (:meth:`feed`) into files under ``folder``.

    Use it as a context manager: the folder and every part file are removed on exit.
    """

    boundary: str
    folder: Path
    parts: list[SpooledPart] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="stow-", dir=self.folder))
        self._handle: IO[bytes] | None = None
        self._hasher = hashlib.sha256()
        self._field = b""
        self._value = b""
        self._headers: dict[str, str] = {}
        self._parser = MultipartParser(self.boundary, {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }, max_header_count=32, max_header_size=16384)

    # parser callbacks ------------------------------------------------------------------

    def _begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        path = self._dir / f"part-{len(self.parts):06d}"
        self.parts.append(SpooledPart(self._headers, path))
        self._handle = open(path, "wb")
        self._hasher = hashlib.sha256()

    def _data(self, data: bytes, start: int, end: int) -> None:
        assert self._handle is not None
        piece = memoryview(data)[start:end]
        self._handle.write(piece)
        self._hasher.update(piece)
        self.parts[-1].size += end - start

    def _end(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.parts[-1].sha256 = self._hasher.hexdigest()

    # use --------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Parse the next chunk of the body (raises ValueError on a malformed body)."""
        self._parser.write(chunk)

    def finish(self) -> list[SpooledPart]:
        """The parts received, once the whole body has been fed. A body that stops before its
        close delimiter (``--boundary--``, RFC 2046 5.1.1) was cut short, and its last part
        with it: ValueError, so nothing of it is taken for whole."""
        self._parser.finalize()
        self._end()
        if self.parts and self._parser.state != MultipartState.END:
            raise ValueError(f"the body ends before its closing boundary --{self.boundary}--: it was cut short")
        return self.parts

    def __enter__(self) -> PartSpool:
        return self

    def __exit__(self, *_: object) -> None:
        self._end()
        shutil.rmtree(self._dir, ignore_errors=True)
