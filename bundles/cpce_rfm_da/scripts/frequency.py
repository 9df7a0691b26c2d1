"""Orthonormal 2-D DCT and random frequency masks (RFM) for semantic alignment.

Conventions:

* Tensors are ``(B, C, H, W)`` (or any ``(..., H, W)`` for the transforms); the DCT acts on the last two
  axes, independently for every channel.
* The DCT is the orthonormal DCT-II (SciPy's ``dctn(x, type=2, norm="ortho")``), computed as
  ``C_H @ X @ C_Wᵀ`` with cached DCT matrices, so it runs as two matrix products on any device and is
  differentiable. Its inverse is the transpose: ``X = C_Hᵀ @ X̂ @ C_W``.
* Frequency index ``(u, v)`` = (row, column) of the DCT map; ``(0, 0)`` is the DC component.
* The normalised radius of Huang et al. (equation 3) is ``r(u, v) = √(u² + v²) / r_max`` with
  ``r_max = √((H-1)² + (W-1)²)``, so ``r`` runs from 0 (DC) to 1 (highest frequency).

The masking module is ``X' = IDCT(M ⊙ DCT(X))``. Coefficients with ``r <= keep_radius`` are always kept
(``M = 1``); the others are kept with a probability ``p(u, v)``:

* :class:`FixedRFM` (ablation; Yue et al., ACM MM 2021): ``p`` is a fixed function of ``r``, the mask
  is drawn from a Bernoulli distribution at every call in training and replaced by its expectation ``p``
  in evaluation mode.
* :class:`AdaptiveRFM` (Huang et al.): ``p`` comes from a variational encoder of the image
  (:class:`~scripts.networks.VariationalMaskEncoder`); in training the mask is drawn from a relaxed
  Bernoulli (Gumbel-sigmoid) distribution at a temperature, so gradients reach the encoder; in
  evaluation mode ``M = p``.

References:
    Huang et al., "Cross domain low-dose CT image denoising with semantic information alignment", eqs. 1-4.
    Yue et al., "Robust real-world image super-resolution against adversarial attacks", ACM MM 2021.
    Maddison et al., "The concrete distribution", ICLR 2017; Jang et al., "Categorical reparameterization
    with Gumbel-softmax", ICLR 2017.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = [
    "dct_matrix",
    "dct2",
    "idct2",
    "normalized_radius",
    "relaxed_bernoulli",
    "apply_frequency_mask",
    "FixedRFM",
    "AdaptiveRFM",
]

_DCT_CACHE: dict[tuple[int, torch.dtype, str], torch.Tensor] = {}
_RADIUS_CACHE: dict[tuple[int, int, torch.dtype, str], torch.Tensor] = {}


def _check_size(where: str, name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}: `{name}` must be a positive integer, got {n!r}.")
    return n


def dct_matrix(n: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
    """The ``n × n`` orthonormal DCT-II matrix ``C`` (cached per size, dtype and device).

    ``C[k, i] = c(k) cos(π (i + 0.5) k / n)`` with ``c(0) = √(1/n)`` and ``c(k) = √(2/n)`` otherwise, so
    ``C @ x`` equals ``scipy.fft.dct(x, type=2, norm="ortho")`` and ``C @ Cᵀ = I``.

    Args:
        n: transform length (>= 1).
        dtype: floating dtype of the matrix. Default float32.
        device: device of the matrix. Default CPU.

    Returns:
        A read-only-by-convention tensor of shape ``(n, n)``; do not modify it in place.
    """
    n = _check_size("dct_matrix", "n", n)
    device = torch.device(device)
    key = (n, dtype, str(device))
    mat = _DCT_CACHE.get(key)
    if mat is None:
        k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
        i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
        mat = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
        mat[0] /= math.sqrt(2.0)
        mat = mat.to(dtype=dtype, device=device)
        _DCT_CACHE[key] = mat
    return mat


def _matrices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim < 2:
        raise ValueError(f"dct2: the input must have at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise TypeError(f"dct2: the input must be a floating-point tensor, got {x.dtype}.")
    h, w = x.shape[-2:]
    return dct_matrix(h, x.dtype, x.device), dct_matrix(w, x.dtype, x.device)


def dct2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two axes of ``x`` (``(..., H, W)``), differentiable."""
    ch, cw = _matrices(x)
    return ch @ x @ cw.transpose(0, 1)


