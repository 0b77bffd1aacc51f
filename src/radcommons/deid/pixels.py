"""Detect, redact and confirm burned-in text in DICOM pixel data.

Implements the pixel side of the PS3.15 Annex E **Clean Pixel Data Option**
(E.3.2): identifying information burned into the pixels must be removed before
a de-identifier may set (0028,0301) Burned In Annotation to ``NO`` and list
CID 7050 code 113101 "Clean Pixel Data Option" in (0012,0064).

Two entry points, used by the de-identification engine:

* :func:`needs_pixel_review` - a cheap, header-only triage (works on datasets
  read with ``stop_before_pixels=True``).
* :func:`clean_burned_in_text` - OCR (Tesseract) -> black out word boxes ->
  OCR again to confirm nothing readable remains -> a broader fallback pass ->
  otherwise report why the instance must be withheld.

Policy: *every* readable word is redacted, not only words that look like PHI.
Scanner annotations (``TIS0.5``, ``L12-5``) are lost, which costs little, whereas
a PHI classifier that misses one name leaks it. The clinical image area is
untouched unless OCR reads text inside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.uid import UID, ExplicitVRLittleEndian

from radcommons.deid.ocr import (
    DEFAULT_TIMEOUT_S,
    TESSERACT_MISSING,
    OcrError,
    OcrRequest,
    OcrWord,
    ocr_many,
    tesseract_path,
)

__all__ = [
    "PixelCleanResult",
    "PixelVerdict",
    "clean_burned_in_text",
    "needs_pixel_review",
]

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixel columns/rows of the image

# --- triage -------------------------------------------------------------------------

#: Modalities whose images routinely carry burned-in demographics (ultrasound
#: banners, screen captures, scanned documents, photographs, endoscopy overlays).
HIGH_RISK_MODALITIES = frozenset({"US", "SC", "OT", "DOC", "XC", "ES"})
#: Secondary Capture Image Storage and its multi-frame variants (PS3.4 B.5).
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class PixelVerdict:
    """Header-only decision whether an instance's pixels must go through OCR cleaning."""

    needs_cleaning: bool  # decided from attributes/modality
    reason: str  # why it needs a look / why not


def _upper_values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip().upper()]
    try:
        return [str(v).strip().upper() for v in value]  # type: ignore[union-attr]
    except TypeError:
        return [str(value).strip().upper()]


#: SOP classes whose pixels a program computed (PS3.3 A.51, A.75): segment labels or
#: parametric values, with no place for burned-in text.
COMPUTED_PIXEL_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a Segmentation",
    "1.2.840.10008.5.1.4.1.1.30": "a Parametric Map",
}


