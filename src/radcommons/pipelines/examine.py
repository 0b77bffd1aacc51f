"""Examine one instance (header, verification gate, index fields), and the ingest worker job.

Light on purpose: ``radcommons ingest --workers N`` spawns N processes and each one imports
this module to unpickle its job (:func:`read_and_stage`), so it imports only pydicom, the gate
(:mod:`radcommons.deid.check`), the index field mapping and the object store; not SQLAlchemy,
the data dictionary nor the harmonization matcher, which only the parent needs. That import
used to cost each worker about 0.8 s of CPU (2.6 s under load) before its first file.

One header parse per instance: :func:`examine` reads the header once (never the pixels) and
hands the same dataset to the gate and to :func:`~radcommons.dicom.index_fields.instance_fields`;
the harmonization lookup then works from those fields.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Iterable

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from radcommons.deid.archives import is_archive
from radcommons.deid.check import Finding, check_deidentified
from radcommons.dicom.deflated import DEFLATED_CUT_SHORT, DeflatedFile
from radcommons.dicom.elements import TRAILING_MAX, PixelDataError, cut_short_element, pixel_span, read_head
from radcommons.dicom.index_fields import InstanceFields, instance_fields
from radcommons.inputs import stat_input, unreadable
from radcommons.store.objects import ObjectStore, StagedObject

#: A gate takes a header and returns its findings (empty: it may be published).
Gate = Callable[[pydicom.Dataset], list[Finding]]


def deid_gate(ds: pydicom.Dataset) -> list[Finding]:
    """The verification gate of the commons: the de-identification checker, run on every instance.

    A header the checker cannot read through (a value pydicom refuses to decode) is quarantined,
    kept for a curator, rather than failing the whole run; the reason names the error's kind, not
    the value.
    """
    try:
        return check_deidentified(ds)
    except Exception as error:  # a defect of the checker or a header nobody foresaw: hold, never publish
        return [Finding("gate-error", "(dataset)", f"the verification gate could not read this header "
                        f"({type(error).__name__}); a curator must inspect it (report it to the RadCommons developers)")]


@dataclass(frozen=True)
class Examined:
    """A header read and gated: ``status`` is ``ok``, ``quarantine`` (gate findings) or ``rejected``."""

    status: str
    reason: str = ""
    fields: InstanceFields | None = None
    findings: tuple[Finding, ...] = ()

    @property
    def sop_instance_uid(self) -> str:
        return self.fields.instance["sop_instance_uid"] if self.fields else ""

    @property
    def study_uid(self) -> str:
        return self.fields.study["study_uid"] if self.fields else ""


def _pixels_problem(fp: IO[bytes], start: int | None, size: int, implicit: bool, little: bool, *, image: bool
                    ) -> tuple[str, int]:
    """Why the pixel data that starts at ``start`` is cut short or missing from an ``image``
    ("" when it is whole), and where the elements after it start (``size``: none): a header
    reads well from a file whose transfer was interrupted, so the pixel data's length is checked
    against the file's (only item headers are read; nothing is decoded)."""
    try:
        span, after = pixel_span(fp, start, size, implicit, little) if start is not None else (None, size)
    except PixelDataError as error:
        return f"{error}: the file was cut short (an interrupted copy or transfer); send it again whole", size
    if span is None and image:
        return "truncated: image attributes present but no Pixel Data; send the file again whole", size
    return "", after


def _add_trailing(ds: pydicom.Dataset, fp: IO[bytes], after: int, size: int, implicit: bool, little: bool) -> str:
    """Add the top-level elements that follow the pixel data (from ``after`` to the end of the
    file) to the header, so that the gate sees them too: a header read up to Pixel Data misses
    digital signatures and private groups above 7FE0. Returns why they cannot be read ("": read)."""
    if after >= size:
        return ""
    if size - after > TRAILING_MAX:
        return (f"{size - after} bytes of elements after the Pixel Data (more than {TRAILING_MAX}): the "
                "verification gate cannot check them; remove them and send the file again")
    fp.seek(after)
    try:
        trailing = read_dataset(DicomBytesIO(fp.read(size - after)), implicit, little)
    except Exception as error:  # pydicom's reader raises many kinds on damaged bytes
        return (f"unreadable elements after the Pixel Data ({type(error).__name__}: {error}); "
                "the verification gate cannot check them: send the file again whole")
    for element in trailing.elements():
        ds[element.tag] = element
    return ""


