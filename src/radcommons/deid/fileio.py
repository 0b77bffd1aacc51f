"""Reading headers and writing de-identified DICOM Part 10 files with flat memory.

Only the header is parsed (pydicom ``stop_before_pixels``); the byte range of the
Pixel Data element (defined length, or encapsulated with undefined length: its items
are walked by their headers, never decoded) is remembered and copied to the output in
chunks after the new header. A 1 GB multi-frame file therefore costs a few MB of
memory, and compressed transfer syntaxes pass through byte for byte. Elements after
Pixel Data (trailing padding, private groups above 7FE0) are parsed and de-identified
like the rest of the header.

Outputs are written to a temporary name in the destination folder and moved into place
atomically (a hard link, or :func:`os.replace`) only once their bytes are on disk
(``fsync``), so a run killed half-way, or a power cut, leaves no half-written ``.dcm``,
and an existing output is never overwritten. A caller writing many files passes a
:class:`PendingWrites`: the files of a batch are then written first, synced together and
published together, which saves one disk flush per file without weakening that rule.
The File Meta Information and the preamble are rebuilt (PS3.15 E.1.1: 128 zero bytes,
new Media Storage SOP Instance UID, RadCommons' Implementation Class UID and Version).
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO, DicomFileLike
from pydicom.filereader import read_dataset
from pydicom.charset import default_encoding, python_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue
from pydicom.filewriter import dcmwrite, write_data_element, write_dataset, write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from radcommons.deid.codestream import blank_in_memory, pixel_element_ranges
from radcommons.dicom.deflated import DEFLATED_CUT_SHORT, DeflatedFile
from radcommons.dicom.elements import (
    LONG_VRS,
    PIXEL_TAGS,
    TRAILING_MAX,
    PixelDataError,
    cut_short_element,
    pixel_span,
)
from radcommons.durable import remove_if_present, sync_paths
from radcommons.errors import UserError
from radcommons.inputs import unreadable
from radcommons.deid.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, clean_uid

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
CHUNK = 1 << 20


class BadInput(Exception):
    """The file is not usable DICOM; the message is the reason given in the report."""


def _unusable(error: Exception) -> BadInput:
    """The reason for a source whose reading raised ``error``: an error of the operating system (it
    has an errno) makes it :func:`unreadable`; anything else (pydicom raises many kinds on bad bytes)
    corrupt."""
    if isinstance(error, OSError) and error.errno is not None:
        return BadInput(unreadable(error))
    return BadInput(f"corrupt: {type(error).__name__}: {error}")


def _trailing_problem(length: int) -> str | None:
    """Why ``length`` bytes of elements after the Pixel Data cannot be sent (``None``: they can):
    the commons' verification gate refuses more than ``TRAILING_MAX``."""
    if length <= TRAILING_MAX:
        return None
    return (f"{length} bytes of elements after the Pixel Data (more than {TRAILING_MAX}, which the commons' "
            "verification gate refuses): remove them (digital signatures, private groups, padding) and run again")


#: what to do about a destination that refused an output, by the operating system's reason
_RESUMES = "then run the same command again: finished files are kept and the run resumes"
_DESTINATION_HINTS = {
    errno.ENOSPC: "free space on the disk of {destination}, " + _RESUMES,
    errno.EDQUOT: "free space in your disk quota for {destination}, " + _RESUMES,
    errno.EROFS: "{destination} is on a read-only file system: make it writable or give another destination, "
                 + _RESUMES,
    errno.EACCES: "make {destination} writable by this user (or give another destination), " + _RESUMES,
    errno.EPERM: "make {destination} writable by this user (or give another destination), " + _RESUMES,
}


