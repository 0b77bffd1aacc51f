"""Render a DICOM frame for display: modality LUT, VOI window, photometric inversion, 8 bits.

Used by WADO-RS ``/rendered`` (PS3.18 8.3.5.1, 10.4.1.1.3) and ``/thumbnail`` (10.4.1.1.4,
Supplement 203), the explorer's thumbnails and the ML export, so that a chest X-ray looks the
same everywhere. The steps are the grayscale
pipeline of PS3.3 C.11 (and PS3.4 N.2):

1. the stored values go through the Modality LUT (Rescale Slope/Intercept or a Modality LUT
   Sequence) to modality values (HU for CT);
2. the VOI transform picks what to see: an explicit ``window`` (center, width) when given,
   else the first VOI LUT Sequence item, else the first Window Center/Width (linear function,
   C.11.2.1.2.1), else the minimum and maximum of the modality values; naive max scaling of
   the stored values is what makes exported chest X-rays look wrong;
3. MONOCHROME1 is inverted (its minimum is white, C.7.6.3.1.2), so every output is
   "high is bright";
4. the result is scaled to 0..255 (``uint8``).

Colour images (RGB, YBR_*) are converted to RGB and passed through without windowing.
:func:`fit_viewport` scales a rendered image into a viewport (8.3.5.1.3), aspect ratio kept.
Pure: numpy and Pillow only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi

#: Media types :func:`encode_image` writes (PS3.18 8.7.4: image/jpeg is the default rendered type).
RENDERED_MEDIA_TYPES = ("image/jpeg", "image/png")

#: Longest side of a thumbnail when the client names no viewport (PS3.18 10.4.1.1.4: the server chooses).
THUMBNAIL_SIZE = 256


@dataclass(frozen=True)
class Window:
    """A linear VOI window (PS3.3 C.11.2.1.2): ``center`` and ``width`` in modality values."""

    center: float
    width: float


def frame_count(ds: Dataset) -> int:
    """Number of frames of an image (1 when Number of Frames is absent)."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def middle_frame(ds: Dataset) -> int:
    """The frame (1-based) that represents an instance: the middle one, as the middle instance represents
    a series (for a cine or a multi-frame CT, a frame from within the run, not its first edge)."""
    return frame_count(ds) // 2 + 1


def is_image(ds: Dataset) -> bool:
    """Whether an instance, or its header read without the pixel data, is an image: it has Rows
    (structured reports, key object selections and other documents have none)."""
    return "Rows" in ds


class NoSuchFrame(ValueError):
    """A frame number outside 1 .. Number of Frames (PS3.3 C.7.6.6)."""


def check_frame(ds: Dataset, frame: int) -> int:
    """The number of frames of ``ds``; :class:`NoSuchFrame` when ``frame`` (1-based) is not one of them."""
    count = frame_count(ds)
    if not 1 <= frame <= count:
        raise NoSuchFrame(f"frame {frame} does not exist; the instance has {count} frame(s)")
    return count


def _frame(ds: Dataset, frame: int) -> NDArray[np.generic]:
    count = check_frame(ds, frame)
    pixels = ds.pixel_array
    return pixels[frame - 1] if count > 1 else pixels


def _first(value: object) -> float:
    # Window Center/Width are multi-valued when several windows are proposed: use the first.
    if isinstance(value, (MultiValue, list, tuple)):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def linear_window(values: NDArray[np.floating], window: Window) -> NDArray[np.float64]:
    """PS3.3 C.11.2.1.2.1 linear function: modality values to 0..1."""
    width = max(window.width, 1.0)
    low = window.center - 0.5 - (width - 1) / 2
    out = (values.astype(np.float64) - low) / (width - 1) if width > 1 else (values > window.center - 0.5) * 1.0
    return np.clip(out, 0.0, 1.0)


def _min_max(values: NDArray[np.floating]) -> NDArray[np.float64]:
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def render_frame(ds: Dataset, frame: int = 1, window: Window | None = None) -> NDArray[np.uint8]:
    """The display image of ``frame`` (1-based) of ``ds``: ``uint8`` (rows, columns) or (rows, columns, 3).

    Raises :class:`ValueError` for a frame that does not exist or a header without pixels.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError("the instance has no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    pixels = _frame(ds, frame)
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        # pydicom hands YBR_* colour back as RGB already (pixel_array converts by default).
        rgb = pixels.astype(np.float64)
        top = float(2 ** int(ds.get("BitsStored", 8) or 8) - 1)
        return np.clip(np.round(rgb / top * 255.0), 0, 255).astype(np.uint8)
    modality = apply_modality_lut(pixels, ds)
    if window is not None:
        unit = linear_window(modality, window)
    elif "VOILUTSequence" in ds:
        voi = apply_voi(modality, ds)
        unit = _min_max(voi)  # a VOI LUT's output range is its own; scale that range
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        unit = linear_window(modality, Window(_first(ds.WindowCenter), _first(ds.WindowWidth)))
    else:
        unit = _min_max(modality)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return np.round(unit * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class Viewport:
    """The box an image is fitted into (PS3.18 8.3.5.1.3 ``vw,vh``), in pixels; None leaves that side free."""

    width: int | None
    height: int | None


def fit_viewport(image: NDArray[np.uint8], viewport: Viewport) -> NDArray[np.uint8]:
    """``image`` scaled down into ``viewport`` (Lanczos), its aspect ratio kept; never enlarged, so an
    image already inside the viewport comes back as it is."""
    rows, columns = image.shape[:2]
    scale = min([1.0] + [side / extent for side, extent in ((viewport.width, columns), (viewport.height, rows))
                         if side is not None])
    if scale >= 1.0:
        return image
    from PIL import Image  # imported here: only rendering needs Pillow

    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))  # Pillow's order: width, height
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def encode_image(image: NDArray[np.uint8], media_type: str = "image/jpeg", quality: int = 90) -> bytes:
    """``image`` as PNG or JPEG bytes (``quality`` 1-100 for JPEG, PS3.18 8.3.5.1.3)."""
    from PIL import Image  # imported here: only rendering needs Pillow

    picture = Image.fromarray(image)  # uint8 (rows, columns) is "L", (rows, columns, 3) is "RGB"
    buffer = io.BytesIO()
    if media_type == "image/png":
        picture.save(buffer, format="PNG")
    elif media_type == "image/jpeg":
        picture.save(buffer, format="JPEG", quality=max(1, min(100, int(quality))))
    else:
        raise ValueError(f"cannot render as {media_type}; choose one of {', '.join(RENDERED_MEDIA_TYPES)}")
    return buffer.getvalue()
