"""Locating the data elements of a DICOM Part 10 file without decoding them.

A header is a stream of data elements (PS3.5 7.1): tag, VR (explicit VR transfer
syntaxes), length, value. :func:`read_head` reads a file's preamble, File Meta Information
(PS3.10 7.1) and the top-level elements of its data set up to Pixel Data, and returns
where each element's bytes are: nothing is decoded, so a caller that keeps an element as
it is copies its bytes, and one that needs a value decodes that value alone.

It answers only for the plain case, little endian (implicit or explicit VR, native or
encapsulated pixels), and raises :class:`NotPlain` for anything else (big endian,
deflated, no ``DICM`` prefix, a VR it does not know, a value running past the end of the
file, an undefined length where none may be): callers then read the file with pydicom,
which reports what is wrong with it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: Pixel Data, Float Pixel Data and Double Float Pixel Data (PS3.3 C.7.6.3): where
#: pydicom's ``stop_before_pixels`` stops.
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
_NOT_PLAIN_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    # Deflated Image Frame Compression (PS3.5 A.4.11): the data set is plain Explicit VR Little Endian, its
    # frames deflated and encapsulated; too rare to be worth a fast path, so pydicom reads it
    "1.2.840.10008.1.2.8.1",
})

#: VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1)
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_SHORT_VRS = frozenset({
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL",
    "SS", "ST", "TM", "UI", "UL", "US",
})
_VRS = {vr.encode(): vr for vr in LONG_VRS | _SHORT_VRS}
_LONG = frozenset(vr.encode() for vr in LONG_VRS)
UNDEFINED = 0xFFFFFFFF
#: an undefined length (PS3.5 7.1.1) as written
UNDEFINED_BYTES = b"\xff\xff\xff\xff"
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_HEAD = struct.Struct("<HH2sH")
_IMPLICIT_HEAD = struct.Struct("<HHL")
_LENGTH = struct.Struct("<L")
#: how much of a file is read at first (a CT slice's header is a few kB); a longer header
#: is read again, whole
FIRST_READ = 1 << 14
#: headers longer than this (before Pixel Data) are left to pydicom
MAX_HEAD = 64 << 20
#: The elements after the pixel data (digital signatures, private groups 7FE1-FFFF, padding, PS3.5
#: 7.8.1) a file may have, in bytes: the commons' verification gate reads them whole and refuses a file
#: with more, so the site's de-identification refuses it too (it must not send what the gate refuses).
TRAILING_MAX = 8 * 1024 * 1024


class NotPlain(Exception):
    """The file is not one :func:`read_head` handles; read it with pydicom instead."""


class _NeedMore(Exception):
    """The element stream runs past the bytes read so far."""


#: One top-level element: (tag, VR as written or ``None`` in implicit VR, start of the
#: element, start of its value, end of the element). An undefined-length sequence ends
#: after its Sequence Delimitation Item.
Element = tuple[int, "str | None", int, int, int]


@dataclass(frozen=True)
class Head:
    """The undecoded header of a Part 10 file."""

    data: bytes  #: the file's bytes from offset 0 to at least the end of the last element
    meta: dict[int, bytes]  #: File Meta Information values (group 0002) by tag, as written
    transfer_syntax: str
    implicit_vr: bool
    elements: list[Element]  #: top-level elements before Pixel Data, in file order
    pixel_start: int | None  #: offset of the first pixel element, or None (no pixels)
    size: int  #: the file's size
    _meta_end: int = 132  #: where the data set starts (after the File Meta Information)

    def value(self, element: Element) -> bytes:
        return self.data[element[3] : element[4]]

    def header_dataset(self):  # -> pydicom.dataset.FileDataset
        """The header as pydicom's ``dcmread(..., stop_before_pixels=True)`` gives it: the
        same reader (``read_dataset``) on the bytes already read, with the File Meta
        Information, preamble and original encoding, but no second pass over the file."""
        from pydicom.dataelem import RawDataElement, empty_value_for_VR
        from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
        from pydicom.filebase import DicomBytesIO
        from pydicom.filereader import read_dataset
        from pydicom.tag import BaseTag

        data, implicit = self.data, self.implicit_vr
        end = self.pixel_start if self.pixel_start is not None else (
            self.elements[-1][4] if self.elements else self._meta_end
        )
        start = self._meta_end
        meta = FileMetaDataset(read_dataset(DicomBytesIO(data[132:start]), False, True))
        if any(data[e[3] - 4 : e[3]] == UNDEFINED_BYTES for e in self.elements):
            # pydicom reads undefined-length sequences at once: let its reader do it
            body = read_dataset(DicomBytesIO(data[start:end]), implicit, True)
        else:
            # what pydicom's data_element_generator yields for defined lengths, built
            # from the element positions already known
            body = Dataset({
                BaseTag(tag): RawDataElement(
                    BaseTag(tag), vr, value_end - value_start,
                    data[value_start:value_end] if value_end > value_start else empty_value_for_VR(vr, raw=True),
                    value_start, implicit, True,
                )
                for tag, vr, _, value_start, value_end in self.elements
            })
        ds = FileDataset(None, body, preamble=self.data[:128], file_meta=meta,
                         is_implicit_VR=self.implicit_vr, is_little_endian=True)
        ds.set_original_encoding(self.implicit_vr, True, body._character_set)
        return ds

    def native_pixels(self) -> tuple[int, int] | None:
        """The byte range of Pixel Data when it is one element of defined length that ends
        the file and whose header was read (the common case, known without another read);
        ``None`` otherwise (encapsulated, several pixel elements, data after it: ask
        :func:`pixel_span`)."""
        start = self.pixel_start
        if start is None or start + 12 > len(self.data):
            return None
        if self.implicit_vr:
            length = _LENGTH.unpack_from(self.data, start + 4)[0]
            value_start = start + 8
        else:
            vr_bytes = self.data[start + 4 : start + 6]
            if vr_bytes in _LONG:
                length = _LENGTH.unpack_from(self.data, start + 8)[0]
                value_start = start + 12
            else:
                length = struct.unpack_from("<H", self.data, start + 6)[0]
                value_start = start + 8
        if length == UNDEFINED or value_start + length != self.size:
            return None
        return start, self.size


def _skip_undefined(data: bytes, position: int, implicit: bool) -> int:
    """End of an undefined-length sequence value that starts at ``position`` (PS3.5 7.5)."""
    end = len(data)
    while True:
        if position + 8 > end:
            raise _NeedMore
        tag_group, tag_element, length = _IMPLICIT_HEAD.unpack_from(data, position)
        tag = (tag_group << 16) | tag_element
        position += 8
        if tag == _SEQUENCE_END:
            return position
        if tag != _ITEM:
            raise NotPlain("a sequence holds something other than items")
        if length != UNDEFINED:
            position += length
            continue
        while True:  # an undefined-length item: elements up to the Item Delimitation Item
            if position + 8 > end:
                raise _NeedMore
            group, element = struct.unpack_from("<HH", data, position)
            if ((group << 16) | element) == _ITEM_END:
                position += 8
                break
            position = _element_after(data, position, implicit)[1]


def _element_after(data: bytes, position: int, implicit: bool) -> tuple[Element, int]:
    """The element starting at ``position`` and the position after it."""
    end = len(data)
    if position + 8 > end:
        raise _NeedMore
    if implicit:
        group, element, length = _IMPLICIT_HEAD.unpack_from(data, position)
        vr = None
        value_start = position + 8
    else:
        group, element, vr_bytes, short_length = _HEAD.unpack_from(data, position)
        vr = _VRS.get(vr_bytes)
        if vr is None:
            raise NotPlain(f"unknown VR {vr_bytes!r}")
        if vr_bytes in _LONG:
            if position + 12 > end:
                raise _NeedMore
            length = _LENGTH.unpack_from(data, position + 8)[0]
            value_start = position + 12
        else:
            length = short_length
            value_start = position + 8
    tag = (group << 16) | element
    if length == UNDEFINED:
        # a sequence, or encapsulated pixel data (an icon image's): items up to a delimiter;
        # anything else (an UN of undefined length holds implicit VR) is left to pydicom
        if vr not in (None, "SQ") and tag not in PIXEL_TAGS:
            raise NotPlain(f"undefined length with VR {vr}")
        value_end = _skip_undefined(data, value_start, implicit)
    else:
        value_end = value_start + length
        if value_end > end:
            raise _NeedMore
    return (tag, vr, position, value_start, value_end), value_end


def _parse(data: bytes, size: int) -> Head:
    if len(data) < 132 or data[128:132] != b"DICM":
        raise NotPlain("no DICM prefix")
    meta: dict[int, bytes] = {}
    position = 132
    while True:
        if position + 8 > len(data):
            raise _NeedMore
        if struct.unpack_from("<H", data, position)[0] != 0x0002:
            break
        (tag, _, _, value_start, value_end), position = _element_after(data, position, implicit=False)
        meta[tag] = data[value_start:value_end]
    meta_end = position
    syntax = meta.get(0x00020010, b"").decode("ascii", "replace").rstrip("\0 ")
    if not syntax or syntax in _NOT_PLAIN_SYNTAXES:
        raise NotPlain(f"transfer syntax {syntax or '(none)'}")
    implicit = syntax == IMPLICIT_VR_LITTLE_ENDIAN
    elements: list[Element] = []
    append = elements.append
    pixel_start: int | None = None
    available = len(data)
    # _element_after, unrolled for the common case: this loop runs for every element of
    # every file de-identified
    unpack_head = _IMPLICIT_HEAD.unpack_from if implicit else _HEAD.unpack_from
    unpack_length = _LENGTH.unpack_from
    vrs, long_vrs = _VRS, _LONG
    while position < size:
        if position + 12 > available:
            if position + 4 > available:
                raise _NeedMore
            group, element = struct.unpack_from("<HH", data, position)
            if ((group << 16) | element) in PIXEL_TAGS:
                pixel_start = position
                break
            found, position = _element_after(data, position, implicit)
            append(found)
            continue
        if implicit:
            group, element, length = unpack_head(data, position)
            vr = None
            value_start = position + 8
        else:
            group, element, vr_bytes, length = unpack_head(data, position)
            vr = vrs.get(vr_bytes)
            if vr_bytes in long_vrs:
                length = unpack_length(data, position + 8)[0]
                value_start = position + 12
            else:
                value_start = position + 8
        tag = (group << 16) | element
        if tag in PIXEL_TAGS:
            pixel_start = position
            break
        end = value_start + length
        if vr is None and not implicit or length == UNDEFINED or end > available:
            found, position = _element_after(data, position, implicit)  # raises, or walks
            append(found)
            continue
        append((tag, vr, position, value_start, end))
        position = end
    return Head(data, meta, syntax, implicit, elements, pixel_start, size, meta_end)


def _read_start(fp: BinaryIO, length: int) -> bytes:
    """The first ``length`` bytes of ``fp`` (one ``pread`` for a real file)."""
    try:
        return os.pread(fp.fileno(), length, 0)
    except (AttributeError, OSError, ValueError):  # not a file with a descriptor (io.UnsupportedOperation too)
        fp.seek(0)
        return fp.read(length)


def read_head(fp: BinaryIO, size: int) -> Head:
    """The undecoded header of the open file ``fp`` of ``size`` bytes (raises :class:`NotPlain`)."""
    want = FIRST_READ
    while True:
        data = _read_start(fp, min(want, size))
        try:
            return _parse(data, size)
        except _NeedMore:
            if len(data) >= size:
                raise NotPlain("the file ends inside an element") from None
            if want >= MAX_HEAD:
                raise NotPlain("header longer than 64 MB") from None
            want *= 4


class PixelDataError(ValueError):
    """The pixel data elements of a file run past its end, or do not parse."""


def _element_end(fp: BinaryIO, start: int, size: int, implicit: bool, little: bool) -> int:
    """End offset of the pixel element that starts at ``start`` in ``fp`` of ``size`` bytes.
    Only item headers are read (PS3.5 A.4: the fragments of encapsulated pixel data)."""
    endian = "<" if little else ">"
    fp.seek(start)
    head = fp.read(8)
    if len(head) < 8:
        raise PixelDataError("truncated: file ends inside the Pixel Data element header")
    if implicit:
        length = struct.unpack(endian + "L", head[4:8])[0]
        value_start = start + 8
    elif head[4:6] in _LONG:
        extra = fp.read(4)
        if len(extra) < 4:
            raise PixelDataError("truncated: file ends inside the Pixel Data element header")
        length = struct.unpack(endian + "L", extra)[0]
        value_start = start + 12
    else:
        length = struct.unpack(endian + "H", head[6:8])[0]
        value_start = start + 8
    if length != UNDEFINED:
        end = value_start + length
        if end > size:
            raise PixelDataError(f"truncated: Pixel Data needs {end - size} more bytes than the file has")
        return end
    position = value_start  # encapsulated: items up to the Sequence Delimitation Item
    while True:
        fp.seek(position)
        item = fp.read(8)
        if len(item) < 8:
            raise PixelDataError("truncated: encapsulated Pixel Data has no sequence delimiter")
        item_group, item_element, item_length = struct.unpack(endian + "HHL", item)
        item_tag = (item_group << 16) | item_element
        if item_tag == _SEQUENCE_END:
            return position + 8
        if item_tag != _ITEM or item_length == UNDEFINED:
            raise PixelDataError("corrupt: encapsulated Pixel Data has an invalid item")
        position += 8 + item_length
        if position > size:
            raise PixelDataError("truncated: an encapsulated Pixel Data fragment runs past the end")


def pixel_span(fp: BinaryIO, start: int, size: int, implicit: bool, little: bool = True) -> tuple[tuple[int, int] | None, int]:
    """The byte range of the pixel elements that start at ``start`` in ``fp`` of ``size``
    bytes (``None``: there are none) and the position after them, where trailing elements
    may follow. Raises :class:`PixelDataError` when the pixel data runs past the end of the
    file: a transfer cut short, which a header alone does not show."""
    span: tuple[int, int] | None = None
    position = start
    while position < size:
        fp.seek(position)
        peek = fp.read(4)
        if len(peek) < 4:
            break
        group, element = struct.unpack(("<" if little else ">") + "HH", peek)
        if ((group << 16) | element) not in PIXEL_TAGS:
            break
        end = _element_end(fp, position, size, implicit, little)
        span = (start, end)
        position = end
    return span, position


def cut_short_element(ds: Dataset) -> str | None:
    """The element ``ds`` ends inside, as ``(gggg,eeee)``, or ``None``: its last top-level element
    (a file ends once) when its value is shorter than its declared length. pydicom reads a file
    that ends inside an element without a word: the element just holds what was there (a Series
    Instance UID of ``1.2.``)."""
    from pydicom.dataelem import RawDataElement

    tag = next(reversed(ds.keys()), None)
    if tag is None:
        return None
    item = ds.get_item(tag)
    if isinstance(item, RawDataElement) and item.length != 0xFFFFFFFF and len(item.value or b"") < item.length:
        return f"({tag.group:04X},{tag.element:04X})"
    return None


def string_values(value: object) -> list[str]:
    """A decoded element value as its strings (none for an empty value, one per value of a
    multi-valued one; ``None`` values left out)."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):  # a list, a MultiValue
        return [str(v) for v in value if v is not None]
    return [str(value)]


__all__ = [
    "Element", "Head", "NotPlain", "PIXEL_TAGS", "LONG_VRS", "PixelDataError", "UNDEFINED_BYTES", "cut_short_element",
    "pixel_span", "read_head", "string_values", "TRAILING_MAX",
]