class OutputWriteError(UserError):
    """Writing a de-identified output failed: a full disk, a read-only or unwritable destination,
    an I/O error. The destination's failure, not the input's, so it is no outcome of the file being
    de-identified (it was reported as ``rejected: corrupt: OSError: [Errno 28] ...``, and so was every
    file after it): it stops the work. Outputs appear under their final names only complete and
    synced, so once the destination is fixed a rerun resumes where this one stopped.

    ``path``: the output that could not be written; ``error``: the operating system's error;
    ``destination``: the folder the outputs go to (by default the output's own folder), named in
    the message and the hint."""

    def __init__(self, path: str | os.PathLike[str], error: OSError,
                 destination: str | os.PathLike[str] | None = None) -> None:
        self.path = os.fspath(path)
        self.error = error
        self.destination = os.fspath(destination) if destination is not None else os.path.dirname(self.path)
        self.reason = error.strerror or str(error) or type(error).__name__
        hint = _DESTINATION_HINTS.get(error.errno or 0, "check the disk of {destination} (the system log says more "
                                      "about an I/O error), " + _RESUMES)
        super().__init__(f"cannot write the de-identified output to {self.destination}: {self.reason} "
                         f"(writing {self.path})", hint.format(destination=self.destination))

    def within(self, destination: str | os.PathLike[str]) -> "OutputWriteError":
        """The same failure, said of the run's destination folder ``destination``."""
        return OutputWriteError(self.path, self.error, destination)

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker process, re-raised in the caller
        return (OutputWriteError, (self.path, self.error, self.destination))


@contextmanager
def _destination(target: str) -> Iterator[None]:
    """An OSError of the block (a folder made, a temporary opened, synced, closed, moved into
    place) is the destination's: raised as :class:`OutputWriteError` for ``target``."""
    try:
        yield
    except OSError as error:
        raise OutputWriteError(target, error) from error


@dataclass
class Header:
    """A parsed header and where the raw pixel bytes are in the source file."""

    dataset: Dataset
    transfer_syntax: str
    implicit_vr: bool
    little_endian: bool
    pixel_span: tuple[int, int] | None  #: [start, end) byte range of the pixel element(s)
    streamable: bool  #: False for deflated files: ``dataset`` is then the whole data set, inflated once


