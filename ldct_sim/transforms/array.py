"""Array transforms for LDCT simulation, MONAI style: HU ↔ μ, resampling to a scanner's pixel size, low dose.

All take channel-first 2-D images ``(C, H, W)`` (numpy, torch or MONAI ``MetaTensor``) and return
torch tensors (``MetaTensor`` when MONAI's ``get_track_meta()`` is on, keeping and updating the meta).
Units follow :mod:`ldct_sim`: HU at the loading boundary, attenuation μ in cm⁻¹, lengths in mm,
I0 in photons per detector element per view. The spatial spacing of a ``MetaTensor`` is read from
(and written to) its affine: columns 0 and 1 are the ``H`` and ``W`` axes.

The simulation transforms run the projection-domain chain of :mod:`ldct_sim.simulate`:
μ → fan-beam projection → Poisson (+ Gaussian electronic) noise on the counts ``I0·e^{-p}`` → log →
fan-beam FBP → μ in cm⁻¹ (Yu et al., Med. Phys. 39, 2012; Zeng et al., IEEE TNS 62, 2015).

:class:`HUToMu` and :class:`MuToHU` live in :mod:`ldct_sim.transforms.intensity` and are re-exported here.

References:
    L. Yu et al., "Development and validation of a practical lower-dose-simulation tool for optimizing
    CT scan protocols", Med. Phys. 39(8), 2012.
    D. Zeng et al., "A simple low-dose X-ray CT simulation from high-dose scan", IEEE Trans. Nucl. Sci.
    62(5), 2015.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Randomizable, RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from ..fbp import filter_label
from ..geometry import FanBeamGeometry
from ..projectors import DEFAULT_BACKEND
from ..simulate import DEFAULT_FORWARD_MODEL, LowDoseSimulator
from .intensity import HUToMu, MuToHU  # re-exported: they lived here

__all__ = [
    "SimulatorSource",
    "HUToMu",
    "MuToHU",
    "ResampleToResolution",
    "SimulateLowDose",
    "RandSimulateLowDose",
    "resample_slice",
    "simulate_low_dose_pair",
    "simulation_meta",
    "RESAMPLE_MODES",
    "INTERP_MODES",
]

RESAMPLE_MODES = ("rescale", "physical")
INTERP_MODES = ("bilinear", "bicubic", "nearest")
_MAX_SEED = int(np.iinfo(np.int32).max)


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def _check_dose(where: str, name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: `{name}` must be a number of photons, got {value!r}.") from err
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{where}: `{name}` (photons per detector element per view) must be positive and finite, got {value!r}.")
    return v


def _check_i0_range(where: str, i0_range) -> tuple[float, float]:
    if isinstance(i0_range, (str, bytes)) or not isinstance(i0_range, Sequence) or len(i0_range) != 2:
        raise ValueError(f"{where}: `i0_range` must be a (low, high) pair of photon counts, got {i0_range!r}.")
    lo, hi = (_check_dose(where, "i0_range", v) for v in i0_range)
    if lo > hi:
        raise ValueError(f"{where}: `i0_range` must have low <= high, got {i0_range!r}.")
    return lo, hi


def _spacing_from(img, spacing_mm, where: str) -> tuple[float, float] | None:
    """(row, column) spacing in mm: the explicit argument, else the MetaTensor's affine, else None."""
    if spacing_mm is not None:
        sp = (spacing_mm, spacing_mm) if np.isscalar(spacing_mm) else tuple(spacing_mm)
        if len(sp) != 2 or not all(np.isfinite(float(s)) and float(s) > 0 for s in sp):
            raise ValueError(f"{where}: `spacing_mm` must be one or two positive numbers (mm), got {spacing_mm!r}.")
        return float(sp[0]), float(sp[1])
    if isinstance(img, MetaTensor):
        a = torch.as_tensor(img.affine, dtype=torch.float64)
        r = a.shape[-1] - 1
        norms = torch.linalg.norm(a[:r, :2], dim=0)
        return float(norms[0]), float(norms[1])
    return None


