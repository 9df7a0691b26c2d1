"""Low-dose noise on pre-log transmission data.

Accepted practice (Yu et al., Med Phys 2012; Zeng et al., IEEE TNS 2015): the line integrals ``p``
become expected counts ``I0·exp(-p)``, which get Poisson quantum noise plus optional Gaussian
electronic noise; the log is taken afterwards. Noise added to images, or after the log, does not
reproduce CT noise texture. Counts are photons per detector element per view.

Counts below :data:`MIN_COUNT` (zero-count rays at very low I0, or negative values from electronic
noise) are raised to it before the log, so the largest measurable line integral is ``ln(I0/MIN_COUNT)``
and images stay finite; real scanners apply a similar floor.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MIN_COUNT", "check_i0", "transmission_noise", "make_generator"]

#: Floor on the measured counts before the log, in photons.
MIN_COUNT = 1.0


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A ``torch.Generator`` seeded with ``seed`` on ``device``, or ``None`` when ``seed`` is None."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer or None, got {seed!r}.")
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen


def check_i0(i0, where: str = "simulate") -> torch.Tensor:
    """Validate incident photon counts: a positive finite number or a tensor of them."""
    t = torch.as_tensor(i0, dtype=torch.float64)
    if t.numel() == 0 or not torch.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"{where}: `i0` (incident photons per detector element per view) must be positive and finite, got {i0!r}.")
    return t


def transmission_noise(
    line_integrals: torch.Tensor,
    i0,
    *,
    electronic_noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    min_count: float = MIN_COUNT,
) -> torch.Tensor:
    """Noisy line integrals: ``-log(max(Poisson(I0·e^{-p}) + N(0, σe²), min_count) / I0)``.

    Args:
        line_integrals: dimensionless ``p``, shaped ``(..., n_views, n_det)``.
        i0: incident photons per detector element per view: a number, or a tensor broadcastable to
            the leading dimensions of ``line_integrals`` (one dose per image).
        electronic_noise_std: standard deviation σe of the additive Gaussian electronic noise, in
            photons. Default 0 (the resolution-transfer study adds none).
        generator: torch random generator (see :func:`make_generator`) for reproducible draws.
        min_count: floor on the counts before the log, in photons. Default :data:`MIN_COUNT`.

    Returns:
        Noisy line integrals with the input's shape and dtype.
    """
    i0_t = check_i0(i0, "transmission_noise")
    if not math.isfinite(electronic_noise_std) or electronic_noise_std < 0:
        raise ValueError(f"transmission_noise: `electronic_noise_std` must be >= 0 photons, got {electronic_noise_std!r}.")
    if min_count <= 0:
        raise ValueError(f"transmission_noise: `min_count` must be > 0 photons, got {min_count!r}.")
    p = line_integrals.to(torch.float64)
    i0_t = i0_t.to(p.device).reshape(*i0_t.shape, *([1] * 2)) if i0_t.ndim else i0_t.to(p.device)
    expected = i0_t * torch.exp(-p)
    counts = torch.poisson(expected, generator=generator)
    if electronic_noise_std > 0:
        noise = torch.randn(counts.shape, generator=generator, dtype=counts.dtype, device=counts.device)
        counts = counts + electronic_noise_std * noise
    counts = counts.clamp_min(min_count)
    return torch.log(i0_t / counts).to(line_integrals.dtype)
