"""Noise measurement and kernel fit of :mod:`ldct_sim.calibrate`: masks, ROIs, NPS statistics, the fit.

Split out of ``calibrate.py`` (issue 14); :mod:`ldct_sim.calibrate` re-exports these names. The method
(masks, ROI grid, log-NPS least squares for the :class:`~ldct_sim.fbp.ApodizedRamp` window, the pairing
statistic κ) is described in the :mod:`ldct_sim.calibrate` module docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .calibrate_pairs import CTPair
from .fbp import ApodizedRamp
from .noise_power import nps_2d, radial_average

__all__ = ["NoiseStats", "fit_kernel", "noise_masks", "noise_roi_grid", "noise_stats", "pairing_statistic"]


def noise_masks(full_dose_hu: np.ndarray, hu_range=(-100.0, 200.0), body_margin_px: int = 8,
                soft_margin_px: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(body, soft_tissue)`` boolean masks of a full-dose slice (see the module docstring)."""
    from scipy import ndimage as ndi

    fd = np.asarray(full_dose_hu, dtype=np.float32)
    body = ndi.binary_opening(fd > -500.0, iterations=2)
    lab, n = ndi.label(body)
    if n == 0:
        return np.zeros_like(body), np.zeros_like(body)
    sizes = ndi.sum(body, lab, index=np.arange(1, n + 1))
    body = ndi.binary_fill_holes(lab == (1 + int(np.argmax(sizes))))
    if body_margin_px > 0:
        body = ndi.binary_erosion(body, iterations=body_margin_px)
    lo, hi = hu_range
    mean5 = ndi.uniform_filter(fd, 5)
    soft = (fd >= lo) & (fd <= hi) & (mean5 >= lo) & (mean5 <= hi)
    if soft_margin_px > 0:
        soft = ndi.binary_erosion(soft, iterations=soft_margin_px)
    return body, soft & body


