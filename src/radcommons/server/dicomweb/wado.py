"""WADO-RS (PS3.18 10.4): find the readable instances, stream them, their metadata, renders, frames.

* Instances go out as ``multipart/related; type="application/dicom"``, one part per instance,
  read from the object store chunk by chunk while they are sent (8.6.1.2).
* A part is sent in its stored transfer syntax when the client accepts it (``transfer-syntax=*``
  or that UID); the default the standard gives when no transfer syntax is named is Explicit VR
  Little Endian (8.7.3.5.2), to which an instance stored otherwise is transcoded (decompressed),
  one instance in memory at a time; any other request gets 406.
* ``/metadata`` is a JSON array of the instances' headers (pixel data left out, 10.4.1.1.2),
  streamed one instance after another.
* ``/rendered`` and ``/frames/{n}/rendered`` go through :func:`radcommons.dicom.rendering.render_frame`;
  a study's or series' ``/rendered`` is ``multipart/related`` with one image part per instance,
  each rendered when its part is reached (10.4.1.1.3): one instance in memory at a time.
* ``/thumbnail`` (10.4.1.1.4, Supplement 203) renders the :func:`representative` image, fitted
  into a viewport (8.3.5.1.3).
* ``/frames/{list}`` sends frames as ``application/octet-stream`` parts (native pixels as
  stored, or the compressed frame when its transfer syntax is accepted).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, UID
from sqlalchemy import select
from sqlalchemy.engine import Connection

from radcommons.dicom.dicomweb_json import header_json
from radcommons.dicom.rendering import (
    THUMBNAIL_SIZE,
    Viewport,
    Window,
    check_frame,
    encode_image,
    fit_viewport,
    frame_count,
    is_image,
    render_frame,
)
from radcommons.server.dicomweb.multipart import OutPart, file_chunks, parse_content_type
from radcommons.store.index import node_tables
from radcommons.store.objects import ObjectStore

EXPLICIT_VR_LE = str(ExplicitVRLittleEndian)
ANY_SYNTAX = "*"


@dataclass(frozen=True)
class StoredInstance:
    """An indexed instance a user may read: its UIDs and where its bytes are."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    object_id: str
    size: int
    transfer_syntax: str
    project: str = ""


def find_instances(conn: Connection, readable: set[str] | None, study_uid: str, series_uid: str | None = None,
                   sop_instance_uid: str | None = None) -> list[StoredInstance]:
    """The instances of a study (series, instance) in the readable projects, in series and instance order.

    Empty when nothing matches or nothing of it is readable: callers answer 404 either way,
    so a researcher cannot tell a sequestered study from one that does not exist.
    """
    tables = node_tables()
    study, series, instance = tables["imaging_study"], tables["series"], tables["instance"]
    statement = (
        select(study.c.study_uid, series.c.series_uid, instance.c.sop_instance_uid, instance.c.sop_class_uid,
               instance.c.object_id, instance.c.size, instance.c.transfer_syntax, study.c.project_id)
        .select_from(instance.join(series, series.c.id == instance.c.series_id)
                     .join(study, study.c.id == series.c.imaging_study_id))
        .where(study.c.study_uid == study_uid)
        .order_by(series.c.series_number, series.c.id, instance.c.instance_number, instance.c.id)
    )
    if readable is not None:
        if not readable:
            return []
        statement = statement.where(study.c.project_id.in_(sorted(readable)))
    if series_uid is not None:
        statement = statement.where(series.c.series_uid == series_uid)
    if sop_instance_uid is not None:
        statement = statement.where(instance.c.sop_instance_uid == sop_instance_uid)
    return [StoredInstance(r.study_uid, r.series_uid, r.sop_instance_uid, r.sop_class_uid or "", r.object_id,
                           int(r.size or 0), r.transfer_syntax or EXPLICIT_VR_LE, r.project_id or "")
            for r in conn.execute(statement)]


# ---------------------------------------------------------------------- content negotiation


@dataclass(frozen=True)
class MediaRange:
    """One media range of an Accept header (RFC 9110 12.5.1): type, parameters (lower-case names, ``q``
    left out) and its weight."""

    media: str
    params: dict[str, str]
    q: float

    def covers(self, media_type: str) -> bool:
        """Whether this range names ``media_type``: exactly, as ``type/*`` or as ``*/*``."""
        if self.media in ("*/*", media_type):
            return True
        return self.media.endswith("/*") and media_type.split("/")[0] == self.media[:-2]

    @property
    def specificity(self) -> int:
        return 0 if self.media == "*/*" else 1 if self.media.endswith("/*") else 2


