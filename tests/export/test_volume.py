"""DICOM series -> NIfTI: geometry and values against dcm2niix, and the CT pitfalls on synthetic series."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from ct_support import dcm2niix, series, write

from radcommons.export.nifti import nifti_gz_bytes, sidecar
from radcommons.export.volume import build_volumes

pytestmark = pytest.mark.skipif(not Path(__file__).resolve().parents[2].joinpath(".venv/bin/dcm2niix").exists(),
                                reason="dcm2niix binary not installed")


def _by_name(files: list[Path], suffix: str) -> nib.Nifti1Image:
    chosen = [f for f in files if f.name.endswith(suffix + ".nii.gz")]
    assert chosen, [f.name for f in files]
    return nib.load(chosen[0])


def test_regular_series_matches_dcm2niix_exactly(tmp_path: Path) -> None:
    datasets = series([(-10.0, -20.0, 2.5 * k) for k in range(6)])
    (volume,), skipped = build_volumes(list(reversed(datasets)))  # order of the input does not matter
    assert skipped == 0 and not volume.warnings
    reference = _by_name(dcm2niix(write(datasets, tmp_path / "in"), tmp_path / "out"), "")
    assert volume.data.shape == reference.shape and volume.data.dtype == np.int16
    assert np.allclose(volume.affine, reference.affine, atol=1e-3)
    assert np.array_equal(volume.data, reference.get_fdata())  # exact HU
    ours = nib.Nifti1Image.from_bytes(__import__("gzip").decompress(nifti_gz_bytes(volume)))
    assert np.allclose(ours.affine, reference.affine, atol=1e-3)


def test_oblique_sagittal_matches_dcm2niix(tmp_path: Path) -> None:
    a = math.radians(20)
    orientation = (0, math.cos(a), math.sin(a), 0, -math.sin(a), math.cos(a))  # rows along y/z, columns along z
    normal = np.cross(orientation[:3], orientation[3:])
    datasets = series([tuple(np.array([5.0, -30.0, 12.0]) + 3.0 * k * normal) for k in range(5)],
                      orientation=orientation)
    (volume,), _ = build_volumes(datasets)
    reference = _by_name(dcm2niix(write(datasets, tmp_path / "in"), tmp_path / "out"), "")
    assert volume.data.shape == reference.shape
    assert np.allclose(volume.affine, reference.affine, atol=1e-3)
    assert np.array_equal(volume.data, reference.get_fdata())


def test_irregular_spacing_is_resampled_like_dcm2niix_eq(tmp_path: Path) -> None:
    datasets = series([(-10.0, -20.0, z) for z in (0, 2, 4, 7, 9, 11)])
    (volume,), _ = build_volumes(datasets)
    assert volume.irregular_spacing and volume.resampled and volume.missing_slices == 0
    reference = _by_name(dcm2niix(write(datasets, tmp_path / "in"), tmp_path / "out"), "_Eq_1")
    assert volume.data.shape == reference.shape == (20, 24, 7)
    assert np.allclose(volume.affine, reference.affine, atol=1e-3)
    assert np.abs(volume.data - reference.get_fdata()).max() <= 1  # linear interpolation, rounding apart
    assert sidecar(volume)["ResampledToEquidistantSlices"] is True


def test_missing_slice_is_reported_and_filled(tmp_path: Path) -> None:
    datasets = series([(-10.0, -20.0, z) for z in (0, 2, 4, 8, 10)])
    (volume,), _ = build_volumes(datasets)
    assert volume.missing_slices == 1 and any("missing" in w for w in volume.warnings)
    reference = _by_name(dcm2niix(write(datasets, tmp_path / "in"), tmp_path / "out"), "_Eq_1")
    assert volume.data.shape == reference.shape == (20, 24, 6)
    assert np.allclose(volume.affine, reference.affine, atol=1e-3)
    assert np.abs(volume.data - reference.get_fdata()).max() <= 1
    assert sidecar(volume)["MissingSlices"] == 1


def test_gantry_tilt_is_detected_and_corrected() -> None:
    tilt = math.radians(15)
    positions = [(-10.0, -20.0 + 2.0 * k * math.tan(tilt), 2.0 * k) for k in range(6)]
    datasets = series(positions, rows=30, columns=20)
    (volume,), _ = build_volumes(datasets)
    assert volume.tilt_corrected and volume.gantry_tilt_degrees == pytest.approx(15, abs=0.01)
    # The affine is a box along the slice normal (orthogonal columns), not the tilted stack.
    columns = volume.affine[:3, :3]
    gram = columns.T @ columns
    assert np.allclose(gram, np.diag(np.diag(gram)), atol=1e-6)
    assert volume.slice_spacing == pytest.approx(2.0)
    # The first slice is the reference: unchanged; a later one is shifted by its drift in rows.
    first = datasets[0].pixel_array.astype(np.int32) - 1024
    assert np.array_equal(volume.data[:, ::-1, 0].T, first)
    shift_rows = 2.0 * 2 * math.tan(tilt) / 0.8
    assert sidecar(volume)["GantryTiltDegrees"] == pytest.approx(15, abs=0.01)
    assert shift_rows > 1  # slice 2 moved by more than a row
    # Slice 2 (DICOM row order) is its image moved back by its drift: out[j] = in[j - shift_rows].
    from scipy import ndimage

    hu = [ds.pixel_array.astype(np.float64) - 1024 for ds in datasets]
    expected = ndimage.shift(hu[2], (shift_rows, 0), order=1, mode="constant", cval=min(h.min() for h in hu))
    assert np.abs(volume.data[:, ::-1, 2].T - expected).max() <= 1  # positions are written to 0.1 µm


def test_two_stacks_in_one_series_become_two_volumes() -> None:
    axial = series([(0.0, 0.0, 3.0 * k) for k in range(4)], seed=1)
    repeat = series([(0.0, 0.0, 3.0 * k) for k in range(4)], seed=2, acquisition=2)
    for ds in repeat:
        ds.SeriesInstanceUID = axial[0].SeriesInstanceUID
    coronal = series([(0.0, 2.0 * k, 0.0) for k in range(3)], orientation=(1, 0, 0, 0, 0, -1), seed=3)
    volumes, _ = build_volumes(axial + repeat + coronal)
    assert sorted(v.data.shape for v in volumes) == [(20, 24, 3), (20, 24, 4), (20, 24, 4)]
    assert [v.stack for v in volumes] == [1, 2, 3]
    assert not any(v.irregular_spacing for v in volumes)