def needs_pixel_review(ds: pydicom.Dataset) -> PixelVerdict:
    """Decide from the header alone whether pixels may hold burned-in text.

    (0028,0301) Burned In Annotation = ``YES`` always means review. Its absence
    is *not* ``NO`` (it is Type 3 in most IODs), so absence plus a risk signal
    (modality US/SC/OT/DOC/XC/ES, a Secondary Capture SOP Class, or ImageType
    SECONDARY/DERIVED/SCREEN SAVE) also means review. For screen captures and
    the high-risk modalities even an explicit ``NO`` is not trusted: devices
    hard-code it while printing the patient banner (cheap to check, costly to
    get wrong). An explicit ``NO`` on other modalities (CT, MR, CR, DX, ...) is
    accepted. Works with ``stop_before_pixels=True`` (Rows then stands in for
    the absent Pixel Data).
    """
    has_pixels = any(k in ds for k in _PIXEL_KEYWORDS)
    if not has_pixels and "Rows" not in ds:
        return PixelVerdict(False, "no pixel data: nothing burned in to clean")

    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    image_type = _upper_values(ds.get("ImageType"))

    if burned == "YES":
        return PixelVerdict(True, "Burned In Annotation (0028,0301) is YES")
    if sop_class in COMPUTED_PIXEL_CLASSES:
        # DERIVED, often modality OT and without (0028,0301), yet its pixels are labels or computed
        # values a program wrote: asked to OCR a 1-bit mask or float map, every one was withheld.
        return PixelVerdict(False, f"{COMPUTED_PIXEL_CLASSES[sop_class]}: computed pixels, not a captured image")

    strong: list[str] = []  # signals that override an explicit NO
    if modality in HIGH_RISK_MODALITIES:
        strong.append(f"modality {modality} routinely carries burned-in text")
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        strong.append(f"Secondary Capture SOP Class {sop_class}")
    if "SCREEN SAVE" in image_type:
        strong.append("ImageType contains SCREEN SAVE")
    weak = [f"ImageType contains {t}" for t in ("SECONDARY", "DERIVED") if t in image_type]

    if strong:
        state = "NO (not trusted for this kind of image)" if burned == "NO" else (
            "absent (absent is not NO)" if not burned else repr(burned)
        )
        return PixelVerdict(True, f"{'; '.join(strong + weak)}; Burned In Annotation {state}")
    if burned == "NO":
        return PixelVerdict(False, f"Burned In Annotation (0028,0301) is NO for modality {modality or '?'}")
    if weak:
        return PixelVerdict(True, f"{'; '.join(weak)}; Burned In Annotation absent (absent is not NO)")
    if burned:
        return PixelVerdict(True, f"Burned In Annotation has unrecognised value {burned!r}")
    return PixelVerdict(
        False,
        f"Burned In Annotation absent, but modality {modality or '?'} with ORIGINAL image type "
        "carries no burned-in-text risk signal",
    )


# --- cleaning -----------------------------------------------------------------------


@dataclass(frozen=True)
class PixelCleanResult:
    """Outcome of :func:`clean_burned_in_text` (PS3.15 E.3.2 Clean Pixel Data)."""

    cleaned: bool  # True: text was found, redacted and re-OCR confirmed clean (or no text found at all)
    withheld_reason: str | None  # set when it could not clean and confirm -> the file must be withheld
    regions: tuple[tuple[int, int, int, int], ...]  # boxes blacked out (x, y, w, h)


#: Word confidence (0-100) at which a word on its own is taken as text.
DETECT_CONF = 40.0
#: Lower confidence accepted for a word that sits on the same text row as an accepted
#: word: Tesseract scores e.g. "ZZZ TEST" at 10-40 while reading it right beside a
#: 97-confidence MRN, so the row context is better evidence than the score.
NEIGHBOUR_CONF = 5.0
#: Confidence a word needs to vouch for its low-confidence row neighbours.
SEED_CONF = 55.0
#: Tallest glyph box (original pixels) taken as text, raised to rows/12 for big images.
MAX_TEXT_HEIGHT = 40
#: Confirmation fails on a word of >= this many alphanumerics at >= CONFIRM_CONF;
#: 1-2 character low-confidence garbage from speckle is tolerated.
CONFIRM_MIN_ALNUM = 3
CONFIRM_CONF = 50.0
#: Below this glyph height (original pixels) text is not legible to a human either.
MIN_TEXT_HEIGHT = 5
#: Images up to this many pixels are OCR'd at 2x as well: US banners use ~10-13 px
#: glyphs, below Tesseract's comfortable x-height (2x lifted "CLEVELAN.." 52 -> 83).
UPSCALE_MAX_PIXELS = 2_500_000
#: Top/bottom fraction of the image treated as a banner zone by the fallback pass.
BANNER_FRACTION = 0.12
#: Multi-frame instances with more frames than this are withheld (about 1 s per frame).
DEFAULT_MAX_FRAMES = 32
_MAX_CONFIRM_ROUNDS = 3


