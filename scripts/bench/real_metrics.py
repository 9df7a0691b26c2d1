"""Metrics of :mod:`ldct_scripts.bench.bench_real`: body mask, RMSE / PSNR / SSIM (MONAI), Gaussian at its best σ, tables.

All in HU against the full-dose image; the conventions (body, window, peaks, SSIM window) are stated in
:mod:`ldct_scripts.bench.bench_real`'s docstring and under :func:`format_markdown`'s table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ldct_scripts.bench.real_pairs import BenchError
from ldct_scripts.studies.engine import markdown_table, mean_std

__all__ = [
    "BODY_THRESHOLD_HU",
    "BODY_RANGE_HU",
    "WINDOW_HU",
    "SIGMA_GRID",
    "METRICS",
    "INPUT",
    "GAUSSIAN",
    "body_mask",
    "pair_metrics",
    "gaussian_blur",
    "best_sigma",
    "summarize",
    "format_markdown",
]

#: Body mask: full-dose pixels above this (HU), as in ``../shared/real_ldct/README.md``.
BODY_THRESHOLD_HU = -500.0
#: Range whose width (4096 HU) is the body PSNR peak, and over which images map to [0, 1] for the body SSIM.
BODY_RANGE_HU = (-1024.0, 3072.0)
#: Display window of the windowed metrics (HU); its width (400 HU) is their PSNR peak and SSIM data range.
WINDOW_HU = (-160.0, 240.0)
#: SSIM: Gaussian window side (pixels) and σ (pixels), Wang et al. (2004), as MONAI's SSIMMetric.
SSIM_WIN, SSIM_SIGMA = 11, 1.5
#: Gaussian σ (pixels) tried before the bounded refinement around the best one.
SIGMA_GRID = tuple(round(0.1 * k, 1) for k in range(1, 31))
INPUT, GAUSSIAN = "low-dose input", "Gaussian blur, best σ (oracle)"
METRICS = ("rmse_body", "psnr_body", "ssim_body", "rmse_window", "psnr_window", "ssim_window")


# ---------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------
def body_mask(full_dose_hu: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Boolean mask of the body: full-dose pixels above ``threshold_hu`` (HU, default −500)."""
    return np.asarray(full_dose_hu) > threshold_hu


def _as_image(x) -> "torch.Tensor":  # noqa: F821 - torch imported lazily
    import torch

    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    return t.reshape(1, 1, *t.shape)


def _rmse(pred, ref) -> float:
    from monai.metrics import RMSEMetric

    return float(RMSEMetric()(_as_image(pred), _as_image(ref)).item())


def _psnr(pred, ref, peak: float) -> float:
    from monai.metrics import PSNRMetric

    return float(PSNRMetric(max_val=peak)(_as_image(pred), _as_image(ref)).item())


def _ssim_map(pred01: np.ndarray, ref01: np.ndarray) -> np.ndarray:
    """MONAI's SSIM map (valid region, ``(H - 10, W - 10)``) of two 2-D images scaled to [0, 1], data range 1."""
    from monai.metrics.regression import compute_ssim_and_cs

    if min(pred01.shape) < SSIM_WIN:
        raise BenchError(f"SSIM needs images of at least {SSIM_WIN} × {SSIM_WIN} pixels, got {pred01.shape}.")
    ssim, _ = compute_ssim_and_cs(_as_image(pred01), _as_image(ref01), spatial_dims=2, kernel_size=[SSIM_WIN] * 2,
                                  kernel_sigma=[SSIM_SIGMA] * 2, data_range=1.0)
    return ssim[0, 0].double().numpy()


