# Generated from bundles/common/image_quality.py by `python bundles/common/sync.py`: edit it there, not here.
"""Image-quality measures both bundles report, in float64: MSE, RMSE and PSNR from MONAI's metrics, and SSIM.

Every function takes two images of one shape (numpy arrays or torch tensors, any dimensions) in one unit
and returns a Python float.

* PSNR: ``10 log10(MAX² / MSE)`` with ``MAX = data_range`` (MONAI's ``PSNRMetric``); ``inf`` for identical images.
* SSIM: ``"gaussian"`` (default) is the windowed SSIM of Wang et al. (2004) as MONAI's ``SSIMMetric`` computes
  it (11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, population statistics, valid region only, mean
  of the map), but in float64: ``SSIMMetric`` casts to float32, and in cm⁻¹ the local variances of smooth
  regions are 1e-4 to 1e-6 of the squared means, where float32's ``E[x²] - E[x]²`` keeps few correct digits.
  ``"uniform"`` uses a box window; ``"global"`` evaluates the formula once with whole-image statistics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics import MSEMetric, PSNRMetric, RMSEMetric

__all__ = ["SSIM_WINDOWS", "float64_pair", "mse", "rmse", "psnr", "ssim"]

SSIM_WINDOWS = ("gaussian", "uniform", "global")


def float64_pair(pred, ref, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred`` and ``ref`` as float64 CPU tensors; ``ValueError`` (naming ``where``) for different shapes,
    empty images or NaN/infinite pixels."""
    p, r = (torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else np.asarray(x)) for x in (pred, ref))
    p, r = (x.as_subclass(torch.Tensor).to("cpu", torch.float64) for x in (p, r))
    if p.shape != r.shape:
        raise ValueError(f"{where}: `pred` and `ref` must have the same shape, got {tuple(p.shape)} and {tuple(r.shape)}.")
    if p.numel() == 0:
        raise ValueError(f"{where}: the images are empty.")
    if not (torch.isfinite(p).all() and torch.isfinite(r).all()):
        raise ValueError(f"{where}: the images hold NaN or infinite pixels.")
    return p, r


def _score(metric, pred, ref, where: str) -> float:
    p, r = float64_pair(pred, ref, where)
    return float(metric(p.reshape(1, -1), r.reshape(1, -1)).item())  # one batch item: the whole image


def mse(pred, ref) -> float:
    """Mean squared error, in the images' unit squared (MONAI's ``MSEMetric``)."""
    return _score(MSEMetric(), pred, ref, "mse")


def rmse(pred, ref) -> float:
    """Root mean squared error, in the images' unit (MONAI's ``RMSEMetric``)."""
    return _score(RMSEMetric(), pred, ref, "rmse")


def psnr(pred, ref, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range² / MSE)`` (MONAI's ``PSNRMetric``); ``inf`` when equal."""
    if not (math.isfinite(float(data_range)) and float(data_range) > 0):
        raise ValueError(f"psnr: `data_range` must be a positive number, got {data_range!r}.")
    return _score(PSNRMetric(max_val=float(data_range)), pred, ref, "psnr")


def ssim(pred, ref, data_range: float, *, window: str = "gaussian", kernel_size: int = 11, kernel_sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Structural similarity in float64, windowed (default) or global; see the module docstring.

    Args:
        pred, ref: 2-D images (leading singleton dimensions are dropped), or 3-D volumes.
        data_range: ``L`` of ``c1 = (k1 L)²`` and ``c2 = (k2 L)²``, in the images' unit.
        window: ``"gaussian"``, ``"uniform"`` (box of ``kernel_size``) or ``"global"``.
        kernel_size: window side in pixels (no larger than the image). Default 11.
        kernel_sigma: Gaussian window's standard deviation in pixels. Default 1.5.
        k1, k2: stability constants. Defaults 0.01 and 0.03.

    Raises:
        ValueError: unknown ``window``, or an image smaller than the window.
    """
    if window not in SSIM_WINDOWS:
        raise ValueError(f"ssim: `window` must be one of {SSIM_WINDOWS}, got {window!r}.")
    p, r = float64_pair(pred, ref, "ssim")
    c1, c2 = (k1 * float(data_range)) ** 2, (k2 * float(data_range)) ** 2
    if window == "global":
        mp, mr = p.mean(), r.mean()
        vp, vr, cov = p.var(unbiased=False), r.var(unbiased=False), ((p - mp) * (r - mr)).mean()
        return float((2 * mp * mr + c1) * (2 * cov + c2) / ((mp**2 + mr**2 + c1) * (vp + vr + c2)))
    while p.dim() > 2 and p.shape[0] == 1:
        p, r = p[0], r[0]
    if p.dim() not in (2, 3):
        raise ValueError(f"ssim: windowed SSIM needs a 2-D or 3-D image, got shape {tuple(p.shape)}.")
    if min(p.shape) < kernel_size:
        raise ValueError(f"ssim: the image {tuple(p.shape)} is smaller than the {kernel_size}-pixel window.")
    d = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-0.5 * (d / kernel_sigma) ** 2) if window == "gaussian" else torch.ones_like(d)
    g = g / g.sum()
    k = g[:, None] * g if p.dim() == 2 else g[:, None, None] * g[:, None] * g  # MONAI's separable kernel, as one
    conv = torch.nn.functional.conv2d if p.dim() == 2 else torch.nn.functional.conv3d
    x, y, k = p[None, None], r[None, None], k[None, None]
    mx, my = conv(x, k), conv(y, k)
    vx, vy, cov = conv(x * x, k) - mx * mx, conv(y * y, k) - my * my, conv(x * y, k) - mx * my
    return float(((2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean())
