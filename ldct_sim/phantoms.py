"""Procedural abdominal-like CT slices in HU, seeded, at any matrix size.

Every structure is an ellipse in normalised coordinates (the image spans [-1, 1] in x and y, y up), so
the same seed gives the same anatomy at any ``n_pixels``; edges are anti-aliased by supersampling so
that partial-volume pixels look like a scanner's, not a staircase. HU values are typical of
contrast-enhanced portal-venous abdominal CT:

========================  =========
structure                 HU
========================  =========
air (outside the body)    -1000
subcutaneous fat          -100
muscle / soft tissue      40-55
liver                     60
spleen                    50
kidney cortex / medulla   150 / 30
aorta, vena cava          180 / 130
vertebra cortex / marrow  800 / 250
bowel gas                 -900
lesions                   ±(10-40) against their organ
========================  =========

Texture: Gaussian-filtered noise (about 8 HU std, ~1.5 mm correlation) inside soft tissue.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["abdominal_phantom", "water_disk", "HU_AIR", "HU_WATER"]

HU_AIR = -1000.0
HU_WATER = 0.0


def _ellipse(xx, yy, cx, cy, ax, ay, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    xr = (xx - cx) * c + (yy - cy) * s
    yr = -(xx - cx) * s + (yy - cy) * c
    return (xr / ax) ** 2 + (yr / ay) ** 2 <= 1.0


def _grid(n_pixels: int, supersample: int):
    m = n_pixels * supersample
    c = (np.arange(m) + 0.5) / m * 2.0 - 1.0
    return np.meshgrid(c, -c)  # xx to the right, yy up (row 0 on top)


def _check_n(n_pixels) -> int:
    if isinstance(n_pixels, bool) or not isinstance(n_pixels, (int, np.integer)) or n_pixels < 8:
        raise ValueError(f"phantom: `n_pixels` must be an integer >= 8, got {n_pixels!r}.")
    return int(n_pixels)


def _downsample(img: np.ndarray, factor: int) -> np.ndarray:
    n = img.shape[0] // factor
    return img.reshape(n, factor, n, factor).mean(axis=(1, 3))


def water_disk(n_pixels: int = 128, radius: float = 0.8, hu: float = HU_WATER, supersample: int = 4) -> np.ndarray:
    """A uniform disk of ``hu`` (default water, 0 HU) in air; ``radius`` as a fraction of the half-FOV."""
    n = _check_n(n_pixels)
    xx, yy = _grid(n, supersample)
    img = np.where(xx**2 + yy**2 <= radius**2, hu, HU_AIR)
    return _downsample(img, supersample).astype(np.float32)


def abdominal_phantom(
    n_pixels: int = 512,
    seed: int = 0,
    *,
    texture_hu: float = 8.0,
    n_lesions: int = 4,
    supersample: int = 2,
) -> np.ndarray:
    """A random abdominal-like axial slice in HU.

    Args:
        n_pixels: image side in pixels (>= 8). Default 512.
        seed: random seed; anatomy jitter, gas, lesions and texture all follow from it.
        texture_hu: standard deviation of the smooth soft-tissue texture in HU. Default 8; 0 for
            piecewise-constant regions (used by the physics tests).
        n_lesions: number of small low-contrast lesions in liver and spleen. Default 4.
        supersample: sub-pixels per pixel side for anti-aliased edges. Default 2.

    Returns:
        ``(n_pixels, n_pixels)`` float32 HU image; the body fills about 85% of the width.
    """
    n = _check_n(n_pixels)
    if texture_hu < 0:
        raise ValueError(f"abdominal_phantom: `texture_hu` must be >= 0, got {texture_hu!r}.")
    rng = np.random.default_rng(seed)
    j = lambda scale=0.03: rng.uniform(-scale, scale)  # noqa: E731 - small anatomical jitter
    xx, yy = _grid(n, supersample)
    img = np.full(xx.shape, HU_AIR, dtype=np.float64)

    bw, bh = 0.86 + j(0.04), 0.62 + j(0.05)
    body = _ellipse(xx, yy, 0, j(0.02), bw, bh)
    img[body] = -100.0  # subcutaneous fat
    fat_t = 0.05 + j(0.02)
    inner = _ellipse(xx, yy, 0, 0, bw - fat_t, bh - fat_t)
    img[inner] = 45.0  # muscle wall and soft tissue
    cavity = _ellipse(xx, yy, 0, 0.02, bw - fat_t - 0.07, bh - fat_t - 0.07)
    img[cavity] = -80.0  # visceral fat

    organs = [
        # (HU, cx, cy, ax, ay, angle)
        (60.0, -0.32 + j(), 0.12 + j(), 0.36 + j(), 0.30 + j(), 0.3 + j(0.2)),  # liver (patient's right = image left)
        (50.0, 0.45 + j(), 0.18 + j(), 0.15 + j(0.02), 0.20 + j(0.02), -0.4 + j(0.2)),  # spleen
        (40.0, 0.12 + j(), 0.28 + j(), 0.20 + j(), 0.09 + j(0.02), 0.2),  # stomach wall
        (35.0, 0.05 + j(), -0.05 + j(), 0.22 + j(), 0.10 + j(0.02), 0.0),  # pancreas
    ]
    for hu, cx, cy, ax, ay, an in organs:
        img[_ellipse(xx, yy, cx, cy, ax, ay, an) & cavity] = hu
    # gas inside the stomach
    img[_ellipse(xx, yy, organs[2][1], organs[2][2] + 0.03, 0.12, 0.04) & cavity] = -900.0
    # kidneys: cortex and medulla
    for side in (-1, 1):
        cx, cy = side * (0.30 + j(0.02)), -0.22 + j(0.02)
        img[_ellipse(xx, yy, cx, cy, 0.10, 0.14, side * 0.4)] = 150.0
        img[_ellipse(xx, yy, cx, cy, 0.06, 0.09, side * 0.4)] = 30.0
    # bowel loops with gas pockets
    for _ in range(rng.integers(4, 8)):
        cx, cy = rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.05)
        r = rng.uniform(0.04, 0.07)
        loop = _ellipse(xx, yy, cx, cy, r, r * rng.uniform(0.7, 1.0)) & cavity
        img[loop] = 35.0
        if rng.random() < 0.6:
            img[_ellipse(xx, yy, cx, cy, r * 0.55, r * 0.45) & cavity] = -900.0
    # spine and paraspinal muscles
    sy = -0.42 + j(0.02)
    for side in (-1, 1):
        img[_ellipse(xx, yy, side * 0.16, sy - 0.05, 0.11, 0.09) & inner] = 55.0
    img[_ellipse(xx, yy, 0, sy, 0.11, 0.10)] = 800.0
    img[_ellipse(xx, yy, 0, sy, 0.09, 0.08)] = 250.0
    img[_ellipse(xx, yy, 0, sy - 0.13, 0.03, 0.06)] = 700.0  # spinous process
    # vessels: aorta and IVC, plus small enhancing branches
    img[_ellipse(xx, yy, -0.05 + j(0.01), sy + 0.17, 0.045, 0.045)] = 180.0
    img[_ellipse(xx, yy, -0.16 + j(0.01), sy + 0.18, 0.05, 0.035)] = 130.0
    for _ in range(6):
        cx, cy = rng.uniform(-0.5, -0.15), rng.uniform(-0.05, 0.3)
        img[_ellipse(xx, yy, cx, cy, 0.012, 0.012)] = 170.0
    # ribs: small bone ellipses along the body outline
    for t in np.linspace(0.15, np.pi - 0.15, 8):
        cx, cy = (bw - fat_t - 0.035) * np.cos(t), (bh - fat_t - 0.035) * np.sin(t)
        img[_ellipse(xx, yy, cx, cy, 0.025, 0.018, t)] = 600.0
    # lesions in liver and spleen, low contrast
    liver, spleen = organs[0], organs[1]
    for k in range(n_lesions):
        host = liver if k % 2 == 0 else spleen
        r_frac = rng.uniform(0.0, 0.55)
        phi = rng.uniform(0, 2 * np.pi)
        cx = host[1] + r_frac * host[3] * np.cos(phi)
        cy = host[2] + r_frac * host[4] * np.sin(phi)
        size = rng.uniform(0.015, 0.04)
        contrast = rng.choice([-1, 1]) * rng.uniform(10.0, 40.0)
        img[_ellipse(xx, yy, cx, cy, size, size)] = host[0] + contrast

    if texture_hu > 0:
        sigma = 0.008 * xx.shape[0]  # ~0.4% of the FOV: about 1.3 mm at a 320 mm field of view
        tex = gaussian_filter(rng.standard_normal(xx.shape), sigma)
        tex *= texture_hu / max(tex.std(), 1e-12)
        soft = (img > -200.0) & (img < 200.0)
        img[soft] += tex[soft]
    return _downsample(img, supersample).astype(np.float32)
