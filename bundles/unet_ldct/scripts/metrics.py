"""Image-quality metrics of the study (Zhang et al., QIMS 2024, equations 4 to 6) and residual variance.

All functions take two images of identical shape (numpy arrays or torch tensors, 2-D ``(H, W)`` or
with leading singleton dimensions) in the same unit (the bundle uses cm⁻¹), compute in float64 and
return Python floats. ``pred`` is the image under test (the denoised, or "cross-test", image);
``ref`` is the reference (the normal-dose label, or a reference model's "self-test" output).

Conventions, stated because LDCT papers differ:

* PSNR (eq. 4): ``10 log10(MAX² / MSE)``. ``MAX`` is ``data_range``: by default the **fixed peak**
  :data:`DEFAULT_PEAK_CM` = 2·μ_water = 0.4118 cm⁻¹ (+1000 HU at 60 keV, the top of the −1000…+1000 HU
  range that the training validation's ``val_data_range`` = 2.0 in μ/μ_water also uses), so it is
  the same for every image and does not depend on the label's noise. The study says only "the
  maximum intensity value"; the project fixes it (an interpretation choice). Any other number in
  the images' unit may be passed (for HU images, e.g. 4096 for −1024…3071 HU). ``"reference_max"``
  (the reference image's own maximum) and ``"reference_range"`` (its max minus min) remain for
  comparison, but on a noisy label they grow with its noise: a noisier label gets a higher peak and
  a higher PSNR for the same error.
* The seed's reference images (eqs. 4 to 6): PSNR against the normal-dose label ("the MSE used here
  is calculated based on the ground truth"); NRMSE, SSIM and residual variance against the self-test
  output (the model trained at the test resolution). :func:`image_metrics` takes both (``label``
  and ``ref``).
* NRMSE (eq. 5): ``100 · sqrt(MSE) / mean(pred)``, normalised by the mean of the *predicted*
  image as in the study, in percent.
* SSIM (eq. 6): ``"gaussian"`` (default) is the windowed SSIM of Wang et al. (2004) as MONAI's
  ``SSIMMetric`` computes it (11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, local
  population statistics, valid region only, averaged over the map), here in float64: in cm⁻¹ the
  local variances of smooth regions are 1e-4 to 1e-6 of the squared means, where float32's
  ``E[x²] - E[x]²`` keeps few correct digits;
  ``"global"`` evaluates equation 6 once with whole-image means, variances and covariance
  (population statistics). ``c1 = (K1 L)²`` and ``c2 = (K2 L)²`` with ``L = data_range``.
* Residual variance: the population variance of ``pred - ref`` (unit squared).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "MU_WATER_CM",
    "DEFAULT_PEAK_CM",
    "DATA_RANGE_MODES",
    "SSIM_WINDOWS",
    "METRIC_NAMES",
    "resolve_data_range",
    "mse",
    "psnr",
    "nrmse",
    "ssim",
    "residual_variance",
    "image_metrics",
    "summarize",
]

#: μ_water at 60 keV in cm⁻¹ (NIST, the study's energy; the bundle's ``mu_water``).
MU_WATER_CM = 0.2059
#: The default PSNR peak and SSIM ``L`` in cm⁻¹: 2·μ_water, i.e. +1000 HU (air 0, water μ_water).
#: Fixed, so that noise on the label cannot move it (see the module docstring).
DEFAULT_PEAK_CM = 2.0 * MU_WATER_CM
DATA_RANGE_MODES = ("reference_max", "reference_range")
SSIM_WINDOWS = ("gaussian", "uniform", "global")
#: Columns :func:`image_metrics` returns, in order.
METRIC_NAMES = ("psnr_db", "nrmse_percent", "ssim", "ssim_global", "residual_variance", "rmse", "data_range")


def _pair(pred, ref, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred.detach())
    r = torch.as_tensor(np.asarray(ref) if not isinstance(ref, torch.Tensor) else ref.detach())
    p = p.as_subclass(torch.Tensor).to("cpu", torch.float64)
    r = r.as_subclass(torch.Tensor).to("cpu", torch.float64)
    if p.shape != r.shape:
        raise ValueError(f"{where}: `pred` and `ref` must have the same shape, got {tuple(p.shape)} and {tuple(r.shape)}.")
    if p.numel() == 0:
        raise ValueError(f"{where}: the images are empty.")
    if not (torch.isfinite(p).all() and torch.isfinite(r).all()):
        raise ValueError(f"{where}: the images hold NaN or infinite pixels.")
    return p, r


def resolve_data_range(ref, data_range: float | str = DEFAULT_PEAK_CM) -> float:
    """The ``MAX``/``L`` of PSNR and SSIM for one reference image.

    Args:
        ref: the reference image (read only by the two modes).
        data_range: a positive number in the image's unit (default :data:`DEFAULT_PEAK_CM`, 0.4118 cm⁻¹,
            fixed), or ``"reference_max"`` / ``"reference_range"``: the reference's maximum / max − min,
            which grow with the reference's noise.

    Raises:
        ValueError: an unknown mode, or a range that is not positive.
    """
    if isinstance(data_range, str):
        if data_range not in DATA_RANGE_MODES:
            raise ValueError(f"resolve_data_range: `data_range` must be a number or one of {DATA_RANGE_MODES}, got {data_range!r}.")
        r = torch.as_tensor(np.asarray(ref) if not isinstance(ref, torch.Tensor) else ref.detach()).double()
        value = float(r.max()) if data_range == "reference_max" else float(r.max() - r.min())
    else:
        value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"resolve_data_range: the data range must be positive, got {value!r} (from {data_range!r}).")
    return value


def mse(pred, ref) -> float:
    """Mean squared error (equation 3)."""
    p, r = _pair(pred, ref, "mse")
    return float(((p - r) ** 2).mean())


def psnr(pred, ref, data_range: float | str = DEFAULT_PEAK_CM) -> float:
    """Peak signal-to-noise ratio in dB (equation 4): ``10 log10(MAX² / MSE(pred, ref))``; ``inf`` for
    identical images. ``MAX`` is ``data_range`` (default the fixed :data:`DEFAULT_PEAK_CM` in cm⁻¹)."""
    p, r = _pair(pred, ref, "psnr")
    peak = resolve_data_range(r, data_range)
    err = float(((p - r) ** 2).mean())
    return math.inf if err == 0 else 10.0 * math.log10(peak**2 / err)


def nrmse(pred, ref) -> float:
    """Normalised RMSE in percent (equation 5): ``100 · RMSE / mean(pred)``.

    Raises:
        ValueError: the predicted image's mean is zero.
    """
    p, r = _pair(pred, ref, "nrmse")
    mean = float(p.mean())
    if mean == 0:
        raise ValueError("nrmse: the predicted image has zero mean; NRMSE (normalised by it) is undefined.")
    return 100.0 * math.sqrt(float(((p - r) ** 2).mean())) / mean


def residual_variance(pred, ref) -> float:
    """Population variance of the residual image ``pred - ref``."""
    p, r = _pair(pred, ref, "residual_variance")
    return float((p - r).var(unbiased=False))


def ssim(
    pred,
    ref,
    data_range: float | str = DEFAULT_PEAK_CM,
    *,
    window: str = "gaussian",
    kernel_size: int = 11,
    kernel_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Structural similarity (equation 6), windowed (default) or global; see the module docstring.

    Args:
        pred, ref: 2-D images (leading singleton dimensions are dropped); 3-D images are supported by
            the ``"global"`` window and by the windowed SSIM as volumes.
        data_range: ``L`` of ``c1 = (k1 L)²`` and ``c2 = (k2 L)²``; see :func:`resolve_data_range`.
        window: ``"gaussian"``, ``"uniform"`` (box of ``kernel_size``) or ``"global"``.
        kernel_size: window side in pixels (odd, no larger than the image). Default 11.
        kernel_sigma: Gaussian window's standard deviation in pixels. Default 1.5.
        k1, k2: stability constants. Defaults 0.01 and 0.03.

    Raises:
        ValueError: unknown ``window``, or an image smaller than the window.
    """
    if window not in SSIM_WINDOWS:
        raise ValueError(f"ssim: `window` must be one of {SSIM_WINDOWS}, got {window!r}.")
    p, r = _pair(pred, ref, "ssim")
    L = resolve_data_range(r, data_range)
    c1, c2 = (k1 * L) ** 2, (k2 * L) ** 2
    if window == "global":
        mp, mr = p.mean(), r.mean()
        vp, vr = p.var(unbiased=False), r.var(unbiased=False)
        cov = ((p - mp) * (r - mr)).mean()
        return float((2 * mp * mr + c1) * (2 * cov + c2) / ((mp**2 + mr**2 + c1) * (vp + vr + c2)))
    while p.dim() > 2 and p.shape[0] == 1:
        p, r = p[0], r[0]
    if p.dim() not in (2, 3):
        raise ValueError(f"ssim: windowed SSIM needs a 2-D or 3-D image, got shape {tuple(p.shape)}.")
    if min(p.shape) < kernel_size:
        raise ValueError(f"ssim: the image {tuple(p.shape)} is smaller than the {kernel_size}-pixel window.")
    nd = p.dim()
    k = _window(window, kernel_size, kernel_sigma, nd)
    conv = torch.nn.functional.conv2d if nd == 2 else torch.nn.functional.conv3d
    x, y = p[None, None], r[None, None]
    mx, my = conv(x, k), conv(y, k)
    vx = conv(x * x, k) - mx * mx
    vy = conv(y * y, k) - my * my
    cov = conv(x * y, k) - mx * my
    ssim_map = (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def _window(kind: str, size: int, sigma: float, nd: int) -> torch.Tensor:
    """Normalised ``(1, 1, size, ...)`` float64 window: Gaussian (MONAI's kernel) or box."""
    if kind == "gaussian":
        d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        g = torch.exp(-0.5 * (d / sigma) ** 2)
    else:
        g = torch.ones(size, dtype=torch.float64)
    g = g / g.sum()
    k = g
    for _ in range(nd - 1):
        k = k[..., None] * g
    return k[None, None]


def image_metrics(
    pred, ref, data_range: float | str = DEFAULT_PEAK_CM, ssim_window: str = "gaussian", label=None
) -> dict[str, float]:
    """All per-image metrics as a dict with the keys of :data:`METRIC_NAMES`.

    Args:
        pred: the image under test (a denoised or cross-test image).
        ref: the reference of NRMSE, SSIM and residual variance: the normal-dose label, or the
            self-test output (the seed's equations 5 and 6).
        data_range: PSNR's ``MAX`` and SSIM's ``L``; see :func:`resolve_data_range`.
        ssim_window: window of ``ssim``.
        label: the normal-dose label that PSNR and RMSE are computed against (the seed's equation 4,
            "calculated based on the ground truth"). ``None`` (default): ``ref`` is the label.

    ``ssim`` uses ``ssim_window``; ``ssim_global`` is always the whole-image equation 6; ``rmse`` is in
    the images' unit, against ``label``; ``data_range`` is the resolved PSNR ``MAX`` (from ``label``
    for the two modes).
    """
    p, r = _pair(pred, ref, "image_metrics")
    lab = r if label is None else _pair(pred, label, "image_metrics (label)")[1]
    peak = resolve_data_range(lab, data_range)
    L = resolve_data_range(r, data_range)
    return {
        "psnr_db": psnr(p, lab, peak),
        "nrmse_percent": nrmse(p, r),
        "ssim": ssim(p, r, L, window=ssim_window),
        "ssim_global": ssim(p, r, L, window="global"),
        "residual_variance": residual_variance(p, r),
        "rmse": math.sqrt(mse(p, lab)),
        "data_range": peak,
    }


def summarize(rows: Sequence[Mapping[str, float]], names: Sequence[str] = METRIC_NAMES) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (``ddof=1``; NaN for a single image) of each metric over images.

    Returns:
        ``{name: {"mean": ..., "std": ..., "n": ...}}``.
    """
    out = {}
    for name in names:
        values = np.asarray([float(row[name]) for row in rows if name in row], dtype=np.float64)
        n = int(values.size)
        out[name] = {
            "mean": float(values.mean()) if n else math.nan,
            "std": float(values.std(ddof=1)) if n > 1 else math.nan,
            "n": n,
        }
    return out