def _transfer_syntax(ds: Dataset, implicit: bool, little: bool) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = clean_uid(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if ts:
        return ts
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def read_header(path: Path) -> Header:
    """Parse the header of ``path`` (of a deflated file, the whole data set, inflated once:
    not :attr:`Header.streamable`, for :func:`read_full`); raise :class:`BadInput` with a reason if unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise BadInput(unreadable(error)) from error
    if size == 0:
        raise BadInput("zero bytes")
    try:
        with open(path, "rb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preamble = fp.read(132)
            has_magic = len(preamble) == 132 and preamble[128:132] == b"DICM"
            if not has_magic and not preamble.strip(b"\0"):
                # pydicom would read the zeros as empty (0000,0000) elements, 8 bytes at a time:
                # minutes for a large zero-filled file (a disk image, a file never written)
                raise BadInput("not DICOM (it starts with zero bytes and has no DICM prefix)")
            deflated = DeflatedFile.open(fp, size, prefixed=False)
            if deflated is not None and not has_magic:
                raise BadInput(_NO_PREFIX_DEFLATED)
            if deflated is not None:  # pydicom's reader would inflate it whole; read whole, inflated once
                ds = _read_deflated(deflated)
            else:
                fp.seek(0)
                try:
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=not has_magic)
                except Exception as error:
                    if not has_magic:
                        raise BadInput("not DICOM (no DICM prefix and not a readable dataset)") from error
                    raise BadInput(f"corrupt or truncated header: {type(error).__name__}: {error}") from error
            pixel_start = fp.tell()
            if not has_magic and ("SOPClassUID" not in ds or len(ds) < 3):
                raise BadInput("not DICOM (no DICM prefix and no SOP Class UID)")
            cut = cut_short_element(ds)
            if cut is not None:
                raise BadInput(f"truncated: the file ends inside element {cut} of its header (a copy or "
                               "transfer cut short); send the whole file again")
            meta = getattr(ds, "file_meta", None)
            media_class = clean_uid(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
            if media_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
                raise BadInput("DICOMDIR (a media directory, not an image): nothing to contribute")
            implicit, little = ds.original_encoding
            if implicit is None:
                raise BadInput("not DICOM (encoding could not be determined)")
            ts = _transfer_syntax(ds, bool(implicit), bool(little))
            if ts == DeflatedExplicitVRLittleEndian:
                if deflated is None:  # pydicom read it (whole, unbounded): its File Meta is not ours to trust
                    raise BadInput("a deflated data set whose File Meta does not say so where PS3.10 puts it: "
                                   + _DEFLATED_HINT)
                return Header(ds, ts, False, True, None, streamable=False)
            try:
                span, position = pixel_span(fp, pixel_start, size, bool(implicit), bool(little))
            except PixelDataError as error:
                raise BadInput(str(error)) from None
            if position < size:
                trailing = _trailing_problem(size - position)
                if trailing:
                    raise BadInput(trailing)
                fp.seek(position)
                tail = read_dataset(fp, bool(implicit), bool(little), bytelength=size - position)
                for element in tail:
                    ds.add(element)
    except BadInput:
        raise
    except Exception as error:  # the source unreadable, or bad bytes
        raise _unusable(error) from error
    if span is None and "Rows" in ds and "PixelData" not in ds:
        raise BadInput("truncated: image attributes present but no Pixel Data")
    return Header(ds, ts, bool(implicit), bool(little), span, streamable=True)


#: What a site does with a deflated file that inflates beyond its bound (:mod:`radcommons.dicom.deflated`).
_DEFLATED_HINT = ("if it is a genuine image, convert it to Explicit VR Little Endian (dcmconv +te) and run "
                  "again; otherwise leave it out")
#: Why a file that starts with a File Meta naming Deflated Explicit VR Little Endian is refused: PS3.10
#: 7.1 puts the 128-byte preamble and "DICM" before it, the commons' gate refuses a file without them,
#: and pydicom's reader (``force``) would inflate its data set whole, without the bound of a deflated file.
_NO_PREFIX_DEFLATED = ("a deflated data set without the DICM prefix (a Part 10 file starts with a 128-byte "
                       "preamble and 'DICM', PS3.10 7.1; the commons refuses it): " + _DEFLATED_HINT)


def _read_deflated(deflated: DeflatedFile) -> Dataset:
    """The whole data set of a Deflated Explicit VR Little Endian file (PS3.5 A.5), inflated once, a
    chunk at a time, within the bound of :class:`~radcommons.dicom.deflated.DeflatedFile` for a data
    set held whole (``TRAILING_MAX`` bytes after the pixels); pydicom's reader would inflate it whole
    first, GBs for a few MB of deflated zeros. Raises :class:`BadInput`."""
    stream = deflated.stream
    try:
        ds = deflated.read_header(TRAILING_MAX, whole=True)
        pixels = read_dataset(stream, False, True,  # type: ignore[arg-type]
                              stop_when=lambda tag, vr, length: int(tag) not in PIXEL_TAGS)
        after = stream.tell()
        trailing = read_dataset(stream, False, True)  # type: ignore[arg-type]
    except Exception as error:  # InflatesBeyond, zlib.error, pydicom's reader errors on damaged bytes
        problem = deflated.problem(_DEFLATED_HINT)
        raise (BadInput(problem) if problem else _unusable(error)) from error
    if not stream.complete:
        raise BadInput(DEFLATED_CUT_SHORT)
    problem = _trailing_problem(stream.tell() - after)
    if problem:
        raise BadInput(problem)
    for part in (pixels, trailing):
        for element in part.elements():
            ds[element.tag] = element
    return ds


def read_full(path: Path, header: Header | None = None) -> Dataset:
    """The whole data set of ``path`` (for pixel cleaning, or a deflated file). ``header``, what
    :func:`read_header` read of it (read here when not given, by the same rules), saves reading twice:
    a deflated file's data set is in it already (inflated once), and any other file goes to pydicom
    without its File Meta read first."""
    if header is None:
        header = read_header(path)
    if not header.streamable:
        return header.dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, force=True)
        except BadInput:
            raise
        except Exception as error:  # the source unreadable, or bad bytes
            raise _unusable(error) from error


def new_file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    """File Meta Information for a de-identified dataset (PS3.10 7.1, PS3.15 E.1.1)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = clean_uid(ds.SOPClassUID)
    meta.MediaStorageSOPInstanceUID = clean_uid(ds.SOPInstanceUID)
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _meta_element(element: int, vr: bytes, value: bytes, padding: bytes) -> bytes:
    if len(value) % 2:
        value += padding
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def file_meta_bytes(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """The encoded File Meta Information of :func:`new_file_meta` (PS3.10 7.1: explicit VR
    little endian, group length first), as ``pydicom.filewriter.write_file_meta_info``
    writes it."""
    body = b"".join((
        struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
        _meta_element(0x0002, b"UI", sop_class.encode("ascii"), b"\0"),
        _meta_element(0x0003, b"UI", sop_instance.encode("ascii"), b"\0"),
        _meta_element(0x0010, b"UI", transfer_syntax.encode("ascii"), b"\0"),
        _meta_element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\0"),
        _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" "),
    ))
    return struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body)) + body


