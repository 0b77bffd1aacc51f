"""Lung ultrasound (Ultrasound Image Storage) and CT dose screens (Secondary Capture Image Storage).

These are the images that carry burned-in text in real exports: US machines
print the patient banner into every frame, and scanner dose-report screen saves
print name, MRN and dose. US Image IOD: PS3.3 A.6 (US Image C.8.5.6); SC Image
IOD: PS3.3 A.8 (SC Equipment C.8.6.1, SC Image C.8.6.2). BurnedInAnnotation
(0028,0301) is YES when the site's device says so and simply absent otherwise,
as in real exports: absent does not mean NO.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from radcommons.synth import phantom
from radcommons.synth.burnin import draw_lines
from radcommons.synth.dicom_writers import (
    SC_IMAGE_STORAGE,
    US_IMAGE_STORAGE,
    SeriesContext,
    StudyContext,
    add_equipment,
    add_general_image,
    add_patient_and_study,
    add_private_blocks,
    add_series,
    new_dataset,
)


def _pixel_module_gray8(ds: Dataset, pixels: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(v) for v in pixels.shape)
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()


def ultrasound(
    ctx: StudyContext,
    series: SeriesContext,
    sop_instance_uid: str,
    instance_number: int,
    *,
    banner: Sequence[str],
    burned_in_flag: bool,
    small: bool,
    b_lines: int,
    rng: np.random.Generator,
) -> Dataset:
    """One lung US frame with the patient banner burned into its top rows."""
    rows, cols = (240, 320) if small else (600, 800)
    pixels = phantom.lung_ultrasound(rows, cols, rng, b_lines)
    size = 11 if small else 22
    pixels[: int(size * 1.3 * len(banner)) + 6, :] = 0
    pixels = draw_lines(pixels, banner, top=3, left=4, size=size)

    ds = new_dataset(US_IMAGE_STORAGE, sop_instance_uid, ctx)
    add_patient_and_study(ds, ctx)
    add_series(ds, ctx, series)
    add_equipment(ds, ctx)
    add_general_image(ds, series, instance_number)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "CHEST", "0001"]
    ds.PatientOrientation = ""
    ds.LossyImageCompression = "00"
    ds.TransducerData = ["C5-1", "", ""] if ctx.device.family != "GE" else ["C1-6-D", "", ""]
    if burned_in_flag:
        ds.BurnedInAnnotation = "YES"
    add_private_blocks(ds, ctx.private_blocks)
    _pixel_module_gray8(ds, pixels)
    return ds


def dose_screen(
    ctx: StudyContext,
    series: SeriesContext,
    sop_instance_uid: str,
    *,
    lines: Sequence[str],
    burned_in_flag: bool,
    small: bool,
) -> Dataset:
    """A CT dose-report screen save: text on black, DERIVED\\SECONDARY\\SCREEN SAVE."""
    size = 256 if small else 512
    pixels = np.zeros((size, size), dtype=np.uint8)
    pixels = draw_lines(pixels, lines, top=8, left=6, size=9 if small else 16)

    ds = new_dataset(SC_IMAGE_STORAGE, sop_instance_uid, ctx)
    add_patient_and_study(ds, ctx)
    add_series(ds, ctx, series)
    add_equipment(ds, ctx)
    add_general_image(ds, series, 1)
    ds.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    ds.ConversionType = "WSD"
    ds.SecondaryCaptureDeviceManufacturer = ctx.device.manufacturer
    ds.SecondaryCaptureDeviceManufacturerModelName = ctx.device.model
    ds.DateOfSecondaryCapture = series.date
    ds.TimeOfSecondaryCapture = series.time
    ds.PatientOrientation = ""
    if burned_in_flag:
        ds.BurnedInAnnotation = "YES"
    add_private_blocks(ds, ctx.private_blocks)
    _pixel_module_gray8(ds, pixels)
    return ds
