"""De-identifying a file from its undecoded element stream: the engine's fast path.

:func:`deidentify_streamed` gives, byte for byte, the file that the pydicom path of
:mod:`radcommons.deid.files` writes (tests compare the two over PHI-laden corpora), with
a fraction of the work. It never builds a pydicom Dataset of the file:

* :func:`radcommons.dicom.elements.read_head` locates the top-level elements before Pixel
  Data without decoding them;
* the elements the rest depends on (identifiers, patient, SOP class, character set, the
  signals of burned-in text; :data:`CONTEXT_TAGS`) are decoded once per distinct set of
  their bytes, that is once per series, and the engine's :class:`_Transformer` is built
  from them as for a whole dataset;
* each element then gets the transformer's :meth:`~_Transformer.plan`: KEEP elements are
  copied as read (runs of them in one slice), DELETE ones left out, UID ones remapped
  here (PS3.5 9.1: the values, ``\\``-separated, NUL-padded), SCRUB and CLEAN text copied
  as read when the engine's cleaner leaves it as it is (:func:`raw_text_unchanged`), NUMBER
  ones (IS, DS) when their bytes are plain numbers that spell no identifier (:func:`plain_number`);
  every other element (VALUE, FIXED) is transformed by the engine itself, in a small data
  set with its character set and private creator, and the result is remembered by the
  element's bytes (FIXED: by its tag and VR): the next slice of the series with the same
  bytes costs a dictionary lookup;
* the attributes that record the de-identification, the File Meta Information and the
  preamble are added, and the pixel bytes are copied by the kernel, never decoded.

Anything else, a file that needs its pixels looked at, is withheld, rejected, big endian,
deflated, carries overlays or elements after Pixel Data, or any file this module cannot
read, raises :class:`~radcommons.dicom.elements.NotPlain` with the reason: the caller then
takes the pydicom path, which decides and reports (the report says which path each file took).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydicom.charset import default_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag

from radcommons.deid.engine import (
    CLEAN,
    CREATOR,
    DELETE,
    DEIDENTIFIED,
    FIXED,
    KEEP,
    NUMBER,
    SCRUB,
    UID,
    VALUE,
    DeidContext,
    WithheldContent,
    PatientRecord,
    StudyRecord,
    _RECORD_TAGS,
    _Transformer,
    _uid_mapper,
    pixel_review,
    raw_element_vr,
    raw_text_unchanged,
    record_deidentification,
    unsupported_reason,
)
from radcommons.deid.fileio import (
    DICOMDIR_SOP_CLASS,
    PendingWrites,
    copy_pixels,
    _Encoder,
    _write_atomic,
    ascii_compatible,
    file_meta_bytes,
)
from radcommons.deid.identifiers import SOURCE_TAGS
from radcommons.deid.outcome import FileOutcome, output_relpath
from radcommons.deid.table import load_table
from radcommons.deid.uids import clean_uid
from radcommons.dicom.elements import (
    LONG_VRS, UNDEFINED_BYTES, Element, Head, NotPlain, PixelDataError, pixel_span, read_head,
)

_CHARSET = 0x00080005
_SOP_CLASS = 0x00080016
_SOP_INSTANCE = 0x00080018
_STUDY = 0x0020000D
_SERIES = 0x0020000E
_MEDIA_CLASS = 0x00020002

#: Every element the transformer, the checks before it and the records after it read
#: besides the element being transformed: what makes a de-identification context.
CONTEXT_TAGS = frozenset(SOURCE_TAGS) | {
    tag_for_keyword(keyword)
    for keyword in (
        "SpecificCharacterSet",
        "PatientID",
        "StudyInstanceUID",
        "SOPClassUID",
        "AccessionNumber",
        "Modality",
        "ImageType",
        "Rows",
        "BurnedInAnnotation",
        "RecognizableVisualFeatures",
        "ContentSequence",
        "GraphicAnnotationSequence",
        "DirectoryRecordSequence",
    )
}
#: caches are dropped past these sizes (a site's export holds many series)
MAX_CONTEXTS = 64
MAX_REMEMBERED = 4096

_SHORT_HEAD = struct.Struct("<HH2sH")
_LONG_HEAD = struct.Struct("<HH2sHL")
_IMPLICIT_HEAD = struct.Struct("<HHL")


def _head(tag: int, vr: str | None, length: int, implicit: bool) -> bytes:
    """An element header (PS3.5 7.1.2 explicit VR, 7.1.3 implicit VR)."""
    if implicit:
        return _IMPLICIT_HEAD.pack(tag >> 16, tag & 0xFFFF, length)
    if vr in LONG_VRS:
        return _LONG_HEAD.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    return _SHORT_HEAD.pack(tag >> 16, tag & 0xFFFF, (vr or "").encode(), length)


def _uid_text(value: bytes) -> str | None:
    """A single UID as pydicom decodes it (trailing NULs and spaces dropped), or ``None``."""
    if not value.isascii() or b"\\" in value:
        return None
    return value.decode("ascii").rstrip("\0 ")


@dataclass
class _Series:
    """What every file with the same context bytes shares (in practice: one series)."""

    transformer: _Transformer
    implicit: bool
    charset: bytes  #: the Specific Character Set element, encoded ("" when absent)
    records: list[tuple[int, bytes]]  #: (0012,0062)... encoded, in tag order
    patient: PatientRecord
    study: StudyRecord
    sop_class: str
    new_study_uid: str
    remembered: dict[tuple, bytes] = field(default_factory=dict)  #: VALUE outputs by input bytes
    steps: dict[tuple, tuple[str, str | None]] = field(default_factory=dict)  #: plans by tag and VR
    clean_text: dict[tuple, bool] = field(default_factory=dict)  #: SCRUB/CLEAN text left as it is


_SERIES_CACHE: dict[tuple, _Series | str] = {}  #: or why the pydicom path handles the series


def _context_key(context: DeidContext) -> tuple:
    profile = context.profile
    return (
        context.key,
        context.site,
        context.review_pixels,
        profile.name,
        tuple(profile.options),
        tuple(sorted(profile.overrides.items())),
        tuple(sorted(profile.site_overrides.items())),
    )


def _decode(head: Head, elements: list[Element]) -> Dataset:
    """A pydicom data set of ``elements`` (raw, decoded on access), as if read from the file."""
    data = head.data
    ds = read_dataset(DicomBytesIO(b"".join(data[e[2] : e[4]] for e in elements)), head.implicit_vr, True)
    ds.set_original_encoding(head.implicit_vr, True, ds._character_set)
    return ds


def _series(head: Head, context_elements: list[Element], context: DeidContext) -> _Series | str:
    """The shared part of a de-identification, or why the pydicom path must decide (the file
    is withheld or rejected, or its pixels need a look)."""
    ds = _decode(head, context_elements)
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    if not ascii_compatible(encodings):
        return "ISO 2022 code extensions in Specific Character Set (pydicom re-encodes the text)"
    if "DirectoryRecordSequence" in ds or head.meta.get(_MEDIA_CLASS, b"").rstrip(b"\0 ") == DICOMDIR_SOP_CLASS.encode():
        return "a DICOMDIR"
    sop_class = clean_uid(ds.get("SOPClassUID", "") or "")
    study_uid = ds.get("StudyInstanceUID", "") or ""
    if not sop_class or not isinstance(study_uid, str) or not clean_uid(study_uid) or unsupported_reason(ds):
        return "no SOP Class or Study Instance UID, or a kind of object that is withheld"
    if context.review_pixels and pixel_review(ds)[0]:
        return "the pixels need review for burned-in text"
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return "Burned In Annotation is YES"
    if "Rows" in ds and head.pixel_start is None:
        return "an image without Pixel Data (truncated)"
    mapper = _uid_mapper(context)
    transformer = _Transformer(ds, context, mapper, load_table())
    charset = next((head.data[e[2] : e[4]] for e in context_elements if e[0] == _CHARSET), b"")
    records = _records(ds, context, head.implicit_vr, charset)
    patient = PatientRecord(context.site, transformer.patient_key, transformer.pseudonym, transformer.offset)
    study = StudyRecord(
        site=context.site,
        study_uid=study_uid,
        new_study_uid=mapper(study_uid),
        accession_number=str(ds.get("AccessionNumber", "") or ""),
        patient_id=transformer.patient_key,
        pseudonym=transformer.pseudonym,
    )
    return _Series(transformer, head.implicit_vr, charset, records, patient, study, sop_class, mapper(study_uid))


_RECORDS: dict[tuple, list[tuple[int, bytes]]] = {}


def _records(ds: Dataset, context: DeidContext, implicit: bool, charset: bytes) -> list[tuple[int, bytes]]:
    """The encoded attributes that record the de-identification (the same for every file
    of a profile and encoding), in tag order."""
    key = (_context_key(context), implicit, charset)
    found = _RECORDS.get(key)
    if found is None:
        record = Dataset()
        if _CHARSET in ds:
            record.add(ds[_CHARSET])
        record_deidentification(record, context.profile, pixels_cleaned=False)
        encoder = _Encoder(implicit, True)
        encodings = record.get("SpecificCharacterSet", default_encoding)
        found = [(int(tag), encoder.element(record, tag, encodings, True)) for tag in sorted(record.keys())
                 if int(tag) != _CHARSET]
        if len(_RECORDS) >= MAX_CONTEXTS:
            _RECORDS.clear()
        _RECORDS[key] = found
    return found


def _series_for(head: Head, context: DeidContext) -> _Series:
    """The series of ``head`` (built once per series); raises :class:`NotPlain` with the reason
    when the pydicom path handles its files."""
    context_elements = [e for e in head.elements if e[0] in CONTEXT_TAGS]
    key = (_context_key(context), head.implicit_vr, tuple((e[0], e[1], head.value(e)) for e in context_elements))
    found = _SERIES_CACHE.get(key)
    if found is None:
        if len(_SERIES_CACHE) >= MAX_CONTEXTS:
            _SERIES_CACHE.clear()
        found = _SERIES_CACHE[key] = _series(head, context_elements, context)
    if isinstance(found, str):
        raise NotPlain(found)
    return found


class _Writer:
    """Transforms the elements of one file into the bytes of its new data set."""

    def __init__(self, head: Head, series: _Series) -> None:
        self.head = head
        self.series = series
        self.transformer = series.transformer
        self.by_tag = {e[0]: e for e in head.elements}

    # ---- what to do with each element

    def _creator_text(self, element: Element) -> str:
        """A Private Creator's value as pydicom decodes it. Only creators that pydicom
        writes back with the same bytes once decoded (one ASCII value, LO, padded with one
        space at most) are handled here: the engine decodes a creator when it judges an
        element of its block, and whether it did must not change the output."""
        tag, vr, start, value_start, end = element
        raw = self.head.data[value_start:end]
        text = raw.decode("ascii", "replace").rstrip("\0 ")
        padded = text + " " if len(text) % 2 else text
        if vr not in (None, "LO") or not raw.isascii() or "\\" in text or padded.encode("ascii") != raw:
            raise NotPlain("a private creator pydicom would write back differently")
        return text

    def _verbatim(self, element: Element) -> bool:
        """Are the element's bytes what the engine's encoder writes when it keeps the element
        as read? (A defined length; explicit VR: reserved bytes zero, PS3.5 7.1.2.)"""
        tag, vr, start, value_start, end = element
        data = self.head.data
        if data[value_start - 4 : value_start] == UNDEFINED_BYTES:
            return False
        return vr not in LONG_VRS or data[start + 6 : start + 8] == b"\0\0"

    def _plan(self, element: Element, creator: str | None) -> tuple[str, str | None]:
        """The transformer's plan for a top-level element (and the VR a UID is written with)."""
        tag, vr_read, start, value_start, end = element
        group = tag >> 16
        transformer = self.transformer
        if tag & 0xFFFF == 0 or group == 0x0002 or tag in _RECORD_TAGS:
            return DELETE, None  # group lengths, stray meta, the records (rewritten)
        if 0x6000 <= group <= 0x601E and not group & 1:
            raise NotPlain("overlays: the whole repeating group goes (the pydicom path)")
        if group & 1:
            if tag & 0xFFFF <= 0x00FF:
                step = transformer.private_plan(tag, None, lambda: None)
                return (CREATOR if step in (KEEP, CREATOR) else step), None
            known_vr = None if vr_read in (None, "UN") else vr_read  # else pydicom's private dictionary
            return transformer.private_plan(tag, known_vr, lambda: creator), None
        vr = raw_element_vr(tag, vr_read, end - value_start)  # what pydicom decodes it as
        return transformer.plan(tag, vr, True), vr

    # ---- transforming values

    def _uid(self, element: Element, vr: str) -> bytes | None:
        """A UI element with every value replaced by its keyed UID (:meth:`_Transformer._uid`),
        or ``None`` for a value that is not plain ASCII."""
        value = self.head.data[element[3] : element[4]]
        if not value.isascii():
            return None
        mapper = self.transformer.map_uid
        text = "\\".join(
            mapper(v) if clean_uid(v) else "" for v in value.decode("ascii").rstrip("\0 ").split("\\")
        )
        if len(text) % 2:
            text += "\0"
        encoded = text.encode("ascii")
        return _head(element[0], vr, len(encoded), self.head.implicit_vr) + encoded

    def _transform(self, misses: dict[tuple, tuple[Element, Element | None]]) -> None:
        """Let the engine transform the ``misses`` (VALUE elements), together in one small
        data set with the character set and their creators, and remember the results by
        the bytes they depend on. Each element is transformed as in the whole data set:
        the engine looks at nothing else of it (the context is the transformer's)."""
        wanted = {}
        charset = self.by_tag.get(_CHARSET)
        if charset is not None:
            wanted[_CHARSET] = charset
        for element, creator in misses.values():
            wanted[element[0]] = element
            if creator is not None:
                wanted[creator[0]] = creator
        ds = _decode(self.head, sorted(wanted.values()))
        try:
            self.transformer._dataset(ds, top=True)
        except WithheldContent as found:
            raise NotPlain(str(found)) from None  # the pydicom path withholds it, with the reason
        encoder = _Encoder(self.head.implicit_vr, True)
        encodings = ds.get("SpecificCharacterSet", default_encoding)
        remembered = self.series.remembered
        for key, (element, _) in misses.items():
            tag = BaseTag(element[0])
            remembered[key] = encoder.element(ds, tag, encodings, True) if tag in ds else b""

    # ---- the whole data set

    def dataset(self) -> bytes:
        """The de-identified data set: the file's elements in order, the records merged in."""
        data = self.head.data
        series = self.series
        steps = series.steps
        remembered = series.remembered
        if len(remembered) >= MAX_REMEMBERED:
            remembered.clear()  # here, not while this file's hits are still to be assembled
        clean_text = series.clean_text
        creators: dict[int, str] = {}
        planned: list[tuple[Element, str, object]] = []
        misses: dict[tuple, tuple[Element, Element | None]] = {}
        previous = -1
        for element in self.head.elements:
            tag, vr_read, start, value_start, end = element
            if tag <= previous:
                raise NotPlain("elements out of order or repeated")  # pydicom sorts them: let it
            previous = tag
            creator: Element | None = None  #: a private element's creator
            creator_text: str | None = None
            if (tag >> 16) & 1 and tag & 0xFFFF >= 0x0010:
                if tag & 0xFFFF <= 0x00FF:
                    creators[tag] = self._creator_text(element)
                    step_key: tuple = (tag,)
                else:
                    creator = self.by_tag.get((tag & 0xFFFF0000) | ((tag & 0xFFFF) >> 8))
                    creator_text = creators.get(creator[0]) if creator else None
                    step_key = (tag, vr_read, creator_text)
            elif vr_read == "UN":
                step_key = (tag, vr_read, end - value_start < 0xFFFF)
            else:
                step_key = (tag, vr_read)
            found = steps.get(step_key)
            if found is None:
                found = steps[step_key] = self._plan(element, creator_text)
            step, vr = found
            if step == SCRUB or step == CLEAN:
                # text the engine keeps as read when its operation leaves it as it is
                # (judged once per series and value: the slices repeat their text)
                unchanged = False
                if (vr_read is None or vr_read == vr) and self._verbatim(element):
                    key = (tag, vr, data[value_start:end])
                    unchanged = clean_text.get(key)
                    if unchanged is None:
                        if len(clean_text) >= MAX_REMEMBERED:
                            clean_text.clear()
                        operation = self.transformer.text_operation(step, vr or "")
                        unchanged = clean_text[key] = raw_text_unchanged(key[2], vr or "", operation)
                step = KEEP if unchanged else VALUE
            elif step == NUMBER:  # kept as read when a plain number (a bytes test: no cache needed)
                step = KEEP if self.transformer.plain_number(data[value_start:end], vr or "", tag) else VALUE
            elif step == FIXED:  # the output depends on tag and VR only
                key = (step_key, FIXED)
                if key not in remembered:
                    misses[key] = (element, None)
                planned.append((element, VALUE, key))
                continue
            if step == KEEP and (vr_read is None or vr_read in LONG_VRS) and not self._verbatim(element):
                step = VALUE  # the engine's encoder writes it (a short explicit VR always copies as is)
            if step == UID:
                encoded = self._uid(element, vr or "UI")
                if encoded is not None:
                    planned.append((element, UID, encoded))
                    continue
                step = VALUE
            if step == VALUE:
                key = (tag, vr_read, data[value_start:end], data[creator[3] : creator[4]] if creator else None)
                if key not in remembered:
                    misses[key] = (element, creator)
                planned.append((element, VALUE, key))
            else:
                planned.append((element, step, None))
        if misses:
            self._transform(misses)
        return self._assemble(planned, creators)

    def _assemble(self, planned: list[tuple[Element, str, object]], creators: dict[int, str]) -> bytes:
        data = self.head.data
        remembered = self.series.remembered
        records = self.series.records
        next_record = 0
        parts: list[bytes] = []
        kept_creators: list[tuple[int, int]] = []  #: (tag, index in parts)
        blocks: set[tuple[int, int]] = set()  #: private blocks that keep an element
        run_start = run_end = -1  #: a run of elements copied as read
        for element, step, extra in planned:
            tag, _, start, _, end = element
            while next_record < len(records) and records[next_record][0] < tag:
                if run_start >= 0:
                    parts.append(data[run_start:run_end])
                    run_start = -1
                parts.append(records[next_record][1])
                next_record += 1
            if step == KEEP:
                if (tag >> 16) & 1:
                    blocks.add((tag >> 16, (tag & 0xFFFF) >> 8))
                if run_start < 0 or run_end != start:
                    if run_start >= 0:
                        parts.append(data[run_start:run_end])
                    run_start = start
                run_end = end
                continue
            if run_start >= 0:
                parts.append(data[run_start:run_end])
                run_start = -1
            if step == DELETE:
                continue
            if step == CREATOR:
                kept_creators.append((tag, len(parts)))
                parts.append(data[start:end])  # verbatim: _creator_text checked it
                continue
            encoded = extra if step == UID else remembered[extra]
            if encoded:
                if (tag >> 16) & 1:
                    blocks.add((tag >> 16, (tag & 0xFFFF) >> 8))
                parts.append(encoded)  # type: ignore[arg-type]
        if run_start >= 0:
            parts.append(data[run_start:run_end])
        parts.extend(encoded for _, encoded in records[next_record:])
        for tag, index in kept_creators:
            if (tag >> 16, tag & 0xFFFF) not in blocks:
                parts[index] = b""  # a creator whose block keeps nothing (engine.orphan_creators)
        return b"".join(parts)


