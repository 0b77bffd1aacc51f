"""Synthetic chest pixels: a CT volume in Hounsfield units, radiographs, lung ultrasound.

Analytic shapes (ellipses, domes, bands), vectorised with numpy over the whole
grid, in patient millimetres so that the anatomy keeps its size whatever the
matrix. CT values follow the usual HU of the tissues (air -1000, lung about
-850, fat -100, soft tissue 40, bone 700). COVID-19 pneumonia is imitated by
ground-glass opacities: peripheral, bilateral, lower-zone patches that raise
lung HU to about -500..-300 (brighter patches on radiographs, B-lines on
ultrasound), so that a model has a learnable signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HU_AIR = -1000.0
HU_LUNG = -850.0
HU_FAT = -100.0
HU_SOFT = 40.0
HU_BONE = 700.0

#: Cranio-caudal extent of the modelled thorax (mm above the lowest diaphragm point).
LUNG_APEX_MM = 270.0


@dataclass(frozen=True)
class Opacity:
    """One ground-glass patch: centre (x: +left, y: +posterior, z: +cranial, mm), size and strength."""

    x: float
    y: float
    z: float
    sigma: float
    strength: float  # HU added at the centre


def covid_opacities(rng: np.random.Generator, count: int | None = None) -> tuple[Opacity, ...]:
    """Bilateral, peripheral, lower-zone and posterior patches: the typical COVID-19 pattern."""
    n = int(count if count is not None else rng.integers(4, 9))
    patches = []
    for i in range(n):
        side = 1.0 if i % 2 == 0 else -1.0  # alternate sides: bilateral by construction
        patches.append(
            Opacity(
                x=side * float(rng.uniform(95, 125)),
                y=float(rng.uniform(-20, 60)),
                z=float(rng.uniform(40, 150)),
                sigma=float(rng.uniform(18, 32)),
                strength=float(rng.uniform(420, 560)),
            )
        )
    return tuple(patches)


def _lung_masks(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Boolean lungs for broadcast grids x, y, z (mm)."""
    lungs = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=bool)
    taper = np.sqrt(np.clip((LUNG_APEX_MM - z) / (LUNG_APEX_MM - 150.0), 0.0, 1.0))
    for cx in (-80.0, 80.0):
        ax, ay = 58.0 * taper + 1e-3, 82.0 * taper + 1e-3
        r2 = ((x - cx) / ax) ** 2 + ((y - 5.0) / ay) ** 2
        dome = 20.0 + 45.0 * np.clip(1.0 - r2, 0.0, 1.0)  # diaphragm: higher centrally
        lungs |= (r2 < 1.0) & (z > dome) & (z < LUNG_APEX_MM)
    heart = ((x - 25.0) / 62.0) ** 2 + ((y + 15.0) / 52.0) ** 2 + ((z - 95.0) / 65.0) ** 2 < 1.0
    return lungs & ~heart