def pair_metrics(pred_hu: np.ndarray, ref_hu: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """RMSE (HU), PSNR (dB) and SSIM of one image against its full-dose reference, over the body and in the window.

    Args:
        pred_hu: ``(H, W)`` image under test, HU.
        ref_hu: ``(H, W)`` full-dose reference, HU.
        mask: body mask; default :func:`body_mask` of ``ref_hu``.

    Returns:
        ``rmse_body``, ``psnr_body`` (peak 4096 HU), ``ssim_body`` (on [−1024, 3072] HU mapped to [0, 1],
        averaged over the body), ``rmse_window``, ``psnr_window`` (peak 400 HU), ``ssim_window`` (on
        [−160, 240] HU mapped to [0, 1], averaged over the image). See the module docstring.

    Raises:
        BenchError: shapes differ, or the mask holds no pixel.
    """
    p, r = np.asarray(pred_hu, dtype=np.float64), np.asarray(ref_hu, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 2:
        raise BenchError(f"pair_metrics: expected two (H, W) images of one shape, got {p.shape} and {r.shape}.")
    m = body_mask(r) if mask is None else np.asarray(mask, dtype=bool)
    if not m.any():
        raise BenchError(f"pair_metrics: the body mask is empty (no full-dose pixel above {BODY_THRESHOLD_HU:g} HU).")
    out = {"rmse_body": _rmse(p[m], r[m]), "psnr_body": _psnr(p[m], r[m], BODY_RANGE_HU[1] - BODY_RANGE_HU[0])}
    blo, bhi = BODY_RANGE_HU
    smap = _ssim_map((p - blo) / (bhi - blo), (r - blo) / (bhi - blo))
    c = SSIM_WIN // 2
    m_valid = m[c : m.shape[0] - c, c : m.shape[1] - c]
    out["ssim_body"] = float(smap[m_valid].mean()) if m_valid.any() else float(smap.mean())
    lo, hi = WINDOW_HU
    pw, rw = np.clip(p, lo, hi), np.clip(r, lo, hi)
    out["rmse_window"] = _rmse(pw, rw)
    out["psnr_window"] = _psnr(pw, rw, hi - lo)
    out["ssim_window"] = float(_ssim_map((pw - lo) / (hi - lo), (rw - lo) / (hi - lo)).mean())
    return out


# ---------------------------------------------------------------------------------------------------------
# Gaussian blur
# ---------------------------------------------------------------------------------------------------------
def gaussian_blur(image_hu: np.ndarray, sigma_px: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter`` of an ``(H, W)`` HU image, σ in pixels (0: the image itself), mirrored edges."""
    from scipy.ndimage import gaussian_filter

    if sigma_px <= 0:
        return np.asarray(image_hu, dtype=np.float32)
    return gaussian_filter(np.asarray(image_hu, dtype=np.float32), float(sigma_px), mode="reflect")


def best_sigma(low_dose: Sequence[np.ndarray], full_dose: Sequence[np.ndarray], grid: Sequence[float] = SIGMA_GRID,
               masks: Sequence[np.ndarray] | None = None) -> tuple[float, float]:
    """The Gaussian σ (pixels) that minimises the mean body RMSE (HU) of blurred low-dose images against full dose.

    Evaluates ``grid``, then refines with SciPy's bounded Brent search between the best grid point's
    neighbours (down to σ = 0, the input itself).

    Returns:
        ``(sigma_px, mean body RMSE in HU)``.
    """
    from scipy.optimize import minimize_scalar

    if not low_dose or len(low_dose) != len(full_dose):
        raise BenchError(f"best_sigma: need as many low-dose as full-dose images (at least one), got {len(low_dose)} and {len(full_dose)}.")
    masks = [body_mask(f) for f in full_dose] if masks is None else list(masks)

    def cost(s: float) -> float:
        return float(np.mean([_rmse(gaussian_blur(ld, s)[m], fd[m]) for ld, fd, m in zip(low_dose, full_dose, masks)]))

    grid = sorted(float(s) for s in grid)
    costs = [cost(s) for s in grid]
    k = int(np.argmin(costs))
    lo = grid[k - 1] if k > 0 else 0.0
    hi = grid[k + 1] if k + 1 < len(grid) else grid[k]
    best, best_cost = grid[k], costs[k]
    if hi > lo:
        res = minimize_scalar(cost, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
        if res.fun < best_cost:
            best, best_cost = float(res.x), float(res.fun)
    return best, best_cost


# ---------------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------------
def summarize(rows: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    """Per kernel and method: mean and SD (over pairs, ``ddof=1``) of every metric, and the RMSE cuts vs the input.

    ``rows`` are per-pair dicts with ``kernel``, ``method`` and the :data:`METRICS`. The cut is
    ``100 (1 − mean RMSE(method) / mean RMSE(input))``.
    """
    out = []
    kernels = sorted({r["kernel"] for r in rows}, key=lambda k: (k == "unknown", k))
    for kernel in kernels:
        base = {}
        for method in methods:
            sel = [r for r in rows if r["kernel"] == kernel and r["method"] == method]
            if not sel:
                continue
            row = {"kernel": kernel, "n_pairs": len(sel), "method": method, "sigma_px": sel[0].get("sigma_px")}
            for m in METRICS:
                v = np.array([r[m] for r in sel], dtype=float)
                row[f"{m}_mean"] = float(v.mean())
                row[f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
            if method == INPUT:
                base = {m: row[f"{m}_mean"] for m in ("rmse_body", "rmse_window")}
            for m in ("rmse_body", "rmse_window"):
                row[f"{m}_cut_pct"] = (100.0 * (1.0 - row[f"{m}_mean"] / base[m])) if base.get(m) else float("nan")
            out.append(row)
    return out


def _cut(v: float, method: str) -> str:
    if method == INPUT or v is None or not math.isfinite(v):
        return ""
    return f"{v:+.0f} %".replace("-", "−") + (" (worse)" if v < -0.5 else "")


def format_markdown(summary: Sequence[dict], title: str | None = None) -> str:
    """The results table in Markdown, with the metric conventions stated under it."""
    header = ["Kernel", "Pairs", "Method", "RMSE body (HU)", "cut", "PSNR body (dB)", "SSIM body",
              "RMSE window (HU)", "cut", "PSNR window (dB)", "SSIM window"]
    body = []
    for r in summary:
        method = r["method"]
        if r.get("sigma_px") is not None and math.isfinite(r["sigma_px"]):
            method += f", σ = {r['sigma_px']:.2f} px"
        body.append([r["kernel"], r["n_pairs"], method,
                     mean_std(r["rmse_body_mean"], r["rmse_body_sd"], 1), _cut(r["rmse_body_cut_pct"], r["method"]),
                     mean_std(r["psnr_body_mean"], r["psnr_body_sd"], 2), mean_std(r["ssim_body_mean"], r["ssim_body_sd"], 4),
                     mean_std(r["rmse_window_mean"], r["rmse_window_sd"], 1), _cut(r["rmse_window_cut_pct"], r["method"]),
                     mean_std(r["psnr_window_mean"], r["psnr_window_sd"], 2), mean_std(r["ssim_window_mean"], r["ssim_window_sd"], 4)])
    text = (f"## {title}\n\n" if title else "") + markdown_table(header, body, "lrl" + "r" * 8)
    text += (
        "\nMean ± SD over the pairs of each kernel, against the full-dose image. Body: full-dose > −500 HU, no clipping; "
        "PSNR peak 4096 HU; SSIM on [−1024, 3072] HU mapped to [0, 1], averaged over the body. Window: both images "
        "clipped to [−160, 240] HU, whole image; PSNR peak 400 HU; SSIM on the window mapped to [0, 1]. SSIM: "
        "11 × 11 Gaussian window, σ 1.5 px (MONAI). cut: 1 − mean RMSE / mean RMSE of the input (positive is better). "
        "The Gaussian's σ is chosen per kernel on these same pairs (oracle).\n"
    )
    return text
