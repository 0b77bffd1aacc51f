"""Chest CT series: CT Image Storage with consistent geometry.

CT Image IOD: PS3.3 A.3 (Frame of Reference C.7.4.1, Image Plane C.7.6.2, CT
Image C.8.2.1). Axial slices have ImageOrientationPatient 1\\0\\0\\0\\1\\0, so
the slice normal is +z (patient superior) and ImagePositionPatient z equals
SliceLocation; consecutive slices are ``spacing`` mm apart along that normal
(contiguous: spacing = SliceThickness). Stored values are unsigned with
RescaleIntercept -1024 and RescaleSlope 1 (the common GE/Siemens choice), so
``stored * slope + intercept`` gives Hounsfield units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from radcommons.synth import phantom
from radcommons.synth.dicom_writers import (
    CT_IMAGE_STORAGE,
    SeriesContext,
    StudyContext,
    add_equipment,
    add_general_image,
    add_patient_and_study,
    add_patient_demographics,
    add_private_blocks,
    add_series,
    new_dataset,
)

RESCALE_INTERCEPT = -1024.0
RESCALE_SLOPE = 1.0
#: Field of view (mm) reconstructed: a typical adult chest display FOV.
FOV_MM = 360.0


@dataclass(frozen=True)
class CTGeometry:
    """The acquisition geometry shared by a study's axial series (same Frame of Reference)."""

    rows: int
    cols: int
    pixel_spacing: float
    thickness: float
    z_phantom: tuple[float, ...]  # phantom z (mm above the diaphragm), top slice first
    table_offset: float  # patient z = phantom z + offset
    x0: float
    y0: float
    frame_of_reference_uid: str

    @property
    def z_patient(self) -> tuple[float, ...]:
        return tuple(round(z + self.table_offset, 3) for z in self.z_phantom)


def geometry(small: bool, frame_of_reference_uid: str, rng: np.random.Generator) -> CTGeometry:
    """Matrix, slice spacing and table position for one CT study; ``small`` gives 64x64 and 8 slices."""
    if small:
        size, thickness, count = 64, 40.0, 8
    else:
        size = 512
        thickness = float(rng.choice([5.0, 3.0]))
        count = int(330.0 // thickness)
    spacing = round(FOV_MM / size, 6)
    top = 300.0
    z = tuple(round(top - k * thickness, 3) for k in range(count))
    offset = round(float(rng.uniform(-420.0, -380.0)), 1)
    half = (size - 1) / 2 * spacing
    return CTGeometry(size, size, spacing, thickness, z, offset, round(-half, 4), round(-half, 4), frame_of_reference_uid)


def hu_volume(geo: CTGeometry, opacities: tuple[phantom.Opacity, ...], rng: np.random.Generator) -> np.ndarray:
    """The phantom in HU for this geometry, (slices, rows, cols)."""
    return phantom.chest_ct_hu(geo.rows, geo.cols, geo.pixel_spacing, np.array(geo.z_phantom), rng, opacities)


def to_stored(hu: np.ndarray) -> np.ndarray:
    """HU to stored uint16 values for the rescale above, clipped to 12 bits."""
    return np.clip(np.rint((hu - RESCALE_INTERCEPT) / RESCALE_SLOPE), 0, 4095).astype(np.uint16)


def ct_slice(
    ctx: StudyContext,
    series: SeriesContext,
    geo: CTGeometry,
    index: int,
    stored: np.ndarray,
    sop_instance_uid: str,
    *,
    kernel: str,
    time: str,
) -> Dataset:
    """One axial CT image at slice ``index`` of ``geo``."""
    ds = new_dataset(CT_IMAGE_STORAGE, sop_instance_uid, ctx)
    add_patient_and_study(ds, ctx)
    add_patient_demographics(ds, ctx)
    add_series(ds, ctx, series, position="HFS")
    ds.FrameOfReferenceUID = geo.frame_of_reference_uid
    ds.PositionReferenceIndicator = "SN"  # sternal notch
    add_equipment(ds, ctx)
    add_general_image(ds, series, index + 1, content_time=time)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1

    z = geo.z_patient[index]
    ds.PixelSpacing = [geo.pixel_spacing, geo.pixel_spacing]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [geo.x0, geo.y0, z]
    ds.SliceThickness = geo.thickness
    ds.SliceLocation = z

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = geo.rows
    ds.Columns = geo.cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = RESCALE_SLOPE
    ds.RescaleType = "HU"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = str(FOV_MM)
    ds.ConvolutionKernel = kernel
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.XRayTubeCurrent = 220
    ds.ExposureTime = 500
    ds.FilterType = "BODY FILTER"
    ds.PatientOrientation = ""
    if kernel.upper().startswith(("L", "B7", "BL", "FC5", "Y", "BONE")):
        ds.WindowCenter, ds.WindowWidth = "-600", "1500"
    else:
        ds.WindowCenter, ds.WindowWidth = "40", "400"
    add_private_blocks(ds, ctx.private_blocks)
    ds.PixelData = stored[index].tobytes()
    return ds
