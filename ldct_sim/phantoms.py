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

``detail="rich"`` (opt-in; the default ``"plain"`` gives the same arrays as before it existed) adds what
real abdominal CT has and ellipses lack, each from its own seeded random stream, so that switching one
on changes neither the plain anatomy nor the other additions:

===========  ===================================================================  ==============
feature      what                                                                 HU
===========  ===================================================================  ==============
vessels      curved branching portal/hepatic trees in the liver, SMA/SMV and       150-300
             tortuous mesenteric branches in the visceral fat, through-plane dots
bowel        irregular gas pockets (thresholded smooth noise, rising to the top),  -1000 / 200-400
             air-fluid levels, positive oral contrast in some loops and the         / 5-30
             stomach, fluid, two colon segments with mottled stool
stranding    faint streaky/reticular septa (ridges of a smooth random field) in    -100 -> -30
             patches of subcutaneous and visceral fat
trabecular   cortical rim and a cancellous lattice (ridges of fine noise) inside   1000-1300 /
             the vertebral body; ribs with a cortex and marrow                      150-300
===========  ===================================================================  ==============

Sizes in the rich structures are in mm for the 360 mm field of view :mod:`ldct_sim.dataset` gives the
phantoms (the normalised half-width is 180 mm); the noise fields behind them live on fixed lattices in
normalised coordinates, so they too give the same anatomy at any ``n_pixels``.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

__all__ = ["abdominal_phantom", "water_disk", "HU_AIR", "HU_WATER", "RICH_FEATURES"]

HU_AIR = -1000.0
HU_WATER = 0.0
#: The additions ``detail="rich"`` switches on; any subset may be asked for by name.
RICH_FEATURES = ("vessels", "bowel", "stranding", "trabecular")
#: One mm in normalised coordinates, for the 360 mm field of view of :mod:`ldct_sim.dataset`.
_MM = 1.0 / 180.0


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
    detail: str | Collection[str] = "plain",
) -> np.ndarray:
    """A random abdominal-like axial slice in HU.

    Args:
        n_pixels: image side in pixels (>= 8). Default 512.
        seed: random seed; anatomy jitter, gas, lesions and texture all follow from it.
        texture_hu: standard deviation of the smooth soft-tissue texture in HU. Default 8; 0 for
            piecewise-constant regions (used by the physics tests).
        n_lesions: number of small low-contrast lesions in liver and spleen. Default 4.
        supersample: sub-pixels per pixel side for anti-aliased edges. Default 2.
        detail: ``"plain"`` (default: ellipses only, the same arrays as before this option existed),
            ``"rich"`` (all of :data:`RICH_FEATURES`: contrast-enhanced vessel trees, bowel gas and oral
            contrast, fat stranding, trabecular bone; see the module docstring for their HU), or a subset
            of :data:`RICH_FEATURES` as a collection or a comma-separated string (``"vessels,bowel"``).
            Each feature draws from its own stream derived from ``seed`` (which must then be an integer,
            a sequence of integers, or None).

    Returns:
        ``(n_pixels, n_pixels)`` float32 HU image; the body fills about 85% of the width.

    Raises:
        ValueError: ``n_pixels`` not an integer >= 8, ``texture_hu`` < 0, an unknown ``detail``, or a
            ``seed`` a rich feature cannot derive its stream from.
    """
    n = _check_n(n_pixels)
    if texture_hu < 0:
        raise ValueError(f"abdominal_phantom: `texture_hu` must be >= 0, got {texture_hu!r}.")
    features = _parse_detail(detail)
    frng = _feature_rngs(seed, features)
    rng = np.random.default_rng(seed)
    j = lambda scale=0.03: rng.uniform(-scale, scale)  # noqa: E731 - small anatomical jitter
    xx, yy = _grid(n, supersample)
    img = np.full(xx.shape, HU_AIR, dtype=np.float64)
    bw, bh, fat_t, inner, cavity = _body(img, xx, yy, j)
    organs, loops = _organs(img, xx, yy, rng, j, cavity)
    sy, aorta, ivc = _spine_and_vessels(img, xx, yy, rng, j, inner)
    # ribs: small bone ellipses along the body outline
    ribs = []
    for t in np.linspace(0.15, np.pi - 0.15, 8):
        cx, cy = (bw - fat_t - 0.035) * np.cos(t), (bh - fat_t - 0.035) * np.sin(t)
        ribs.append((cx, cy, t))
        img[_ellipse(xx, yy, cx, cy, 0.025, 0.018, t)] = 600.0
    if features:
        geo = {"liver": organs[0], "stomach": organs[2], "loops": loops, "sy": sy, "aorta": aorta, "ivc": ivc,
               "ribs": ribs, "cavity": cavity}
        # order matters only through the masks: vessels before stranding keep the septa out of the vessels
        for name in ("vessels", "bowel", "trabecular", "stranding"):
            if name in features:
                _RICH[name](img, xx, yy, geo, frng[name])
    _lesions(img, xx, yy, rng, organs[0], organs[1], n_lesions)
    if texture_hu > 0:
        sigma = 0.008 * xx.shape[0]  # ~0.4% of the FOV: about 1.3 mm at a 320 mm field of view
        tex = gaussian_filter(rng.standard_normal(xx.shape), sigma)
        tex *= texture_hu / max(tex.std(), 1e-12)
        soft = (img > -200.0) & (img < 200.0)
        img[soft] += tex[soft]
    return _downsample(img, supersample).astype(np.float32)


