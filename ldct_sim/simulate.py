"""The low-dose CT chain: attenuation image → fan-beam projection → Poisson (+ electronic) noise → FBP.

Units: ``mu`` in cm⁻¹, lengths in mm, ``i0`` in photons per detector element per view.

No inverse crime by default: the data are made with the ``"strip"`` model (each detector element
integrates over its width) while the FBP backprojects pixel by pixel with linear interpolation. The
switch ``forward_model="line"`` projects with rays through element centres instead, closer to the
reconstruction's own sampling, which flatters results (the "inverse crime": Kaipio & Somersalo,
J. Comput. Appl. Math. 198, 2007).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .fbp import ApodizedRamp, check_filter, fbp, filter_to_json
from .geometry import FanBeamGeometry
from .noise import MIN_COUNT, check_i0, make_generator, transmission_noise
from .projectors import DEFAULT_BACKEND, PROJECTOR_MODELS, check_backend, get_projector
from .projectors.base import as_tensor_image, restore_type

__all__ = ["LowDoseSimulator", "simulate", "forward_project", "DEFAULT_FORWARD_MODEL"]

#: Forward model used to make data; the reconstruction never uses it.
DEFAULT_FORWARD_MODEL = "strip"


def check_image(mu, geometry: FanBeamGeometry, where: str) -> tuple[torch.Tensor, bool]:
    """Validate an attenuation image against the geometry: shape ``(..., n, n)``, finite values."""
    t, was_numpy = as_tensor_image(mu, where, geometry.image_shape)
    if not torch.isfinite(t).all():
        raise ValueError(f"{where}: the image holds NaN or infinite pixels; clean or mask them first.")
    return t, was_numpy


def forward_project(mu, geometry: FanBeamGeometry, backend: str = DEFAULT_BACKEND, *, model: str = "line"):
    """Line integrals of ``mu`` (cm⁻¹, ``(..., n, n)``) over ``geometry``: ``(..., n_views, n_det)``."""
    t, was_numpy = check_image(mu, geometry, "forward_project")
    return restore_type(get_projector(geometry, check_backend(backend), model)(t), was_numpy)


@dataclass
class SimulationResult:
    """Reconstructions of one simulation, all in cm⁻¹ with the input's leading shape.

    ``low_dose`` at each requested I0 (in the order given), ``noiseless`` when computed, and the
    noise-only images ``low_dose - noiseless``.
    """

    low_dose: list[torch.Tensor]
    noiseless: torch.Tensor | None

    @property
    def noise(self) -> list[torch.Tensor]:
        if self.noiseless is None:
            raise ValueError("SimulationResult: noise-only images need the noiseless reconstruction.")
        return [ld - self.noiseless for ld in self.low_dose]


class LowDoseSimulator:
    """Projection-domain low-dose simulation for one geometry.

    Args:
        geometry: the fan-beam scan.
        backend: ``"torch"`` (default, :data:`~ldct_sim.projectors.DEFAULT_BACKEND`), ``"astra"`` or ``"tomosipo"``;
            see :mod:`ldct_sim.projectors`.
        forward_model: ``"strip"`` (default, no inverse crime) or ``"line"``.
        filter: FBP filter, one of :data:`ldct_sim.fbp.FILTERS` or an :class:`~ldct_sim.fbp.ApodizedRamp`
            kernel. Default ``"ram-lak"`` (the study's ramp).
        electronic_noise_std: Gaussian electronic noise in photons. Default 0.
        min_count: floor on counts before the log, in photons. Default 1.
        device: torch device for the FBP (and the torch projector); default CPU, or the input's device.

    Raises:
        ValueError: unknown backend, forward model or filter; negative noise.
        ImportError: the backend's package is missing.
    """

    def __init__(
        self,
        geometry: FanBeamGeometry,
        backend: str = DEFAULT_BACKEND,
        forward_model: str = DEFAULT_FORWARD_MODEL,
        filter: str | ApodizedRamp = "ram-lak",  # noqa: A002
        electronic_noise_std: float = 0.0,
        min_count: float = MIN_COUNT,
        device: str | torch.device | None = None,
    ):
        if not isinstance(geometry, FanBeamGeometry):
            raise TypeError(f"LowDoseSimulator: `geometry` must be a FanBeamGeometry, got {type(geometry).__name__}.")
        check_backend(backend)
        if forward_model not in PROJECTOR_MODELS:
            raise ValueError(f"Unknown forward_model {forward_model!r}; expected one of {PROJECTOR_MODELS}.")
        filter = check_filter(filter)  # noqa: A001 - a name in FILTERS or an ApodizedRamp kernel
        if not np.isfinite(electronic_noise_std) or electronic_noise_std < 0:
            raise ValueError(f"LowDoseSimulator: `electronic_noise_std` must be >= 0 photons, got {electronic_noise_std!r}.")
        self.geometry = geometry
        self.backend = backend
        self.forward_model = forward_model
        self.filter = filter
        self.electronic_noise_std = float(electronic_noise_std)
        self.min_count = float(min_count)
        self.device = None if device is None else torch.device(device)
        self.projector = get_projector(geometry, backend, forward_model)

    def config(self) -> dict:
        """Everything that defines the simulation, as plain JSON (for provenance)."""
        return {
            "geometry": self.geometry.to_dict(),
            "backend": self.backend,
            "forward_model": self.forward_model,
            "filter": filter_to_json(self.filter),
            "electronic_noise_std": self.electronic_noise_std,
            "min_count": self.min_count,
        }

    def run(self, mu, i0s, *, noiseless: bool = True, seed: int | None = None, generator=None) -> SimulationResult:
        """Project once, add noise at each I0 in ``i0s``, reconstruct all in one batched FBP.

        Args:
            mu: attenuation in cm⁻¹, ``(..., n, n)``, numpy or torch.
            i0s: a list of doses; each a number or a tensor broadcastable to ``mu``'s leading shape.
                ``None`` entries give noiseless reconstructions.
            noiseless: also reconstruct the noiseless sinogram (needed for noise-only images).
            seed: seeds a fresh generator, so the same seed gives identical noise.
            generator: a torch generator to draw from instead of ``seed``.

        Returns:
            :class:`SimulationResult` of torch tensors on the input's device.
        """
        t, _ = check_image(mu, self.geometry, "simulate")
        home = t.device
        work = self.device or home
        for i0 in i0s:
            if i0 is not None:
                check_i0(i0)
        if generator is None:
            generator = make_generator(seed, work)
        sino = self.projector(t.to(work))
        sinos = [sino if i0 is None else transmission_noise(
            sino, i0, electronic_noise_std=self.electronic_noise_std, generator=generator, min_count=self.min_count
        ) for i0 in i0s]
        if noiseless:
            sinos.append(sino)
        recon = fbp(torch.stack(sinos), self.geometry, self.filter, self.backend, device=work).to(home)
        low = list(recon[: len(i0s)])
        return SimulationResult(low_dose=low, noiseless=recon[-1] if noiseless else None)

    def __call__(self, mu, i0=None, *, seed: int | None = None, return_noise: bool = False):
        return simulate(mu, self.geometry, i0, seed=seed, return_noise=return_noise, simulator=self)


def simulate(
    mu,
    geometry: FanBeamGeometry,
    i0=None,
    *,
    electronic_noise_std: float = 0.0,
    backend: str = DEFAULT_BACKEND,
    seed: int | None = None,
    forward_model: str = DEFAULT_FORWARD_MODEL,
    filter: str = "ram-lak",  # noqa: A002
    return_noise: bool = False,
    simulator: LowDoseSimulator | None = None,
):
    """Simulate a CT scan of ``mu`` at dose ``i0`` and reconstruct it by fan-beam FBP.

    Args:
        mu: attenuation image(s) in cm⁻¹, ``(..., n, n)`` with ``n = geometry.n_pixels``; numpy or torch.
        geometry: the fan-beam scan.
        i0: incident photons per detector element per view (a number, or one per image); ``None``
            gives the noiseless reconstruction.
        electronic_noise_std: Gaussian electronic noise in photons (Yu et al. 2012). Default 0.
        backend: ``"torch"`` (default), ``"astra"`` or ``"tomosipo"``.
        seed: seed of the noise draw; the same seed gives identical output.
        forward_model: ``"strip"`` (default) or ``"line"``; see the module docstring.
        filter: FBP filter name. Default ``"ram-lak"``.
        return_noise: also return the noise-only image (low-dose minus noiseless reconstruction).
        simulator: reuse a :class:`LowDoseSimulator` (its settings win over the keyword arguments).

    Returns:
        The reconstruction in cm⁻¹ (same array type and shape as ``mu``), or ``(recon, noise)``.

    Raises:
        ValueError: NaN/inf pixels, a wrong shape, ``i0 <= 0``, unknown backend/model/filter.
        ImportError: the backend is not installed.

    Example:
        >>> from ldct_sim import FanBeamGeometry, simulate
        >>> import numpy as np
        >>> g = FanBeamGeometry(pixel_size_mm=1.0, n_pixels=32, sod_mm=100.0, sdd_mm=200.0, n_views=64)
        >>> simulate(np.full((32, 32), 0.2, np.float32), g, i0=1e5, seed=0).shape
        (32, 32)
    """
    sim = simulator or LowDoseSimulator(
        geometry, backend=backend, forward_model=forward_model, filter=filter, electronic_noise_std=electronic_noise_std
    )
    _, was_numpy = check_image(mu, sim.geometry, "simulate")
    need_clean = return_noise and i0 is not None
    res = sim.run(mu, [i0], noiseless=need_clean, seed=seed)
    recon = res.low_dose[0]
    if not return_noise:
        return restore_type(recon, was_numpy)
    noise = res.noise[0] if need_clean else torch.zeros_like(recon)
    return restore_type(recon, was_numpy), restore_type(noise, was_numpy)
