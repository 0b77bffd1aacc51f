"""DICOM slices to one 3-D volume: stacks, geometry, HU, and the pitfalls of real CT.

The geometry is the Image Plane module (PS3.3 C.7.6.2): Image Position (Patient) is the
centre of the first transmitted pixel in the patient's LPS frame, Image Orientation
(Patient) holds the row and column direction cosines, Pixel Spacing is (between rows,
between columns). Slices are ordered along the slice normal (row x column) by their
position projected on it, never by Instance Number, which sites renumber freely.

What goes wrong in practice, and what :func:`build_volumes` does about it (following
dcm2niix, see docs/EXPORT.md):

* several stacks in one series (a scout and an axial stack, two reconstructions with the
  same positions): grouped by orientation and matrix, and a repeated position starts a new
  stack; each stack becomes its own volume (suffix ``_stack2``...);
* gantry tilt: positions drift in-plane from slice to slice (the stack is a parallelepiped,
  not a box, which a NIfTI affine cannot hold); each slice is shifted in-plane back onto
  the normal (linear interpolation), and the tilt angle is recorded;
* irregular spacing and missing slices: detected from the projected positions (a step over
  1.5 times the median is a gap); the stack is resampled (linear along the normal) to
  equidistant slices over the same extent, as many as the smallest step allows, which is
  dcm2niix's ``_Eq`` volume; the sidecar says so;
* values are modality values (PS3.3 C.11.1: Rescale Slope/Intercept, HU for CT), kept as
  integers when they are integral.

Pure: numpy, scipy and pydicom datasets in, arrays out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array

#: Relative deviation from the median slice spacing above which spacing counts as irregular.
SPACING_TOLERANCE = 0.01
#: Absolute floor of that tolerance (mm): positions are often written with 0.01 mm precision.
SPACING_FLOOR_MM = 0.02
#: A spacing this many times the median means slices are missing.
GAP_FACTOR = 1.5
#: Smallest in-plane drift per slice (mm) taken as gantry tilt rather than rounding.
TILT_FLOOR_MM = 0.01

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Plane:
    """One slice's Image Plane attributes (PS3.3 C.7.6.2.1.1)."""

    position: NDArray[np.float64]  # (3,) LPS mm, centre of the first pixel
    row_cosine: NDArray[np.float64]  # direction of increasing column index
    column_cosine: NDArray[np.float64]  # direction of increasing row index
    row_spacing: float  # mm between rows (Pixel Spacing[0])
    column_spacing: float  # mm between columns (Pixel Spacing[1])
    rows: int
    columns: int

    @property
    def normal(self) -> NDArray[np.float64]:
        return np.cross(self.row_cosine, self.column_cosine)


def plane_of(ds: Dataset) -> Plane | None:
    """The slice geometry of ``ds``, or None when it has no (complete) Image Plane module."""
    try:
        position = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        spacing = [float(v) for v in ds.PixelSpacing]
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        return None
    if position.shape != (3,) or orientation.shape != (6,) or len(spacing) != 2:
        return None
    row_cosine, column_cosine = orientation[:3], orientation[3:]
    # Re-normalise: headers carry 6 decimals and some writers do worse.
    row_cosine = row_cosine / (np.linalg.norm(row_cosine) or 1.0)
    column_cosine = column_cosine / (np.linalg.norm(column_cosine) or 1.0)
    return Plane(position, row_cosine, column_cosine, spacing[0], spacing[1], rows, columns)


@dataclass
class Volume:
    """A volume ready for NIfTI: ``data`` indexed (column, row from the bottom, slice), RAS ``affine``."""

    data: NDArray[Any]
    affine: NDArray[np.float64]
    datasets: list[Dataset]
    stack: int = 1
    slice_spacing: float = 0.0
    gantry_tilt_degrees: float = 0.0
    tilt_corrected: bool = False
    irregular_spacing: bool = False
    missing_slices: int = 0
    resampled: bool = False
    warnings: list[str] = field(default_factory=list)


def _orientation_key(plane: Plane) -> tuple[Any, ...]:
    return (tuple(np.round(np.concatenate([plane.row_cosine, plane.column_cosine]), 4)), plane.rows, plane.columns,
            round(plane.row_spacing, 4), round(plane.column_spacing, 4))


