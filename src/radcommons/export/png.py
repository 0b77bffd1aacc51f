"""Radiographs to PNG: the grayscale display pipeline of PS3.3 C.11, 8 or 16 bits, resized.

1. Modality LUT (C.11.1: Rescale Slope/Intercept or a Modality LUT Sequence);
2. VOI (C.11.2): the first item of a VOI LUT Sequence (0028,3010), else the first Window
   Center/Width (linear function, C.11.2.1.2.1), else, and the label table says so, a
   percentile window (0.5-99.5 % of the modality values). Never the stored maximum:
   naive max scaling is what makes exported chest X-rays grey and flat;
3. MONOCHROME1 is inverted (C.7.6.3.1.2: its minimum is white), so every PNG is
   "high is bright";
4. scaled to 0..255 or 0..65535, optionally resized (longest side, aspect kept, Lanczos).

The window arithmetic is :mod:`radcommons.dicom.rendering`'s (the one WADO-RS ``/rendered``
uses), so an export and the viewer agree. Colour images pass through as RGB (8 bits).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi

from radcommons.dicom.rendering import Window, frame_count, linear_window

#: Percentiles of the fallback window.
FALLBACK_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Rendered:
    """One exported frame and how it was windowed."""

    image: NDArray[Any]  # uint8 or uint16 (rows, columns), or uint8 RGB
    window_source: str  # voi_lut | window | percentile | colour
    window_center: float | None
    window_width: float | None
    inverted: bool


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _unit_range(values: NDArray[np.float64]) -> NDArray[np.float64]:
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high <= low else (values - low) / (high - low)


def window_frame(ds: Dataset, pixels: NDArray[Any]) -> tuple[NDArray[np.float64], str, float | None, float | None]:
    """Modality then VOI transform of one grayscale frame: values in 0..1 and the window used."""
    modality = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if "VOILUTSequence" in ds:
        # A VOI LUT's output range is its own (LUT Descriptor bits): scale that range.
        # A LUT is indexed by integers: hand it integral modality values as integers.
        source = np.rint(modality).astype(np.int64) if np.array_equal(modality, np.rint(modality)) else modality
        voi = np.asarray(apply_voi(source, ds, index=0), dtype=np.float64)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return np.clip(voi / float(2**bits - 1), 0.0, 1.0), "voi_lut", None, None
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        return linear_window(modality, Window(center, width)), "window", center, width
    low, high = (float(v) for v in np.percentile(modality, FALLBACK_PERCENTILES))
    if high <= low:
        return _unit_range(modality), "percentile", (low + high) / 2, max(high - low, 1.0)
    return np.clip((modality - low) / (high - low), 0.0, 1.0), "percentile", (low + high) / 2, high - low


def render(ds: Dataset, frame: int = 1, *, bits: int = 8, size: int | None = None,
           pixels: NDArray[Any] | None = None) -> Rendered:
    """Frame ``frame`` (1-based) of ``ds`` as a display image; ``pixels`` avoids re-decoding."""
    if bits not in (8, 16):
        raise ValueError(f"PNG bit depth must be 8 or 16, not {bits}")
    if pixels is None:
        array = ds.pixel_array
        pixels = array[frame - 1] if frame_count(ds) > 1 else array
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        top = float(2 ** int(ds.get("BitsStored", 8) or 8) - 1)
        rgb = np.clip(np.round(pixels.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
        return Rendered(_resize(rgb, size), "colour", None, None, False)
    unit, source, center, width = window_frame(ds, pixels)
    inverted = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1"
    if inverted:
        unit = 1.0 - unit
    top = 255.0 if bits == 8 else 65535.0
    image = np.round(unit * top).astype(np.uint8 if bits == 8 else np.uint16)
    return Rendered(_resize(image, size), source, center, width, inverted)


def _resize(image: NDArray[Any], size: int | None) -> NDArray[Any]:
    """Longest side ``size``, aspect kept, antialiased (Lanczos on float, so 16 bits survive)."""
    if not size or max(image.shape[:2]) == size:
        return image
    from PIL import Image

    rows, columns = image.shape[:2]
    scale = size / max(rows, columns)
    target = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    if image.ndim == 3:
        return np.asarray(Image.fromarray(image).resize(target, Image.Resampling.LANCZOS))
    resized = np.asarray(Image.fromarray(image.astype(np.float32)).resize(target, Image.Resampling.LANCZOS))
    top = np.iinfo(image.dtype).max
    return np.clip(np.round(resized), 0, top).astype(image.dtype)


def png_bytes(image: NDArray[Any]) -> bytes:
    """PNG bytes of a uint8 / uint16 grayscale or uint8 RGB image."""
    from PIL import Image

    if image.dtype == np.uint16:
        # 16-bit grayscale PNG: Pillow's "I;16" mode from raw little-endian bytes.
        picture = Image.frombytes("I;16", (image.shape[1], image.shape[0]), image.astype("<u2").tobytes())
    else:
        picture = Image.fromarray(image)
    buffer = io.BytesIO()
    # compress_level 1: level 6 triples the time of a large radiograph for a few percent.
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