def _publish(temp: str, target: str) -> None:
    """Move a finished temp file into place without ever replacing an existing output
    (two inputs with the same SOP Instance UID: the first one written wins)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        pass
    except OSError:  # no hard links on this file system
        os.replace(temp, target)


_TEMP_COUNTER = itertools.count()


def _temp_name(target: str) -> str:
    # unique per process and write: two inputs of one batch may share a target
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}.{os.getpid()}.{next(_TEMP_COUNTER)}.partial")


class PendingWrites:
    """Finished temporary files of one batch, waiting to be synced and published.

    :meth:`commit` makes every temporary file durable (:func:`radcommons.durable.sync_paths`),
    then moves each into place (a target
    that already exists is kept: the first write wins), then removes the temporaries.
    Until then no output of the batch exists under its final name; a run killed before
    the commit leaves only ``*.partial`` files, which the next run deletes and redoes.
    """

    def __init__(self) -> None:
        self._files: list[tuple[str, str]] = []

    def add(self, temp: str, target: str) -> None:
        self._files.append((temp, target))

    def paths(self) -> list[tuple[str, str]]:
        """The ``(temporary, final)`` paths waiting (to hand them over)."""
        return list(self._files)

    @classmethod
    def from_paths(cls, paths: list[tuple[str, str]]) -> "PendingWrites":
        """The pending writes :meth:`paths` handed over (another process or thread commits)."""
        pending = cls()
        pending._files = [(str(temp), str(target)) for temp, target in paths]
        return pending

    def __len__(self) -> int:
        return len(self._files)

    def commit(self) -> None:
        """Sync and publish every pending file; the temporaries are removed in any case.

        A file the destination refuses (a full disk, an I/O error while syncing) raises
        :class:`OutputWriteError` naming its output; the files after it are not published
        (a rerun writes them again)."""
        try:
            for temp, target in self._files:
                with _destination(target):
                    # fsync each: the caller commits on a thread while the next batch is written
                    # (radcommons.deid.tree._Publisher), and a syncfs would wait for that too; one
                    # at a time, to know which output failed (a second fsync may hide the error)
                    sync_paths([temp], [], each=True)
            for temp, target in self._files:
                with _destination(target):
                    _publish(temp, target)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the temporary files (after :meth:`commit`, or instead of it)."""
        for temp, _ in self._files:
            remove_if_present(temp)
        self._files.clear()


def _copy_range(src: BinaryIO, out: BinaryIO, start: int, length: int) -> None:
    """Copy ``length`` bytes of ``src`` from ``start`` to the end of ``out``, in the kernel.

    Pixel data is copied as it is (never decoded); ``copy_file_range`` keeps the bytes out
    of Python (and lets a copy-on-write file system share them). Falls back to a chunked
    copy where the kernel call is not available.
    """
    offset, remaining = start, length
    copy_file_range = getattr(os, "copy_file_range", None)
    while remaining and copy_file_range is not None:
        try:
            copied = copy_file_range(src.fileno(), out.fileno(), remaining, offset)
        except OSError:
            break  # e.g. across file systems on an old kernel: do it in user space
        if copied == 0:
            raise BadInput("truncated: source shrank while being copied")
        offset += copied
        remaining -= copied
    if not remaining:
        out.seek(0, os.SEEK_END)
        return
    src.seek(offset)
    out.seek(0, os.SEEK_END)
    while remaining:
        try:
            chunk = src.read(min(CHUNK, remaining))
        except OSError as error:  # the source's disk, not the destination's (that one raises from out)
            raise BadInput(unreadable(error)) from error
        if not chunk:
            raise BadInput("truncated: source shrank while being copied")
        out.write(chunk)
        remaining -= len(chunk)


