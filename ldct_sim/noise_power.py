"""Noise power spectrum (NPS) of CT noise-only images: 2-D NPS and its radial average.

Definition (ICRU Report 87; Boedeker, Cooper & McNitt-Gray, Phys Med Biol 2007; Dolly et al., JACMP 2016),
for ``M`` square or rectangular noise-only regions of interest (ROIs) ``n_m(x, y)`` of ``Nx × Ny``
pixels of size ``Δx × Δy`` mm::

    NPS(fx, fy) = Δx·Δy / (Nx·Ny) · (1/M) · Σ_m |DFT2{n_m − mean(n_m)}(fx, fy)|²

Units: the image's unit squared times mm² — (cm⁻¹)²·mm² for ``ldct_sim``'s attenuation images, HU²·mm²
for images in HU. Frequencies are in cycles per mm (mm⁻¹), from −1/(2Δ) to 1/(2Δ) in steps of 1/(NΔ).
With this normalisation two identities hold exactly for every ROI (Parseval), and the tests check
them by hand:

* the integral of the NPS over frequency equals the (population) variance of the ROI:
  ``Σ NPS · Δfx · Δfy = var(n)``;
* white noise of variance σ² has a flat expected NPS of ``σ² · Δx · Δy``.

Each ROI has its own mean removed (zeroth-order detrending); ``detrend="plane"`` removes a fitted plane
instead, for ROIs over slow trends. No window is applied: a window would bias the variance identity.

Why hand-written: neither MONAI nor scikit-image computes a CT NPS, and the definition is three lines of
``numpy.fft``; keeping it here gives the study scripts one documented, tested convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NPSResult", "nps_2d", "radial_average", "radial_nps", "extract_rois", "DETREND_MODES"]

DETREND_MODES = ("mean", "plane")


def _spacing(pixel_size_mm) -> tuple[float, float]:
    """``(Δy, Δx)`` in mm from one number (square pixels) or a ``(Δy, Δx)`` pair."""
    values = np.atleast_1d(np.asarray(pixel_size_mm, dtype=np.float64)).ravel()
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"nps_2d: `pixel_size_mm` must be a positive number or a (dy, dx) pair in mm, got {pixel_size_mm!r}.")
    return float(values[0]), float(values[1])


def _as_rois(rois) -> np.ndarray:
    """ROIs as a float64 ``(M, Ny, Nx)`` array; a single 2-D ROI becomes ``M = 1``."""
    try:
        arr = np.asarray([np.asarray(r, dtype=np.float64) for r in rois] if isinstance(rois, (list, tuple)) else rois,
                         dtype=np.float64)
    except ValueError as err:  # ragged list
        raise ValueError(f"nps_2d: all ROIs must have the same shape ({err}).") from err
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"nps_2d: `rois` must be one 2-D ROI or a stack (M, Ny, Nx), got shape {arr.shape}.")
    if arr.shape[0] == 0 or min(arr.shape[1:]) < 2:
        raise ValueError(f"nps_2d: need at least one ROI of at least 2 x 2 pixels, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("nps_2d: the ROIs hold NaN or infinite values.")
    return arr


def _detrend(arr: np.ndarray, mode: str) -> np.ndarray:
    if mode == "mean":
        return arr - arr.mean(axis=(1, 2), keepdims=True)
    ny, nx = arr.shape[1:]
    yy, xx = np.mgrid[:ny, :nx]
    design = np.stack([np.ones(ny * nx), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, arr.reshape(arr.shape[0], -1).T, rcond=None)
    return arr - (design @ coef).T.reshape(arr.shape)


def nps_2d(rois, pixel_size_mm, detrend: str = "mean") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D noise power spectrum averaged over ROIs.

    Args:
        rois: one noise-only ROI ``(Ny, Nx)`` or a stack ``(M, Ny, Nx)`` (or a list of equal-shape ROIs),
            in any image unit (cm⁻¹ or HU).
        pixel_size_mm: pixel size in mm, one number or ``(Δy, Δx)``.
        detrend: ``"mean"`` (default: subtract each ROI's mean) or ``"plane"`` (subtract a fitted plane).

    Returns:
        ``(nps, fy, fx)``: the NPS ``(Ny, Nx)`` in unit²·mm², zero frequency at the centre
        (``numpy.fft.fftshift`` order); ``fy`` ``(Ny,)`` and ``fx`` ``(Nx,)`` in mm⁻¹.

    Raises:
        ValueError: bad shapes, non-finite values, a bad pixel size or an unknown ``detrend``.
    """
    if detrend not in DETREND_MODES:
        raise ValueError(f"nps_2d: `detrend` must be one of {DETREND_MODES}, got {detrend!r}.")
    dy, dx = _spacing(pixel_size_mm)
    arr = _detrend(_as_rois(rois), detrend)
    m, ny, nx = arr.shape
    power = np.abs(np.fft.fft2(arr)) ** 2  # (M, Ny, Nx)
    nps = (dx * dy / (nx * ny)) * power.mean(axis=0)
    fy = np.fft.fftshift(np.fft.fftfreq(ny, d=dy))
    fx = np.fft.fftshift(np.fft.fftfreq(nx, d=dx))
    return np.fft.fftshift(nps), fy, fx