def chest_ct_hu(
    rows: int,
    cols: int,
    pixel_spacing: float,
    z_mm: np.ndarray,
    rng: np.random.Generator,
    opacities: tuple[Opacity, ...] = (),
    noise_hu: float = 12.0,
) -> np.ndarray:
    """An axial chest CT volume in HU, shape (len(z_mm), rows, cols), float32.

    Rows run anterior to posterior (+y) and columns right to left (+x), as in a
    standard axial image with ImageOrientationPatient 1\\0\\0\\0\\1\\0 (PS3.3 C.7.6.2.1.1).
    """
    x = ((np.arange(cols, dtype=np.float32) - (cols - 1) / 2) * pixel_spacing)[None, None, :]
    y = ((np.arange(rows, dtype=np.float32) - (rows - 1) / 2) * pixel_spacing)[None, :, None]
    z = np.asarray(z_mm, dtype=np.float32)[:, None, None]

    shoulders = 1.0 + 0.12 * np.clip((z - 180.0) / 90.0, 0.0, 1.0)
    body_r2 = (x / (165.0 * shoulders)) ** 2 + ((y - 5.0) / 115.0) ** 2
    inner_r2 = (x / (150.0 * shoulders)) ** 2 + ((y - 5.0) / 100.0) ** 2
    volume = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), HU_AIR, dtype=np.float32)
    volume[np.broadcast_to(body_r2 < 1.0, volume.shape)] = HU_FAT
    volume[np.broadcast_to(inner_r2 < 1.0, volume.shape)] = HU_SOFT

    lungs = _lung_masks(x, y, z)
    volume[lungs] = HU_LUNG
    # Lung density rises towards the dependent (posterior) lung, as in a supine patient.
    gradient = np.broadcast_to(np.clip(y, -80, 80) * 0.4, volume.shape)
    volume[lungs] += gradient[lungs]

    # Ribs: a bony ring just inside the body wall, present every ~25 mm along z.
    rib_ring = (inner_r2 > 0.80) & (inner_r2 < 0.93) & (y > -70.0)
    rib_level = np.sin(2 * np.pi * z / 25.0) > 0.55
    volume[np.broadcast_to(rib_ring & rib_level & (z > 30.0), volume.shape)] = HU_BONE
    # Spine: vertebral body and posterior elements; the canal holds soft tissue.
    spine = (x / 20.0) ** 2 + ((y - 62.0) / 17.0) ** 2 < 1.0
    lamina = (np.abs(x) < 26.0) & (np.abs(y - 98.0) < 6.0)
    canal = (x / 8.0) ** 2 + ((y - 86.0) / 7.0) ** 2 < 1.0
    volume[np.broadcast_to((spine | lamina) & ~canal, volume.shape)] = HU_BONE
    # Sternum, and a descending aorta filled with (unenhanced) blood.
    sternum = ((x / 14.0) ** 2 + ((y + 98.0) / 6.0) ** 2 < 1.0) & (z > 90.0) & (z < 240.0)
    volume[np.broadcast_to(sternum, volume.shape)] = HU_BONE
    aorta = ((x - 22.0) / 13.0) ** 2 + ((y - 40.0) / 13.0) ** 2 < 1.0
    volume[np.broadcast_to(aorta & (z < 230.0), volume.shape)] = HU_SOFT
    # Below the lungs: liver and abdomen, soft tissue.
    abdomen = (inner_r2 < 1.0) & (z < 20.0)
    volume[np.broadcast_to(abdomen & ~(spine | lamina), volume.shape)] = HU_SOFT + 15.0

    for patch in opacities:
        d2 = (x - patch.x) ** 2 + (y - patch.y) ** 2 + (z - patch.z) ** 2
        bump = (patch.strength * np.exp(-d2 / (2.0 * patch.sigma**2))).astype(np.float32)
        volume[lungs] += np.broadcast_to(bump, volume.shape)[lungs]
    if opacities:
        # Ground glass never reaches soft-tissue density.
        volume[lungs] = np.minimum(volume[lungs], -280.0)

    volume += rng.normal(0.0, noise_hu, size=volume.shape).astype(np.float32)
    return volume


def lung_mask_ct(rows: int, cols: int, pixel_spacing: float, z_mm: np.ndarray) -> np.ndarray:
    """The lung mask used by :func:`chest_ct_hu` (for tests and analyses)."""
    x = ((np.arange(cols, dtype=np.float32) - (cols - 1) / 2) * pixel_spacing)[None, None, :]
    y = ((np.arange(rows, dtype=np.float32) - (rows - 1) / 2) * pixel_spacing)[None, :, None]
    z = np.asarray(z_mm, dtype=np.float32)[:, None, None]
    return _lung_masks(x, y, z)


