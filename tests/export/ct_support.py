"""Synthetic CT slices built with pydicom, for the NIfTI edge cases (and dcm2niix on the same files)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

DCM2NIIX = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "dcm2niix"


def ct_slice(pixels: np.ndarray, position: Sequence[float], *, orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
             spacing: Sequence[float] = (0.8, 0.7), series_uid: str, study_uid: str, frame_uid: str,
             instance: int, acquisition: int = 1, thickness: float = 2.0) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "ACME", "Scanner 1"
    ds.PatientID, ds.PatientName = "P1", "Test^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, instance, acquisition
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    ds.PixelSpacing = [f"{v}" for v in spacing]
    ds.SliceThickness, ds.KVP, ds.ConvolutionKernel = thickness, 120, "B30f"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def series(positions: Sequence[Sequence[float]], *, rows: int = 24, columns: int = 20, seed: int = 0,
           **kwargs: object) -> list[Dataset]:
    """A series with one slice per position (values: a random image plus a per-slice ramp)."""
    rng = np.random.default_rng(seed)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    out = []
    for k, position in enumerate(positions):
        pixels = rng.integers(0, 2000, size=(rows, columns)) + 10 * k
        out.append(ct_slice(pixels, position, series_uid=series_uid, study_uid=study_uid, frame_uid=frame_uid,
                            instance=k + 1, **kwargs))  # type: ignore[arg-type]
    return out


def write(datasets: Sequence[Dataset], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for ds in datasets:
        pydicom.dcmwrite(folder / f"{ds.SOPInstanceUID}.dcm", ds, enforce_file_format=True)
    return folder


def dcm2niix(source: Path, out: Path) -> list[Path]:
    """Run dcm2niix as the brief says; returns the .nii.gz files it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(DCM2NIIX), "-z", "y", "-f", "%s", "-o", str(out), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(out.glob("*.nii.gz"))
