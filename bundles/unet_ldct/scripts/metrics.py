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
* SSIM (eq. 6): ``image_quality.ssim`` (shared with the other bundle): the windowed SSIM of MONAI's
  ``SSIMMetric`` in float64 (``"gaussian"``, default), or equation 6 once with whole-image statistics
  (``"global"``). ``c1 = (K1 L)²`` and ``c2 = (K2 L)²`` with ``L = data_range``.
* MSE, RMSE and PSNR are MONAI's metrics, in float64 (``image_quality``).
* Residual variance: the population variance of ``pred - ref`` (unit squared).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

from . import image_quality
from .helpers import MU_WATER_60KEV
from .image_quality import SSIM_WINDOWS, float64_pair

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
    "ImageMetric",
    "summarize",
]

#: μ_water at 60 keV in cm⁻¹ (NIST, the study's energy; the bundle's ``mu_water``): ``helpers.MU_WATER_60KEV``.
MU_WATER_CM = MU_WATER_60KEV
#: The default PSNR peak and SSIM ``L`` in cm⁻¹: 2·μ_water, i.e. +1000 HU (air 0, water μ_water).
#: Fixed, so that noise on the label cannot move it (see the module docstring).
DEFAULT_PEAK_CM = 2.0 * MU_WATER_CM
DATA_RANGE_MODES = ("reference_max", "reference_range")
#: Columns :func:`image_metrics` returns, in order.
METRIC_NAMES = ("psnr_db", "nrmse_percent", "ssim", "ssim_global", "residual_variance", "rmse", "data_range")


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
    return image_quality.mse(pred, ref)


def psnr(pred, ref, data_range: float | str = DEFAULT_PEAK_CM) -> float:
    """Peak signal-to-noise ratio in dB (equation 4): ``10 log10(MAX² / MSE(pred, ref))``; ``inf`` for
    identical images. ``MAX`` is ``data_range`` (default the fixed :data:`DEFAULT_PEAK_CM` in cm⁻¹)."""
    p, r = float64_pair(pred, ref, "psnr")
    return image_quality.psnr(p, r, resolve_data_range(r, data_range))


def nrmse(pred, ref) -> float:
    """Normalised RMSE in percent (equation 5): ``100 · RMSE / mean(pred)``.

    Raises:
        ValueError: the predicted image's mean is zero.
    """
    p, r = float64_pair(pred, ref, "nrmse")
    mean = float(p.mean())
    if mean == 0:
        raise ValueError("nrmse: the predicted image has zero mean; NRMSE (normalised by it) is undefined.")
    return 100.0 * math.sqrt(float(((p - r) ** 2).mean())) / mean


def residual_variance(pred, ref) -> float:
    """Population variance of the residual image ``pred - ref``."""
    p, r = float64_pair(pred, ref, "residual_variance")
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
    p, r = float64_pair(pred, ref, "ssim")
    return image_quality.ssim(p, r, resolve_data_range(r, data_range), window=window, kernel_size=kernel_size,
                              kernel_sigma=kernel_sigma, k1=k1, k2=k2)


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
    p, r = float64_pair(pred, ref, "image_metrics")
    lab = r if label is None else float64_pair(pred, label, "image_metrics (label)")[1]
    peak = resolve_data_range(lab, data_range)
    L = resolve_data_range(r, data_range)
    return {
        "psnr_db": psnr(p, lab, peak),
        "nrmse_percent": nrmse(p, r),
        "ssim": ssim(p, r, L, window=ssim_window),
        "ssim_global": ssim(p, r, L, window="global"),
        "residual_variance": residual_variance(p, r),
        "rmse": image_quality.rmse(p, lab),
        "data_range": peak,
    }


class ImageMetric(CumulativeIterationMetric):
    """One column of :data:`METRIC_NAMES` as a MONAI metric: one float64 value per image, mean as aggregate.

    Wrapped in MONAI's ``IgniteMetricHandler`` with ``save_details=True`` (``configs/evaluate.json``), it puts
    every image's value in ``engine.state.metric_details[name]``, where MONAI's ``MetricsSaver`` and
    :class:`scripts.handlers.MetricTableWriter` read them. ``y`` is the label for ``"psnr_db"``, ``"rmse"``
    and ``"data_range"`` and the reference (label or self-test output) for the others, as in
    :func:`image_metrics`; both in the images' unit (cm⁻¹ in the bundle).

    Args:
        name: one of :data:`METRIC_NAMES`.
        data_range: PSNR's ``MAX`` and SSIM's ``L``; see :func:`resolve_data_range`.
        ssim_window: window of ``"ssim"`` (``"ssim_global"`` is always the whole-image equation 6).

    Raises:
        ValueError: an unknown ``name``.
    """

    def __init__(self, name: str, data_range: float | str = DEFAULT_PEAK_CM, ssim_window: str = "gaussian") -> None:
        super().__init__()
        if name not in METRIC_NAMES:
            raise ValueError(f"ImageMetric: `name` must be one of {METRIC_NAMES}, got {name!r}.")
        self.name, self.data_range, self.ssim_window = name, data_range, ssim_window

    def _one(self, pred, y) -> float:
        p, r = float64_pair(pred, y, f"ImageMetric({self.name})")
        if self.name == "data_range":
            return resolve_data_range(r, self.data_range)
        if self.name in ("psnr_db", "rmse"):
            return psnr(p, r, self.data_range) if self.name == "psnr_db" else image_quality.rmse(p, r)
        if self.name in ("ssim", "ssim_global"):
            window = self.ssim_window if self.name == "ssim" else "global"
            return ssim(p, r, self.data_range, window=window)
        return nrmse(p, r) if self.name == "nrmse_percent" else residual_variance(p, r)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """``(B, 1)`` float64 values of a ``(B, C, H, W)`` batch."""
        if y is None:
            raise ValueError(f"ImageMetric({self.name}) needs the reference image `y`.")
        return torch.tensor([[self._one(p, t)] for p, t in zip(y_pred, y)], dtype=torch.float64)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """Mean over the images so far (``inf`` if one PSNR is infinite)."""
        return self.get_buffer().mean()


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