def media_ranges(accept: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, ``q=0`` ("not acceptable") included; empty for no header."""
    found = []
    for item in _split_accept(accept or ""):
        media, params = parse_content_type(item)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if not 0 <= q <= 1 or q != q:
            q = 1.0
        found.append(MediaRange(media, params, q))
    return found


def acceptable(accept: str | None, media_type: str) -> bool:
    """Whether an Accept header takes ``media_type``: the most specific range naming it has q > 0
    (RFC 9110 12.5.1); no header takes everything."""
    ranges = media_ranges(accept)
    if not ranges:
        return True
    naming = [r for r in ranges if r.covers(media_type)]
    if not naming:
        return False
    best = max(r.specificity for r in naming)
    return all(r.q > 0 for r in naming if r.specificity == best)


def first_acceptable(accept: str | None, offered: Sequence[str]) -> str | None:
    """The first of ``offered`` (the server's preference) the Accept header takes, or None."""
    return next((m for m in offered if acceptable(accept, m)), None)


def accepted_syntaxes(accept: str | None, part_type: str = "application/dicom") -> set[str]:
    """Transfer syntaxes an Accept header allows for parts of ``part_type`` (``*``: any); empty: none.

    ``multipart/related; type="application/dicom"; transfer-syntax=UID`` (PS3.18 8.7.3.5);
    no ``transfer-syntax`` means Explicit VR Little Endian; ``*/*``, a missing header and
    ``multipart/related`` without a type (or with ``type="*/*"``) accept what is stored.
    A range with ``q=0`` accepts nothing.
    """
    if not accept or not accept.strip():
        return {ANY_SYNTAX}
    found: set[str] = set()
    for item in media_ranges(accept):
        if item.q <= 0:
            continue
        media, params = item.media, item.params
        kind = params.get("type", "*/*").lower()
        if media in ("*/*", "multipart/*") or (media == "multipart/related" and kind in (
                "*/*", part_type.split("/")[0] + "/*")):
            found.add(params.get("transfer-syntax", ANY_SYNTAX))  # any part type: the server chooses
        elif (media == "multipart/related" and kind == part_type) or media == part_type:
            found.add(params.get("transfer-syntax", EXPLICIT_VR_LE))
    return found


def _split_accept(accept: str) -> list[str]:
    # Commas separate media ranges, but a quoted parameter may hold one.
    items, current, quoted = [], "", False
    for char in accept:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [i.strip() for i in items if i.strip()]


def delivery(instance: StoredInstance, syntaxes: set[str]) -> str | None:
    """``as_stored``, ``transcode`` (to Explicit VR Little Endian) or None when not acceptable."""
    if ANY_SYNTAX in syntaxes or instance.transfer_syntax in syntaxes:
        return "as_stored"
    if EXPLICIT_VR_LE in syntaxes:
        return "transcode"
    return None


def transcode_explicit_le(data: bytes) -> bytes:
    """An instance re-encoded in Explicit VR Little Endian (decompressed when it was compressed)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LE)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return out.getvalue()


def _stored_chunks(store: ObjectStore, object_id: str) -> Iterator[bytes]:
    # Opened only when the part is reached: a study never holds all its files open at once;
    # the digest is checked as the last chunk is read (a corrupt object aborts the answer).
    yield from file_chunks(store.open(object_id))  # type: ignore[arg-type]


def _transcoded_chunks(store: ObjectStore, object_id: str) -> Iterator[bytes]:
    yield transcode_explicit_le(store.get_bytes(object_id))


def instance_parts(store: ObjectStore, instances: Sequence[StoredInstance], syntaxes: set[str],
                   base_url: str) -> Iterator[OutPart]:
    """The parts of a retrieve answer (``delivery`` must have been checked for every instance)."""
    for item in instances:
        location = instance_url(base_url, item)
        if delivery(item, syntaxes) == "as_stored":
            yield OutPart({"Content-Type": f"application/dicom; transfer-syntax={item.transfer_syntax}",
                           "Content-Length": str(item.size), "Content-Location": location},
                          _stored_chunks(store, item.object_id))
        else:
            yield OutPart({"Content-Type": f"application/dicom; transfer-syntax={EXPLICIT_VR_LE}",
                           "Content-Location": location}, _transcoded_chunks(store, item.object_id))


#: Pixel Data's tag and its key in DICOM JSON and in the bulk data URL.
PIXEL_DATA = 0x7FE00010
PIXEL_DATA_KEY = "7FE00010"


def instance_url(base_url: str, item: StoredInstance) -> str:
    return f"{base_url}/studies/{item.study_uid}/series/{item.series_uid}/instances/{item.sop_instance_uid}"


def pixel_data_json(item: StoredInstance, header: Dataset, base_url: str) -> dict[str, str] | None:
    """Pixel Data of an image as a BulkDataURI (PS3.18 F.2.6): OB when encapsulated or 8-bit, OW otherwise.
    Headers are read without pixel data, so an image (it has Rows) is taken to have it; None otherwise."""
    if "Rows" not in header:
        return None
    encapsulated = UID(item.transfer_syntax).is_encapsulated
    vr = "OB" if encapsulated or int(header.get("BitsAllocated", 16) or 16) <= 8 else "OW"
    return {"vr": vr, "BulkDataURI": f"{instance_url(base_url, item)}/bulkdata/{PIXEL_DATA_KEY}"}


def metadata_chunks(instances: Sequence[StoredInstance], header: Callable[[str], Dataset],
                    base_url: str) -> Iterator[bytes]:
    """A JSON array of the instances' headers, one instance at a time (PS3.18 F.2, 10.4.1.1.2); Pixel Data
    is a BulkDataURI (:func:`pixel_data_json`), other binary values are inline."""
    yield b"["
    for index, item in enumerate(instances):
        ds = header(item.object_id)
        element = header_json(ds)
        pixels = pixel_data_json(item, ds, base_url)
        if pixels is not None:
            element[PIXEL_DATA_KEY] = pixels  # the last tag: the keys stay in order
        yield (b"," if index else b"") + json.dumps(element).encode("utf-8")
    yield b"]"


# ---------------------------------------------------------------------- rendered and frames


def parse_window(value: str | None) -> Window | None:
    """``window=center,width[,function]`` (PS3.18 8.3.5.1.4); only the linear functions."""
    if not value:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() not in ("linear", "linear-exact")):
        raise ValueError("window must be center,width[,linear]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError("window must be center,width[,linear] with two numbers") from None
    if not (math.isfinite(center) and math.isfinite(width)):
        raise ValueError("the window's center and width must be finite numbers")
    if width <= 0:
        raise ValueError("the window width must be positive")
    return Window(center, width)


def parse_viewport(value: str | None) -> Viewport:
    """``viewport=vw,vh`` (PS3.18 8.3.5.1.3), either side may be left empty; without one, a
    :data:`THUMBNAIL_SIZE` square. The cropping form (``vw,vh,sx,sy,sw,sh``) is not supported."""
    if value is None:
        return Viewport(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    parts = [p.strip() for p in value.split(",")]
    if len(parts) == 6:
        raise ValueError("cropping (vw,vh,sx,sy,sw,sh) is not supported: give vw,vh")
    if len(parts) != 2 or not all(re.fullmatch(r"[0-9]{0,5}", p) for p in parts):
        raise ValueError("viewport must be vw,vh: the width and height in pixels")
    width, height = (int(p) if p else None for p in parts)
    if (width is None and height is None) or 0 in (width, height):
        raise ValueError("give a width, a height or both, each at least 1 pixel")
    return Viewport(width, height)


def rendered_media_type(accept: str | None) -> str | None:
    """image/jpeg (the default, PS3.18 8.3.5.1) or image/png, by the Accept header (or the ``accept``
    query parameter, 8.3.3.1); the client's order decides between the two; None if neither."""
    if not accept or not accept.strip():
        return "image/jpeg"
    ranges = sorted((r for r in media_ranges(accept) if r.q > 0), key=lambda r: -r.q)  # stable: ties keep order
    for item in ranges:
        if item.media in ("image/jpeg", "image/png") and acceptable(accept, item.media):
            return item.media
        if item.media in ("*/*", "image/*"):
            return first_acceptable(accept, ("image/jpeg", "image/png"))
    return None


def rendered_part_type(accept: str | None) -> str | None:
    """The part type of a study's or series' rendered answer, ``multipart/related`` (PS3.18 10.4.1.1.3):
    :func:`rendered_media_type` of the Accept header, where ``multipart/related; type="image/png"`` names
    its part type and a bare ``image/png`` (what dicomweb-client sends) is taken as the same."""
    if not accept or not accept.strip():
        return "image/jpeg"
    ranges = [(r.params.get("type", "image/*").lower() if r.media in ("multipart/related", "multipart/*") else r.media,
               r.q) for r in media_ranges(accept)]
    return rendered_media_type(", ".join(f"{media};q={q}" for media, q in ranges))


def representative(instances: Sequence[StoredInstance], header: Callable[[str], Dataset]) -> StoredInstance | None:
    """The image that stands for a study, series or instance in a thumbnail (PS3.18 10.4.1.1.4: the server
    chooses): the middle image of the first series that has one (``instances`` come in series and instance
    order, :func:`find_instances`), so that a CT shows a slice through the body, not its first edge; the
    explorer's series thumbnails take the same middle instance. None when no instance is an image."""
    for _, group in itertools.groupby(instances, key=lambda item: item.series_uid):
        items = list(group)
        middle = len(items) // 2
        for index in sorted(range(len(items)), key=lambda i: (abs(i - middle), i)):
            if is_image(header(items[index].object_id)):
                return items[index]
    return None


def rendered_parts(store: ObjectStore, instances: Sequence[StoredInstance], window: Window | None,
                   media_type: str, quality: int, base_url: str) -> Iterator[OutPart]:
    """The parts of a study's or series' ``/rendered``: each image instance rendered as its own ``/rendered``
    (first frame), read and rendered only when its part is reached, so one instance is in memory at a time;
    instances that are no image are left out."""
    for item in instances:
        data = _render_stored(store, item, window, media_type, quality)
        if data is not None:
            yield OutPart({"Content-Type": media_type, "Content-Length": str(len(data)),
                           "Content-Location": f"{instance_url(base_url, item)}/rendered"}, [data])


def _render_stored(store: ObjectStore, item: StoredInstance, window: Window | None, media_type: str,
                   quality: int) -> bytes | None:
    ds = read_instance(store, item)
    return render(ds, 1, window, media_type, quality) if is_image(ds) else None


def read_instance(store: ObjectStore, instance: StoredInstance) -> Dataset:
    """The whole instance (pixels included), read from the object store and checked against its digest."""
    return pydicom.dcmread(io.BytesIO(store.get_bytes(instance.object_id)))


def render(ds: Dataset, frame: int, window: Window | None, media_type: str, quality: int,
           viewport: Viewport | None = None) -> bytes:
    """One frame as a PNG or JPEG image, fitted into ``viewport`` when one is given."""
    image = render_frame(ds, frame, window)
    return encode_image(image if viewport is None else fit_viewport(image, viewport), media_type, quality)


def frame_delivery(stored_syntax: str, syntaxes: set[str]) -> str | None:
    """How frames of an instance stored in ``stored_syntax`` go out to a client accepting ``syntaxes``:
    ``as_stored`` (native pixels, or the compressed bit stream), ``decoded`` (to native little endian,
    which is what Explicit VR Little Endian asks for) or None: not acceptable (406)."""
    stored = UID(stored_syntax)
    if ANY_SYNTAX in syntaxes or stored_syntax in syntaxes:
        return "as_stored"
    if EXPLICIT_VR_LE in syntaxes:
        # Native little endian pixels are the same bytes in every little endian syntax.
        native_le = not stored.is_encapsulated and stored_syntax != "1.2.840.10008.1.2.2"
        return "as_stored" if native_le else "decoded"
    return None


def frame_bytes(ds: Dataset, frames: Sequence[int], how: str) -> list[tuple[str, bytes]]:
    """(content type, bytes) of each requested frame (1-based); NoSuchFrame for a missing frame.

    ``how`` is :func:`frame_delivery`'s answer: ``as_stored`` slices native pixel data as stored
    (little endian) or sends an encapsulated frame as its compressed bit stream; ``decoded`` sends
    the frame decoded to native little endian pixels.
    """
    count = frame_count(ds)
    for number in frames:
        check_frame(ds, number)
    syntax = ds.file_meta.TransferSyntaxUID
    if how == "as_stored" and syntax.is_encapsulated:
        encoded = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [(f"application/octet-stream; transfer-syntax={syntax}", encoded[n - 1]) for n in frames]
    if how == "decoded":
        pixels = ds.pixel_array
        planes = pixels if count > 1 else pixels[np.newaxis]
        return [("application/octet-stream", np.ascontiguousarray(planes[n - 1]).astype(
            planes.dtype.newbyteorder("<")).tobytes()) for n in frames]
    bits = int(ds.BitsAllocated)
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
    data = ds.PixelData
    return [("application/octet-stream", bytes(data[(n - 1) * size: n * size])) for n in frames]


def pixel_data_parts(ds: Dataset, how: str) -> list[tuple[str, bytes]]:
    """The Pixel Data bulk data (``/bulkdata/7FE00010``): one part holding the whole native value (as
    stored, or decoded), or, sent as stored when encapsulated, one part per compressed frame."""
    if "PixelData" not in ds:
        return []
    frames = frame_bytes(ds, list(range(1, frame_count(ds) + 1)), how)
    if how == "as_stored" and ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return frames
    if how == "as_stored":
        return [("application/octet-stream", bytes(ds.PixelData))]
    return [("application/octet-stream", b"".join(data for _, data in frames))]