#: What a site does with a deflated file that inflates beyond its bound (:mod:`radcommons.dicom.deflated`).
_DEFLATED_HINT = "send it again uncompressed (Explicit VR Little Endian)"


def _read_deflated(fp: IO[bytes], size: int) -> tuple[pydicom.Dataset, str] | str | None:
    """The header of a Deflated Explicit VR Little Endian file with its elements after the pixel data
    (:func:`_add_trailing`) and why its pixel data is cut short, or why it cannot be used; ``None``:
    not deflated. It is read from :class:`~radcommons.dicom.deflated.DeflatedFile`, inflated a chunk
    at a time and within its bound, the pixel data passed over (``TRAILING_MAX`` bytes after it)."""
    deflated = DeflatedFile.open(fp, size)
    if deflated is None:
        return None
    inflated = deflated.stream
    try:
        ds = deflated.read_header(TRAILING_MAX)
        problem, after = _pixels_problem(inflated, inflated.tell(), sys.maxsize, False, True, image="Rows" in ds)
        inflated.seek(after)
        trailing = inflated.read(TRAILING_MAX + 1)
    except Exception as error:  # InflatesBeyond, zlib.error, pydicom's reader errors on damaged bytes
        return deflated.problem(_DEFLATED_HINT) or (
            f"unreadable deflated data set ({type(error).__name__}): the verification gate cannot check "
            "it; send the file again whole")
    if problem:
        return ds, problem
    if not inflated.complete and len(trailing) <= TRAILING_MAX:
        return DEFLATED_CUT_SHORT
    return ds, _add_trailing(ds, DicomBytesIO(trailing), 0, len(trailing), False, True)


def _read_plain(fp: IO[bytes], size: int) -> tuple[pydicom.Dataset, str] | None:
    """The header of a plain Part 10 file read in one pass (:func:`~radcommons.dicom.elements.read_head`:
    one read of its first bytes, then pydicom's reader on them) and why its pixel data is
    cut short, or ``None``: anything unusual goes to ``dcmread``, which says what is wrong."""
    try:
        head = read_head(fp, size)
        ds = head.header_dataset()
    except Exception:  # NotPlain, or bytes pydicom reads differently from a file: dcmread decides
        return None
    if head.native_pixels() is not None:  # the common case, known from the bytes already read
        return ds, ""
    problem, after = _pixels_problem(fp, head.pixel_start, size, head.implicit_vr, True, image="Rows" in ds)
    return ds, problem or _add_trailing(ds, fp, after, size, head.implicit_vr, True)


def _read_any(fp: IO[bytes], size: int) -> pydicom.Dataset | str:
    plain = _read_plain(fp, size)
    if plain is None:
        plain = _read_deflated(fp, size)
    if isinstance(plain, str):
        return plain
    if plain is not None:
        ds, problem = plain
    else:
        fp.seek(0)
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        except InvalidDicomError:
            return "not a DICOM Part 10 file (no DICM preamble)"
        except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError) as error:
            return f"unreadable or truncated DICOM: {error}"
        implicit, little = ds.original_encoding
        problem = ""
        if implicit is not None:
            problem, after = _pixels_problem(fp, fp.tell(), size, bool(implicit), bool(little), image="Rows" in ds)
            problem = problem or _add_trailing(ds, fp, after, size, bool(implicit), bool(little))
    if problem:
        return problem
    cut = cut_short_element(ds)
    if cut is not None:
        return f"truncated: the file ends inside element {cut} of its header (a copy or transfer cut short); send it again whole"
    if "DirectoryRecordSequence" in ds:
        return "a DICOMDIR index, not an image"
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
        if not str(ds.get(keyword, "")).strip():
            return f"{keyword} is missing or empty"
    return ds


def read_header(source: str | IO[bytes], size: int | None = None) -> pydicom.Dataset | str:
    """The header of a DICOM file (path, or seekable binary file of ``size`` bytes, left where
    it was), or why it cannot be used: not DICOM, a DICOMDIR, no identifying UIDs, or pixel
    data cut short."""
    if isinstance(source, str):
        with open(source, "rb", buffering=0) as fp:
            return _read_any(fp, os.fstat(fp.fileno()).st_size)
    position = source.tell()
    try:
        return _read_any(source, size if size is not None else source.seek(0, os.SEEK_END))
    finally:
        source.seek(position)