def deidentify_streamed(
    src: Path,
    dst_root: Path,
    context: DeidContext,
    *,
    label: str,
    pending: PendingWrites | None = None,
    keep_existing: bool = True,
) -> FileOutcome:
    """De-identify ``src`` into ``dst_root`` from its element stream; raises :class:`NotPlain`
    with the reason (nothing written) when the pydicom path must handle it (see the module
    docstring). An output already there is kept unless ``keep_existing`` is false."""
    with open(src, "rb", buffering=0) as fp:
        size = os.fstat(fp.fileno()).st_size
        head = read_head(fp, size)
        series = _series_for(head, context)
        sop_element = next((e for e in head.elements if e[0] == _SOP_INSTANCE), None)
        series_element = next((e for e in head.elements if e[0] == _SERIES), None)
        sop = _uid_text(head.value(sop_element)) if sop_element else None
        series_uid = _uid_text(head.value(series_element)) if series_element else None
        if not sop or not series_uid or not clean_uid(sop) or not clean_uid(series_uid):
            raise NotPlain("no SOP or Series Instance UID that is a valid UID")
        span = head.native_pixels()
        if span is None and head.pixel_start is not None:
            try:
                span, after = pixel_span(fp, head.pixel_start, size, head.implicit_vr, True)
            except PixelDataError:
                raise NotPlain("the Pixel Data element does not parse") from None
            if after < size:
                raise NotPlain("elements after Pixel Data")
        mapper = series.transformer.map_uid
        new_sop = mapper(sop)
        relpath = output_relpath(series.new_study_uid, mapper(series_uid), new_sop)
        outcome = FileOutcome(label, DEIDENTIFIED, output=relpath, patient=series.patient, study=series.study)
        target = os.path.join(dst_root, relpath)
        if keep_existing and os.path.exists(target):
            outcome.skipped_existing = True
            return outcome
        body = _Writer(head, series).dataset()
        header = b"".join((
            b"\0" * 128,
            b"DICM",
            file_meta_bytes(series.sop_class, clean_uid(new_sop), clean_uid(head.transfer_syntax)),
            body,
        ))

        def write(out: BinaryIO) -> None:
            out.write(header)
            if span is not None:
                copy_pixels(fp, out, span[0], span[1] - span[0])

        _write_atomic(target, pending, write, buffered=False)
        return outcome


__all__ = ["CONTEXT_TAGS", "deidentify_streamed"]
