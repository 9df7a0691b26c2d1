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

Inputs: DICOM series folders, DICOM files or NIfTI files (HU), paired by :mod:`ldct_sim.pairs` (DICOM by
patient, kernel, slice thickness and position along the slice normal; NIfTI by sorted name and slice index).

Modules: pairing in :mod:`ldct_sim.pairs` (shared with the real-data benchmark) and the calibration checks
in :mod:`ldct_sim.calibrate_pairs`, masks, noise statistics and the kernel
fit in :mod:`ldct_sim.calibrate_fit`; this module runs the calibration and re-exports their names.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .attenuation import hu_to_mu, mu_water
from .calibrate_fit import (  # re-exported: `from ldct_sim.calibrate import noise_stats, ...` keeps working
    NoiseStats,
    _log_rms,
    fit_kernel,
    noise_masks,
    noise_roi_grid,
    noise_stats,
    pairing_statistic,
)
from .calibrate_pairs import CTPair, load_pairs  # re-exported likewise
from .fbp import fbp
from .noise import make_generator, transmission_noise
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
    r = _check_inputs(pairing, dose_ratio, roi_px)
    base_profile = ScannerProfile.from_preset(preset, kernel="ram-lak", i0=i0_ref)
    if pairs is None:
        pairs = load_pairs(low_dose, full_dose, max_pairs=max_pairs)
    elif max_pairs is not None:
        pairs = pairs[:max_pairs]

    real_imgs, softs, roi_lists, spacings, descr = _real_noise(pairs, recon_px, roi_px, hu_range, body_margin_px)
    real = noise_stats(real_imgs, softs, roi_lists, roi_px, spacings)
    kappa, chosen, factor = _choose_pairing(pairs, pairing, r, hu_range, body_margin_px)

    # ---- simulation: project each full dose once ----------------------------------------------------
    sims = []
    for p in pairs:
        n_rec = max(p.full_dose_hu.shape) if recon_px is None else min(int(recon_px), max(p.full_dose_hu.shape))
        sims.append(_PairSimulator(p, base_profile, n_rec, backend))
    kernel, i0_eff, sim, imgs, history = _fit_kernel_and_dose(
        sims, real, lambda ims: noise_stats(ims, softs, roi_lists, roi_px, spacings), i0_ref, max_iter, seed)

    # ---- the profile ---------------------------------------------------------------------------------
    i0 = i0_eff * factor
    kernels = sorted({p.kernel for p in pairs if p.kernel and p.kernel != "unknown"})
    settings = {"preset": preset, "recon_px": recon_px, "roi_px": roi_px, "hu_range": list(hu_range),
                "body_margin_px": body_margin_px, "i0_ref": i0_ref, "max_iter": max_iter, "seed": seed,
                "backend": backend, "forward_model": "line", "energy_kev": base_profile.energy_kev}
    fit = _fit_record(pairs, descr, kernels, r, pairing, chosen, kappa, factor, i0_eff, real, sim, history, settings)
    profile = base_profile.replace(
        name=name or f"{base_profile.preset}_calibrated", kernel=kernel, i0=i0, dose_ratio=r,
        description=f"{base_profile.description} Kernel and I0 calibrated on {len(pairs)} low/full-dose pair(s)"
        + (f" (DICOM kernel {', '.join(kernels)})" if kernels else "") + ".",
        fit=fit, provenance=provenance(),
    )
    return CalibrationResult(profile, real, sim, real_imgs[0], imgs[0])


def _check_inputs(pairing: str, dose_ratio, roi_px) -> float:
    """The dose ratio as a float after checking ``pairing``, ``dose_ratio`` and ``roi_px`` (:func:`calibrate`)."""
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
    return r


def _real_noise(pairs: list[CTPair], recon_px, roi_px: int, hu_range, body_margin_px: int):
    """Per pair, in the reconstructed region: the real noise ``LD − FD`` (HU), the soft-tissue mask, the NPS
    ROIs, the pixel size (mm) and a description, as five lists.

    Raises:
        ValueError: a slice with too few body ROIs or soft-tissue pixels, or a low dose equal to its full dose.
    """
    real_imgs, softs, roi_lists, spacings, descr = [], [], [], [], []
    for p in pairs:
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
    return real_imgs, softs, roi_lists, spacings, descr


def _choose_pairing(pairs: list[CTPair], pairing: str, r: float, hu_range, body_margin_px: int):
    """``(kappa, chosen pairing, factor)`` with ``i0 = i0_eff · factor`` (module docstring)."""
    full_softs = [noise_masks(p.full_dose_hu, hu_range, body_margin_px)[1] for p in pairs]
    kappa = pairing_statistic(pairs, full_softs, r)
    chosen = pairing if pairing != "auto" else ("inserted" if (math.isnan(kappa) or kappa < KAPPA_THRESHOLD) else "independent")
    factor = (1.0 - 1.0 / r) if chosen == "inserted" else (1.0 + 1.0 / r)  # i0 = i0_eff · factor
    logger.info("calibrate: %d pairs; pairing statistic kappa=%.2f -> %s noise", len(pairs), kappa, chosen)
    return kappa, chosen, factor


def _fit_kernel_and_dose(sims: list[_PairSimulator], real: NoiseStats, measure, i0_ref: float, max_iter: int,
                         seed: int):
    """Steps 1–3 of the module docstring: fit the kernel and ``I0_eff``, then check and correct them.

    ``measure(images)`` is the :class:`NoiseStats` of simulated noise images (the real noise's masks and ROIs).

    Returns:
        ``(kernel, i0_eff, sim, images, history)``: the last check's statistics and noise images, and
        one record per draw.
    """
    def draw_noise(i0_eff, draw):
        return [s.noise_sinogram(i0_eff, seed * 1000 + 10 * draw + j) for j, s in enumerate(sims)]

    def recon(dps, kernel):
        imgs = [s.reconstruct(dp, kernel) for s, dp in zip(sims, dps)]
        return measure(imgs), imgs

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
    return kernel, i0_eff, sim, imgs, history


def _fit_record(pairs, descr, kernels, r, pairing, chosen, kappa, factor, i0_eff, real: NoiseStats,
                sim: NoiseStats, history, settings) -> dict:
    """The profile's ``fit`` record (plain JSON): inputs, pairing, doses, noise statistics, residuals."""
    radial_rms = _log_rms(real, sim)
    sd_err = sim.sd_hu / real.sd_hu - 1.0
    mf_err = sim.mean_frequency / real.mean_frequency - 1.0
    return {
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
        "settings": settings,
    }


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