# The parts of :func:`abdominal_phantom`, in the order they draw from its ``rng`` (the order fixes the
# default arrays, whose hashes tests/test_phantoms.py checks). ``j(scale)`` is its jitter draw.
def _body(img, xx, yy, j):
    """Paint body outline (subcutaneous fat), muscle wall and visceral fat; return the outline's
    half-axes ``bw, bh``, the fat thickness and the ``inner`` and ``cavity`` masks."""
    bw, bh = 0.86 + j(0.04), 0.62 + j(0.05)
    body = _ellipse(xx, yy, 0, j(0.02), bw, bh)
    img[body] = -100.0  # subcutaneous fat
    fat_t = 0.05 + j(0.02)
    inner = _ellipse(xx, yy, 0, 0, bw - fat_t, bh - fat_t)
    img[inner] = 45.0  # muscle wall and soft tissue
    cavity = _ellipse(xx, yy, 0, 0.02, bw - fat_t - 0.07, bh - fat_t - 0.07)
    img[cavity] = -80.0  # visceral fat
    return bw, bh, fat_t, inner, cavity


def _organs(img, xx, yy, rng, j, cavity):
    """Paint liver, spleen, stomach (with gas), pancreas, kidneys and bowel loops; return the organs
    ``(HU, cx, cy, ax, ay, angle)`` and the loops ``(cx, cy, ax, ay)``."""
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
    loops = []  # (cx, cy, ax, ay) of each bowel loop, for the rich bowel contents
    for _ in range(rng.integers(4, 8)):
        cx, cy = rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.05)
        r = rng.uniform(0.04, 0.07)
        ry = r * rng.uniform(0.7, 1.0)
        loops.append((cx, cy, r, ry))
        loop = _ellipse(xx, yy, cx, cy, r, ry) & cavity
        img[loop] = 35.0
        if rng.random() < 0.6:
            img[_ellipse(xx, yy, cx, cy, r * 0.55, r * 0.45) & cavity] = -900.0
    return organs, loops


def _spine_and_vessels(img, xx, yy, rng, j, inner):
    """Paint spine, paraspinal muscles, aorta, IVC and small enhancing branches; return the spine's
    ``sy``, the aorta ``(cx, cy, r)`` and the IVC ``(cx, cy)``."""
    sy = -0.42 + j(0.02)
    for side in (-1, 1):
        img[_ellipse(xx, yy, side * 0.16, sy - 0.05, 0.11, 0.09) & inner] = 55.0
    img[_ellipse(xx, yy, 0, sy, 0.11, 0.10)] = 800.0
    img[_ellipse(xx, yy, 0, sy, 0.09, 0.08)] = 250.0
    img[_ellipse(xx, yy, 0, sy - 0.13, 0.03, 0.06)] = 700.0  # spinous process
    # vessels: aorta and IVC, plus small enhancing branches
    aorta = (-0.05 + j(0.01), sy + 0.17, 0.045)
    img[_ellipse(xx, yy, aorta[0], aorta[1], aorta[2], aorta[2])] = 180.0
    ivc = (-0.16 + j(0.01), sy + 0.18)
    img[_ellipse(xx, yy, ivc[0], ivc[1], 0.05, 0.035)] = 130.0
    for _ in range(6):
        cx, cy = rng.uniform(-0.5, -0.15), rng.uniform(-0.05, 0.3)
        img[_ellipse(xx, yy, cx, cy, 0.012, 0.012)] = 170.0
    return sy, aorta, ivc