def findings_reason(findings: Iterable[Finding]) -> str:
    """One line for people: the distinct findings, in order."""
    return "; ".join(dict.fromkeys(str(f) for f in findings))


def examine(source: str | IO[bytes], *, object_id: str, size: int, gate: Gate = deid_gate) -> Examined:
    """Read and gate one instance whose content is stored under ``object_id``."""
    if size == 0:
        return Examined("rejected", "empty file (0 bytes)")
    header = read_header(source, size)
    if isinstance(header, str):
        return Examined("rejected", header)
    fields = instance_fields(header, object_id=object_id, size=size)
    findings = tuple(gate(header))
    if findings:
        return Examined("quarantine", findings_reason(findings), fields, findings)
    return Examined("ok", "", fields)


# ---------------------------------------------------------------------- the ingest worker job


@dataclass(frozen=True)
class ReadFile:
    """What a worker learnt of one input file: its examination, size and staged object."""

    path: str
    examined: Examined
    size: int = 0
    staged: StagedObject | None = None


class _InputUnreadable(Exception):
    """A read of the input failed part-way (a failing disk, a network file system gone)."""


class _GuardedInput:
    """An open input file as the object store reads it, with its read errors told apart from the
    store's write errors: a file that cannot be read is rejected, a store that cannot be written
    (a full disk) stops the run. Only what the store uses of a binary file is here."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read(size)
        except OSError as error:
            raise _InputUnreadable(error.strerror or str(error)) from error

    def readinto(self, buffer: Any) -> int:
        try:
            return self._raw.readinto(buffer)  # type: ignore[attr-defined]
        except OSError as error:
            raise _InputUnreadable(error.strerror or str(error)) from error

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def read_and_stage(path: Path, *, store_url: str, store_options: dict[str, Any], gate: Gate) -> ReadFile:
    """Worker job: header, gate, staged in the object store. Returns plain data; never raises for bad files.

    The file is opened once: its header and the staged bytes come from the same open file, so a
    file deleted meanwhile is still stored whole. One written to meanwhile (its size or
    modification time differ after the copy) is rejected, since its header and its stored bytes
    might not agree.
    """
    name = str(path)
    status = stat_input(path)
    if isinstance(status, str):
        return ReadFile(name, Examined("rejected", status))
    try:
        source = open(path, "rb")
    except OSError as error:
        return ReadFile(name, Examined("rejected", unreadable(error)))
    with source:
        before = os.fstat(source.fileno())
        examined = examine(source, object_id="", size=before.st_size, gate=gate)
        if examined.status == "rejected":
            if is_archive(path):
                examined = Examined("rejected", "a zip archive: ingest reads DICOM files, so unzip it first "
                                    "(radcommons deid and contribute read the members of zip archives)")
            return ReadFile(name, examined, before.st_size)
        # Quarantined files are kept too: a curator may release them.
        store = worker_store(store_url, store_options)
        source.seek(0)
        try:
            staged = store.stage_file(_GuardedInput(source))  # type: ignore[arg-type]
        except _InputUnreadable as error:
            return ReadFile(name, Examined("rejected", f"unreadable: {error} while its bytes were copied: nothing "
                                           "stored; check the disk or share it is on and ingest it again"),
                            before.st_size)
        after = os.fstat(source.fileno())
    if (staged.size, after.st_size, after.st_mtime_ns) != (before.st_size, before.st_size, before.st_mtime_ns):
        store.discard(staged)
        return ReadFile(name, Examined("rejected", "the file changed while it was read (its size or modification "
                                       "time differ): nothing stored; ingest it again once nothing writes to it"),
                        before.st_size)
    assert examined.fields is not None
    examined.fields.instance["object_id"] = staged.digest
    return ReadFile(name, examined, before.st_size, staged)


_STORES: dict[tuple[str, str], ObjectStore] = {}


def worker_store(url: str, options: dict[str, Any]) -> ObjectStore:
    """The object store of a worker, opened once per process."""
    key = (url, repr(sorted(options.items())))
    if key not in _STORES:
        _STORES[key] = ObjectStore(url, **options)
    return _STORES[key]
