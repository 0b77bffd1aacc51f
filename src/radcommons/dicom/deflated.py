"""Reading a Deflated Explicit VR Little Endian file (PS3.5 A.5) without inflating it whole.

The data set of such a file, after its File Meta Information, is one raw deflate stream. pydicom's
reader inflates that stream whole in memory before it reads a single element, so a few MB of deflated
zeros (a "decompression bomb") take GBs. Here the stream is inflated a chunk at a time, only as far
as the reads go (:class:`Inflated`), and never beyond a bound derived from the file's size and its
header (:class:`DeflatedFile`): at most ``DEFLATE_RATIO_MAX`` times the file's size
(``DEFLATED_HEADER_MAX`` at least) up to the pixel data, then the pixels the header describes and
the caller's allowance for the elements after them. A caller that holds the whole data set in memory
(the site's de-identification) trusts the header less: there the data set may also inflate to no more
than ``WHOLE_RATIO_MAX`` times the file's size (``DEFLATED_HEADER_MAX`` at least) and never beyond
``WHOLE_MAX``, so that a forged Rows x Columns x frames cannot make it hold GBs. A file that inflates
beyond is refused with a clear reason before it is inflated whole.

Both sides read deflated files through it: the commons' verification gate
(:mod:`radcommons.pipelines.examine`) and the site's de-identification (:mod:`radcommons.deid.fileio`,
behind ``radcommons deid``, ``contribute`` and the DIMSE gateway).
"""

from __future__ import annotations

import math
import os
import zlib
from typing import IO

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from radcommons.dicom.elements import PIXEL_TAGS

#: A deflated data set is inflated this many bytes at a time.
INFLATE_CHUNK = 1024 * 1024
#: How far back from its position a deflated data set is kept: pydicom's reader steps back over the
#: header of the element it stops at, :func:`~radcommons.dicom.elements.pixel_span` over a tag it peeked.
INFLATE_BACK = 64 * 1024
#: The elements of a deflated file before its pixel data may inflate to this many bytes, or to
#: DEFLATE_RATIO_MAX times the file's size when that is more (an encapsulated document barely shrinks,
#: text and numbers tenfold): a few MB of deflated zeros inflate to GBs, a decompression bomb.
DEFLATED_HEADER_MAX = 32 * 1024 * 1024
DEFLATE_RATIO_MAX = 16
#: A data set held whole in memory may inflate to at most this many times its file's size
#: (DEFLATED_HEADER_MAX at least), whatever its header says: deflate itself reaches about 1000:1 on
#: zeros (RFC 1951: a 258-byte match in a few bits), images about 2:1 to 10:1, mostly blank ones more.
WHOLE_RATIO_MAX = 100
#: ... and never more than this: pydicom holds it, and a copy of its pixels, in memory, so a whole read
#: peaks at about twice the data set (400 MB took 855 MB), and each worker process may hold one.
WHOLE_MAX = 512 * 1024 * 1024
#: Room for the pixel data elements' own headers and padding beyond the pixels the header describes.
PIXEL_MARGIN = 64 * 1024
DEFLATED_CUT_SHORT = "truncated: the deflated data set ends early (a copy or transfer cut short); send it again whole"


class InflatesBeyond(Exception):
    """The deflated data set inflates past the bytes allowed for it."""