def noise_roi_grid(body: np.ndarray, roi_px: int) -> list[tuple[int, int]]:
    """Top-left corners of ``roi_px``² ROIs on a half-overlapping grid lying wholly inside ``body``."""
    from scipy import ndimage as ndi

    h, w = body.shape
    step = max(1, roi_px // 2)
    # a ROI lies inside the body when the box sum of the mask equals its area
    inside = ndi.uniform_filter(body.astype(np.float64), size=roi_px, mode="constant") > 1.0 - 1e-9
    c = roi_px // 2  # uniform_filter centres the box at index + (roi_px // 2) for even sizes
    return [(r, q) for r in range(0, h - roi_px + 1, step) for q in range(0, w - roi_px + 1, step)
            if inside[r + c, q + c] and body[r:r + roi_px, q:q + roi_px].all()]


@dataclass
class NoiseStats:
    """Noise of a set of noise-only images: level in soft tissue and NPS over body ROIs.

    Attributes:
        sd_hu: standard deviation in the soft-tissue masks (pooled pixels), HU.
        mean_frequency: NPS-weighted mean radial frequency, cycles per pixel.
        frequency: ring centres of the radial NPS, cycles per pixel.
        radial_nps: radial NPS, HU²·pixel² (pixel-size-free, pooled over images).
        per_image: per image ``(frequency_per_mm, radial_nps_hu2_mm2)`` for the kernel fit.
        n_rois, n_pixels: ROIs and soft-tissue pixels used.
    """

    sd_hu: float
    mean_frequency: float
    frequency: np.ndarray
    radial_nps: np.ndarray
    per_image: list = field(default_factory=list, repr=False)
    n_rois: int = 0
    n_pixels: int = 0

    def to_dict(self) -> dict:
        return {"sd_hu": self.sd_hu, "mean_frequency_cycles_per_pixel": self.mean_frequency,
                "radial_nps": {"frequency_cycles_per_pixel": [round(float(v), 6) for v in self.frequency],
                               "nps_hu2_pixel2": [float(f"{v:.5g}") for v in self.radial_nps]},
                "n_rois": self.n_rois, "n_soft_tissue_pixels": self.n_pixels}


def noise_stats(noise_images, soft_masks, roi_lists, roi_px: int, spacings) -> NoiseStats:
    """:class:`NoiseStats` of noise-only images (HU) over their soft-tissue masks and ROI lists."""
    sq, npx = 0.0, 0
    all_rois, per_image = [], []
    for img, soft, rois, sp in zip(noise_images, soft_masks, roi_lists, spacings):
        v = img[soft].astype(np.float64)
        sq += float(((v - v.mean()) ** 2).sum()) if v.size else 0.0
        npx += v.size
        stack = np.stack([img[r:r + roi_px, c:c + roi_px] for r, c in rois]).astype(np.float64)
        all_rois.append(stack)
        nps, fy, fx = nps_2d(stack, 1.0)
        f, nr, _ = radial_average(nps, fy, fx)
        per_image.append((f / float(sp), nr * float(sp) ** 2, len(rois)))
    stack = np.concatenate(all_rois)
    nps, fy, fx = nps_2d(stack, 1.0)
    fr = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    f, nr, _ = radial_average(nps, fy, fx)
    mf = float((fr * nps).sum() / nps.sum()) if nps.sum() > 0 else math.nan
    sd = math.sqrt(sq / npx) if npx else math.nan
    return NoiseStats(sd, mf, f, nr, per_image, int(stack.shape[0]), int(npx))


def fit_kernel(target: NoiseStats, base: NoiseStats, *, current: ApodizedRamp | None = None) -> tuple[ApodizedRamp, float]:
    """Fit ``ln(target/base) = c + 2 Δs f² − 2 Δq f⁴`` (f in cycles/mm) by weighted least squares.

    ``base`` is the NPS of noise reconstructed with ``current`` (default the ramp, ``s = q = 0``), so the
    fitted kernel is ``(s + Δs, q + Δq)``, with ``q + Δq >= 0`` enforced (refit with ``q = 0`` otherwise).
    The first ring is left out: it holds slow trends rather than the kernel's texture. A ring weighs by the
    square root of its image's ROI count times the square root of its share of the peak power, so the
    frequencies that hold the noise (and set its texture) count most, and the nearly empty rings of a
    smooth kernel near Nyquist, whose logarithm is noisy, count least.

    Returns:
        ``(kernel, rms)``: the kernel and the weighted RMS of the log-NPS misfit left by the fit.
    """
    rows, ys, ws = [], [], []
    for (ft, nt, n_roi), (_, nb, _) in zip(target.per_image, base.per_image):
        m = min(len(nt), len(nb))
        ft, nt, nb = ft[:m], nt[:m], nb[:m]
        ok = (nt > 0) & (nb > 0) & (np.arange(m) >= 1)
        f2 = ft[ok] ** 2
        rows.append(np.stack([np.ones_like(f2), 2 * f2, -2 * f2 * f2], 1))
        ys.append(np.log(nt[ok] / nb[ok]))
        ws.append(math.sqrt(n_roi) * np.sqrt(nt[ok] / nt[ok].max()))  # where the noise power is
    a, y, w = np.concatenate(rows), np.concatenate(ys), np.concatenate(ws)
    s0 = current.s_mm2 if current is not None else 0.0
    q0 = current.q_mm4 if current is not None else 0.0
    coef = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)[0]
    if q0 + coef[2] < 0:  # a negative roll-off is not a window: pin the total q at 0 (Δq = −q0) and refit
        y_pinned = y - a[:, 2] * (-q0)
        c01 = np.linalg.lstsq(a[:, :2] * w[:, None], y_pinned * w, rcond=None)[0]
        coef = np.array([c01[0], c01[1], -q0])
    resid = y - a @ coef
    rms = float(np.sqrt(np.sum(w**2 * resid**2) / np.sum(w**2)))
    s = float(np.clip(s0 + coef[1], -100.0, 10.0))
    return ApodizedRamp(s_mm2=s, q_mm4=float(max(0.0, q0 + coef[2]))), rms


def pairing_statistic(pairs: list[CTPair], soft_masks, dose_ratio: float) -> float:
    """κ = −cov(FD, LD − FD) / (var(LD − FD)/(r + 1)) in the 3×3 high-pass band over the soft-tissue masks.

    About 1 for two independent scans, about 0 for noise inserted into the full dose's projections.
    """
    from scipy import ndimage as ndi

    cov, var, n = 0.0, 0.0, 0
    for p, soft in zip(pairs, soft_masks):
        fd = p.full_dose_hu.astype(np.float64)
        nz = p.low_dose_hu.astype(np.float64) - fd
        hf = (fd - ndi.uniform_filter(fd, 3))[soft]
        hn = (nz - ndi.uniform_filter(nz, 3))[soft]
        cov += float(((hf - hf.mean()) * (hn - hn.mean())).sum())
        var += float(((hn - hn.mean()) ** 2).sum())
        n += hf.size
    if n == 0 or var <= 0:
        return math.nan
    return float(-(cov / n) / ((var / n) / (dose_ratio + 1.0)))


def _log_rms(a: NoiseStats, b: NoiseStats) -> float:
    m = min(len(a.radial_nps), len(b.radial_nps))
    x, y = a.radial_nps[1:m], b.radial_nps[1:m]
    ok = (x > 0) & (y > 0)
    return float(np.sqrt(np.mean(np.log(y[ok] / x[ok]) ** 2))) if ok.any() else math.nan