def chest_radiograph(
    rows: int,
    cols: int,
    pixel_spacing: float,
    view: str,
    rng: np.random.Generator,
    opacities: tuple[Opacity, ...] = (),
    bits: int = 12,
) -> np.ndarray:
    """A projection radiograph as uint16 in [0, 2**bits), brighter = more attenuation (MONOCHROME2 sense).

    ``view`` is PA, AP (frontal: columns run patient right to left) or LL (left
    lateral: columns run anterior to posterior). Path lengths through ellipsoids
    stand in for a ray-traced projection of the CT phantom.
    """
    u = ((np.arange(cols, dtype=np.float32) - (cols - 1) / 2) * pixel_spacing)[None, :]
    # Image top is cranial; z=0 at the lowest diaphragm point, 30 mm below the image centre line.
    z = (LUNG_APEX_MM + 40.0 - np.arange(rows, dtype=np.float32) * pixel_spacing * (380.0 / (rows * pixel_spacing)))[:, None]

    def chord(center: float, semi_u: float, semi_z: float, depth: float, zc: float) -> np.ndarray:
        r2 = ((u - center) / semi_u) ** 2 + ((z - zc) / semi_z) ** 2
        return depth * np.sqrt(np.clip(1.0 - r2, 0.0, None))

    lateral = view == "LL"
    if lateral:
        body = chord(0.0, 125.0, 330.0, 330.0, 150.0)  # AP depth varies; path is left-right width
        lung_air = chord(-5.0, 95.0, 120.0, 240.0, 165.0) * (z > 35.0 + 0.25 * np.abs(u))
        heart = chord(-45.0, 55.0, 60.0, 120.0, 90.0)
        spine = ((u > 70.0) & (u < 105.0)).astype(np.float32) * 45.0
        ribs = np.zeros_like(body)
    else:
        body = chord(0.0, 175.0, 360.0, 230.0, 150.0)
        lung_air = np.zeros_like(body)
        for cx in (-80.0, 80.0):
            lung = chord(cx, 62.0, 125.0, 170.0, 170.0)
            dome = 20.0 + 45.0 * np.clip(1.0 - ((u - cx) / 62.0) ** 2, 0.0, 1.0)
            lung_air = lung_air + lung * (z > dome)
        heart = chord(25.0, 68.0, 62.0, 100.0, 85.0)
        spine = (np.abs(u) < 22.0).astype(np.float32) * 26.0 * (z > -40.0)
        # Posterior ribs: bands that run down laterally; a phase along z modulated by |u|.
        phase = (z + 0.0022 * u**2) / 24.0
        in_cage = (np.abs(u) < 150.0) & (z > 20.0) & (z < LUNG_APEX_MM + 10.0)
        ribs = ((phase % 1.0) < 0.33).astype(np.float32) * in_cage * 5.0
        clavicle_z = LUNG_APEX_MM - 10.0 + 0.25 * np.abs(u)
        ribs = ribs + (np.abs(z - clavicle_z) < 7.0).astype(np.float32) * (np.abs(u) < 150.0) * 8.0

    soft = body - lung_air * 0.85 + np.minimum(heart, lung_air) * 0.85
    attenuation = 0.021 * soft + 0.05 * (spine + ribs)
    for patch in opacities:
        u_patch = patch.y if lateral else patch.x
        d2 = (u - u_patch) ** 2 + (z - patch.z) ** 2
        attenuation = attenuation + (patch.strength / 500.0) * 0.9 * np.exp(-d2 / (2 * (patch.sigma * 1.2) ** 2)) * (lung_air > 5.0)
    attenuation = attenuation + rng.normal(0.0, 0.035, size=attenuation.shape).astype(np.float32)
    top = float(2**bits - 1)
    # Log detector response, then a display window that leaves head-room at both ends.
    image = 1.0 - np.exp(-attenuation / 3.0)
    image = np.clip(image * 0.92 + 0.04, 0.0, 1.0) * top
    return image.astype(np.uint16)


def lung_zone_mean(image: np.ndarray, view: str = "PA") -> float:
    """Mean value over the lower lung zones of a frontal radiograph (for tests: opacities raise it)."""
    rows, cols = image.shape
    band = image[int(rows * 0.45): int(rows * 0.7)]
    left = band[:, int(cols * 0.18): int(cols * 0.32)]
    right = band[:, int(cols * 0.68): int(cols * 0.82)]
    return float(np.concatenate([left.ravel(), right.ravel()]).mean())


def lung_ultrasound(rows: int, cols: int, rng: np.random.Generator, b_lines: int = 0) -> np.ndarray:
    """A curvilinear lung ultrasound frame, uint8: speckle, a bright pleural line, A-lines or B-lines."""
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = (np.arange(cols, dtype=np.float32) - cols / 2)[None, :]
    apex_y = -rows * 0.15
    radius = np.hypot(xx, yy - apex_y)
    angle = np.arctan2(xx, yy - apex_y)
    r0, r1 = rows * 0.2, rows * 1.05
    sector = (np.abs(angle) < 0.6) & (radius > r0) & (radius < r1)
    depth = (radius - r0) / (r1 - r0)
    speckle = rng.rayleigh(0.35, size=(rows, cols)).astype(np.float32)
    tissue = speckle * (0.9 - 0.5 * depth)
    pleura = np.exp(-((depth - 0.28) ** 2) / (2 * 0.008**2)) * 1.6
    # Below the pleura aerated lung shows only reverberation: faint speckle, A-lines;
    # interstitial disease (COVID-19) replaces A-lines with vertical B-lines.
    image = tissue * (depth < 0.28) + pleura + speckle * 0.3 * (depth >= 0.28) * (1.0 - 0.6 * depth)
    if b_lines:
        for centre in rng.uniform(-0.45, 0.45, size=b_lines):
            image = image + 0.55 * np.exp(-((angle - centre) ** 2) / (2 * 0.012**2)) * (depth > 0.28) * (1.1 - depth)
    else:
        for k in (2, 3):  # A-lines: reverberations of the pleura at multiples of its depth
            image = image + 0.7 / k * np.exp(-((depth - 0.28 * k) ** 2) / (2 * 0.008**2))
    image = np.clip(image * sector * 150.0, 0, 255)
    return image.astype(np.uint8)
