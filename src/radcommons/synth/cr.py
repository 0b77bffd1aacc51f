"""Chest radiographs: CR Image Storage and Digital X-Ray Image Storage - For Presentation.

CR IOD: PS3.3 A.2 (CR Series C.8.1.1, CR Image C.8.1.2). DX IOD: PS3.3 A.26
(DX Series C.8.11.1, DX Anatomy Imaged C.8.11.2, DX Image C.8.11.3, DX Detector
C.8.11.4, DX Positioning C.8.11.5, Acquisition Context C.7.6.14). Matrices and
detector element sizes are those of the real detectors (2000-3000 pixels,
0.14-0.2 mm); ``small`` scales the matrix to 256 rows, keeping the field of view.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radcommons.synth import phantom
from radcommons.synth.dicom_writers import (
    CR_IMAGE_STORAGE,
    DX_PRESENTATION_STORAGE,
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

#: (rows, columns, detector element mm) per private-tag family: the detectors those makers ship.
DETECTORS: dict[str, tuple[int, int, float]] = {
    "GE": (2022, 2022, 0.2),
    "SIEMENS": (3000, 3000, 0.139),
    "PHILIPS": (2874, 2840, 0.148),
    "CARESTREAM": (2500, 2048, 0.168),
    "AGFA": (2992, 2500, 0.14),
    "FUJI": (2836, 2336, 0.15),
    "KONICA": (2010, 1670, 0.175),
}
SMALL_ROWS = 256

# PS3.3 C.7.6.1.1.1: Patient Orientation, row direction then column direction as displayed.
_ORIENTATION = {"PA": ["L", "F"], "AP": ["L", "F"], "LL": ["P", "F"]}
# View codes (CID 4010) for DX Positioning.
_VIEW_CODES = {
    "PA": ("399348003", "postero-anterior"),
    "AP": ("399182009", "antero-posterior"),
    "LL": ("260436006", "left lateral"),
}


def matrix(family: str, small: bool) -> tuple[int, int, float]:
    """Rows, columns and pixel spacing (mm) for a detector family."""
    rows, cols, spacing = DETECTORS.get(family, (2500, 2048, 0.168))
    if not small:
        return rows, cols, spacing
    scale = rows / SMALL_ROWS
    return SMALL_ROWS, max(16, int(round(cols / scale / 2)) * 2), round(spacing * scale, 4)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = meaning
    return item


def radiograph(
    ctx: StudyContext,
    series: SeriesContext,
    view: str,
    sop_instance_uid: str,
    instance_number: int,
    *,
    monochrome1: bool,
    small: bool,
    opacities: tuple[phantom.Opacity, ...],
    rng: np.random.Generator,
) -> Dataset:
    """One CR or DX (For Presentation) chest image; the modality comes from ``series.modality``."""
    is_dx = series.modality == "DX"
    sop_class = DX_PRESENTATION_STORAGE if is_dx else CR_IMAGE_STORAGE
    rows, cols, spacing = matrix(ctx.device.family, small)
    pixels = phantom.chest_radiograph(rows, cols, spacing, view, rng, opacities, bits=12)
    if monochrome1:
        pixels = (4095 - pixels).astype(np.uint16)  # MONOCHROME1: minimum value displays white

    ds = new_dataset(sop_class, sop_instance_uid, ctx)
    add_patient_and_study(ds, ctx)
    add_patient_demographics(ds, ctx)
    add_series(ds, ctx, series)
    add_equipment(ds, ctx)
    add_general_image(ds, series, instance_number)
    ds.ViewPosition = view
    ds.PatientOrientation = _ORIENTATION[view]
    ds.KVP = "120" if view == "LL" else ("90" if view == "AP" else "110")
    ds.ExposureTime = int(rng.integers(5, 40))
    ds.XRayTubeCurrent = int(rng.integers(160, 400))
    ds.Exposure = int(rng.integers(1, 8))
    ds.DistanceSourceToDetector = "1800" if view != "AP" else "1000"
    ds.ImagerPixelSpacing = [spacing, spacing]

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.LossyImageCompression = "00"

    if is_dx:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageLaterality = "U"
        ds.AnatomicRegionSequence = Sequence([_code("51185008", "Chest")])
        ds.PixelIntensityRelationship = "LOG"
        # C.8.11.3.1.2: +1 lower values mean less X-ray intensity (bone is bright in MONOCHROME2 means -1).
        ds.PixelIntensityRelationshipSign = 1 if monochrome1 else -1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
        ds.BurnedInAnnotation = "NO"
        ds.DetectorType = "SCINTILLATOR"
        ds.DetectorConfiguration = "AREA"
        ds.AcquisitionContextSequence = Sequence()
        ds.ViewCodeSequence = Sequence([_code(*_VIEW_CODES[view])])
        ds.PositionerType = "NONE" if view == "AP" else "COLUMN"
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.PlateType = "ST-VI"
        ds.PhosphorType = "BaFBr:Eu"

    add_private_blocks(ds, ctx.private_blocks)
    ds.PixelData = pixels.tobytes()
    return ds