class Inflated:
    """The data set of a Deflated Explicit VR Little Endian file (PS3.5 A.5: one raw deflate stream
    after the File Meta Information) as a forward-only file for pydicom's reader and
    :func:`~radcommons.dicom.elements.pixel_span`. It is inflated once, a chunk at a time, only as
    far as the reads and seeks go; only the last ``INFLATE_BACK`` bytes before the position are
    kept, so pixel data passed over is never held; and it never inflates more than ``limit``
    bytes (:class:`InflatesBeyond`, and ``exceeded`` for readers that turn errors into their own)."""

    def __init__(self, fp: IO[bytes], end: int, limit: int) -> None:
        self._fp, self._end, self.limit = fp, end, limit
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buffer = bytearray()
        self._base = 0  # the offset in the data set of self._buffer[0]
        self._position = 0
        self.exceeded = False

    @property
    def inflated(self) -> int:
        """How many bytes of the data set have been inflated."""
        return self._base + len(self._buffer)

    @property
    def complete(self) -> bool:
        """Whether the deflate stream has ended (not: the file was cut short, or not read that far)."""
        return self._inflater.eof

    @property
    def cut_short(self) -> bool:
        """Whether the file ended before the deflate stream did."""
        return not self._inflater.eof and not self._inflater.unconsumed_tail and self._fp.tell() >= self._end

    def _inflate(self) -> bool:
        """Inflate one more chunk (False: the stream or the file has ended)."""
        if self._inflater.eof:
            return False
        data = self._inflater.unconsumed_tail or self._fp.read(min(INFLATE_CHUNK, self._end - self._fp.tell()))
        out = self._inflater.decompress(data, min(INFLATE_CHUNK, self.limit + 1 - self.inflated))
        if not data and not out:
            return False
        self._buffer += out
        if self.inflated > self.limit:
            self.exceeded = True
            raise InflatesBeyond(f"more than {self.limit} bytes")
        self._drop_behind()
        return True

    def _drop_behind(self) -> None:
        """Forget what lies more than ``INFLATE_BACK`` bytes behind the position (a large element
        just read is then held once, by its reader, not also here)."""
        drop = min(self._position - INFLATE_BACK - self._base, len(self._buffer))
        if drop > 0:
            del self._buffer[:drop]
            self._base += drop

    def read(self, size: int = -1) -> bytes:
        want = self.limit + 1 if size < 0 else size
        while self.inflated < self._position + want and self._inflate():
            pass
        start = self._position - self._base
        with memoryview(self._buffer) as whole, whole[start:start + want] as part:
            data = bytes(part)  # the one copy (a bytearray slice would be a second)
        self._position += len(data)
        self._drop_behind()
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence not in (os.SEEK_SET, os.SEEK_CUR):
            raise OSError("a deflated data set has no known end to seek from")
        target = offset + (self._position if whence == os.SEEK_CUR else 0)
        if target < self._base:
            raise OSError(f"a deflated data set cannot step back more than {INFLATE_BACK} bytes")
        self._position = target
        return target

    def tell(self) -> int:
        return self._position


def pixel_bytes(ds: Dataset) -> int:
    """The bytes of the native pixel data ``ds`` describes (PS3.5 8.1.1: Rows x Columns x Number of
    Frames x Samples per Pixel x Bits Allocated, bits packed), 0 when it describes none."""
    try:
        values = [int(ds.get(keyword) or default) for keyword, default in (
            ("Rows", 0), ("Columns", 0), ("NumberOfFrames", 1), ("SamplesPerPixel", 1), ("BitsAllocated", 8))]
    except (TypeError, ValueError):
        return 0
    return 0 if min(values) < 0 else (math.prod(values) + 7) // 8


def whole_bound(size: int) -> int:
    """The most a deflated data set of a file of ``size`` bytes may inflate to when it is held whole in
    memory: ``WHOLE_RATIO_MAX`` times ``size``, ``DEFLATED_HEADER_MAX`` at least, ``WHOLE_MAX`` at most."""
    return min(max(DEFLATED_HEADER_MAX, WHOLE_RATIO_MAX * size), WHOLE_MAX)


