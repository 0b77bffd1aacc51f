"""Text that compressed pixel data carries outside the image: JPEG comment and application segments.

A JPEG (and JPEG-LS) frame may carry a comment (COM) and application segments (APPn: EXIF,
vendor blocks) before its scan, a JPEG 2000 codestream comments (COM, ``FF64``) in its main
header; software that made the image can write a patient's name there, and a viewer never
shows it. The de-identifier copies compressed pixel data without decoding it, so it blanks
those payloads in place instead: the same length (no offset in the Basic Offset Table
moves), comments as spaces, application data as zeros. APP0 (JFIF) and APP14 (Adobe) are
left alone: a decoder reads the colour transform from them.

Pure functions over a reader (``read(position, count) -> bytes``), so the same code serves a
file the engine copies by the kernel and a Pixel Data value in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

#: ``read(position, count)``: up to ``count`` bytes at ``position``.
Reader = Callable[[int, int], bytes]

_ITEM, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
#: JPEG markers whose payload is blanked: COM and APP1-APP13, APP15 (not APP0 JFIF, APP14 Adobe).
_JPEG_BLANKED = frozenset({0xFE} | set(range(0xE1, 0xEE)) | {0xEF})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_J2K_COMMENT, _J2K_TILE = 0xFF64, 0xFF90


def _jpeg_segments(read: Reader, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """Payload ranges to blank in one JPEG / JPEG-LS frame (SOI at ``start``), up to its scan."""
    found: list[tuple[int, int, bytes]] = []
    position = start + 2
    while position + 4 <= end:
        marker = read(position, 2)
        if len(marker) < 2 or marker[0] != 0xFF:
            break
        code = marker[1]
        if code == 0xFF:  # fill byte
            position += 1
            continue
        if code in _JPEG_STANDALONE:
            position += 2
            continue
        if code in (0xDA, 0xD9):  # start of scan, end of image: no header segment after
            break
        (length,) = struct.unpack(">H", read(position + 2, 2))
        if length < 2 or position + 2 + length > end:
            break
        if code in _JPEG_BLANKED:
            found.append((position + 4, position + 2 + length, b" " if code == 0xFE else b"\0"))
        position += 2 + length
    return found


def _j2k_segments(read: Reader, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """Comment ranges to blank in one JPEG 2000 codestream's main header (SOC at ``start``)."""
    found: list[tuple[int, int, bytes]] = []
    position = start + 2
    while position + 4 <= end:
        marker, length = struct.unpack(">HH", read(position, 4))
        if marker >> 8 != 0xFF or marker == _J2K_TILE or length < 2 or position + 2 + length > end:
            break
        if marker == _J2K_COMMENT and length > 4:  # Lcom, Rcom (kept), then the comment
            found.append((position + 6, position + 2 + length, b" "))
        position += 2 + length
    return found


def blanked_ranges(read: Reader, items_start: int, items_end: int) -> list[tuple[int, int, bytes]]:
    """``(start, end, fill)`` of every payload to blank in encapsulated pixel data whose items
    (Basic Offset Table first, PS3.5 A.4) lie between ``items_start`` and ``items_end``."""
    found: list[tuple[int, int, bytes]] = []
    position, first = items_start, True
    while position + 8 <= items_end:
        tag_group, tag_element, length = struct.unpack("<HHI", read(position, 8))
        tag = tag_group << 16 | tag_element
        if tag != _ITEM or length == _UNDEFINED:
            break
        value, position = position + 8, position + 8 + length
        if first:  # the Basic Offset Table
            first = False
            continue
        head = read(value, 2)
        if head == b"\xff\xd8":
            found += _jpeg_segments(read, value, min(position, items_end))
        elif head == b"\xff\x4f":
            found += _j2k_segments(read, value, min(position, items_end))
    return found


def pixel_element_ranges(read: Reader, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """:func:`blanked_ranges` for the pixel elements between ``start`` and ``end`` of a file
    (explicit VR little endian: encapsulated transfer syntaxes are; anything else: none)."""
    head = read(start, 12)
    if len(head) < 12:
        return []
    group, element = struct.unpack("<HH", head[:4])
    if (group << 16 | element) != _PIXEL_DATA or head[4:6] not in (b"OB", b"OW"):
        return []
    if struct.unpack("<I", head[8:12])[0] != _UNDEFINED:
        return []  # native pixels
    return blanked_ranges(read, start + 12, end)


def blank_in_memory(value: bytes) -> bytes:
    """An encapsulated Pixel Data value (its items) with :func:`blanked_ranges` blanked."""
    ranges = blanked_ranges(lambda position, count: value[position : position + count], 0, len(value))
    if not ranges:
        return value
    out = bytearray(value)
    for begin, end, fill in ranges:
        out[begin:end] = fill * (end - begin)
    return bytes(out)