def _lesions(img, xx, yy, rng, liver, spleen, n_lesions: int) -> None:
    """Paint ``n_lesions`` small low-contrast lesions, alternately in liver and spleen."""
    for k in range(n_lesions):
        host = liver if k % 2 == 0 else spleen
        r_frac = rng.uniform(0.0, 0.55)
        phi = rng.uniform(0, 2 * np.pi)
        cx = host[1] + r_frac * host[3] * np.cos(phi)
        cy = host[2] + r_frac * host[4] * np.sin(phi)
        size = rng.uniform(0.015, 0.04)
        contrast = rng.choice([-1, 1]) * rng.uniform(10.0, 40.0)
        img[_ellipse(xx, yy, cx, cy, size, size)] = host[0] + contrast


# ------------------------------------------------------------------------------------------------ rich detail
#: ``SeedSequence`` spawn keys of the rich features' streams: fixed, so that each feature's draws depend
#: only on ``seed`` and not on which other features are on.
_FEATURE_KEYS = {name: (0x5048, k) for k, name in enumerate(RICH_FEATURES)}


def _parse_detail(detail) -> frozenset:
    """The set of rich features ``detail`` asks for (empty for ``"plain"``)."""
    if isinstance(detail, str):
        if detail in ("plain", "rich"):
            return frozenset() if detail == "plain" else frozenset(RICH_FEATURES)
        names = [d.strip() for d in detail.split(",") if d.strip()]
    elif isinstance(detail, Collection):
        names = list(detail)
    else:
        names = [detail]
    unknown = [d for d in names if d not in RICH_FEATURES]
    if unknown or not names:
        raise ValueError(
            f"abdominal_phantom: unknown `detail` {detail!r}; use 'plain', 'rich', or names from {RICH_FEATURES} "
            f"(a collection or a comma-separated string)."
        )
    return frozenset(names)


def _feature_rngs(seed, features) -> dict:
    """One independent generator per asked-for feature, derived from ``seed``."""
    try:
        return {f: np.random.default_rng(np.random.SeedSequence(seed, spawn_key=_FEATURE_KEYS[f])) for f in features}
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"abdominal_phantom: `seed` must be an integer (or a sequence of them, or None) for `detail` "
            f"{sorted(features)}, got {seed!r} ({e})."
        ) from None


def _box(xx, yy, x0, x1, y0, y1):
    """Row and column slices of the (separable) grid covering ``[x0, x1] x [y0, y1]``; None if empty."""
    cx, cy = xx[0], yy[:, 0]
    cols = np.flatnonzero((cx >= x0) & (cx <= x1))
    rows = np.flatnonzero((cy >= y0) & (cy <= y1))
    if cols.size == 0 or rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _field(rng, x0, x1, y0, y1, spacing, sigma, aniso=1.0):
    """Smooth unit-std Gaussian noise on a fixed lattice over ``[x0, x1] x [y0, y1]``.

    Args:
        rng: the feature's generator.
        x0, x1, y0, y1: the box, normalised coordinates.
        spacing: lattice spacing, normalised units; fixed, so the field is the same at any ``n_pixels``.
        sigma: Gaussian correlation length, normalised units (``sigma * aniso`` along x, ``sigma`` along y).
        aniso: x/y stretch of the correlation (streaks along x for ``aniso > 1``).

    Returns:
        ``(values, x0, y0, spacing)`` for :func:`_at`.
    """
    nx = int(np.ceil((x1 - x0) / spacing)) + 2
    ny = int(np.ceil((y1 - y0) / spacing)) + 2
    f = gaussian_filter(rng.standard_normal((ny, nx)), (sigma / spacing, sigma * aniso / spacing), mode="wrap")
    f /= max(float(f.std()), 1e-12)
    return f, x0, y0, spacing


def _at(field, x, y):
    """The lattice field bilinearly interpolated at normalised coordinates ``x``, ``y`` (any shape)."""
    f, x0, y0, h = field
    return map_coordinates(f, [(y - y0) / h, (x - x0) / h], order=1, mode="nearest")


def _ridge(values, width):
    """Thin lines where a unit-std field crosses zero: 1 on the line, falling off over ``width`` (in std)."""
    return np.exp(-((values / width) ** 2))


