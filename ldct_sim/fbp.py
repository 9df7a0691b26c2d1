"""Fan-beam filtered backprojection for a flat detector over a full 360° scan.

ASTRA's CPU ``FBP`` accepts parallel-beam geometries only, so the fan-beam FBP is written here, in
torch (CPU or GPU, batched), following Kak & Slaney, *Principles of Computerized Tomographic
Imaging*, §3.4.2 (equally spaced collinear detectors):

1. rescale the detector to a virtual detector through the rotation axis, ``s = u·SOD/SDD``;
2. pre-weight each ray by ``SOD / sqrt(SOD² + s²)`` (the cosine of its fan angle);
3. filter along ``s`` with the band-limited ramp kernel of sampling step ``Δs = Δu·SOD/SDD`` (in cm,
   so the image comes out in cm⁻¹), optionally windowed;
4. backproject pixel by pixel with the distance weight ``1/U²``, ``U = (SOD + x·sinβ' …)/SOD`` the
   source-to-pixel distance along the central ray over SOD, and ``½·Δβ`` per view (each ray is
   measured twice in a full scan).

The formula is exact in the continuum for full scans with a flat detector; discretisation error
comes from the linear interpolation along the detector and the finite number of views. Short scans
would need Parker weighting, which this module does not implement: it refuses geometries that do not
cover 360°. Filters, from most to least sensitive to noise: ``ram-lak`` (plain ramp, the study's
"Ramp filter"), ``shepp-logan``, ``cosine``, ``hann``; and :class:`ApodizedRamp`, a continuous
two-parameter family from smooth to sharp (edge-enhancing) that scanner profiles fit to real images.

References:
    A. C. Kak and M. Slaney, Principles of Computerized Tomographic Imaging, IEEE Press, 1988, ch. 3.
    The windowed filters follow scikit-image's ``skimage.transform.iradon``, whose filter builder is
    private and numpy-only, hence this torch version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .geometry import FanBeamGeometry
from .projectors.base import as_tensor_image, restore_type
from .projectors.sparse import (
    SparseMatrix,
    cached_matrix,
    columns_to_images,
    csr_from_counts,
    operator_key,
    rot90_symmetric,
    sinograms_to_columns,
)

__all__ = [
    "FILTERS",
    "ApodizedRamp",
    "check_filter",
    "filter_label",
    "filter_to_json",
    "filter_from_json",
    "fbp",
    "ramp_filter",
    "filter_sinogram",
    "weighted_backproject",
    "backprojection_matrix",
]

#: FBP filter names, from most to least noise-sensitive.
FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")


@dataclass(frozen=True)
class ApodizedRamp:
    """The ramp filter apodised by a smooth two-parameter window: a kernel family from smooth to sharp.

    The window is ``W(f) = exp(s·f² − q·f⁴)``, with ``f`` the spatial frequency along the detector in
    cycles per mm *at the rotation axis* (so one kernel means the same blur for every detector pitch and
    pixel size, as a vendor's kernel does), up to the detector's Nyquist frequency:

    * ``s < 0`` smooths like a Gaussian (``W = exp(−f²/(2σ_f²))`` with ``σ_f² = −1/(2s)``);
    * ``s > 0`` boosts high frequencies: the edge enhancement of sharp clinical kernels;
    * ``q >= 0`` adds a steeper roll-off, ``W(fc) = e^{-1}`` at ``fc = q^{-1/4}`` when ``s = 0``.

    ``s = q = 0`` is the plain ramp (``"ram-lak"``). ``ln W`` is linear in ``(s, q)``, so the noise
    power spectrum of a reconstruction, ``NPS(f) ∝ NPS_ramp(f)·W(f)²``, gives both parameters by linear
    least squares on ``ln NPS`` (how :mod:`ldct_sim.calibrate` fits real images). Fitted to the 15 public
    AAPM–Mayo quarter/full-dose pairs, Siemens' smooth B30f is about ``s = −2.6 mm², q = 7.3 mm⁴``
    (``W = 0.5`` at 0.42 cycles/mm) and the sharp D45f about ``s = +1.1 mm², q = 1.0 mm⁴`` (a gain of
    1.25 at 0.5 cycles/mm); see ``ldct_sim/profiles``.

    Args:
        s_mm2: quadratic coefficient ``s`` of ``ln W``, in mm² (cycles⁻² mm²). Default 0.
        q_mm4: quartic roll-off ``q`` >= 0 of ``ln W``, in mm⁴. Default 0.

    Raises:
        ValueError: non-finite values, ``q_mm4 < 0``, or ``s_mm2`` outside [−100, 10] mm² (beyond which
            the window is a delta or amplifies noise more than 10⁴-fold at 1 cycle/mm).

    Example:
        >>> k = ApodizedRamp(s_mm2=-2.0, q_mm4=4.0)
        >>> round(float(k.window(torch.tensor(0.0))), 6), round(k.f50_per_mm, 3)
        (1.0, 0.485)
    """

    s_mm2: float = 0.0
    q_mm4: float = 0.0

    def __post_init__(self):
        for name in ("s_mm2", "q_mm4"):
            v = getattr(self, name)
            try:
                v = float(v)
            except (TypeError, ValueError) as err:
                raise TypeError(f"ApodizedRamp: `{name}` must be a number, got {v!r}.") from err
            if not math.isfinite(v):
                raise ValueError(f"ApodizedRamp: `{name}` must be finite, got {v!r}.")
            object.__setattr__(self, name, v)
        if not -100.0 <= self.s_mm2 <= 10.0:
            raise ValueError(f"ApodizedRamp: `s_mm2` must be in [-100, 10] mm^2, got {self.s_mm2!r}.")
        if self.q_mm4 < 0:
            raise ValueError(f"ApodizedRamp: `q_mm4` must be >= 0 mm^4, got {self.q_mm4!r}.")

    def window(self, f_per_mm):
        """``W(f)`` for frequencies ``f`` in cycles per mm (a number or a tensor of them)."""
        f2 = torch.as_tensor(f_per_mm, dtype=torch.float64) ** 2
        return torch.exp(self.s_mm2 * f2 - self.q_mm4 * f2 * f2)

    @property
    def f50_per_mm(self) -> float:
        """The frequency where the window falls to 0.5, cycles/mm; ``inf`` when it never does."""
        # ln 0.5 = s x − q x², x = f² >= 0: the smallest positive root
        a, b, c = -self.q_mm4, self.s_mm2, math.log(2.0)
        if a == 0.0:
            return math.sqrt(-c / b) if b < 0 else math.inf
        disc = b * b - 4 * a * c
        x = (-b - math.sqrt(disc)) / (2 * a)
        return math.sqrt(x)

    def to_dict(self) -> dict:
        return {"family": "apodized-ramp", "s_mm2": self.s_mm2, "q_mm4": self.q_mm4}

    def __str__(self) -> str:
        return f"apodized-ramp(s={self.s_mm2:.4g}mm2,q={self.q_mm4:.4g}mm4)"


def check_filter(filter) -> str | ApodizedRamp:  # noqa: A002 - the name used across ldct_sim
    """Validate an FBP filter: a name in :data:`FILTERS` or an :class:`ApodizedRamp` (or its dict).

    Returns:
        The name, or the kernel as an :class:`ApodizedRamp`.

    Raises:
        ValueError: an unknown name or a malformed kernel.
    """
    if isinstance(filter, ApodizedRamp):
        return filter
    if isinstance(filter, dict):
        return filter_from_json(filter)
    if isinstance(filter, str) and filter in FILTERS:
        return filter
    raise ValueError(f"Unknown filter {filter!r}; expected one of {FILTERS} or an ApodizedRamp kernel.")


def filter_label(filter) -> str:  # noqa: A002
    """A short text naming the filter, for metadata and file headers."""
    return str(check_filter(filter))


def filter_to_json(filter):  # noqa: A002
    """The filter as plain JSON: its name, or the kernel's dict."""
    f = check_filter(filter)
    return f.to_dict() if isinstance(f, ApodizedRamp) else f


def filter_from_json(value) -> str | ApodizedRamp:
    """Inverse of :func:`filter_to_json`.

    Raises:
        ValueError: an unknown name, family or malformed parameters.
    """
    if isinstance(value, dict):
        family = value.get("family")
        if family != "apodized-ramp":
            raise ValueError(f"Unknown filter family {family!r}; expected 'apodized-ramp'.")
        extra = sorted(set(value) - {"family", "s_mm2", "q_mm4"})
        if extra:
            raise ValueError(f"Unknown apodized-ramp parameters {extra}; expected s_mm2 and q_mm4.")
        return ApodizedRamp(value.get("s_mm2", 0.0), value.get("q_mm4", 0.0))
    return check_filter(value)


def ramp_filter(
    n: int,
    filter_name: str | ApodizedRamp = "ram-lak",
    frequency_scaling: float = 1.0,
    dtype=torch.float64,
    *,
    sample_mm: float | None = None,
) -> torch.Tensor:
    """Frequency response (length ``n``, FFT order) of the windowed band-limited ramp, per unit sample step.

    The ramp is the DFT of the spatial kernel h(0)=1/4, h(k odd)=-1/(π²k²), h(k even)=0, which has
    no DC offset (Kak & Slaney eq. 61), so a uniform object reconstructs without a bias.
    ``frequency_scaling`` in (0, 1] narrows the window; frequencies above it are cut.
    An :class:`ApodizedRamp` needs ``sample_mm``, the sample step in mm at the rotation axis, to turn
    cycles per sample into cycles per mm.
    """
    filter_name = check_filter(filter_name)
    if isinstance(filter_name, ApodizedRamp) and (sample_mm is None or not sample_mm > 0):
        raise ValueError(f"ramp_filter: an ApodizedRamp kernel needs `sample_mm` > 0 (mm), got {sample_mm!r}.")
    if not 0.0 < frequency_scaling <= 1.0:
        raise ValueError(f"`frequency_scaling` must be in (0, 1], got {frequency_scaling!r}.")
    k = torch.arange(n, dtype=dtype)
    k = torch.where(k <= n // 2, k, k - n)  # signed lags in FFT order
    h = torch.zeros(n, dtype=dtype)
    h[0] = 0.25
    odd = k.remainder(2) == 1
    h[odd] = -1.0 / (math.pi * k[odd]) ** 2
    response = torch.fft.fft(h).real  # equals |f| (cycles per sample) up to Nyquist, band-limited
    f = torch.fft.fftfreq(n, dtype=dtype) / frequency_scaling  # cycles per sample, scaled window
    if isinstance(filter_name, ApodizedRamp):
        window = filter_name.window(f * frequency_scaling / sample_mm).to(dtype)
    elif filter_name == "shepp-logan":
        window = torch.sinc(f)
    elif filter_name == "cosine":
        window = torch.cos(math.pi * f)
    elif filter_name == "hann":
        window = 0.5 * (1.0 + torch.cos(2.0 * math.pi * f))
    else:
        window = torch.ones_like(f)
    window = torch.where(f.abs() <= 0.5, window, torch.zeros_like(window))
    return response * window


def filter_sinogram(
    sino: torch.Tensor,
    geometry: FanBeamGeometry,
    filter_name: str | ApodizedRamp = "ram-lak",
    frequency_scaling: float = 1.0,
) -> torch.Tensor:
    """Steps 1-3 of the module docstring: cosine pre-weighting and ramp filtering along the detector.

    ``filter_name`` is a name in :data:`FILTERS` or an :class:`ApodizedRamp` kernel (whose frequencies
    are per mm at the rotation axis, i.e. along the virtual detector ``s``).

    Returns ``q`` with the sinogram's shape, in cm⁻¹ per radian of view (ready for backprojection).
    """
    g = geometry
    n_det = g.n_det
    s_mm = torch.as_tensor(g.det_positions_mm * (g.sod_mm / g.sdd_mm), dtype=sino.dtype, device=sino.device)
    weighted = sino * (g.sod_mm / torch.sqrt(g.sod_mm**2 + s_mm**2))
    n_fft = max(64, 1 << int(math.ceil(math.log2(2 * n_det))))  # zero padding against wrap-around
    ds_mm = g.det_pixel_mm * (g.sod_mm / g.sdd_mm)
    response = ramp_filter(n_fft, filter_name, frequency_scaling, sample_mm=ds_mm).to(device=sino.device, dtype=sino.dtype)
    spectrum = torch.fft.rfft(weighted, n=n_fft, dim=-1) * response[: n_fft // 2 + 1]
    filtered = torch.fft.irfft(spectrum, n=n_fft, dim=-1)[..., :n_det]
    ds_cm = g.det_pixel_mm * (g.sod_mm / g.sdd_mm) / 10.0
    return filtered / ds_cm


def _views_per_chunk(n_img: int, n_pixels: int, device: torch.device) -> int:
    # On the CPU, two views at a time keep the per-pixel temporaries in cache (measured fastest at 512²).
    if device.type != "cuda":
        return 2
    return max(1, (1 << 26) // (n_img * n_pixels * n_pixels))


_BP_KIND = "fan-fbp-backprojection"
# (pixel, view) pairs per chunk when computing the backprojection matrix's entries
_BP_ENTRY_CHUNK = 1 << 21


def _backprojection_positions(g: FanBeamGeometry, views: torch.Tensor, rows: slice | None = None):
    """Detector position (in padded element indices, clamped) and ``1/U`` of every pixel at ``views``.

    Shapes ``(len(views), n_rows, n)``, float64. ``u/Δu = SDD/Δu · (x cosβ + y sinβ) / (SOD·U)`` and
    ``U = 1 + (−x sinβ + y cosβ)/SOD``: separable in x and y.
    """
    n, n_det = g.n_pixels, g.n_det
    coord = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0) * g.pixel_size_mm
    ang = torch.as_tensor(g.angles)[views]
    cos, sin = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
    x, y = coord[None, :], -coord[None, :][:, rows or slice(None)]  # columns left to right, rows top to bottom
    k = g.sdd_mm / (g.det_pixel_mm * g.sod_mm)
    inv_u = torch.reciprocal(1.0 + (-x * sin / g.sod_mm)[:, None, :] + (y * cos / g.sod_mm)[:, :, None])
    pos = ((k * x * cos)[:, None, :] + (k * y * sin)[:, :, None]) * inv_u + ((n_det - 1) / 2.0 + 1.0)  # +1: zero pad
    return pos.clamp_(0.0, n_det + 1 - 1e-3), inv_u


def backprojection_matrix(geometry: FanBeamGeometry) -> SparseMatrix:
    """The FBP backprojection of step 4 as a sparse matrix (CSR, float32), ``(n², n_views/turns·n_det)``.

    Row ``r·n + c`` holds, for each stored view, the two detector elements that pixel ``(r, c)``
    interpolates between, weighted ``½Δβ/U²·(1 − f)`` and ``½Δβ/U²·f`` (zero where an end of the
    detector is crossed). With the quarter-turn symmetry (:func:`~ldct_sim.projectors.sparse.rot90_symmetric`)
    only the first quarter of the views is stored; :func:`weighted_backproject` turns the results.
    """
    g = geometry
    n, n_det = g.n_pixels, g.n_det
    turns = 4 if rot90_symmetric(g) else 1
    vq = g.n_views // turns
    views = torch.arange(vq)
    rows_per_chunk = max(1, _BP_ENTRY_CHUNK // (vq * n))
    cols, vals = [], []
    for r0 in range(0, n, rows_per_chunk):
        pos, inv_u = _backprojection_positions(g, views, slice(r0, min(n, r0 + rows_per_chunk)))
        idx = pos.floor()
        frac = pos - idx
        w = inv_u.square_() * (0.5 * g.angle_step)
        idx = idx.long() - 1  # back to unpadded element indices: idx and idx + 1, valid in [0, n_det)
        pair_idx = torch.stack((idx, idx + 1), -1)  # (vq, rows, n, 2)
        pair_val = torch.stack((w * (1.0 - frac), w * frac), -1)
        valid = (pair_idx >= 0) & (pair_idx < n_det)
        pair_val = torch.where(valid, pair_val, 0.0)
        pair_idx = pair_idx.clamp_(0, n_det - 1) + (views * n_det)[:, None, None, None]
        cols.append(pair_idx.permute(1, 2, 0, 3).reshape(-1).to(torch.int32))  # pixel-major, then view
        vals.append(pair_val.permute(1, 2, 0, 3).reshape(-1))
    counts = torch.full((n * n,), 2 * vq, dtype=torch.int64)
    return csr_from_counts(counts, torch.cat(cols), torch.cat(vals), (n * n, vq * n_det))


def weighted_backproject(q: torch.Tensor, geometry: FanBeamGeometry, *, matrix: bool | None = None) -> torch.Tensor:
    """Step 4: pixel-driven backprojection with the fan-beam distance weight ``1/U²``.

    Args:
        q: filtered sinogram ``(..., n_views, n_det)`` from :func:`filter_sinogram`.
        geometry: the scan.
        matrix: ``None`` (default): apply :func:`backprojection_matrix` (built once per geometry, kept
            and cached like the torch projector's matrix, :mod:`ldct_sim.projectors.sparse`) when it fits
            the operator memory bound, else compute on the fly; ``True``: always the matrix; ``False``:
            always on the fly. Both give the same image to float rounding, not to the last bit, so the
            choice depends only on the geometry and the bound, never on what ran before: the same seed
            gives the same bits (a first build at 512² costs about ten on-the-fly backprojections).

    Returns:
        ``(..., n_pixels, n_pixels)``: ``½ Σ_views Δβ q(u(x, β)) / U(x, β)²``.

    This is not the adjoint of a projector (which weights by 1/U): FBP needs 1/U². Detector values
    are linearly interpolated (zero beyond the detector's ends). The matrix is one sparse product for
    the whole batch (MKL or cuSPARSE); on the fly it is ``gather`` over a few views at a time, 10×
    faster than ``grid_sample`` on the CPU.
    """
    if matrix not in (None, True, False):
        raise ValueError(f"weighted_backproject: `matrix` must be None, True or False, got {matrix!r}.")
    g = geometry
    if matrix is not False:
        turns = 4 if rot90_symmetric(g) else 1
        key = operator_key(_BP_KIND, g, turns=turns)
        estimate = 0 if matrix else 16 * g.n_pixels**2 * (g.n_views // turns)  # 2 entries per pixel and view
        m = cached_matrix(_BP_KIND, key, lambda: backprojection_matrix(g), estimate, f"fbp backprojection of {g!r}")
        if m is not None:
            lead = q.shape[:-2]
            dtype = q.dtype if q.dtype in (torch.float32, torch.float64) else torch.float32
            flat = q.reshape(-1, g.n_views, g.n_det).to(dtype)
            op = m.torch(q.device, dtype)
            step = max(1, (1 << 26) // (turns * max(g.n_pixels**2, m.shape[1])))
            out = [
                columns_to_images(op @ sinograms_to_columns(flat[i : i + step], turns), turns, g.n_pixels)
                for i in range(0, flat.shape[0], step)
            ]
            return torch.cat(out).reshape(*lead, g.n_pixels, g.n_pixels).to(q.dtype)
    return _weighted_backproject_gather(q, g)


def _weighted_backproject_gather(q: torch.Tensor, geometry: FanBeamGeometry) -> torch.Tensor:
    """:func:`weighted_backproject` on the fly, ``gather`` over a few views at a time."""
    g = geometry
    lead = q.shape[:-2]
    n_img = max(1, math.prod(lead))
    n, n_det, dev, dt = g.n_pixels, g.n_det, q.device, q.dtype
    padded = F.pad(q.reshape(n_img, g.n_views, n_det), (1, 1))  # zeros beyond both detector ends
    slope = (padded[..., 1:] - padded[..., :-1]).contiguous()  # (N, V, n_det + 1)
    base = padded[..., :-1].contiguous()
    coord = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0) * g.pixel_size_mm
    ang = torch.as_tensor(g.angles)
    cos, sin = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
    x, y = coord[None, :], -coord[None, :]  # columns left to right, rows top to bottom (y up)
    # as in _backprojection_positions, with the separable factors on the device in the data's dtype
    k = g.sdd_mm / (g.det_pixel_mm * g.sod_mm)
    num_x, num_y = (k * x * cos).to(dev, dt), (k * y * sin).to(dev, dt)
    den_x, den_y = (-x * sin / g.sod_mm).to(dev, dt), (y * cos / g.sod_mm).to(dev, dt)
    offset = (n_det - 1) / 2.0 + 1.0  # +1 for the zero pad
    out = torch.zeros(n_img, n * n, dtype=dt, device=dev)
    chunk = _views_per_chunk(n_img, n, dev)
    for s in range(0, g.n_views, chunk):
        e = min(g.n_views, s + chunk)
        inv_u = torch.reciprocal(1.0 + den_x[s:e, None, :] + den_y[s:e, :, None])  # 1/U, (c, n, n)
        pos = (num_x[s:e, None, :] + num_y[s:e, :, None]).mul_(inv_u).add_(offset).clamp_(0.0, n_det + 1 - 1e-3)
        idx = pos.to(torch.int64)
        frac = pos.sub_(idx).reshape(1, e - s, -1)
        idx = idx.reshape(1, e - s, -1).expand(n_img, -1, -1)
        val = torch.addcmul(torch.gather(base[:, s:e], 2, idx), torch.gather(slope[:, s:e], 2, idx), frac)
        out += (val * inv_u.square_().reshape(1, e - s, -1)).sum(1)
    out *= 0.5 * g.angle_step
    return out.reshape(*lead, n, n)


def _backend_device(backend: str) -> torch.device | None:
    from .projectors import check_backend

    check_backend(backend)
    if backend == "astra":
        from .projectors.astra_backend import astra_uses_cuda

        return torch.device("cuda") if astra_uses_cuda() and torch.cuda.is_available() else None
    if backend == "tomosipo":
        from .projectors.tomosipo_backend import TOMOSIPO_HINT, has_tomosipo

        if not has_tomosipo:
            raise ImportError(TOMOSIPO_HINT)
        return torch.device("cuda")
    return None


def fbp(
    sinogram,
    geometry: FanBeamGeometry,
    filter: str | ApodizedRamp = "ram-lak",  # noqa: A002 - the name the issue and users know
    backend: str = "torch",
    *,
    frequency_scaling: float = 1.0,
    device: str | torch.device | None = None,
):
    """Reconstruct attenuation (cm⁻¹) from fan-beam line integrals by filtered backprojection.

    Every backend runs this module's fan-beam FBP (ASTRA's CPU FBP is parallel-beam only); the backend
    picks where it runs: ``"torch"`` on the sinogram's device, ``"astra"`` on the GPU when ASTRA sees
    one (else the CPU), ``"tomosipo"`` on the GPU and only where tomosipo is installed. It also picks how
    the backprojection runs: ``"torch"`` applies :func:`backprojection_matrix`, built once per geometry
    and kept (for repeated geometries), the others compute it on the fly (for one-off geometries).

    Args:
        sinogram: dimensionless line integrals ``(..., n_views, n_det)``, numpy or torch.
        geometry: the scan; must cover 360° (no Parker weighting for short scans).
        filter: one of :data:`FILTERS`, or an :class:`ApodizedRamp` kernel (e.g. a scanner profile's).
            Default ``"ram-lak"``.
        backend: ``"torch"`` (default), ``"astra"`` or ``"tomosipo"``.
        frequency_scaling: window cut-off as a fraction of Nyquist, in (0, 1]. Default 1.
        device: where to compute, overriding the backend's choice.

    Returns:
        ``(..., n_pixels, n_pixels)`` in cm⁻¹, same array type as the input.

    Raises:
        ValueError: unknown filter or backend, a short scan, a wrong sinogram shape or non-finite values.
        ImportError: ``backend="tomosipo"`` without tomosipo installed.
    """
    filter = check_filter(filter)  # noqa: A001
    if device is None:
        device = _backend_device(backend)
    if not geometry.is_full_scan:
        raise ValueError("fbp: the geometry must cover 360°; short scans need Parker weighting, which is not implemented.")
    t, was_numpy = as_tensor_image(sinogram, "fbp", geometry.sinogram_shape)
    if not torch.isfinite(t).all():
        raise ValueError("fbp: the sinogram holds NaN or infinite values.")
    home = t.device
    if device is not None:
        t = t.to(device)
    q = filter_sinogram(t, geometry, filter, frequency_scaling)
    # The backend also picks the backprojection's machinery. "torch" users project with the torch
    # backend's stored matrix, so they repeat a geometry (datasets, training loops): its backprojection
    # matrix (built once, kept and cached) pays for itself. ASTRA and tomosipo serve one-off geometries
    # (a calibration's per-slice pixel sizes, a demo), where building a 0.7 GiB matrix at 512² would cost
    # more than it saves: they compute on the fly. The choice never depends on what ran before, so the
    # same call gives the same bits all through a run.
    img = weighted_backproject(q, geometry, matrix=None if backend == "torch" else False).to(home)
    return restore_type(img, was_numpy)