def radial_average(nps: np.ndarray, fy: np.ndarray, fx: np.ndarray, bin_width: float | None = None,
                   f_max: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radially average a centred 2-D NPS in rings of radial frequency ``f = sqrt(fx² + fy²)``.

    Args:
        nps: ``(Ny, Nx)`` NPS from :func:`nps_2d` (centred).
        fy, fx: its frequency axes in mm⁻¹.
        bin_width: ring width in mm⁻¹. Default: the coarser of the two frequency steps, ``1/(N·Δ)``.
        f_max: largest radial frequency kept, mm⁻¹. Default: the smaller Nyquist frequency,
            ``min(1/(2Δy), 1/(2Δx))`` (beyond it the rings are incomplete).

    Returns:
        ``(f, nps_r, counts)``: ring centres ``k·w`` in mm⁻¹ for ``k >= 1`` (ring ``k`` holds the
        frequencies in ``[(k − 1/2)·w, (k + 1/2)·w)``; the ring around zero is left out: it holds only the
        zero frequency, which mean removal sets to 0), the mean NPS in each ring (unit²·mm²) and the
        number of frequency samples in each ring. Rings with no sample are dropped.

    Raises:
        ValueError: shapes that do not match the frequency axes, or a non-positive bin width.
    """
    nps = np.asarray(nps, dtype=np.float64)
    fy, fx = np.asarray(fy, dtype=np.float64), np.asarray(fx, dtype=np.float64)
    if nps.shape != (fy.size, fx.size):
        raise ValueError(f"radial_average: `nps` shape {nps.shape} does not match the axes ({fy.size}, {fx.size}).")
    steps = [abs(a[1] - a[0]) for a in (fy, fx) if a.size > 1]
    w = float(bin_width) if bin_width is not None else max(steps)
    if not math.isfinite(w) or w <= 0:
        raise ValueError(f"radial_average: `bin_width` must be a positive frequency in mm^-1, got {bin_width!r}.")
    nyq = min(np.abs(fy).max(), np.abs(fx).max())
    f_max = nyq if f_max is None else float(f_max)
    fr = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    ring = np.floor(fr / w + 0.5).astype(np.int64)  # ring k holds f in [(k - 1/2) w, (k + 1/2) w)
    keep = fr <= f_max + 1e-12 * max(f_max, 1.0)
    n_rings = int(ring[keep].max()) + 1
    counts = np.bincount(ring[keep], minlength=n_rings)
    sums = np.bincount(ring[keep], weights=nps[keep], minlength=n_rings)
    ok = counts > 0
    ok[0] = False
    return np.arange(n_rings)[ok] * w, sums[ok] / counts[ok], counts[ok]


@dataclass(frozen=True)
class NPSResult:
    """Radially averaged NPS of a set of ROIs.

    Attributes:
        frequency_mm: ring centres, mm⁻¹.
        nps: radial NPS, unit²·mm² (unit = the images' unit).
        nps_2d: centred 2-D NPS, unit²·mm²; ``fy``, ``fx`` its axes in mm⁻¹.
        variance: mean population variance of the detrended ROIs (unit²); equals the integral of
            ``nps_2d`` over frequency.
        pixel_size_mm: ``(Δy, Δx)``.
        n_rois: number of ROIs averaged.
    """

    frequency_mm: np.ndarray
    nps: np.ndarray
    nps_2d: np.ndarray
    fy: np.ndarray
    fx: np.ndarray
    variance: float
    pixel_size_mm: tuple[float, float]
    n_rois: int

    @property
    def nyquist_mm(self) -> float:
        """The smaller Nyquist frequency 1/(2Δ), mm⁻¹."""
        return 0.5 / max(self.pixel_size_mm)

    @property
    def integral(self) -> float:
        """Σ NPS(fx, fy)·Δfx·Δfy over the whole 2-D spectrum, unit² (equals :attr:`variance`)."""
        return float(self.nps_2d.sum() * abs(self.fx[1] - self.fx[0]) * abs(self.fy[1] - self.fy[0]))

    @property
    def mean_frequency_mm(self) -> float:
        """NPS-weighted mean radial frequency over the 2-D spectrum, mm⁻¹: a one-number texture summary
        (higher = finer-grained noise)."""
        fr = np.hypot(*np.meshgrid(self.fy, self.fx, indexing="ij"))
        total = self.nps_2d.sum()
        return float((fr * self.nps_2d).sum() / total) if total > 0 else math.nan

    @property
    def peak_frequency_mm(self) -> float:
        """Radial frequency of the largest ring of the radial NPS, mm⁻¹."""
        return float(self.frequency_mm[int(np.argmax(self.nps))])


def radial_nps(rois, pixel_size_mm, detrend: str = "mean", bin_width: float | None = None) -> NPSResult:
    """:func:`nps_2d` followed by :func:`radial_average`, with the variance for the integral check.

    Args:
        rois, pixel_size_mm, detrend: as :func:`nps_2d`.
        bin_width: as :func:`radial_average`.

    Returns:
        :class:`NPSResult`.
    """
    dy, dx = _spacing(pixel_size_mm)
    arr = _detrend(_as_rois(rois), detrend)
    nps, fy, fx = nps_2d(arr, (dy, dx), detrend="mean")  # already detrended; removing the mean again is a no-op
    f, nps_r, _ = radial_average(nps, fy, fx, bin_width=bin_width)
    return NPSResult(f, nps_r, nps, fy, fx, float(arr.var(axis=(1, 2)).mean()), (dy, dx), int(arr.shape[0]))


def extract_rois(image, roi_size: int, grid: int = 2, span: float = 0.5) -> np.ndarray:
    """Square ROIs tiled over the centre of an image: ``grid × grid`` ROIs of ``roi_size`` pixels whose
    centres spread evenly over the central ``span`` fraction of each side.

    CT noise is not stationary (it grows towards the edge of the object and differs in air); ROIs near
    the centre of a body-filling slice sample the noise inside the object.

    Args:
        image: 2-D noise-only image ``(H, W)``.
        roi_size: ROI side in pixels, ``2 <= roi_size <= min(H, W)``.
        grid: ROIs per side (default 2: four ROIs). ``grid = 1`` gives one central ROI.
        span: fraction of each side over which ROI centres are spread, in [0, 1]. Default 0.5.

    Returns:
        ``(grid², roi_size, roi_size)`` float64 array (ROIs may overlap when ``roi_size`` is large).

    Raises:
        ValueError: a non-2-D image, or a ROI size or grid that does not fit.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"extract_rois: `image` must be 2-D, got shape {img.shape}.")
    h, w = img.shape
    if isinstance(roi_size, bool) or not isinstance(roi_size, (int, np.integer)) or not 2 <= roi_size <= min(h, w):
        raise ValueError(f"extract_rois: `roi_size` must be an integer in [2, {min(h, w)}], got {roi_size!r}.")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 1:
        raise ValueError(f"extract_rois: `grid` must be a positive integer, got {grid!r}.")
    if not 0.0 <= float(span) <= 1.0:
        raise ValueError(f"extract_rois: `span` must be in [0, 1], got {span!r}.")
    offsets = (np.arange(grid) + 0.5) / grid - 0.5  # in [-1/2, 1/2): 0 for one ROI
    rows, cols = (np.clip(np.round(size / 2 + offsets * span * size - roi_size / 2).astype(int), 0, size - roi_size)
                  for size in (h, w))
    return np.stack([img[r:r + roi_size, c:c + roi_size] for r in rows for c in cols])