def _paint_capsule(img, xx, yy, p0, p1, r0, r1, hu, host):
    """Paint a tube from ``p0`` to ``p1`` (radius ``r0`` to ``r1``, normalised) onto pixels equal to ``host``."""
    rm = max(r0, r1)
    b = _box(xx, yy, min(p0[0], p1[0]) - rm, max(p0[0], p1[0]) + rm, min(p0[1], p1[1]) - rm, max(p0[1], p1[1]) + rm)
    if b is None:
        return
    x, y, sub = xx[b], yy[b], img[b]
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * dx + (y - p0[1]) * dy) / max(dx * dx + dy * dy, 1e-18), 0.0, 1.0)
    d2 = (x - p0[0] - t * dx) ** 2 + (y - p0[1] - t * dy) ** 2
    inside = (d2 <= (r0 + t * (r1 - r0)) ** 2) & np.isin(sub, host)
    sub[inside] = hu


def _vessel_tree(rng, x, y, angle, length, radius, depth, tortuosity=0.25):
    """Segments ``(p0, p1, r0, r1)`` of a curved binary tree: each branch is 4 pieces whose direction
    drifts by ``tortuosity`` rad (std), then splits in two thinner, shorter children until ``depth`` 0."""
    segs, stack = [], [(x, y, angle, length, radius, depth)]
    while stack:
        x, y, a, ln, r, d = stack.pop()
        for _ in range(4):
            a += rng.normal(0.0, tortuosity)
            x1, y1 = x + 0.25 * ln * np.cos(a), y + 0.25 * ln * np.sin(a)
            segs.append(((x, y), (x1, y1), r, 0.93 * r))
            x, y, r = x1, y1, 0.93 * r
        if d > 0:
            spread = rng.uniform(0.35, 0.8)
            for side in (-1.0, 1.0):
                stack.append((x, y, a + side * spread * rng.uniform(0.7, 1.3), ln * rng.uniform(0.6, 0.85),
                              r * rng.uniform(0.6, 0.8), d - 1))
    return segs


def _add_vessels(img, xx, yy, geo, rng):
    """Portal and hepatic vein trees in the liver, SMA/SMV and mesenteric branches in the visceral fat,
    through-plane vessel dots, and a drawn aortic enhancement; all 150-300 HU."""
    liver_hu, lcx, lcy, lax, lay, _ = geo["liver"]
    # aorta enhancement varies with the contrast phase
    a_hu = rng.uniform(170.0, 300.0)
    ax_, ay_, ar = geo["aorta"]
    b = _box(xx, yy, ax_ - ar, ax_ + ar, ay_ - ar, ay_ + ar)
    if b is not None:
        sub = img[b]
        sub[_ellipse(xx[b], yy[b], ax_, ay_, ar, ar) & (sub == 180.0)] = a_hu
    # portal vein trees from the hilum (medial, posterior in the liver), spreading laterally
    hx, hy = lcx + 0.3 * lax, lcy - 0.25 * lay
    for _ in range(rng.integers(2, 4)):
        hu = rng.uniform(150.0, 220.0)
        for seg in _vessel_tree(rng, hx, hy, rng.uniform(0.5, 1.3) * np.pi, rng.uniform(22, 32) * _MM,
                                rng.uniform(3.0, 4.5) * _MM, 3):
            _paint_capsule(img, xx, yy, *seg, hu, (liver_hu,))
    # hepatic veins fanning out from the IVC into the liver
    ix, iy = geo["ivc"]
    for _ in range(rng.integers(1, 3)):
        hu = rng.uniform(150.0, 200.0)
        for seg in _vessel_tree(rng, ix, iy, rng.uniform(0.55, 0.95) * np.pi, rng.uniform(25, 40) * _MM,
                                rng.uniform(2.5, 3.5) * _MM, 2, 0.15):
            _paint_capsule(img, xx, yy, *seg, hu, (liver_hu,))
    # SMA (arterial) and SMV (to its right, image left) in front of the aorta, and mesenteric branches
    smx, smy = ax_ + rng.uniform(-2, 4) * _MM, ay_ + rng.uniform(16, 24) * _MM
    svx = smx - rng.uniform(7, 10) * _MM
    sma = (smx, smy, rng.uniform(3, 4) * _MM, a_hu)
    smv = (svx, smy, rng.uniform(4, 5.5) * _MM, rng.uniform(150, 220))
    for x, y, r, hu in (sma, smv):
        _paint_capsule(img, xx, yy, (x, y), (x, y), r, r, hu, (-80.0,))
        for _ in range(2):
            for seg in _vessel_tree(rng, x, y, rng.uniform(0.15, 0.85) * np.pi, rng.uniform(30, 45) * _MM,
                                    rng.uniform(1.5, 2.5) * _MM, 3, 0.4):
                _paint_capsule(img, xx, yy, *seg, rng.uniform(150.0, 250.0), (-80.0,))
    # through-plane vessels: dots in the liver and the mesentery
    for _ in range(rng.integers(6, 13)):
        rho, phi = np.sqrt(rng.uniform(0, 0.8)), rng.uniform(0, 2 * np.pi)
        x, y, r = lcx + rho * lax * np.cos(phi), lcy + rho * lay * np.sin(phi), rng.uniform(1.0, 3.0) * _MM
        _paint_capsule(img, xx, yy, (x, y), (x, y), r, r, rng.uniform(150.0, 250.0), (liver_hu,))
    for _ in range(rng.integers(4, 9)):
        x, y, r = rng.uniform(-0.4, 0.4), rng.uniform(-0.35, 0.15), rng.uniform(0.8, 1.8) * _MM
        _paint_capsule(img, xx, yy, (x, y), (x, y), r, r, rng.uniform(150.0, 250.0), (-80.0,))