def copy_pixels(src: BinaryIO, out: BinaryIO, start: int, length: int) -> None:
    """:func:`_copy_range` for the pixel elements of ``src`` (``length`` bytes from ``start``),
    then the text that compressed frames carry outside the image blanked in the copy, in place
    (:mod:`radcommons.deid.codestream`); the image data stays byte for byte."""
    out_start = out.seek(0, os.SEEK_END)
    _copy_range(src, out, start, length)

    def read(position: int, count: int) -> bytes:
        src.seek(position)
        return src.read(count)

    for begin, end, fill in pixel_element_ranges(read, start, start + length):
        out.seek(out_start + begin - start)
        out.write(fill * (end - begin))
    out.seek(0, os.SEEK_END)


#: VRs whose value pydicom writes as the ``\\``-joined strings, padded to even length
#: (PS3.5 6.2: UI with a NUL byte, the others with a space); for plain ASCII values the
#: bytes do not depend on the character set (PS3.5 6.1.2.3: every character set the
#: engine encodes this way has ASCII as its G0 set).
_STRING_WRITE_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UR", "UI", "LO", "LT", "SH", "ST", "UC", "UT"})
#: Specific Character Set values whose encoding of ASCII text is ASCII itself
#: (PS3.3 C.12.1.1.2, single-byte without code extensions, and UTF-8).
ASCII_COMPATIBLE_CHARSETS = frozenset({
    "", "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 144",
    "ISO_IR 127", "ISO_IR 126", "ISO_IR 138", "ISO_IR 148", "ISO_IR 203", "ISO_IR 192",
})
#: the same, as pydicom's Python codec names (``Dataset._character_set``)
_ASCII_COMPATIBLE_CODECS = frozenset(
    {python_encoding[term] for term in ASCII_COMPATIBLE_CHARSETS if term in python_encoding} | {default_encoding}
)


def ascii_compatible(charset: object) -> bool:
    """Is ``charset`` (a Specific Character Set value, or pydicom's encodings) one whose
    ASCII text encodes and decodes as ASCII bytes? (Code extensions, ISO 2022, are not.)"""
    if charset is None:
        return True
    values = [charset] if isinstance(charset, str) else list(charset)  # type: ignore[call-overload]
    return all(
        isinstance(v, str) and (v.strip() in ASCII_COMPATIBLE_CHARSETS or v in _ASCII_COMPATIBLE_CODECS) for v in values
    )


def _string_value_bytes(value: object, vr: str) -> bytes | None:
    """pydicom's encoding of a string value (``write_string``/``write_text``), or ``None``
    when the value is not plain ASCII ``str`` (then pydicom's own writer is used)."""
    if value is None:
        return b""
    if isinstance(value, str):
        text = str(value)
    elif isinstance(value, (list, MultiValue)) and all(isinstance(v, str) for v in value):
        text = "\\".join(value)
    else:
        return None
    if not text.isascii():
        return None
    if len(text) % 2:
        text += "\0" if vr == "UI" else " "
    return text.encode("ascii")


