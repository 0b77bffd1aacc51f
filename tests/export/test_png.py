"""Radiograph -> PNG: MONOCHROME1 inversion, VOI LUT and window, percentile fallback, bits, resize."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi

from radcommons.export.png import png_bytes, render


def _cr(pixels: np.ndarray, photometric: str = "MONOCHROME1", **attributes: object) -> Dataset:
    ds = Dataset()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


def _image() -> np.ndarray:
    pixels = np.full((40, 60), 1000, dtype=np.uint16)
    pixels[10:20, 10:20] = 3000  # high stored values
    pixels[0, 0] = 4095  # a hot pixel naive max scaling would chase
    return pixels


def test_monochrome1_is_inverted_so_display_bright_stays_bright() -> None:
    # MONOCHROME1: low stored values are displayed bright. The 1000 background is brighter than the 3000 square.
    out = render(_cr(_image(), WindowCenter=2000, WindowWidth=2000)).image
    assert out.dtype == np.uint8 and out[30, 30] > out[15, 15]
    assert render(_cr(_image(), "MONOCHROME2", WindowCenter=2000, WindowWidth=2000)).image[15, 15] > 200


def test_window_is_applied_not_max_scaling() -> None:
    rendered = render(_cr(_image(), "MONOCHROME2", WindowCenter=2000, WindowWidth=2001))
    assert rendered.window_source == "window" and rendered.window_center == 2000
    assert rendered.image[30, 30] == 0 and rendered.image[15, 15] == 255  # outside the window: clipped
    # First of several windows.
    rendered = render(_cr(_image(), "MONOCHROME2", WindowCenter=[2000, 500], WindowWidth=[2001, 100]))
    assert rendered.window_center == 2000


def test_voi_lut_sequence_wins() -> None:
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 8])  # LUT Descriptor
    item.add_new(0x00283006, "US", [min(255, v // 8) for v in range(4096)])  # LUT Data
    ds = _cr(_image(), "MONOCHROME2", WindowCenter=100, WindowWidth=10)
    ds.VOILUTSequence = [item]
    rendered = render(ds)
    assert rendered.window_source == "voi_lut"
    # The LUT's own output (pydicom decodes it), scaled from its 8-bit range; not the window.
    expected = np.asarray(apply_voi(ds.pixel_array, ds), dtype=np.float64) / 255 * 255
    assert np.array_equal(rendered.image, np.round(expected).astype(np.uint8))


def test_percentile_fallback_without_window() -> None:
    rendered = render(_cr(_image(), "MONOCHROME2"))
    assert rendered.window_source == "percentile"
    # The hot pixel does not set the top: the square (3000) is white already.
    assert rendered.image[15, 15] == 255


def test_16_bit_and_resize_keep_aspect() -> None:
    rendered = render(_cr(_image(), "MONOCHROME2", WindowCenter=2000, WindowWidth=2000), bits=16, size=30)
    assert rendered.image.dtype == np.uint16 and rendered.image.shape == (20, 30)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(rendered.image))))
    assert decoded.shape == (20, 30) and decoded.max() > 255
    with pytest.raises(ValueError):
        render(_cr(_image()), bits=12)