def _fill_lumen(img, xx, yy, b, lumen, extent, rng, *, contrast_p, gas_p, stool=False):
    """Fill the lumen pixels ``lumen`` (a mask over box ``b``) of a loop: fluid (5-30 HU) or positive oral
    contrast (200-400 HU), gas (-1000 HU) above an air-fluid level or in an irregular pocket (smooth noise
    thresholded, biased to rise), or mottled stool (soft matter with gas bubbles).

    ``extent`` is the lumen's analytic box ``(x0, x1, y0, y1)``, normalised: the draws and the noise lattice
    follow from it and ``rng`` alone, so the contents are the same at any ``n_pixels`` (and the number of
    draws does not depend on whether any pixel falls in the lumen).
    """
    x0, x1, y0, y1 = extent
    h = y1 - y0
    fill = rng.uniform(200.0, 400.0) if rng.random() < contrast_p else rng.uniform(5.0, 30.0)
    f = _field(rng, x0, x1, y0, y1, 0.6 * _MM, rng.uniform(1.5, 3.0) * _MM)
    gas, level, thr = rng.random() < gas_p, rng.random() < 0.5, rng.uniform(0.0, 1.0)
    if b is None or not lumen.any():
        return
    x, y, sub = xx[b][lumen], yy[b][lumen], img[b]
    vals = np.full(x.shape, fill)
    if stool:  # faeces: soft matter with small gas bubbles
        vals[_at(f, x, y) > 1.0 + 0.5 * thr] = HU_AIR
    elif gas and level:  # air-fluid level: gas above a flat line (the patient lies supine, anterior up)
        vals[y > y1 - (0.2 + 0.3 * thr) * h] = HU_AIR
    elif gas:  # irregular pocket, buoyant: threshold of noise plus height
        vals[_at(f, x, y) + 3.0 * (y - y0) / h > 2.0 + thr] = HU_AIR
    sub[lumen] = vals


def _add_bowel(img, xx, yy, geo, rng):
    """Bowel contents in every loop and the stomach (gas, fluid, positive oral contrast), and two colon
    segments with mottled stool in the flanks."""
    cavity = geo["cavity"]
    for cx, cy, ax, ay in geo["loops"]:
        b = _box(xx, yy, cx - ax, cx + ax, cy - ay, cy + ay)
        lumen = None
        if b is not None:
            lumen = _ellipse(xx[b], yy[b], cx, cy, 0.75 * ax, 0.75 * ay) & cavity[b] & np.isin(img[b], (35.0, -900.0))
        extent = (cx - 0.75 * ax, cx + 0.75 * ax, cy - 0.75 * ay, cy + 0.75 * ay)
        _fill_lumen(img, xx, yy, b, lumen, extent, rng, contrast_p=0.35, gas_p=0.6)
    # stomach: fluid or contrast, gas on top (replaces the plain gas ellipse)
    _, sx, sy, sax, say, san = geo["stomach"]
    la, lb = 0.85 * sax, 0.7 * say
    hx, hy = np.hypot(la * np.cos(san), lb * np.sin(san)), np.hypot(la * np.sin(san), lb * np.cos(san))
    b = _box(xx, yy, sx - hx, sx + hx, sy - hy, sy + hy)
    lumen = None
    if b is not None:
        lumen = _ellipse(xx[b], yy[b], sx, sy, la, lb, san) & cavity[b] & np.isin(img[b], (40.0, -900.0))
    _fill_lumen(img, xx, yy, b, lumen, (sx - hx, sx + hx, sy - hy, sy + hy), rng, contrast_p=0.5, gas_p=1.0)
    # ascending (image left) and descending colon in the flanks, over visceral fat only
    for side in (-1.0, 1.0):
        cx, cy = side * rng.uniform(0.52, 0.6), rng.uniform(-0.2, 0.0)
        ax, ay = rng.uniform(0.055, 0.075), rng.uniform(0.05, 0.07)
        stool = rng.random() < 0.7
        b = _box(xx, yy, cx - ax, cx + ax, cy - ay, cy + ay)
        lumen = None
        if b is not None:
            sub = img[b]
            wall = _ellipse(xx[b], yy[b], cx, cy, ax, ay) & cavity[b] & (sub == -80.0)
            lumen = wall & _ellipse(xx[b], yy[b], cx, cy, 0.8 * ax, 0.8 * ay)
            sub[wall] = 35.0
        extent = (cx - 0.8 * ax, cx + 0.8 * ax, cy - 0.8 * ay, cy + 0.8 * ay)
        _fill_lumen(img, xx, yy, b, lumen, extent, rng, contrast_p=0.2, gas_p=0.0, stool=stool)