class DeflatedFile:
    """A Deflated Explicit VR Little Endian file being read (:meth:`open`): its preamble and File Meta
    Information, and its data set as :attr:`stream` (:class:`Inflated`), bounded by what the file's
    size allows until :meth:`read_header`, then by what the header describes. ``allowed`` says the
    bound in force, for :meth:`problem`."""

    def __init__(self, fp: IO[bytes], size: int, preamble: bytes | None, meta: FileMetaDataset) -> None:
        self._fp, self.preamble, self.meta, self.size = fp, preamble, meta, size
        self.stream = Inflated(fp, size, max(DEFLATED_HEADER_MAX, DEFLATE_RATIO_MAX * size))
        self.allowed = f"more than {DEFLATE_RATIO_MAX} times the file's {size} bytes before its Pixel Data"

    @classmethod
    def open(cls, fp: IO[bytes], size: int, *, prefixed: bool = True) -> DeflatedFile | None:
        """``fp`` (``size`` bytes) positioned at its data set, or ``None``: not a Part 10 file whose
        File Meta Information (PS3.10 7.1) names Deflated Explicit VR Little Endian (a damaged File
        Meta too: pydicom's ``dcmread`` then says what is wrong). The File Meta is read with the
        public ``read_dataset`` up to the first element past group 0002, as pydicom's own (private)
        ``_read_file_meta_info`` does; it is explicit VR little endian in every Part 10 file.
        ``prefixed=False``: also a file that starts with its File Meta, without the 128-byte preamble
        and "DICM" prefix (then :attr:`preamble` is ``None``), which pydicom's ``dcmread(force=True)``
        would inflate whole."""
        fp.seek(0)
        try:
            preamble = read_preamble(fp, not prefixed)  # type: ignore[arg-type]
            meta = FileMetaDataset(read_dataset(fp, False, True,  # type: ignore[arg-type]
                                                stop_when=lambda tag, vr, length: tag.group != 2))
        except Exception:  # not DICOM, a damaged File Meta
            return None
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return None
        return cls(fp, size, preamble, meta)

    def read_header(self, trailing_max: int, *, whole: bool = False) -> FileDataset:
        """The data set up to its pixel data (:attr:`stream` is left there); from then on the data set
        may inflate to the pixels its header describes, ``PIXEL_MARGIN`` and ``trailing_max`` bytes
        of elements after them; for a caller that reads it ``whole`` into memory, also no more than
        :func:`whole_bound` allows (a forged header describes GBs of pixels).
        Raises what pydicom's reader raises, or :class:`InflatesBeyond`."""
        if whole:
            self._hold_whole("")
        dataset = read_dataset(self.stream, False, True,  # type: ignore[arg-type]
                               stop_when=lambda tag, vr, length: int(tag) in PIXEL_TAGS)
        ds = FileDataset(self._fp, dataset, self.preamble, self.meta, False, True)  # type: ignore[arg-type]
        ds.set_original_encoding(False, True, dataset._character_set)
        pixels = pixel_bytes(ds)
        self.allowed = (f"more than the {pixels} bytes of pixels its header describes (Rows x Columns x frames x "
                        f"samples x bits) and {trailing_max} bytes after them")
        self.stream.limit = self.stream.tell() + pixels + PIXEL_MARGIN + trailing_max
        if whole:
            self._hold_whole(f", whatever its header describes ({pixels} bytes of pixels)")
        return ds

    def _hold_whole(self, note: str) -> None:
        """Bound :attr:`stream` by :func:`whole_bound` too, where that is less (``note``: said after the bound)."""
        bound = whole_bound(self.size)
        if bound < self.stream.limit:
            self.allowed = (f"more than {bound} bytes held whole in memory ({WHOLE_RATIO_MAX} times the file's "
                            f"{self.size} bytes, {DEFLATED_HEADER_MAX} at least, {WHOLE_MAX} at most){note}")
            self.stream.limit = bound

    def problem(self, hint: str) -> str | None:
        """Why reading :attr:`stream` failed, when it inflated beyond its bound (``hint``: what to do
        then) or the file ended early; ``None``: neither, the caller names the error it caught.
        pydicom's reader turns some errors into its own, so the stream's state says, not the error."""
        if self.stream.exceeded:
            return (f"deflated data set inflates beyond {-(-self.stream.limit // 1000000)} MB: {self.allowed} (a "
                    f"decompression bomb, or a damaged file); it was not read further: {hint}")
        if self.stream.cut_short:
            return DEFLATED_CUT_SHORT
        return None


__all__ = ["DEFLATED_CUT_SHORT", "DeflatedFile", "Inflated", "InflatesBeyond", "pixel_bytes", "whole_bound"]
