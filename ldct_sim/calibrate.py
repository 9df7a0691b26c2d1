"""Calibrate a scanner profile on real low-dose / full-dose pairs: kernel and dose from the noise.

``python -m ldct_sim calibrate --low-dose LD --full-dose FD --out PROFILE.json`` (or
:func:`calibrate`) fits a :class:`~ldct_sim.profile.ScannerProfile` so that noise simulated on the
full-dose images matches the real noise of the pairs, in soft tissue, in both texture (the radial noise
power spectrum, NPS) and level (standard deviation).

What is matched. The real noise of a pair is ``LD − FD`` (HU): the anatomy cancels. Two kinds of pairs
give it a different variance, with ``r`` the dose ratio (4 for quarter dose) and ``σ²(I0)`` the noise
variance of one scan at I0:

* ``"inserted"``: the low dose was made by adding noise to the full dose's projections (Yu et al.,
  Med Phys 2012; the AAPM–Mayo Grand Challenge and TCIA LDCT-and-Projection-data pairs). ``LD − FD``
  is the inserted noise alone, independent of the full dose's own noise:
  ``var = σ²(I0) − σ²(r·I0) = σ²(I0)·(1 − 1/r)``.
* ``"independent"``: two separate scans. ``var = σ²(I0) + σ²(r·I0) = σ²(I0)·(1 + 1/r)``.

``pairing="auto"`` (default) tells them apart from the data: with independent scans the full dose's
noise appears in ``LD − FD`` with a minus sign, so ``cov(FD, LD − FD) = −σ²(r·I0)`` in the
high-pass band, while inserted noise leaves it near 0. The statistic
``κ = −cov / (var(LD − FD)/(r + 1))`` is about 1 for independent scans and about 0 for insertion
(0.2–0.3 on the Mayo pairs); ``κ < 0.5`` reads as ``"inserted"``.

How it is simulated. Each full-dose image (HU → μ at the profile's energy) is forward projected through
the profile's geometry at its own pixel size (ASTRA, ``line`` model: noise texture does not depend on the
signal model, and it is 3–4× faster than ``strip``), Poisson noise is drawn on the counts at an effective
dose ``I0_eff``, and the noise-only sinogram is reconstructed with the kernel. One draw at ``I0_eff``
has the variance of ``LD − FD`` when ``I0_eff = I0 / (1 ∓ 1/r)`` (inserted / independent), so the
profile's low-dose ``i0`` is ``I0_eff·(1 ∓ 1/r)``.

How it is fitted, in a handful of reconstructions per pair:

1. A ramp (``ram-lak``) reconstruction of one noise draw gives the base NPS ``B(f)``. With an
   :class:`~ldct_sim.fbp.ApodizedRamp` window ``W(f) = exp(s f² − q f⁴)`` the NPS is about
   ``B(f)·W(f)²``, so ``ln(R(f)/B(f)) = c + 2 s f² − 2 q f⁴`` (``R`` the real radial NPS, ``f`` in
   cycles/mm) is a linear least-squares problem for ``(c, s, q)`` (``q >= 0``).
2. Noise variance scales as ``1/I0``: ``I0_eff = I0_ref · var_sim / var_real`` in the soft-tissue mask.
3. A fresh draw at ``I0_eff`` with the fitted kernel checks both; the remaining log-NPS misfit and
   variance ratio correct ``(s, q)`` and ``I0_eff`` (up to ``max_iter`` rounds), and the last check's
   numbers are the profile's residuals.

Masks (on the full-dose image): the body is the filled largest region above −500 HU, eroded by
``body_margin_px``; soft tissue is where the full dose and its 5×5 mean are in ``hu_range``
(default [−100, 200] HU), eroded by 3 pixels, inside the body. The NPS uses square ROIs of
``roi_px`` pixels on a half-overlapping grid lying wholly inside the body; the level uses the
soft-tissue pixels. Mean NPS frequency is in cycles per pixel.

Inputs: DICOM series folders, DICOM files or NIfTI files (HU), paired by slice position when both
sides are DICOM with positions, else by sorted name and slice index.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .attenuation import hu_to_mu, mu_water
from .fbp import ApodizedRamp, fbp
from .io import CTReadError, find_ct
from .noise import make_generator, transmission_noise
from .noise_power import nps_2d, radial_average
from .profile import ScannerProfile
from .provenance import provenance
from .simulate import forward_project

__all__ = [
    "CTPair",
    "CalibrationResult",
    "PAIRINGS",
    "calibrate",
    "load_pairs",
    "noise_masks",
    "noise_roi_grid",
    "pairing_statistic",
    "fit_kernel",
    "noise_stats",
    "save_figure",
    "KAPPA_THRESHOLD",
]

logger = logging.getLogger(__name__)

PAIRINGS = ("auto", "inserted", "independent")
#: κ below this reads as inserted noise (see the module docstring).
KAPPA_THRESHOLD = 0.5


# ---------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class CTPair:
    """One aligned low-dose / full-dose slice pair in HU.

    Attributes:
        low_dose_hu, full_dose_hu: ``(H, W)`` float32 images in HU.
        spacing_mm: ``(row, column)`` pixel spacing in mm.
        low_dose_path, full_dose_path: the files they came from; ``index``: slice index in the volume.
        kernel: the DICOM ``ConvolutionKernel`` of the full dose when known.
    """

    low_dose_hu: np.ndarray
    full_dose_hu: np.ndarray
    spacing_mm: tuple[float, float]
    low_dose_path: str
    full_dose_path: str
    index: int = 0
    kernel: str | None = None

    def describe(self) -> dict:
        return {"low_dose": self.low_dose_path, "full_dose": self.full_dose_path, "index": self.index,
                "pixel_spacing_mm": list(self.spacing_mm), "shape": list(self.full_dose_hu.shape), "kernel": self.kernel}


def _dicom_position_and_kernel(path: str) -> tuple[float | None, str | None]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - find_ct already read it; any failure here just means "no position"
        return None, None
    kernel = ds.get("ConvolutionKernel")
    kernel = None if kernel is None else (str(kernel[0]) if not isinstance(kernel, str) and len(kernel) else str(kernel))
    pos, ori = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if pos is None or ori is None or len(pos) != 3 or len(ori) != 6:
        return None, kernel
    normal = np.cross(np.asarray(ori[:3], float), np.asarray(ori[3:], float))
    return float(np.dot(normal, np.asarray(pos, float))), kernel


def _slices(path, role: str) -> list[dict]:
    """Every slice at ``path``: source, index, path, DICOM position and kernel. Refuses unreadable files."""
    try:
        inv = find_ct(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"calibrate: the {role} input does not exist: {str(path)!r}.") from err
    if inv.failures:
        f = inv.failures[0]
        more = f" (and {len(inv.failures) - 1} more)" if len(inv.failures) > 1 else ""
        raise ValueError(f"calibrate: cannot use the {role} input {f.path!r}: {f.reason}{more}")
    if not inv.sources:
        raise ValueError(f"calibrate: no DICOM or NIfTI CT found in the {role} input {str(path)!r}.")
    out = []
    for src, i in inv:
        file = src.paths[0] if src.kind == "nifti" or len(src.paths) == 1 else src.paths[i]
        pos, kernel = (None, None)
        if src.kind == "dicom" and not src._multiframe:
            pos, kernel = _dicom_position_and_kernel(file)
        out.append({"source": src, "index": i, "path": file, "kind": src.kind, "position": pos, "kernel": kernel})
    return out


def load_pairs(low_dose, full_dose, *, max_pairs: int | None = None) -> list[CTPair]:
    """Read and pair low-dose and full-dose CT slices.

    Both sides DICOM with ``ImagePositionPatient``: paired by slice position along the normal (to
    0.01 mm). Otherwise (NIfTI, or DICOM without positions) by sorted name: the k-th slice of the sorted
    low-dose files with the k-th of the full-dose files.

    Args:
        low_dose, full_dose: a DICOM file or series folder, a NIfTI file, or a folder of them (HU).
        max_pairs: use only the first ``max_pairs`` pairs (in order). Default all.

    Returns:
        The pairs, in order.

    Raises:
        FileNotFoundError: a missing input.
        ValueError: unreadable or non-CT files, different slice counts, unmatched positions, different
            image shapes or pixel spacings within a pair (the messages name the files).
    """
    lds, fds = _slices(low_dose, "low-dose"), _slices(full_dose, "full-dose")
    by_position = all(s["position"] is not None for s in lds + fds)
    if by_position:
        fd_at = {}
        for s in fds:
            fd_at.setdefault(round(s["position"], 2), s)
        matched = []
        for s in lds:
            other = fd_at.get(round(s["position"], 2))
            if other is None:
                raise ValueError(
                    f"calibrate: no full-dose slice at the position of the low-dose slice {s['path']!r} "
                    f"({s['position']:.2f} mm along the slice normal); give matching series."
                )
            matched.append((s, other))
        if len(lds) != len(fds):
            logger.warning("calibrate: %d low-dose and %d full-dose slices; using the %d at common positions",
                           len(lds), len(fds), len(matched))
    else:
        if len(lds) != len(fds):
            raise ValueError(
                f"calibrate: the low-dose input {str(low_dose)!r} holds {len(lds)} slices and the full-dose input "
                f"{str(full_dose)!r} {len(fds)}; pairs are matched by sorted name and slice index, so the counts must agree."
            )
        matched = list(zip(lds, fds))
    if max_pairs is not None:
        matched = matched[: int(max_pairs)]
    pairs = []
    for a, b in matched:
        try:
            la = a["source"].read_slice(a["index"])
            fb = b["source"].read_slice(b["index"])
        except CTReadError as err:
            raise ValueError(f"calibrate: cannot read {err.path!r}: {err.reason}") from err
        if la.hu.shape != fb.hu.shape:
            raise ValueError(
                f"calibrate: the low-dose slice {a['path']!r} is {la.hu.shape} and its full-dose pair {b['path']!r} "
                f"{fb.hu.shape}; the pairs must be aligned pixel for pixel."
            )
        if not np.allclose(la.spacing_mm, fb.spacing_mm, rtol=1e-3):
            raise ValueError(
                f"calibrate: pixel spacing {la.spacing_mm} mm of {a['path']!r} differs from {fb.spacing_mm} mm of "
                f"{b['path']!r}; the pairs must be aligned pixel for pixel."
            )
        if not math.isclose(fb.spacing_mm[0], fb.spacing_mm[1], rel_tol=1e-3):
            raise ValueError(f"calibrate: {b['path']!r} has non-square pixels {fb.spacing_mm} mm; resample it first.")
        if min(fb.hu.shape) < 64:
            raise ValueError(f"calibrate: {b['path']!r} is {fb.hu.shape}; at least 64 x 64 pixels are needed.")
        pairs.append(CTPair(la.hu, fb.hu, fb.spacing_mm, a["path"], b["path"], b["index"], b["kernel"] or a["kernel"]))
    if not pairs:
        raise ValueError("calibrate: no low-dose / full-dose pairs found.")
    return pairs


# ---------------------------------------------------------------------------------------------------
# masks, statistics, fit
# ---------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------
# the calibration
# ---------------------------------------------------------------------------------------------------
@dataclass
class CalibrationResult:
    """What :func:`calibrate` returns: the profile, the noise statistics and example noise images.

    Attributes:
        profile: the fitted :class:`ScannerProfile` (its ``fit`` holds the same numbers as plain JSON).
        real, simulated: :class:`NoiseStats` of ``LD − FD`` and of the final simulated noise.
        real_noise, simulated_noise: the first pair's noise images (HU, the reconstructed region).
    """

    profile: ScannerProfile
    real: NoiseStats
    simulated: NoiseStats
    real_noise: np.ndarray
    simulated_noise: np.ndarray

    @property
    def sd_error(self) -> float:
        """Relative error of the simulated noise SD against the real one."""
        return self.simulated.sd_hu / self.real.sd_hu - 1.0

    @property
    def mean_frequency_error(self) -> float:
        """Relative error of the simulated mean NPS frequency against the real one."""
        return self.simulated.mean_frequency / self.real.mean_frequency - 1.0


def _crop(img: np.ndarray, n: int) -> np.ndarray:
    h, w = img.shape
    r, c = (h - n) // 2, (w - n) // 2
    return img[r:r + n, c:c + n]


class _PairSimulator:
    """Projects one full-dose slice once and reconstructs noise-only images of it (HU) on demand."""

    def __init__(self, pair: CTPair, base: ScannerProfile, recon_px: int, backend: str):
        fd = pair.full_dose_hu
        side = max(fd.shape)
        if fd.shape[0] != fd.shape[1]:  # pad to a square with air
            pad = [((side - s) // 2, side - s - (side - s) // 2) for s in fd.shape]
            fd = np.pad(fd, pad, constant_values=-1000.0)
        self.geometry = base.geometry(float(pair.spacing_mm[0]), side)
        g = self.geometry
        self.recon_geometry = g if recon_px >= side else g.replace(n_pixels=recon_px, n_det=g.n_det, det_pixel_mm=g.det_pixel_mm)
        self.hu_per_mu = 1000.0 / mu_water(base.energy_kev)
        mu = hu_to_mu(np.clip(fd, -1000.0, None).astype(np.float64), base.energy_kev)
        self.sinogram = torch.as_tensor(forward_project(mu, g, backend, model="line"), dtype=torch.float64)
        self.backend = backend

    def noise_sinogram(self, i0_eff: float, seed: int) -> torch.Tensor:
        noisy = transmission_noise(self.sinogram, i0_eff, generator=make_generator(seed))
        return noisy - self.sinogram

    def reconstruct(self, dp: torch.Tensor, kernel) -> np.ndarray:
        return (fbp(dp, self.recon_geometry, kernel, self.backend) * self.hu_per_mu).numpy().astype(np.float32)


def calibrate(
    low_dose,
    full_dose,
    *,
    dose_ratio: float = 4.0,
    preset: str = "definition_as",
    name: str | None = None,
    pairing: str = "auto",
    max_pairs: int | None = None,
    recon_px: int | None = None,
    roi_px: int = 64,
    hu_range: tuple[float, float] = (-100.0, 200.0),
    body_margin_px: int = 8,
    i0_ref: float = 2e5,
    max_iter: int = 3,
    seed: int = 0,
    backend: str = "astra",
    pairs: list[CTPair] | None = None,
) -> CalibrationResult:
    """Fit a scanner profile's kernel and doses to real low-dose / full-dose pairs (module docstring).

    Args:
        low_dose, full_dose: DICOM series folders, DICOM files or NIfTI files in HU (see :func:`load_pairs`).
            Ignored when ``pairs`` is given.
        dose_ratio: full-dose over low-dose exposure ``r`` (4 for quarter dose), > 1. Default 4.
        preset: the clinical preset whose hardware the profile keeps. Default ``"definition_as"``.
        name: the profile's name. Default ``"<preset>_calibrated"``.
        pairing: ``"auto"`` (default), ``"inserted"`` or ``"independent"`` (module docstring).
        max_pairs: use at most this many pairs. Default all.
        recon_px: reconstruct only the central ``recon_px``² pixels (same pixel size; the projection still
            sees the whole slice), for speed. Default: the whole slice.
        roi_px: NPS ROI side in pixels. Default 64.
        hu_range: soft-tissue window on the full dose, HU. Default (−100, 200).
        body_margin_px: erosion of the body mask, pixels. Default 8.
        i0_ref: photons of the first noise draw (any value near the answer). Default 2e5.
        max_iter: rounds of check-and-correct after the first fit. Default 3.
        seed: seed of the noise draws (each draw gets its own derived seed).
        backend: projector backend for the forward projection. Default ``"astra"``.
        pairs: already loaded :class:`CTPair` list instead of paths.

    Returns:
        :class:`CalibrationResult`.

    Raises:
        ValueError: bad inputs (see :func:`load_pairs`), ``dose_ratio <= 1``, an unknown pairing, or too
            little soft tissue / body to measure the noise.
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"calibrate: `pairing` must be one of {PAIRINGS}, got {pairing!r}.")
    try:
        r = float(dose_ratio)
    except (TypeError, ValueError) as err:
        raise TypeError(f"calibrate: `dose_ratio` must be a number, got {dose_ratio!r}.") from err
    if not math.isfinite(r) or r <= 1.0:
        raise ValueError(f"calibrate: `dose_ratio` (full-dose over low-dose exposure) must be > 1, got {dose_ratio!r}.")
    if isinstance(roi_px, bool) or not isinstance(roi_px, int) or roi_px < 8:
        raise ValueError(f"calibrate: `roi_px` must be an integer >= 8, got {roi_px!r}.")
    base_profile = ScannerProfile.from_preset(preset, kernel="ram-lak", i0=i0_ref)
    if pairs is None:
        pairs = load_pairs(low_dose, full_dose, max_pairs=max_pairs)
    elif max_pairs is not None:
        pairs = pairs[:max_pairs]

    # ---- real noise, masks, ROIs ---------------------------------------------------------------------
    sims, real_imgs, softs, roi_lists, spacings, descr = [], [], [], [], [], []
    for k, p in enumerate(pairs):
        side = max(p.full_dose_hu.shape)
        n_rec = side if recon_px is None else min(int(recon_px), side)
        fd, ld = p.full_dose_hu, p.low_dose_hu
        if fd.shape[0] != fd.shape[1]:
            pad = [((side - s) // 2, side - s - (side - s) // 2) for s in fd.shape]
            fd, ld = np.pad(fd, pad, constant_values=-1000.0), np.pad(ld, pad, constant_values=-1000.0)
        body, soft = noise_masks(fd, hu_range, body_margin_px)
        body, soft, fd_c, ld_c = (_crop(x, n_rec) for x in (body, soft, fd, ld))
        rois = noise_roi_grid(body, roi_px)
        if not rois or soft.sum() < 100:
            raise ValueError(
                f"calibrate: the full-dose slice {p.full_dose_path!r} has {len(rois)} {roi_px}x{roi_px} ROIs inside the "
                f"body and {int(soft.sum())} soft-tissue pixels in {list(hu_range)} HU; too little to measure noise "
                "(use slices through the trunk, a smaller roi_px, or a larger recon_px)."
            )
        diff = (ld_c.astype(np.float32) - fd_c.astype(np.float32))
        if not np.any(diff[soft]):
            raise ValueError(f"calibrate: {p.low_dose_path!r} equals its full dose {p.full_dose_path!r}: no noise to fit.")
        real_imgs.append(diff)
        softs.append(soft)
        roi_lists.append(rois)
        spacings.append(float(p.spacing_mm[0]))
        descr.append({**p.describe(), "n_rois": len(rois), "n_soft_tissue_pixels": int(soft.sum())})
    real = noise_stats(real_imgs, softs, roi_lists, roi_px, spacings)

    full_softs = [noise_masks(p.full_dose_hu, hu_range, body_margin_px)[1] for p in pairs]
    kappa = pairing_statistic(pairs, full_softs, r)
    chosen = pairing if pairing != "auto" else ("inserted" if (math.isnan(kappa) or kappa < KAPPA_THRESHOLD) else "independent")
    factor = (1.0 - 1.0 / r) if chosen == "inserted" else (1.0 + 1.0 / r)  # i0 = i0_eff · factor
    logger.info("calibrate: %d pairs; pairing statistic kappa=%.2f -> %s noise", len(pairs), kappa, chosen)

    # ---- simulation: project each full dose once ----------------------------------------------------
    for p in pairs:
        n_rec = max(p.full_dose_hu.shape) if recon_px is None else min(int(recon_px), max(p.full_dose_hu.shape))
        sims.append(_PairSimulator(p, base_profile, n_rec, backend))

    def draw_noise(i0_eff, draw):
        return [s.noise_sinogram(i0_eff, seed * 1000 + 10 * draw + j) for j, s in enumerate(sims)]

    def recon(dps, kernel):
        imgs = [s.reconstruct(dp, kernel) for s, dp in zip(sims, dps)]
        return noise_stats(imgs, softs, roi_lists, roi_px, spacings), imgs

    def errors(sim):
        return sim.sd_hu / real.sd_hu - 1.0, sim.mean_frequency / real.mean_frequency - 1.0

    # 1. ramp NPS -> kernel by log-NPS least squares; 2. I0 from the variance ratio (same draw)
    dps = draw_noise(float(i0_ref), 0)
    base, _ = recon(dps, "ram-lak")
    kernel, rms = fit_kernel(real, base)
    sim, imgs = recon(dps, kernel)
    i0_eff = float(i0_ref) * (sim.sd_hu / real.sd_hu) ** 2
    history = [{"draw": 0, "i0_effective": float(i0_ref), "kernel": kernel.to_dict(), "log_nps_rms": rms,
                "sd_error": errors(sim)[0], "mean_frequency_error": errors(sim)[1]}]
    # 3. fresh draws at the fitted I0: check, then correct kernel and I0 from the misfit
    for it in range(1, max(0, int(max_iter)) + 2):
        dps = draw_noise(i0_eff, it)
        sim, imgs = recon(dps, kernel)
        sd_err, mf_err = errors(sim)
        history.append({"draw": it, "i0_effective": i0_eff, "kernel": kernel.to_dict(), "sd_error": sd_err,
                        "mean_frequency_error": mf_err})
        if (abs(sd_err) < 0.03 and abs(mf_err) < 0.02) or it > max_iter:
            break
        if abs(mf_err) >= 0.02:
            kernel, rms = fit_kernel(real, sim, current=kernel)
            sim2, _ = recon(dps, kernel)
        else:
            sim2 = sim
        i0_eff *= (sim2.sd_hu / real.sd_hu) ** 2

    # ---- the profile ---------------------------------------------------------------------------------
    radial_rms = _log_rms(real, sim)
    i0 = i0_eff * factor
    sd_err = sim.sd_hu / real.sd_hu - 1.0
    mf_err = sim.mean_frequency / real.mean_frequency - 1.0
    kernels = sorted({p.kernel for p in pairs if p.kernel})
    fit = {
        "method": "ldct_sim.calibrate: ln NPS least squares for the ApodizedRamp window, I0 from the noise variance",
        "n_pairs": len(pairs),
        "pairs": descr,
        "dicom_kernels": kernels,
        "dose_ratio": r,
        "pairing": chosen,
        "pairing_requested": pairing,
        "pairing_statistic_kappa": kappa,
        "i0_effective": i0_eff,
        "i0_note": ("i0 = i0_effective x (1 - 1/dose_ratio): one draw at i0_effective has the variance of LD - FD "
                    "for noise inserted into the full dose" if chosen == "inserted" else
                    "i0 = i0_effective x (1 + 1/dose_ratio): one draw at i0_effective has the variance of LD - FD "
                    "for two independent scans"),
        "real": real.to_dict(),
        "simulated": sim.to_dict(),
        "residuals": {"sd_relative": sd_err, "mean_frequency_relative": mf_err, "radial_log_nps_rms": radial_rms},
        "quarter_dose_noise_sd_hu": {
            "real_estimate": real.sd_hu / math.sqrt(factor),
            "simulated": sim.sd_hu / math.sqrt(factor),
            "note": "noise SD of the low-dose image alone in soft tissue: sd(LD - FD) / sqrt(1 -/+ 1/dose_ratio)",
        },
        "iterations": history,
        "settings": {"preset": preset, "recon_px": recon_px, "roi_px": roi_px, "hu_range": list(hu_range),
                     "body_margin_px": body_margin_px, "i0_ref": i0_ref, "max_iter": max_iter, "seed": seed,
                     "backend": backend, "forward_model": "line", "energy_kev": base_profile.energy_kev},
    }
    profile = base_profile.replace(
        name=name or f"{base_profile.preset}_calibrated", kernel=kernel, i0=i0, dose_ratio=r,
        description=f"{base_profile.description} Kernel and I0 calibrated on {len(pairs)} low/full-dose pair(s)"
        + (f" (DICOM kernel {', '.join(kernels)})" if kernels else "") + ".",
        fit=fit, provenance=provenance(),
    )
    return CalibrationResult(profile, real, sim, real_imgs[0], imgs[0])


def _log_rms(a: NoiseStats, b: NoiseStats) -> float:
    m = min(len(a.radial_nps), len(b.radial_nps))
    x, y = a.radial_nps[1:m], b.radial_nps[1:m]
    ok = (x > 0) & (y > 0)
    return float(np.sqrt(np.mean(np.log(y[ok] / x[ok]) ** 2))) if ok.any() else math.nan


def save_figure(result: CalibrationResult, path) -> Path:
    """Overlay the real and simulated radial NPS and show the first pair's noise images; writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(1, 3, figsize=(13, 4.2))
    r, s = result.real, result.simulated
    ax[0].semilogy(r.frequency, r.radial_nps, "k-", label=f"real LD-FD (mean f {r.mean_frequency:.3f})")
    ax[0].semilogy(s.frequency, s.radial_nps, "r--", label=f"simulated (mean f {s.mean_frequency:.3f})")
    ax[0].set_xlabel("frequency (cycles/pixel)")
    ax[0].set_ylabel("radial NPS (HU² pixel²)")
    ax[0].set_title(f"{result.profile.name}: {result.profile.kernel}", fontsize=8)
    ax[0].legend(fontsize=8)
    lim = 3.0 * r.sd_hu
    for a, img, title in ((ax[1], result.real_noise, f"real LD - FD, SD {r.sd_hu:.1f} HU"),
                          (ax[2], result.simulated_noise, f"simulated, SD {s.sd_hu:.1f} HU")):
        a.imshow(img, cmap="gray", vmin=-lim, vmax=lim)
        a.set_title(title + " (soft tissue)", fontsize=9)
        a.axis("off")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path