def idct2(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct2` (orthonormal DCT-III) over the last two axes, differentiable."""
    ch, cw = _matrices(coeffs)
    return ch.transpose(0, 1) @ coeffs @ cw


def normalized_radius(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Equation 3 of Huang et al.: ``r(u, v) = √(u² + v²) / √((H-1)² + (W-1)²)``, shape ``(H, W)``, in [0, 1].

    A 1 × 1 map has ``r_max = 0``; its single (DC) coefficient gets ``r = 0``.
    """
    height = _check_size("normalized_radius", "height", height)
    width = _check_size("normalized_radius", "width", width)
    device = torch.device(device)
    key = (height, width, dtype, str(device))
    r = _RADIUS_CACHE.get(key)
    if r is None:
        u = torch.arange(height, dtype=torch.float64).unsqueeze(1)
        v = torch.arange(width, dtype=torch.float64).unsqueeze(0)
        r_max = math.sqrt((height - 1) ** 2 + (width - 1) ** 2)
        r = torch.sqrt(u**2 + v**2) / (r_max if r_max > 0 else 1.0)
        r = r.to(dtype=dtype, device=device)
        _RADIUS_CACHE[key] = r
    return r


def relaxed_bernoulli(probs: torch.Tensor, temperature: float, eps: float = 1e-6, generator=None) -> torch.Tensor:
    """A reparameterised relaxed Bernoulli (Gumbel-sigmoid, "binary concrete") sample with these keep-probabilities.

    ``m = σ((logit p + log U - log(1 - U)) / τ)`` with ``U ~ Uniform(0, 1)``; as ``τ → 0`` the samples
    become Bernoulli(p) draws, and gradients flow to ``probs`` for every ``τ > 0``.

    Args:
        probs: keep-probabilities in [0, 1], any shape.
        temperature: ``τ > 0``.
        eps: clamp for ``p`` and ``U`` away from 0 and 1.
        generator: optional torch generator for the uniform draw.
    """
    if not temperature > 0:
        raise ValueError(f"relaxed_bernoulli: `temperature` must be > 0, got {temperature!r}.")
    p = probs.clamp(eps, 1.0 - eps)
    u = torch.rand(p.shape, dtype=p.dtype, device=p.device, generator=generator).clamp(eps, 1.0 - eps)
    logits = torch.log(p) - torch.log1p(-p) + torch.log(u) - torch.log1p(-u)
    return torch.sigmoid(logits / temperature)


def apply_frequency_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``X' = IDCT(M ⊙ DCT(X))`` per channel; ``mask`` broadcasts against ``x`` (e.g. ``(B, 1, H, W)``)."""
    return idct2(dct2(x) * mask)


def _check_keep_radius(where: str, keep_radius: float) -> float:
    keep_radius = float(keep_radius)
    if not 0.0 <= keep_radius <= 1.0:
        raise ValueError(f"{where}: `keep_radius` must lie in [0, 1] (a normalised radius), got {keep_radius!r}.")
    return keep_radius


class FixedRFM(nn.Module):
    """Non-adaptive random frequency mask (ablation): Bernoulli mask with a fixed keep-probability by radius.

    Keep-probability ``p(r) = 1`` for ``r <= keep_radius``; above it, ``keep_prob`` (``profile="constant"``,
    Yue et al.'s uniform random drop) or a linear fall from 1 at ``keep_radius`` to ``keep_prob`` at
    ``r = 1`` (``profile="linear"``). In training mode the mask is a fresh Bernoulli draw per image (shared
    by its channels); in evaluation mode it is the expectation ``p``.

    Args:
        keep_radius: normalised radius (equation 3) up to which coefficients are always kept, in [0, 1].
            Default 0.1.
        keep_prob: keep-probability of the other coefficients (at ``r = 1`` for the linear profile), in
            [0, 1]. Default 0.5.
        profile: ``"constant"`` (default) or ``"linear"``.

    Shapes:
        ``forward(x)``: ``x`` is ``(B, C, H, W)``; returns the masked ``x`` with the same shape.
    """

    def __init__(
        self, keep_radius: float = 0.1, keep_prob: float = 0.5, profile: Literal["constant", "linear"] = "constant"
    ):
        super().__init__()
        self.keep_radius = _check_keep_radius("FixedRFM", keep_radius)
        keep_prob = float(keep_prob)
        if not 0.0 <= keep_prob <= 1.0:
            raise ValueError(f"FixedRFM: `keep_prob` must lie in [0, 1], got {keep_prob!r}.")
        if profile not in ("constant", "linear"):
            raise ValueError(f"FixedRFM: `profile` must be either 'constant' or 'linear', got {profile!r}.")
        self.keep_prob = keep_prob
        self.profile = profile

    def keep_probabilities(self, height: int, width: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
        """``p(u, v)`` of shape ``(H, W)``."""
        r = normalized_radius(height, width, dtype, device)
        if self.profile == "constant":
            p = torch.full_like(r, self.keep_prob)
        else:
            span = max(1.0 - self.keep_radius, 1e-12)
            t = ((r - self.keep_radius) / span).clamp(0.0, 1.0)
            p = 1.0 - (1.0 - self.keep_prob) * t
        return torch.where(r <= self.keep_radius, torch.ones_like(p), p)

    def mask(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """The mask for ``x`` (``(B, C, H, W)``).

        Training: Bernoulli draws ``(B, 1, H, W)``; evaluation: the expectation ``(1, 1, H, W)``.
        """
        p = self.keep_probabilities(x.shape[-2], x.shape[-1], x.dtype, x.device)[None, None]
        if not self.training:
            return p
        p = p.expand(x.shape[0], 1, *p.shape[-2:])
        return torch.bernoulli(p, generator=generator)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """Mask ``x``; ``image`` is accepted (and ignored) for interface parity with :class:`AdaptiveRFM`."""
        return apply_frequency_mask(x, self.mask(x))


class AdaptiveRFM(nn.Module):
    """Adaptive random frequency mask of Huang et al.: keep-probabilities from a variational encoder of the image.

    The encoder (:class:`~scripts.networks.VariationalMaskEncoder`) maps the image to a reparameterised
    latent ``z`` and decodes it into keep-logits on ``n_bins`` radial bins of the normalised radius
    ``r`` (equation 3); the logits are linearly interpolated at each coefficient's ``r``, so one encoder
    serves any map size. Coefficients with ``r <= keep_radius`` are always kept (``M = 1``); the others get
    ``M ~ RelaxedBernoulli(p, τ)`` in training and ``M = p`` in evaluation mode. The KL divergence of the
    latent against ``N(0, I)`` is stored in :attr:`last_kl` after every call, to be added to the loss.

    Args:
        encoder: a module with ``forward(image) -> (bin_logits (B, n_bins), mu, logvar)``.
        keep_radius: normalised radius up to which coefficients are always kept, in [0, 1]. Default 0.1.
        temperature: relaxed-Bernoulli temperature ``τ > 0`` used in training. Default 0.5.

    Shapes:
        ``forward(x, image)``: ``x`` is the representation to mask, ``(B, C, H, W)``; ``image`` is the
        image that the mask is inferred from, ``(B, C_img, H_img, W_img)`` (sizes may differ from ``x``).
        Returns the masked ``x``.
    """

    def __init__(self, encoder: nn.Module, keep_radius: float = 0.1, temperature: float = 0.5):
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"AdaptiveRFM: `encoder` must be a torch.nn.Module, got {type(encoder).__name__}.")
        self.keep_radius = _check_keep_radius("AdaptiveRFM", keep_radius)
        temperature = float(temperature)
        if not temperature > 0:
            raise ValueError(f"AdaptiveRFM: `temperature` must be > 0, got {temperature!r}.")
        self.encoder = encoder
        self.temperature = temperature
        self.last_kl: torch.Tensor | None = None

    @staticmethod
    def _interpolate_bins(bin_logits: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Linear interpolation of ``(B, n_bins)`` logits, bins centred on ``linspace(0, 1, n_bins)``, at ``r``."""
        n_bins = bin_logits.shape[1]
        if n_bins == 1:
            return bin_logits[:, :, None].expand(-1, *r.shape)
        pos = r.clamp(0.0, 1.0) * (n_bins - 1)
        lo = pos.floor().long().clamp(max=n_bins - 2)
        frac = (pos - lo.to(pos.dtype))[None]
        left = bin_logits[:, lo]  # (B, H, W)
        right = bin_logits[:, lo + 1]
        return left + frac * (right - left)

    def keep_probabilities(self, image: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``p(u, v)`` for an ``H × W`` map, ``(B, 1, H, W)``, and updates :attr:`last_kl`; low frequencies get 1."""
        bin_logits, mu, logvar = self.encoder(image)
        self.last_kl = (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
        r = normalized_radius(height, width, bin_logits.dtype, bin_logits.device)
        p = torch.sigmoid(self._interpolate_bins(bin_logits, r))[:, None]
        keep = (r <= self.keep_radius)[None, None]
        return torch.where(keep, torch.ones_like(p), p)

    def mask(self, x: torch.Tensor, image: torch.Tensor, generator=None) -> torch.Tensor:
        """The mask for ``x`` inferred from ``image``: ``(B, 1, H, W)`` with values in [0, 1]."""
        p = self.keep_probabilities(image, x.shape[-2], x.shape[-1])
        if not self.training:
            return p
        r = normalized_radius(x.shape[-2], x.shape[-1], p.dtype, p.device)
        sample = relaxed_bernoulli(p, self.temperature, generator=generator)
        return torch.where((r <= self.keep_radius)[None, None], torch.ones_like(sample), sample)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        if image is None:
            raise ValueError("AdaptiveRFM: the mask is inferred from an image; pass `image` (B, C, H, W).")
        if image.shape[0] != x.shape[0]:
            raise ValueError(
                f"AdaptiveRFM: `image` and `x` must have the same batch size, got {image.shape[0]} and {x.shape[0]}."
            )
        return apply_frequency_mask(x, self.mask(x, image))