def _word_box_plausible(w: OcrWord, scale: int, rows: int) -> bool:
    """Reject boxes that cannot be a word: unreadably small, huge, or the wrong shape.

    A row of bright tissue read as "ee" came back 768x10 px, a cartoon mouth read as
    "a" 132x55 px and a vertical edge as "1" 3x47 px; real glyphs are about 0.15-1
    text-height wide each.
    """
    h = w.height / scale
    width = w.width / scale
    if w.n_alnum < 1 or h < MIN_TEXT_HEIGHT or h > max(MAX_TEXT_HEIGHT, rows / 12):
        return False
    return 0.12 * h <= width <= h * (0.9 * len(w.text) + 1)


def _same_row(a: Box, b: Box) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    overlap = min(ay + ah, by + bh) - max(ay, by)
    if overlap < 0.5 * min(ah, bh):
        return False
    gap = max(bx - (ax + aw), ax - (bx + bw), 0)
    return gap <= 2.5 * max(ah, bh)


def _is_seed(w: OcrWord) -> bool:
    """A word certain enough to vouch for low-confidence words on its text row."""
    return w.conf >= SEED_CONF and (w.n_alnum >= 3 or w.conf >= 85)


def _select_text_boxes(
    passes: Iterable[tuple[list[OcrWord], int]], rows: int
) -> list[tuple[Box, OcrWord]]:
    """Pick word boxes (original-pixel coordinates) that are text, from several OCR passes.

    A word is text when its confidence is >= DETECT_CONF, or when it lies on the same
    row as a chain of words that starts at a *seed* (confident, >= 3 alphanumerics);
    chains only pass through words of >= 3 alphanumerics, so speckle fragments ("a,",
    "<3") cannot start or relay one.
    """
    cands: list[tuple[Box, OcrWord]] = []
    for words, scale in passes:
        for w in words:
            if w.conf >= NEIGHBOUR_CONF and _word_box_plausible(w, scale, rows):
                box = (w.left // scale, w.top // scale, math.ceil(w.width / scale), math.ceil(w.height / scale))
                cands.append((box, w))
    accepted = [c for c in cands if c[1].conf >= DETECT_CONF]
    anchors = [c[0] for c in accepted if _is_seed(c[1])]
    rest = [c for c in cands if c[1].conf < DETECT_CONF]
    grew = True
    while grew and rest and anchors:  # grow along text rows until nothing is added
        grew = False
        for c in list(rest):
            if any(_same_row(c[0], a) for a in anchors):
                accepted.append(c)
                rest.remove(c)
                if c[1].n_alnum >= 3:
                    anchors.append(c[0])
                grew = True
    return accepted


def _expand(box: Box, shape: tuple[int, int], margin: int | None = None) -> Box:
    """Grow a word box by a margin (anti-aliased glyph edges, ascenders, descenders)."""
    x, y, w, h = box
    m = margin if margin is not None else max(3, math.ceil(0.3 * h))
    rows, cols = shape
    x0, y0 = max(0, x - m), max(0, y - m)
    x1, y1 = min(cols, x + w + m), min(rows, y + h + m)
    return (x0, y0, x1 - x0, y1 - y0)


def _merge_boxes(boxes: Iterable[Box]) -> list[Box]:
    """Tidy the region list without blacking out one extra pixel.

    Two boxes are merged only when their bounding rectangle is exactly their union
    (a box inside another, or neighbours on the same text row with equal height);
    merging into a looser bounding rectangle would wipe clinical pixels between
    a banner and a side panel.
    """
    out = list(dict.fromkeys(b for b in boxes if b[2] > 0 and b[3] > 0))
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                ax, ay, aw, ah = out[i]
                bx, by, bw, bh = out[j]
                x0, y0 = min(ax, bx), min(ay, by)
                x1, y1 = max(ax + aw, bx + bw), max(ay + ah, by + bh)
                iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
                ih = max(0, min(ay + ah, by + bh) - max(ay, by))
                if (x1 - x0) * (y1 - y0) == aw * ah + bw * bh - iw * ih and (
                    iw * ih > 0 or ax + aw == bx or bx + bw == ax or ay + ah == by or by + bh == ay
                ):
                    out[i] = (x0, y0, x1 - x0, y1 - y0)
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(out, key=lambda b: (b[1], b[0]))


def _blackout(img: np.ndarray, boxes: Iterable[Box], value: float | int) -> None:
    """Set every box in a (rows, cols[, samples]) frame to ``value`` (all channels)."""
    for x, y, w, h in boxes:
        img[y : y + h, x : x + w, ...] = value


def _to_display_u8(frame: np.ndarray, photometric: str, ds: pydicom.Dataset) -> np.ndarray:
    """8-bit greyscale, bright = high signal, for OCR.

    Colour: max over channels, so coloured annotations (yellow, teal) stay bright
    rather than being dimmed by a luminance weighting. Mono > 8 bit: the header's
    VOI window when present (burned-in text is drawn at or near the maximum and
    saturates to white), else a robust percentile stretch. MONOCHROME1 is inverted.
    """
    if frame.ndim == 3:
        grey = frame.max(axis=2)
    else:
        grey = frame
    if grey.dtype == np.uint8 and photometric != "MONOCHROME1":
        return np.ascontiguousarray(grey)
    data = grey.astype(np.float64)
    if frame.ndim == 2 and "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            from pydicom.pixels import apply_modality_lut, apply_voi_lut

            data = apply_voi_lut(apply_modality_lut(grey, ds), ds, index=0).astype(np.float64)
        except Exception:  # noqa: BLE001 - malformed window: fall back to stretching
            data = grey.astype(np.float64)
    lo, hi = np.percentile(data, [0.5, 99.9])
    if hi <= lo:
        lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        out = np.zeros(data.shape, np.uint8)
    else:
        out = (np.clip((data - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _upscale2(img: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)


def _ocr_passes(disp: np.ndarray, variants: Sequence[tuple[bool, int, int]], timeout: float) -> list[tuple[list[OcrWord], int]]:
    """Run OCR variants (inverted?, scale, psm) in parallel; returns (words, scale) per pass."""
    allow_2x = disp.size <= UPSCALE_MAX_PIXELS
    reqs: list[OcrRequest] = []
    scales: list[int] = []
    for invert, scale, psm in variants:
        if scale == 2 and not allow_2x:
            continue
        img = 255 - disp if invert else disp
        reqs.append(OcrRequest(_upscale2(img) if scale == 2 else img, psm))
        scales.append(scale)
    return list(zip(ocr_many(reqs, timeout=timeout), scales))


# Detection and confirmation deliberately use different image variants so the
# confirmation is not blind in the same way the detection was. Tesseract prefers dark
# text on light ground; ultrasound text is light on dark, hence inverted variants.
_DETECT = ((False, 1, 11), (True, 2, 11), (False, 1, 6))
_CONFIRM = ((False, 2, 11), (False, 2, 6), (False, 1, 11), (True, 1, 11))


def _failing(words: list[tuple[Box, OcrWord]]) -> list[tuple[Box, OcrWord]]:
    return [(b, w) for b, w in words if w.n_alnum >= CONFIRM_MIN_ALNUM and w.conf >= CONFIRM_CONF]


def _clean_frame(disp: np.ndarray, timeout: float) -> tuple[list[Box], str | None]:
    """Find text in one display frame, black it out (in ``disp`` too) and confirm.

    Returns the redaction boxes and None, or the boxes so far and a reason it failed.
    """
    shape = (disp.shape[0], disp.shape[1])
    rows = shape[0]
    found = _select_text_boxes(_ocr_passes(disp, _DETECT, timeout), rows)
    if not found:
        # Nothing at detection: still run the stricter confirmation variants once, so an
        # image is only declared text-free when both sets of passes agree.
        found = _select_text_boxes(_ocr_passes(disp, _CONFIRM, timeout), rows)
        if not found:
            return [], None
    boxes = [_expand(b, shape) for b, _ in found]
    _blackout(disp, boxes, 0)

    failing: list[tuple[Box, OcrWord]] = []
    for _ in range(_MAX_CONFIRM_ROUNDS):
        residual = _select_text_boxes(_ocr_passes(disp, _CONFIRM, timeout), rows)
        failing = _failing(residual)
        if residual:
            # Redact what the confirmation still reads (even tolerated fragments: cheap).
            more = [_expand(b, shape) for b, _ in residual]
            boxes.extend(more)
            _blackout(disp, more, 0)
        if not failing:
            return boxes, None

    # Broader fallback: blank the whole row band in banner zones (text clusters there),
    # elsewhere a box grown by a full text height.
    broad: list[Box] = []
    for (x, y, w, h), _ in failing:
        if y + h <= BANNER_FRACTION * rows or y >= (1 - BANNER_FRACTION) * rows:
            m = max(3, h // 2)
            y0 = max(0, y - m)
            broad.append((0, y0, shape[1], min(rows, y + h + m) - y0))
        else:
            broad.append(_expand((x, y, w, h), shape, margin=max(4, h)))
    boxes.extend(broad)
    _blackout(disp, broad, 0)
    still = _failing(_select_text_boxes(_ocr_passes(disp, _CONFIRM + _DETECT, timeout), rows))
    if still:
        sample = ", ".join(repr(w.text) for _, w in still[:5])
        return boxes, f"burned-in text still readable after redaction: {sample}"
    return boxes, None


def _background_value(arr: np.ndarray, photometric: str) -> int | float:
    """Stored value that displays as black: MONOCHROME1 is inverted, so its maximum."""
    if photometric == "MONOCHROME1":
        return arr.max().item()
    if arr.ndim >= 3 and photometric != "MONOCHROME2":
        return 0
    return arr.min().item()


def _length_mismatch(ds: pydicom.Dataset, transfer_syntax: str, frames: int) -> str:
    """Why native Pixel Data is not the size its attributes give (PS3.5 8.1.1: Rows x Columns x
    Samples per Pixel x Bits Allocated / 8 per frame, padded to even), or "". Bytes beyond the
    image are not shown by a viewer but may be by another reader, and OCR of a frame read
    from the wrong place checks nothing: either way the text in them cannot be vouched for."""
    if UID(transfer_syntax).is_compressed:
        return ""
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 8) or 8)
    expected = math.ceil(rows * columns * samples * frames * bits / 8)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        expected = expected * 2 // 3  # two chroma samples per two pixels (PS3.3 C.7.6.3.1.2)
    actual = len(ds.PixelData)
    if actual not in (expected, expected + 1):
        return (f"Pixel Data holds {actual} bytes, not the {expected} of {frames} frame(s) of Rows x Columns x "
                f"Samples per Pixel x Bits Allocated ({rows} x {columns} x {samples} x {bits} bits): "
                "it cannot be checked for burned-in text")
    return ""


def clean_burned_in_text(
    ds: pydicom.Dataset,
    *,
    max_frames: int = DEFAULT_MAX_FRAMES,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> PixelCleanResult:
    """Redact burned-in text from ``ds`` in place and confirm by re-OCR (PS3.15 E.3.2).

    Every frame is OCR'd with Tesseract (several variants: as displayed, inverted,
    2x upscaled; sparse ``--psm 11`` and block ``--psm 6``). Word boxes with at
    least one alphanumeric are expanded by a margin and set to the stored value
    that displays black, in all channels. Other OCR variants then re-read the
    image; words of >= 3 alphanumerics at decent confidence are redacted and
    re-checked, then a broader pass blanks whole banner rows, and if text is still
    readable the result carries ``withheld_reason``. Boxes found on any frame are
    applied to all frames (cine overlays sit in fixed places).

    When something is redacted, the pixels are written back uncompressed: Transfer
    Syntax Explicit VR Little Endian, YBR_* decoded to RGB (Planar Configuration
    0), Bits Allocated/Stored unchanged, (0028,2110) Lossy Image Compression left
    as it was (a lossy original stays ``01``). The caller then sets (0028,0301)
    Burned In Annotation to ``NO`` and claims the Clean Pixel Data Option. SOP
    Instance UID is not touched (the engine replaces UIDs). Never raises for
    missing/failed OCR or undecodable pixels: those come back as withheld.
    """
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        return PixelCleanResult(True, None, ())
    if "PixelData" not in ds:
        return PixelCleanResult(False, "float pixel data is not supported by burned-in text cleaning", ())
    if tesseract_path() is None:
        return PixelCleanResult(False, TESSERACT_MISSING, ())

    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > max_frames:
        return PixelCleanResult(
            False,
            f"multi-frame image with {n_frames} frames exceeds the OCR limit of {max_frames} frames",
            (),
        )
    if int(ds.get("BitsAllocated", 8) or 8) not in (8, 16):
        return PixelCleanResult(False, f"Bits Allocated {ds.get('BitsAllocated')} is not supported", ())

    meta_in = getattr(ds, "file_meta", None)
    tsyntax = meta_in.get("TransferSyntaxUID", ExplicitVRLittleEndian) if meta_in else ExplicitVRLittleEndian
    mismatch = _length_mismatch(ds, tsyntax, n_frames)
    if mismatch:
        return PixelCleanResult(False, mismatch, ())
    try:
        from pydicom.pixels import get_decoder

        arr, meta = get_decoder(tsyntax).as_array(ds, as_rgb=True)
        photometric = str(meta.get("photometric_interpretation", ds.get("PhotometricInterpretation", "")))
    except Exception as exc:  # noqa: BLE001 - any decoder failure means we cannot inspect
        return PixelCleanResult(False, f"pixel data could not be decoded for OCR: {exc}", ())

    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB"):
        return PixelCleanResult(
            False, f"Photometric Interpretation {photometric} is not supported by burned-in text cleaning", ()
        )
    frames = arr if n_frames > 1 else arr[np.newaxis, ...]
    expected = (n_frames, int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
    if frames.shape[:3] != expected:  # what OCR reads must be the image a viewer shows
        return PixelCleanResult(False, f"pixel data decodes to shape {tuple(frames.shape)}, not frames x Rows x "
                                f"Columns {expected}: it cannot be checked for burned-in text", ())

    all_boxes: list[Box] = []
    try:
        for frame in frames:
            disp = _to_display_u8(frame, photometric, ds)
            _blackout(disp, all_boxes, 0)  # do not re-find what other frames already found
            boxes, reason = _clean_frame(disp, timeout)
            all_boxes.extend(boxes)
            if reason is not None:
                return PixelCleanResult(False, reason, tuple(_merge_boxes(all_boxes)))
    except OcrError as exc:
        return PixelCleanResult(False, str(exc), ())

    regions = tuple(_merge_boxes(all_boxes))
    if not regions:
        return PixelCleanResult(True, None, ())

    out = np.array(frames, copy=True)
    value = _background_value(out, photometric)
    for f in out:
        _blackout(f, regions, value)
    _write_back(ds, out if n_frames > 1 else out[0], photometric)
    return PixelCleanResult(True, None, regions)


def _write_back(ds: pydicom.Dataset, arr: np.ndarray, photometric: str) -> None:
    """Store redacted pixels uncompressed, keeping the Image Pixel module consistent."""
    if not hasattr(ds, "file_meta"):
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    # set_pixel_data refuses big-endian datasets; the array is native already and the
    # file is re-encoded on save, so switching the syntax first is safe.
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    bits_stored = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
    lossy = ds.get("LossyImageCompression")
    ds.set_pixel_data(arr, photometric, bits_stored, generate_instance_uid=False)
    if lossy is not None:  # a lossy original stays lossy (PS3.3 C.7.6.1.1.5)
        ds.LossyImageCompression = lossy