def _respace_affine(affine, in_shape, out_shape, spacing_rc) -> torch.Tensor:
    """Affine of a resampled slice: same directions and centre, new (row, col) spacing and shape."""
    a = torch.as_tensor(affine, dtype=torch.float64).clone()
    r = a.shape[-1] - 1
    centre_idx = torch.zeros(r + 1, dtype=torch.float64)
    centre_idx[r] = 1.0
    for k in range(2):
        centre_idx[k] = (in_shape[k] - 1) / 2.0
    centre = a @ centre_idx
    for k in range(2):
        col = a[:r, k]
        norm = torch.linalg.norm(col)
        unit = col / norm if norm > 0 else torch.eye(r, dtype=torch.float64)[k]
        a[:r, k] = unit * spacing_rc[k]
    a[:r, r] = centre[:r] - sum(a[:r, k] * (out_shape[k] - 1) / 2.0 for k in range(2))
    return a


def _as_slices(img, where: str, n_pixels: int | None = None) -> tuple[NdarrayOrTensor, torch.Tensor]:
    """The input as a (meta-)tensor and as a plain float32 ``(C, H, W)`` tensor, validated."""
    if not isinstance(img, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{where}: `img` must be a numpy array or torch tensor, got {type(img).__name__}.")
    img = convert_to_tensor(img, track_meta=get_track_meta())
    t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
    if t.ndim == 2:
        raise ValueError(
            f"{where}: `img` must be channel-first (C, H, W), got shape {tuple(t.shape)}; add a channel with "
            "monai.transforms.EnsureChannelFirst."
        )
    if t.ndim != 3:
        raise ValueError(
            f"{where}: `img` must be a channel-first 2-D slice (C, H, W), got a {t.ndim - 1}-D image shaped "
            f"{tuple(t.shape)}; slice 3-D volumes into 2-D slices first (e.g. ResampleToResolution squeezes a "
            "trailing singleton depth)."
        )
    if n_pixels is not None and tuple(t.shape[1:]) != (n_pixels, n_pixels):
        raise ValueError(
            f"{where}: `img` must be (C, {n_pixels}, {n_pixels}) to match geometry.n_pixels, got "
            f"{tuple(t.shape)}; resample it first with ResampleToResolution."
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"{where}: `img` holds NaN or infinite pixels; clean or mask them first.")
    return img, t


def _resize(x: torch.Tensor, size: tuple[int, int], interp: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    kw = {} if interp == "nearest" else {"align_corners": False, "antialias": True}
    return F.interpolate(x[None], size=size, mode=interp, **kw)[0]


def resample_slice(
    x: torch.Tensor,
    spacing_mm: tuple[float, float] | None,
    pixel_size_mm: float,
    n_pixels: int,
    mode: str = "rescale",
    interp_mode: str = "bilinear",
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Resample a ``(C, H, W)`` float tensor to ``(C, n_pixels, n_pixels)``; see :class:`ResampleToResolution`."""
    h, w = x.shape[-2:]
    if mode == "rescale":
        if spacing_mm is not None and not math.isclose(spacing_mm[0], spacing_mm[1], rel_tol=1e-6):
            s = min(spacing_mm)
            h, w = max(1, round(h * spacing_mm[0] / s)), max(1, round(w * spacing_mm[1] / s))
            x = _resize(x, (h, w), interp_mode)
        if h != w:  # pad the short side with air so the object keeps its aspect
            side = max(h, w)
            top, left = (side - h) // 2, (side - w) // 2
            x = F.pad(x, (left, side - w - left, top, side - h - top), value=float(pad_value))
        return _resize(x, (n_pixels, n_pixels), interp_mode)
    if spacing_mm is None:
        raise ValueError("ResampleToResolution: mode 'physical' needs the input spacing: a MetaTensor affine or `spacing_mm`.")
    sr, sc = spacing_mm
    fr, fc = sr / pixel_size_mm, sc / pixel_size_mm  # output pixels per input pixel
    if fr < 1.0 or fc < 1.0:  # downsampling: low-pass first (antialiased resize), then place exactly
        h2 = max(1, round(h * fr)) if fr < 1.0 else h
        w2 = max(1, round(w * fc)) if fc < 1.0 else w
        x = _resize(x, (h2, w2), interp_mode)
        sr, sc, h, w = sr * h / h2, sc * w / w2, h2, w2
    offs = (torch.arange(n_pixels, dtype=torch.float64) - (n_pixels - 1) / 2.0) * pixel_size_mm
    rows = offs / sr + (h - 1) / 2.0
    cols = offs / sc + (w - 1) / 2.0
    gy = (2.0 * rows + 1.0) / h - 1.0  # align_corners=False normalisation
    gx = (2.0 * cols + 1.0) / w - 1.0
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].to(x.dtype)
    out = F.grid_sample((x - pad_value)[None], grid, mode=interp_mode, padding_mode="zeros", align_corners=False)
    return out[0] + pad_value


class SimulatorSource:
    """The simulator for an input: one fixed-geometry simulator, or, with a scanner profile, one per input grid.

    With a :class:`~ldct_sim.profile.ScannerProfile` (or its file, shipped name or dict) and no
    ``geometry``, each input keeps its own grid: the pixel size comes from the MetaTensor's affine and
    the side from its shape (square slices with square pixels; resample others first with
    ``ResampleToResolution(..., mode="physical")``), and the profile fixes the scanner geometry, FBP kernel
    and electronic noise. With both ``geometry`` and ``profile`` the profile's kernel and noise run on
    that geometry. Simulators are cached per grid.

    Args:
        where: the owning transform's name, for messages.
        geometry: a fixed :class:`FanBeamGeometry`, or ``None`` with a profile.
        profile: a scanner profile, or ``None``.
        backend, forward_model: simulation engine. ``filter``, ``electronic_noise_std``: used without a profile
            (with one they must stay at their defaults, ``"ram-lak"`` and 0).

    Raises:
        ValueError: neither ``geometry`` nor ``profile``; ``filter`` or ``electronic_noise_std`` given with a profile.
        TypeError: ``geometry`` is not a :class:`FanBeamGeometry`.
    """

    def __init__(self, where: str, geometry, profile, backend: str, forward_model: str, filter, electronic_noise_std: float):  # noqa: A002
        from ..profile import load_profile

        self.where = where
        self.profile = None if profile is None else load_profile(profile)
        if self.profile is not None:
            if filter != "ram-lak" or float(electronic_noise_std) != 0.0:
                raise ValueError(f"{where}: give `filter`/`electronic_noise_std` or `profile`, not both: the profile fixes them.")
            filter, electronic_noise_std = self.profile.kernel, self.profile.electronic_noise_std  # noqa: A001
        elif geometry is None:
            raise ValueError(f"{where}: give a `geometry` or a scanner `profile`.")
        if geometry is not None and not isinstance(geometry, FanBeamGeometry):
            raise TypeError(f"{where}: `geometry` must be a FanBeamGeometry, got {type(geometry).__name__}.")
        self.args = {"backend": backend, "forward_model": forward_model, "filter": filter,
                     "electronic_noise_std": electronic_noise_std}
        self.fixed = None if geometry is None else LowDoseSimulator(geometry, **self.args)
        self._cache: dict[tuple[float, int], LowDoseSimulator] = {}

    @property
    def n_pixels(self) -> int | None:
        """The fixed geometry's image side, or ``None`` when each input brings its own."""
        return None if self.fixed is None else self.fixed.geometry.n_pixels

    def __call__(self, img) -> LowDoseSimulator:
        """The simulator for ``img`` (``(C, H, W)``, a MetaTensor when the grid comes from the input)."""
        if self.fixed is not None:
            return self.fixed
        if not isinstance(img, (np.ndarray, torch.Tensor)) or img.ndim < 2:
            raise TypeError(f"{self.where}: `img` must be a (C, H, W) MetaTensor, got {type(img).__name__}.")
        spacing = _spacing_from(img if isinstance(img, MetaTensor) else None, None, self.where)
        h, w = img.shape[-2:]
        if spacing is None:
            raise ValueError(
                f"{self.where}: with a scanner `profile` the pixel size comes from the input's affine; give a MetaTensor "
                "(e.g. from LoadImaged) or a fixed `geometry`."
            )
        if h != w or not math.isclose(spacing[0], spacing[1], rel_tol=1e-4):
            raise ValueError(
                f"{self.where}: a scanner `profile` simulates square slices with square pixels, got {h}x{w} pixels of "
                f"{spacing[0]:.4g}x{spacing[1]:.4g} mm; resample first with ResampleToResolution(pixel_size_mm, n_pixels, "
                "mode='physical')."
            )
        key = (round(spacing[0], 9), int(h))
        if key not in self._cache:
            self._cache[key] = LowDoseSimulator(self.profile.geometry(spacing[0], int(h)), **self.args)
        return self._cache[key]


def simulation_meta(simulator: LowDoseSimulator, i0: float | None, seed: int | None) -> dict:
    """Meta entries recorded on every simulated image (plain values that MONAI can collate).

    ``i0`` is ``inf`` for a noiseless reconstruction (infinite dose) and ``seed`` is ``-1`` when none was used.
    """
    g = simulator.geometry
    return {
        "resolution_um": g.pixel_size_mm * 1000.0,
        "i0": math.inf if i0 is None else float(i0),
        "seed": -1 if seed is None else int(seed),
        "geometry": g.to_dict(),
        "backend": simulator.backend,
        "forward_model": simulator.forward_model,
        "filter": filter_label(simulator.filter),
        "electronic_noise_std": simulator.electronic_noise_std,
    }


def _wrap(out: torch.Tensor, img, simulator: LowDoseSimulator, meta: dict, dtype) -> NdarrayOrTensor:
    """Return ``out`` with ``img``'s type and meta, the geometry's spacing in the affine and ``meta`` added."""
    res, *_ = convert_to_dst_type(out, dst=img, dtype=dtype)
    if isinstance(res, MetaTensor):
        dx = simulator.geometry.pixel_size_mm
        res.affine = _respace_affine(img.affine, img.shape[1:3], res.shape[1:3], (dx, dx))
        res.meta.update(meta)
    return res


def simulate_low_dose_pair(
    simulator: LowDoseSimulator,
    mu: torch.Tensor,
    input_i0: float,
    label_i0: float | None = None,
    seed: int | None = None,
    with_noise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Low-dose input, label and noise-only image of one μ slice, projecting once.

    Args:
        simulator: the :class:`~ldct_sim.simulate.LowDoseSimulator` (geometry, backend, noise model).
        mu: attenuation in cm⁻¹, ``(C, n, n)`` (or any ``(..., n, n)``).
        input_i0: dose of the input, photons per detector element per view.
        label_i0: dose of the label; ``None`` gives the noiseless reconstruction.
        seed: seed of the noise draw. The input's noise is drawn first, so the input equals
            ``simulate(mu, g, input_i0, seed=seed)``.
        with_noise: also return the noise-only image ``input − noiseless``.

    Returns:
        ``(input, label, noise)`` in cm⁻¹; ``noise`` is ``None`` unless ``with_noise``.
    """
    doses = [input_i0] if label_i0 is None else [input_i0, label_i0]
    need_clean = with_noise or label_i0 is None
    res = simulator.run(mu, doses, noiseless=need_clean, seed=seed)
    low = res.low_dose[0]
    label = res.noiseless if label_i0 is None else res.low_dose[1]
    noise = low - res.noiseless if with_noise else None
    return low, label, noise


# ---------------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------------
class ResampleToResolution(Transform):
    """Resample a 2-D slice to an ``n × n`` grid of pixel size Δx, the input of a scanner preset.

    Two modes:

    * ``"rescale"`` (default, the resolution-transfer study's approach): the whole slice is resized to
      ``n × n`` and declared to have pixel size Δx, i.e. the object is scaled so that one image set serves
      every resolution. Non-square or anisotropic slices are first made isotropic and padded with
      ``pad_value`` to a square, so the object keeps its aspect.
    * ``"physical"``: resampled at its true spacing to Δx, then centre-cropped or padded with
      ``pad_value`` to ``n × n`` (at 62.5 µm and n = 512 that is the central 32 mm of the slice).

    Downsampling low-pass filters first (antialiased interpolation). The output affine keeps the input's
    directions and centre, with spacing Δx.

    Args:
        pixel_size_mm: target pixel size Δx in mm (e.g. ``geometry.pixel_size_mm``).
        n_pixels: output side in pixels (e.g. ``geometry.n_pixels``). Default 512.
        mode: ``"rescale"`` or ``"physical"``. Default ``"rescale"``.
        interp_mode: ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"``.
        pad_value: value of added pixels: air. Default 0.0 (air in cm⁻¹, for images after
            :class:`HUToMu`); use -1000.0 for images in HU.
        spacing_mm: input (row, column) spacing in mm for inputs without an affine (numpy, plain tensors),
            or to override the affine's. Needed by ``"physical"``; ``"rescale"`` assumes square pixels
            without it.
        dtype: output dtype. Default ``torch.float32``.

    Input ``(C, H, W)`` (a trailing singleton depth ``(C, H, W, 1)`` is squeezed), output ``(C, n, n)``.

    Raises:
        ValueError: non-positive size, unknown mode, a 3-D volume, or ``"physical"`` without a spacing.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        pixel_size_mm: float,
        n_pixels: int = 512,
        mode: Literal["rescale", "physical"] = "rescale",
        interp_mode: Literal["bilinear", "bicubic", "nearest"] = "bilinear",
        pad_value: float = 0.0,
        spacing_mm: float | Sequence[float] | None = None,
        dtype=torch.float32,
    ) -> None:
        where = "ResampleToResolution"
        try:
            self.pixel_size_mm = float(pixel_size_mm)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{where}: `pixel_size_mm` must be a number (mm), got {pixel_size_mm!r}.") from err
        if not math.isfinite(self.pixel_size_mm) or self.pixel_size_mm <= 0:
            raise ValueError(f"{where}: `pixel_size_mm` must be a positive number (mm), got {pixel_size_mm!r}.")
        if isinstance(n_pixels, bool) or not isinstance(n_pixels, (int, np.integer)) or n_pixels <= 0:
            raise ValueError(f"{where}: `n_pixels` must be a positive integer, got {n_pixels!r}.")
        if mode not in RESAMPLE_MODES:
            raise ValueError(f"{where}: `mode` must be one of {RESAMPLE_MODES}, got {mode!r}.")
        if interp_mode not in INTERP_MODES:
            raise ValueError(f"{where}: `interp_mode` must be one of {INTERP_MODES}, got {interp_mode!r}.")
        self.n_pixels = int(n_pixels)
        self.mode = mode
        self.interp_mode = interp_mode
        self.pad_value = float(pad_value)
        self.spacing_mm = None if spacing_mm is None else _spacing_from(None, spacing_mm, where)
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor, spacing_mm: float | Sequence[float] | None = None) -> NdarrayOrTensor:
        """Resample ``img``; ``spacing_mm`` overrides the instance's and the affine's spacing for this call."""
        where = "ResampleToResolution"
        has_affine = isinstance(img, MetaTensor)  # arrays get MONAI's identity affine below: not a real spacing
        img = convert_to_tensor(img, track_meta=get_track_meta())
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if t.ndim == 4 and t.shape[-1] == 1:
            t = t[..., 0]
        if t.ndim != 3:
            raise ValueError(
                f"{where}: `img` must be a channel-first 2-D slice (C, H, W), got shape {tuple(t.shape)}; "
                "slice 3-D volumes first."
            )
        spacing = _spacing_from(img if has_affine else None, spacing_mm if spacing_mm is not None else self.spacing_mm, where)
        out = resample_slice(t, spacing, self.pixel_size_mm, self.n_pixels, self.mode, self.interp_mode, self.pad_value)
        res, *_ = convert_to_dst_type(out, dst=img, dtype=self.dtype)
        if isinstance(res, MetaTensor):
            res.affine = _respace_affine(img.affine, t.shape[1:], out.shape[1:], (self.pixel_size_mm,) * 2)
        return res


class SimulateLowDose(Randomizable, Transform):
    """Low-dose CT reconstruction of an attenuation slice at one dose, seeded.

    Pipeline: μ (cm⁻¹) → fan-beam projection of ``geometry`` → Poisson noise on ``I0·e^{-p}`` counts
    (+ Gaussian electronic noise) → log → fan-beam FBP → μ (cm⁻¹). Each call draws a fresh noise seed
    from the transform's random state (``set_random_state`` makes runs repeatable); it always applies.
    Being ``Randomizable``, it also stops ``CacheDataset`` from caching noisy output.

    Args:
        geometry: the fan-beam scan; the input must be ``(C, n, n)`` with ``n = geometry.n_pixels``.
            May be ``None`` with a ``profile``: each input then keeps its own grid (see :class:`SimulatorSource`).
        i0: incident photons per detector element per view, > 0 (e.g. a preset's ``input_i0``); default
            the profile's ``i0`` when a profile is given.
        electronic_noise_std: Gaussian electronic noise in photons, >= 0. Default 0.
        backend: projector backend, ``"torch"`` (default), ``"astra"`` or ``"tomosipo"``.
        forward_model: ``"strip"`` (default, no inverse crime) or ``"line"``.
        filter: FBP filter, one of :data:`ldct_sim.fbp.FILTERS` or an :class:`~ldct_sim.fbp.ApodizedRamp`.
            Default ``"ram-lak"``.
        dtype: output dtype. Default ``torch.float32``.
        profile: a :class:`~ldct_sim.profile.ScannerProfile` (or its JSON file, shipped name or dict): its
            geometry (for the input's own grid when ``geometry`` is None), kernel, electronic noise and
            default dose. Default None.

    Input ``(C, n, n)`` μ in cm⁻¹ (channels are independent images); output the same shape in cm⁻¹,
    with meta entries ``resolution_um``, ``i0``, ``seed``, ``geometry``, ``backend``, ``forward_model``,
    ``filter``, ``electronic_noise_std`` and the affine's spacing set to the geometry's pixel size.

    Raises:
        ValueError: non-positive ``i0``; an input that is not ``(C, n, n)`` (a 3-D volume, a wrong size)
            or holds NaN/inf; unknown backend, model or filter.
        ImportError: the backend's package is missing.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        geometry: FanBeamGeometry | None = None,
        i0: float | None = None,
        electronic_noise_std: float = 0.0,
        backend: str = DEFAULT_BACKEND,
        forward_model: str = DEFAULT_FORWARD_MODEL,
        filter: str = "ram-lak",  # noqa: A002 - the name used across ldct_sim
        dtype=torch.float32,
        profile=None,
    ) -> None:
        where = type(self).__name__
        self.source = SimulatorSource(where, geometry, profile, backend, forward_model, filter, electronic_noise_std)
        if i0 is None and self.source.profile is None:
            raise ValueError(f"{where}: `i0` (photons per detector element per view) is required without a `profile`.")
        self.i0 = _check_dose(where, "i0", self.source.profile.i0 if i0 is None else i0)
        self.dtype = dtype
        self._seed: int | None = None

    @property
    def simulator(self) -> LowDoseSimulator | None:
        """The fixed-geometry simulator (``None`` when a profile takes each input's own grid)."""
        return self.source.fixed

    @property
    def profile(self):
        return self.source.profile

    @property
    def geometry(self) -> FanBeamGeometry | None:
        return None if self.source.fixed is None else self.source.fixed.geometry

    def randomize(self, data=None) -> None:
        self._seed = int(self.R.randint(0, _MAX_SEED))

    def apply(self, img: NdarrayOrTensor, i0: float, seed: int | None) -> NdarrayOrTensor:
        """Simulate at ``i0`` with noise seed ``seed``, without touching the random state."""
        sim = self.source(img)  # before the conversion, which gives plain arrays an identity affine
        img, t = _as_slices(img, type(self).__name__, self.source.n_pixels)
        out = sim.run(t, [i0], noiseless=False, seed=seed).low_dose[0]
        return _wrap(out, img, sim, simulation_meta(sim, i0, seed), self.dtype)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Simulate; ``randomize=False`` reuses the last drawn seed (how dict twins share one draw)."""
        if randomize or self._seed is None:
            self.randomize()
        return self.apply(img, self.i0, self._seed)


class RandSimulateLowDose(RandomizableTransform):
    """:class:`SimulateLowDose` at a dose drawn per call, log-uniform in ``i0_range``: training over doses.

    With probability ``prob`` the slice is simulated at ``I0 = exp(U(log low, log high))``; otherwise it is
    returned unchanged (as a tensor). Weights meant for scanners other than the simulated one should be
    trained over a range of doses rather than a single one.

    Args:
        geometry: the fan-beam scan (``None`` with a ``profile``: each input's own grid).
        i0_range: ``(low, high)`` incident photons per detector element per view, 0 < low <= high.
        prob: probability of simulating. Default 1.
        electronic_noise_std, backend, forward_model, filter, dtype, profile: as :class:`SimulateLowDose`.

    Raises:
        ValueError: a bad range, or the input errors of :class:`SimulateLowDose`.
    """

    backend = SimulateLowDose.backend

    def __init__(
        self,
        geometry: FanBeamGeometry | None,
        i0_range: Sequence[float],
        prob: float = 1.0,
        electronic_noise_std: float = 0.0,
        backend: str = DEFAULT_BACKEND,
        forward_model: str = DEFAULT_FORWARD_MODEL,
        filter: str = "ram-lak",  # noqa: A002
        dtype=torch.float32,
        profile=None,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.i0_range = _check_i0_range(type(self).__name__, i0_range)
        self.sim = SimulateLowDose(geometry, self.i0_range[0], electronic_noise_std, backend, forward_model, filter, dtype,
                                   profile=profile)
        self._i0 = self.i0_range[0]
        self._seed: int | None = None

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        lo, hi = self.i0_range
        self._i0 = float(math.exp(self.R.uniform(math.log(lo), math.log(hi))))
        self._seed = int(self.R.randint(0, _MAX_SEED))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Draw (unless ``randomize=False``, which reuses the last draw) and maybe simulate."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            return convert_to_tensor(img, track_meta=get_track_meta())
        return self.sim.apply(img, self._i0, self._seed)