def split_stacks(datasets: Sequence[Dataset]) -> tuple[list[list[tuple[Dataset, Plane]]], int]:
    """Group slices into stacks; returns (stacks, number of slices without geometry).

    One stack per orientation and matrix, split again where a position repeats (two
    passes over the same table positions, e.g. two kernels in one series): the n-th
    occurrence of a position goes to the n-th stack, in acquisition then instance order.
    """
    groups: dict[tuple[Any, ...], list[tuple[Dataset, Plane]]] = defaultdict(list)
    skipped = 0
    for ds in datasets:
        plane = plane_of(ds)
        if plane is None:
            skipped += 1
            continue
        groups[_orientation_key(plane)].append((ds, plane))
    stacks: list[list[tuple[Dataset, Plane]]] = []
    # Largest group first: the main stack keeps the unsuffixed name.
    for group in sorted(groups.values(), key=lambda g: -len(g)):
        group.sort(key=lambda item: (_int(item[0], "AcquisitionNumber"), _int(item[0], "InstanceNumber")))
        seen: dict[float, int] = defaultdict(int)
        parts: list[list[tuple[Dataset, Plane]]] = []
        normal = group[0][1].normal
        for ds, plane in group:
            key = round(float(plane.position @ normal), 2)
            index = seen[key]
            seen[key] += 1
            while len(parts) <= index:
                parts.append([])
            parts[index].append((ds, plane))
        stacks.extend(parts)
    return stacks, skipped


def _int(ds: Dataset, keyword: str) -> int:
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def modality_values(ds: Dataset) -> NDArray[Any]:
    """Stored values through the Modality LUT (PS3.3 C.11.1), e.g. HU for CT."""
    pixels = pixel_array(ds)  # unlike ds.pixel_array, not cached on the dataset: one copy less per slice
    if pixels.ndim != 2:
        raise ValueError("only single-frame, single-sample slices can be stacked")
    if "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds:
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        if "ModalityLUTSequence" not in ds and slope.is_integer() and intercept.is_integer():
            # Integer arithmetic: exact HU, no float round-trip.
            return pixels.astype(np.int32) * int(slope) + int(intercept)
        return np.asarray(apply_modality_lut(pixels, ds))
    return pixels


def build_volumes(datasets: Sequence[Dataset]) -> tuple[list[Volume], int]:
    """Every stack of a series as a :class:`Volume`; returns (volumes, slices without geometry)."""
    stacks, skipped = split_stacks(datasets)
    return [build_volume(stack, index + 1) for index, stack in enumerate(stacks)], skipped


def build_volume(stack: Sequence[tuple[Dataset, Plane]], stack_number: int = 1) -> Volume:
    """One stack (slices of one orientation and matrix, distinct positions) as a :class:`Volume`."""
    plane0 = stack[0][1]
    normal = plane0.normal
    distances = np.asarray([float(plane.position @ normal) for _, plane in stack])
    order = np.argsort(distances, kind="stable")
    items = [stack[i] for i in order]
    distances = distances[order]
    positions = np.asarray([plane.position for _, plane in items])
    datasets = [ds for ds, _ in items]
    volume = _modality_stack(datasets)  # (slice, row from the bottom, column)
    integral = source_integral = bool(np.issubdtype(volume.dtype, np.integer))
    warnings: list[str] = []
    tilt_degrees = 0.0
    tilt_corrected = irregular = resampled = False
    missing = 0
    count = len(items)
    if count > 1:
        offsets = positions - positions[0]
        along = offsets @ normal
        in_plane = offsets - np.outer(along, normal)
        drift = float(np.linalg.norm(in_plane[-1]))
        if drift > TILT_FLOOR_MM * (count - 1) and along[-1] != 0:
            tilt_degrees = float(np.degrees(np.arctan2(drift, abs(along[-1]))))
            volume = _untilt(volume, in_plane, plane0)
            tilt_corrected = True
            integral = False
            warnings.append(f"gantry tilt of {tilt_degrees:.2f} degrees corrected by in-plane shifts")
        steps = np.diff(distances)
        spacing = float(np.median(steps))
        tolerance = max(SPACING_FLOOR_MM, SPACING_TOLERANCE * spacing)
        if float(np.max(np.abs(steps - spacing))) > tolerance:
            irregular = True
            gaps = steps[steps > GAP_FACTOR * spacing]
            missing = int(sum(round(g / spacing) - 1 for g in gaps))
            if missing:
                warnings.append(f"{missing} slice(s) missing (gaps of {', '.join(f'{g:.2f}' for g in gaps)} mm "
                                f"in a {spacing:.2f} mm series)")
            # dcm2niix's "_Eq" rule: as many slices as the smallest step allows over the same
            # extent, spread evenly, so the first and last slices stay where they were.
            extent = float(distances[-1] - distances[0])
            count_eq = int(round(extent / float(steps.min()))) + 1
            spacing = extent / (count_eq - 1)
            warnings.append(f"irregular slice spacing ({steps.min():.3f}-{steps.max():.3f} mm): resampled to "
                            f"{count_eq} equidistant slices {spacing:.3f} mm apart")
            volume = _equidistant(volume, distances - distances[0], spacing)
            resampled = True
            integral = False
    else:
        ds = datasets[0]
        spacing = float(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0)
    if not integral and source_integral:
        # Modality values that are integers keep integer voxels after interpolation (rounded), like dcm2niix.
        volume = np.round(volume)
        integral = True
    # NIfTI order (column, row from the bottom, slice), x fastest: the transpose of the C-ordered
    # (slice, row from the bottom, column) array, a view that nibabel writes without a copy.
    data = _narrow(volume, integral).transpose(2, 1, 0)
    affine = _affine(plane0, positions[0], normal, spacing)
    return Volume(data=data, affine=affine, datasets=datasets, stack=stack_number, slice_spacing=spacing,
                  gantry_tilt_degrees=tilt_degrees, tilt_corrected=tilt_corrected, irregular_spacing=irregular,
                  missing_slices=missing, resampled=resampled, warnings=warnings)


