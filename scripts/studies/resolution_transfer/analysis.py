"""Analysis of the resolution-transfer study: pure functions on arrays and rows (no files, no subprocesses).

The image metrics are the U-Net bundle's own (``scripts/metrics.py``: PSNR, NRMSE, SSIM, residual variance);
each function that needs them takes that module as ``metrics``, so a test can pass the bundle's module and
hand-made arrays. Images are μ in cm⁻¹.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["METRICS", "compare", "cross_row", "summarize_cells", "cell", "seed_comparison", "retrain_summary",
           "noise_sd_map", "nps_summary_row", "nps_curve_rows", "spearman"]

#: The per-image metrics of the cross-test, in table order.
METRICS = ("psnr_db", "psnr_input_db", "residual_variance", "nrmse_percent", "ssim")
#: The metrics of the retraining table (no input PSNR).
RETRAIN_METRICS = ("psnr_db", "residual_variance", "nrmse_percent", "ssim")


def compare(pred: np.ndarray, label: np.ndarray, reference: np.ndarray, metrics) -> dict[str, float]:
    """The seed's equations 4-6 for one output: PSNR against the label, the rest against ``reference``.

    PSNR's peak and SSIM's L are the bundle's fixed ``DEFAULT_PEAK_CM`` (2·μ_water, +1000 HU), not the noisy
    label's maximum, which grows with its noise.

    Args:
        pred: the model's output (cm⁻¹).
        label: the normal-dose label (cm⁻¹).
        reference: the self-test output (the model trained at the test resolution) (cm⁻¹).
        metrics: the bundle's ``metrics`` module.

    Returns:
        ``psnr_db``, ``residual_variance`` (cm⁻²), ``nrmse_percent``, ``ssim``.
    """
    peak = metrics.DEFAULT_PEAK_CM
    return {"psnr_db": metrics.psnr(pred, label, peak), "residual_variance": metrics.residual_variance(pred, reference),
            "nrmse_percent": metrics.nrmse(pred, reference), "ssim": metrics.ssim(pred, reference, peak)}


def cross_row(test_um: float, model_um: float, sid: str, image: np.ndarray, pred: np.ndarray, self_test: np.ndarray,
              label: np.ndarray, metrics) -> dict:
    """One cross-test image: :func:`compare` plus the LDCT input's PSNR, with its keys.

    Args:
        test_um: the test set's resolution (µm).
        model_um: the model's training resolution (µm).
        sid: the image's id.
        image: the LDCT input (cm⁻¹).
        pred: the model's output (cm⁻¹).
        self_test: the self-test output (cm⁻¹).
        label: the normal-dose label (cm⁻¹).
        metrics: the bundle's ``metrics`` module.
    """
    scores = compare(pred, label, self_test, metrics)
    return {"test_um": test_um, "model_um": model_um, "id": sid, "psnr_db": scores["psnr_db"],
            "psnr_input_db": metrics.psnr(image, label, metrics.DEFAULT_PEAK_CM),
            "residual_variance": scores["residual_variance"], "nrmse_percent": scores["nrmse_percent"], "ssim": scores["ssim"]}


def summarize_cells(rows: Sequence[Mapping], resolutions: Sequence[float], metrics) -> list[dict]:
    """Mean and SD of every metric per (test set, model) cell, in ``resolutions`` order (rows first).

    Args:
        rows: :func:`cross_row` dicts.
        resolutions: the study's resolutions (µm).
        metrics: the bundle's ``metrics`` module (its ``summarize``).
    """
    cells = []
    for t in resolutions:
        for m in resolutions:
            s = metrics.summarize([r for r in rows if r["test_um"] == t and r["model_um"] == m], METRICS)
            cells.append({"test_um": t, "model_um": m, "n": s["psnr_db"]["n"],
                          **{f"{k}_{stat}": s[k][stat] for k in METRICS for stat in ("mean", "std")}})
    return cells


def cell(cells: Sequence[Mapping], test_um: float, model_um: float) -> Mapping:
    """The cell of one test set and model.

    Args:
        cells: :func:`summarize_cells` rows.
        test_um: the test set's resolution (µm).
        model_um: the model's training resolution (µm).
    """
    return next(x for x in cells if math.isclose(x["test_um"], test_um) and math.isclose(x["model_um"], model_um))


def _has(values: Sequence[float], r: float) -> bool:
    return any(math.isclose(r, v) for v in values)


def seed_comparison(cells: Sequence[Mapping], resolutions: Sequence[float], seed: Mapping,
                    all_resolutions: Sequence[float]) -> list[dict]:
    """The seed's Table 3 beside this run, for the test rows it reports (62.5 and 625 µm) that this run has.

    Args:
        cells: :func:`summarize_cells` rows.
        resolutions: this run's resolutions (µm).
        seed: the seed's numbers (``SEED``).
        all_resolutions: the Table 1 systems, the order of the seed's columns.

    Returns:
        Rows ``test_um``, ``model_um``, ``seed_psnr_mean``, ``seed_psnr_std``, ``psnr_mean``, ``psnr_std``;
        this run's values are ``None`` (an empty CSV cell) for models it did not train.
    """
    comp = []
    for t in (62.5, 625.0):
        if not _has(resolutions, t):
            continue
        for m, (sm, ss) in zip(all_resolutions, seed["table3"][t]):
            ours = cell(cells, t, m) if _has(resolutions, m) else None
            comp.append({"test_um": t, "model_um": m, "seed_psnr_mean": sm, "seed_psnr_std": ss,
                         "psnr_mean": ours["psnr_db_mean"] if ours else None, "psnr_std": ours["psnr_db_std"] if ours else None})
    return comp


def retrain_summary(scores: Sequence[Mapping], metrics) -> dict:
    """Mean and SD of :func:`compare` scores over the test images, and their number ``n``.

    Args:
        scores: one :func:`compare` dict per image.
        metrics: the bundle's ``metrics`` module (its ``summarize``).
    """
    s = metrics.summarize(list(scores), RETRAIN_METRICS)
    return {f"{k}_{stat}": s[k][stat] for k in RETRAIN_METRICS for stat in ("mean", "std")} | {"n": s["psnr_db"]["n"]}


def noise_sd_map(variance: np.ndarray, body_share: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-pixel noise SD normalised to the body centre's, and the outer-band / centre ratio.

    The centre is the central half of the image inside the body; the outer band is the outer 1/16 of the
    image side inside the region that is body in every image.

    Args:
        variance: per-pixel noise variance over the images (cm⁻²), square.
        body_share: per pixel, the share of images in which it is body (0..1).

    Returns:
        The normalised SD map and the ratio (NaN when the body has no centre or no outer band).
    """
    from scipy.ndimage import binary_erosion

    n = variance.shape[0]
    sd = np.sqrt(variance)
    body = body_share >= 0.999  # body in every image
    centre = np.zeros_like(body)
    centre[n // 4: n - n // 4, n // 4: n - n // 4] = True
    centre &= body
    outer = body & ~binary_erosion(body, iterations=max(1, n // 16))
    if not centre.any() or not outer.any():
        return sd / max(float(sd.mean()), 1e-30), math.nan
    ref = float(sd[centre].mean())
    return sd / ref, float(sd[outer].mean()) / ref


def nps_summary_row(resolution_um: float, nps, n_images: int, roi_px: int, outer_ratio: float, mu_water_cm: float) -> dict:
    """One row of the noise-texture table from a radially averaged NPS (:func:`ldct_sim.noise_power.radial_nps`).

    Args:
        resolution_um: the pixel size (µm).
        nps: the ``radial_nps`` result.
        n_images: noise-only images used.
        roi_px: the ROI side (pixels).
        outer_ratio: :func:`noise_sd_map`'s outer-band / centre ratio.
        mu_water_cm: μ_water (cm⁻¹) for the SD in HU.
    """
    dx = resolution_um / 1000.0
    return {
        "resolution_um": resolution_um, "pixel_mm": dx, "n_images": n_images, "n_rois": nps.n_rois, "roi_px": roi_px,
        "noise_std_cm": math.sqrt(nps.variance), "noise_std_hu": 1000.0 * math.sqrt(nps.variance) / mu_water_cm,
        "nps_integral_cm2": nps.integral, "mean_frequency_mm": nps.mean_frequency_mm,
        "mean_frequency_cycles_per_pixel": nps.mean_frequency_mm * dx, "peak_frequency_mm": nps.peak_frequency_mm,
        "peak_frequency_cycles_per_pixel": nps.peak_frequency_mm * dx, "nyquist_mm": nps.nyquist_mm,
        "sd_outer_over_centre": outer_ratio,
    }


def nps_curve_rows(resolution_um: float, nps) -> list[dict]:
    """The NPS curve of one resolution: per radial frequency, absolute and normalised to unit variance.

    Args:
        resolution_um: the pixel size (µm).
        nps: the ``radial_nps`` result.
    """
    dx = resolution_um / 1000.0
    return [{"resolution_um": resolution_um, "frequency_mm": float(f), "frequency_cycles_per_pixel": float(f * dx),
             "nps_cm2_mm2": float(v), "nps_normalised": float(v / nps.integral * (1 / dx) ** 2)}
            for f, v in zip(nps.frequency_mm, nps.nps)]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (ties get their mean rank); NaN for fewer than 3 points.

    Args:
        x: the first variable.
        y: the second variable, as long as ``x``.
    """
    from scipy.stats import spearmanr

    if len(x) < 3:
        return math.nan
    return float(spearmanr(x, y).statistic)