class _Encoder:
    """Encodes a data set the way ``pydicom.filewriter.write_dataset`` does (PS3.5 7.1,
    7.5), with shortcuts that give the same bytes: raw elements are copied as read, and
    ASCII string values and sequences are packed with :mod:`struct`. Anything else goes
    through pydicom's element writer. ``fast=False`` uses pydicom for every decoded
    element: the reference the shortcuts are tested against."""

    def __init__(self, implicit_vr: bool, little_endian: bool, fast: bool = True) -> None:
        self.implicit_vr = implicit_vr
        self.little_endian = little_endian
        self.fast = fast
        endian = "<" if little_endian else ">"
        self.short_head, self.long_head, self.implicit_head = f"{endian}HH2sH", f"{endian}HH2sHL", f"{endian}HHL"
        self.tag_length = f"{endian}HHL"

    def _pydicom_element(self, item: DataElement | RawDataElement, encodings: object) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian = self.little_endian
        buffer.is_implicit_VR = self.implicit_vr
        write_data_element(buffer, item, encodings)  # type: ignore[arg-type]
        return buffer.getvalue()

    def _head(self, tag: int, vr: str, length: int) -> bytes | None:
        """Element header (PS3.5 7.1.2 explicit VR, 7.1.3 implicit), ``None`` when a short
        VR's value is too long for its 2-byte length (pydicom then rewrites it as UN)."""
        group, element = tag >> 16, tag & 0xFFFF
        if self.implicit_vr:
            return struct.pack(self.implicit_head, group, element, length)
        if vr in LONG_VRS:
            return struct.pack(self.long_head, group, element, vr.encode(), 0, length)
        if length <= 0xFFFF and len(vr) == 2:
            return struct.pack(self.short_head, group, element, vr.encode(), length)
        return None

    def dataset(self, ds: Dataset, parent_encoding: object = default_encoding) -> bytes:
        """The encoded elements of ``ds`` in tag order (retired group lengths left out, PS3.5 7.2)."""
        if ds.original_encoding != (self.implicit_vr, self.little_endian) or (
            ds.original_character_set != ds._character_set
        ):
            # pydicom re-encodes such a data set (VR correction, new character set):
            # an item built in memory (no raw elements) is safe to encode here
            if any(isinstance(ds.get_item(t), RawDataElement) for t in ds.keys()) or any(
                len(str(ds[t].VR)) != 2 for t in ds.keys()
            ):
                buffer = DicomBytesIO()
                buffer.is_little_endian = self.little_endian
                buffer.is_implicit_VR = self.implicit_vr
                write_dataset(buffer, ds, parent_encoding)  # type: ignore[arg-type]
                return buffer.getvalue()
        encodings = ds.get("SpecificCharacterSet", parent_encoding)
        ascii_ok = ascii_compatible(encodings)
        return b"".join(
            self.element(ds, tag, encodings, ascii_ok)
            for tag in sorted(ds.keys())
            if not (tag.element == 0 and tag.group > 6)
        )

    def element(self, ds: Dataset, tag: BaseTag, encodings: object, ascii_ok: bool) -> bytes:
        """The element ``tag`` of ``ds`` encoded (``encodings``: the data set's character
        sets, ``ascii_ok``: whether they encode ASCII as ASCII)."""
        item = ds.get_item(tag)
        if isinstance(item, RawDataElement):
            encoded = self._raw(int(tag), item)
        elif self.fast:
            encoded = self._decoded(int(tag), item, encodings, ascii_ok)
        else:
            encoded = None
        return encoded if encoded is not None else self._pydicom_element(item, encodings)

    def _raw(self, tag: int, item: RawDataElement) -> bytes | None:
        """A raw element as read: header rebuilt, value copied (defined length only)."""
        if item.length == 0xFFFFFFFF:
            return None
        value = item.value or b""
        if not self.implicit_vr and (item.VR is None or (item.VR not in LONG_VRS and len(value) > 0xFFFF)):
            return None  # pragma: no cover - not produced by reading an explicit VR file
        head = self._head(tag, item.VR or "", len(value))
        return None if head is None else head + value

    def _decoded(self, tag: int, item: DataElement, encodings: object, ascii_ok: bool) -> bytes | None:
        vr = str(item.VR)
        if vr == "SQ":
            return self._sequence(tag, item, encodings)
        if vr not in _STRING_WRITE_VRS or not ascii_ok:
            return None
        value = _string_value_bytes(item.value, vr)
        if value is None:
            return None
        head = self._head(tag, vr, len(value))
        return None if head is None else head + value

    def _sequence(self, tag: int, item: DataElement, encodings: object) -> bytes:
        """An SQ element (PS3.5 7.5.1, 7.5.2): items of defined length unless read with
        undefined length, the sequence itself as it was read (undefined: delimited)."""
        items: list[bytes] = []
        for child in item.value or []:
            body = self.dataset(child, encodings)
            if getattr(child, "is_undefined_length_sequence_item", False):
                items.append(struct.pack(self.tag_length, 0xFFFE, 0xE000, 0xFFFFFFFF) + body)
                items.append(struct.pack(self.tag_length, 0xFFFE, 0xE00D, 0))
            else:
                items.append(struct.pack(self.tag_length, 0xFFFE, 0xE000, len(body)) + body)
        value = b"".join(items)
        if item.is_undefined_length:
            head = self._head(tag, "SQ", 0xFFFFFFFF)
            return b"".join((head or b"", value, struct.pack(self.tag_length, 0xFFFE, 0xE0DD, 0)))
        return (self._head(tag, "SQ", len(value)) or b"") + value