def _modality_stack(datasets: Sequence[Dataset]) -> NDArray[Any]:
    """Modality values of the slices as one C-ordered (slice, row from the bottom, column) array.

    Filled slice by slice in the narrowest type that holds the values so far (int16, else
    int32, int64; float64 for non-integral values), so a CT series costs one int16 volume
    beside its datasets rather than a list of int32 slices and their stacked copy.
    """
    volume: NDArray[Any] | None = None
    for index, ds in enumerate(datasets):
        values = modality_values(ds)
        if np.issubdtype(values.dtype, np.integer):
            low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
            need: Any = next(t for t in (np.int16, np.int32, np.int64)
                             if np.iinfo(t).min <= low and high <= np.iinfo(t).max)
        else:
            need = np.float64
        if volume is None:
            volume = np.empty((len(datasets), *values.shape), dtype=need)
        elif values.shape != volume.shape[1:]:
            raise ValueError(f"slice {index + 1} is {values.shape}, the first {volume.shape[1:]}")
        elif np.promote_types(volume.dtype, need) != volume.dtype:
            volume = volume.astype(np.promote_types(volume.dtype, need))
        volume[index] = values[::-1]
    assert volume is not None
    return volume


def _narrow(volume: NDArray[Any], integral: bool) -> NDArray[Any]:
    """``volume`` as int16 or int32 when ``integral`` and in range, else float32 (no copy when it already is)."""
    if integral:
        low, high = (int(volume.min()), int(volume.max())) if volume.size else (0, 0)
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return volume.astype(dtype, copy=False)
    return volume.astype(np.float32, copy=False)


def _untilt(volume: NDArray[Any], in_plane: NDArray[np.float64], plane: Plane) -> NDArray[np.float64]:
    """Shift each slice (rows bottom-up) in-plane so its first pixel lies on the first slice's normal line."""
    from scipy import ndimage  # only tilted series need it

    out = np.empty(volume.shape, dtype=np.float64)
    fill = float(volume.min())
    for k in range(volume.shape[0]):
        # The grid point (row j, column i) of slice k sits at slice k's pixel (j - dj, i - di); rows
        # are stored bottom-up, so a shift down the image is a shift up the array.
        di = float(in_plane[k] @ plane.row_cosine) / plane.column_spacing
        dj = -float(in_plane[k] @ plane.column_cosine) / plane.row_spacing
        out[k] = ndimage.shift(volume[k].astype(np.float64), (dj, di), order=1, mode="constant", cval=fill)
    return out


def _equidistant(volume: NDArray[Any], distances: NDArray[np.float64], spacing: float) -> NDArray[np.float64]:
    """Linear interpolation along the normal onto slices ``spacing`` apart from the first."""
    count = int(round(float(distances[-1]) / spacing)) + 1
    targets = np.arange(count) * spacing
    upper = np.clip(np.searchsorted(distances, targets, side="left"), 1, len(distances) - 1)
    lower = upper - 1
    span = distances[upper] - distances[lower]
    weight = np.clip((targets - distances[lower]) / np.where(span == 0, 1, span), 0.0, 1.0)
    out = np.empty((count, *volume.shape[1:]), dtype=np.float64)
    for m in range(count):
        out[m] = volume[lower[m]] * (1 - weight[m]) + volume[upper[m]] * weight[m]
    return out


def _affine(plane: Plane, origin: NDArray[np.float64], normal: NDArray[np.float64], spacing: float) -> NDArray[np.float64]:
    """RAS affine of the (column, flipped row, slice) array: LPS geometry, then x and y negated."""
    lps = np.eye(4)
    lps[:3, 0] = plane.row_cosine * plane.column_spacing
    lps[:3, 1] = -plane.column_cosine * plane.row_spacing  # rows are stored bottom-up
    lps[:3, 2] = normal * spacing
    lps[:3, 3] = origin + plane.column_cosine * plane.row_spacing * (plane.rows - 1)
    return LPS_TO_RAS @ lps