def _add_stranding(img, xx, yy, geo, rng):
    """Faint septa in patches of the fat: ridges of a smooth, streaky random field raise -100/-80 HU fat
    towards -30 HU."""
    lines = _field(rng, -1.0, 1.0, -1.0, 1.0, 1.5 * _MM, rng.uniform(2.5, 4.0) * _MM, rng.uniform(1.0, 2.5))
    patches = _field(rng, -1.0, 1.0, -1.0, 1.0, 6.0 * _MM, 25.0 * _MM)
    offset, strength, width = rng.uniform(-0.8, 0.3), rng.uniform(0.5, 1.0), rng.uniform(0.12, 0.25)
    fat = (img == -100.0) | (img == -80.0)
    x, y, base = xx[fat], yy[fat], img[fat]
    weight = np.clip(_at(patches, x, y) - offset, 0.0, 1.0) * strength
    img[fat] = base + (-30.0 - base) * weight * _ridge(_at(lines, x, y), width)


def _add_trabecular(img, xx, yy, geo, rng):
    """A 1000-1300 HU cortical rim and a cancellous lattice (150-300 HU: bright ridges of fine noise over
    marrow) in the vertebral body, and a cortex with marrow in each rib."""
    sy = geo["sy"]
    cortex_hu = rng.uniform(1000.0, 1300.0)
    # every draw before any pixel test, so that the anatomy does not depend on n_pixels
    f = _field(rng, -0.11, 0.11, sy - 0.10, sy + 0.10, 0.35 * _MM, rng.uniform(0.5, 0.8) * _MM)
    lo, hi, width = rng.uniform(150.0, 180.0), rng.uniform(240.0, 300.0), rng.uniform(0.3, 0.5)
    rib_marrow_hu = rng.uniform(200.0, 300.0, size=len(geo["ribs"]))
    b = _box(xx, yy, -0.11, 0.11, sy - 0.10, sy + 0.10)
    if b is not None:
        sub, x, y = img[b], xx[b], yy[b]
        body = _ellipse(x, y, 0, sy, 0.11, 0.10)
        sub[body & (sub == 800.0)] = cortex_hu
        marrow = _ellipse(x, y, 0, sy, 0.098, 0.088) & body & np.isin(sub, (cortex_hu, 250.0))
        sub[marrow] = lo + (hi - lo) * _ridge(_at(f, x[marrow], y[marrow]), width)
    for (cx, cy, t), marrow_hu in zip(geo["ribs"], rib_marrow_hu):
        b = _box(xx, yy, cx - 0.025, cx + 0.025, cy - 0.025, cy + 0.025)
        if b is None:
            continue
        sub = img[b]
        rib = _ellipse(xx[b], yy[b], cx, cy, 0.025, 0.018, t) & (sub == 600.0)
        sub[rib] = cortex_hu
        sub[rib & _ellipse(xx[b], yy[b], cx, cy, 0.016, 0.009, t)] = marrow_hu


_RICH = {"vessels": _add_vessels, "bowel": _add_bowel, "stranding": _add_stranding, "trabecular": _add_trabecular}