def write_header(out: BinaryIO, ds: Dataset, implicit_vr: bool, little_endian: bool, *, fast: bool = True) -> None:
    """Write ``ds`` as a DICOM Part 10 file header: preamble, File Meta, data set.

    The same bytes as ``pydicom.dcmwrite(out, ds, enforce_file_format=True)``, faster
    (:class:`_Encoder`): an element still raw (read and never decoded: the engine decided
    to keep it as it is) is copied as read, its header rebuilt with :mod:`struct`
    (PS3.5 7.1.2: explicit VR, tag + VR + 2-byte length, or tag + VR + 2 reserved bytes +
    4-byte length for OB, OD, OF, OL, OV, OW, SQ, SV, UC, UN, UR, UT, UV; PS3.5 7.1.3:
    implicit VR, tag + 4-byte length); ASCII strings and sequences are packed the way
    pydicom packs them. When the output encoding or the character set differs from the
    source's, pydicom re-encodes everything: this function then simply calls ``dcmwrite``.
    """
    if ds.original_encoding != (implicit_vr, little_endian) or ds.original_character_set != ds._character_set:
        dcmwrite(out, ds, enforce_file_format=True)
        return
    fp = DicomFileLike(out)
    fp.is_implicit_VR = implicit_vr
    fp.is_little_endian = little_endian
    out.write(ds.preamble or b"\x00" * 128)
    out.write(b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    out.write(_Encoder(implicit_vr, little_endian, fast).dataset(ds))


#: folders this process made or found (a mkdir per output file costs more than the write)
_FOLDERS: set[str] = set()


class _Output:
    """The temporary output file as a writer sees it (``write``, ``seek``, ``tell``, ``flush``,
    ``fileno``, ``name``).

    Its OSError is remembered in :attr:`failure`, whatever the writer makes of it (pydicom's
    writer raises an element's error again as a new one holding a traceback), so that
    :func:`_write_atomic` can tell the destination's failure from the input's (the same writer
    reads the source's pixel bytes). A short write of an unbuffered file (the disk filling up)
    is completed, or fails: never a silently cut output."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.name = handle.name
        self.failure: OSError | None = None

    def _guarded(self, action: Callable[..., Any], *args: Any) -> Any:
        try:
            return action(*args)
        except OSError as error:
            self.failure = self.failure or error
            raise

    def write(self, data: bytes) -> int:
        return self._guarded(self._write_all, data)

    def _write_all(self, data: bytes) -> int:
        written = self._handle.write(data)
        if written is not None and written == len(data):
            return written
        view = memoryview(data).cast("B")
        view = view[written or 0:]
        while view:
            written = self._handle.write(view)
            if not written:
                raise OSError(errno.EIO, "the file system took none of the bytes written")
            view = view[written:]
        return len(memoryview(data).cast("B"))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._guarded(self._handle.seek, offset, whence)  # a buffered file writes its buffer

    def tell(self) -> int:
        return self._guarded(self._handle.tell)

    def flush(self) -> None:
        self._guarded(self._handle.flush)

    def fileno(self) -> int:
        return self._handle.fileno()

    def finish(self, sync: bool) -> None:
        """Flush, sync (``sync``) and close: the file's bytes are written (raises OSError)."""
        try:
            self._handle.flush()
            if sync:
                os.fsync(self._handle.fileno())
        finally:
            self._handle.close()

    def abandon(self) -> None:
        """Close, whatever is left unwritten (the file is removed)."""
        try:
            self._handle.close()
        except OSError:
            pass


def _open_temp(temp: str, buffered: bool) -> _Output:
    """The temporary file ``temp``, its folder made if need be."""
    folder = os.path.dirname(temp)
    if folder not in _FOLDERS:
        os.makedirs(folder, exist_ok=True)
        if len(_FOLDERS) > 10_000:
            _FOLDERS.clear()
        _FOLDERS.add(folder)
    try:
        handle = open(temp, "wb", buffering=-1 if buffered else 0)
    except FileNotFoundError:  # the folder went away since (another run cleaned up)
        os.makedirs(folder, exist_ok=True)
        handle = open(temp, "wb", buffering=-1 if buffered else 0)
    return _Output(handle)  # type: ignore[arg-type]


def _write_atomic(
    target: Path | str, pending: PendingWrites | None, write: Callable[[BinaryIO], None], *, buffered: bool = True
) -> None:
    """Run ``write`` on a temporary file next to ``target``; publish it now or via ``pending``.
    ``buffered=False`` for a ``write`` that writes a few large pieces (fewer system calls).

    A failure of the destination (the folder, the temporary file, its writes, sync or move into
    place) raises :class:`OutputWriteError`; any other error of ``write`` (the source cannot be
    read) is raised as it is. Either way no temporary file is left."""
    target = os.fspath(target)
    temp = _temp_name(target)
    try:
        with _destination(target):
            out = _open_temp(temp, buffered)
        try:
            write(out)  # type: ignore[arg-type]
        except BaseException as error:
            out.abandon()
            if out.failure is not None and isinstance(error, Exception):
                raise OutputWriteError(target, out.failure) from out.failure
            raise
        with _destination(target):
            out.finish(sync=pending is None)
            if pending is None:
                _publish(temp, target)
        if pending is not None:
            pending.add(temp, target)
            return
    except BaseException:
        remove_if_present(temp)
        raise
    remove_if_present(temp)


def write_streamed(
    target: Path,
    ds: Dataset,
    header: Header,
    source: Path,
    pending: PendingWrites | None = None,
    *,
    fast: bool = True,
) -> None:
    """Write the new header, then copy the source's raw pixel bytes, atomically
    (``fast``: see :func:`write_header`)."""
    tail = Dataset()
    for tag in [t for t in ds.keys() if int(t) > 0x7FE00010]:
        tail.add(ds[tag])
        del ds[tag]
    ds.file_meta = new_file_meta(ds, header.transfer_syntax)
    ds.preamble = b"\x00" * 128

    def write(out: BinaryIO) -> None:
        write_header(out, ds, header.implicit_vr, header.little_endian, fast=fast)
        if header.pixel_span is not None:
            start, end = header.pixel_span
            out.flush()
            with open(source, "rb") as src:
                copy_pixels(src, out, start, end - start)
        if len(tail):
            writer = DicomFileLike(out)
            writer.is_little_endian = header.little_endian
            writer.is_implicit_VR = header.implicit_vr
            write_dataset(writer, tail)

    _write_atomic(target, pending, write)


def write_whole(target: Path, ds: Dataset, transfer_syntax: str, pending: PendingWrites | None = None) -> None:
    """Write a fully in-memory dataset (pixels cleaned, or deflated input), atomically."""
    pixels = ds.get("PixelData")
    if isinstance(pixels, bytes) and UID(transfer_syntax).is_encapsulated:
        ds.PixelData = blank_in_memory(pixels)  # what compressed frames carry outside the image
    ds.file_meta = new_file_meta(ds, transfer_syntax)
    ds.preamble = b"\x00" * 128
    _write_atomic(target, pending, lambda out: dcmwrite(out, ds, enforce_file_format=True))


__all__ = [
    "BadInput",
    "Header",
    "OutputWriteError",
    "PendingWrites",
    "read_header",
    "read_full",
    "write_streamed",
    "write_whole",
    "new_file_meta",
]
