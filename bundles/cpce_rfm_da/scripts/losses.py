"""Losses of the cross-domain denoiser (Huang et al., equations 5-9), as classes with their weights as arguments.

Notation: ``G`` the denoiser (CPCE-2D), ``D_w`` the alignment discriminator on frequency-masked
representations (logit > 0: "source domain"), ``D_y`` the image discriminator (logit > 0: "normal-dose
source label"), ``x_S, y_S`` a source low-/normal-dose pair and ``x_T`` a target low-dose image.

* ``L_w`` (equation 5): ``D_w`` learns to tell masked source from masked target representations
  (binary cross-entropy, source = 1, target = 0); ``G`` (and the mask encoder) learn to fool it
  (labels swapped).
* ``L_adv`` (equation 9): ``D_y`` learns to tell normal-dose source labels ``y_S`` (real) from denoised
  target images ``G(x_T)`` (fake); ``G`` learns to make ``G(x_T)`` look real.
* ``L_rec`` (equation 7): mean squared error ``‖y_S − G(x_S)‖²``.
* ``L_per`` (equation 8): VGG-19 feature distance (:class:`scripts.vgg.VGGPerceptualLoss`).
* ``L_all`` (equation 6): ``L_adv + λ0·L_rec + λ1·L_per``, with λ0 = 0.67 and λ1 = 0.33.

The seed says both that equation 6 is the objective and that the alignment loss acts "as a weight to
determine the combination of reconstruction loss and perceptual loss", without a formula.
:class:`GeneratorLoss` implements two readings, chosen by ``weighting``:

* ``"sum"`` (default, equation 6 as printed, plus the alignment term):
  ``L_G = λ_adv·L_adv + λ_w·L_w + λ0·L_rec + λ1·L_per + β·KL``.
* ``"alignment"`` (the text's reading):
  ``L_G = λ_adv·L_adv + λ_w·L_w + s·(λ0·L_rec + λ1·L_per) + β·KL`` with
  ``s = clip(L_w^D / log 4, 0, 1)`` computed from the alignment discriminator's own loss at this step and
  detached: ``s = 1`` when ``D_w`` is at chance (``L_w^D = 2 log 2``: the domains share their masked
  representations) and ``s → 0`` as ``D_w`` separates them, so that lower cross-domain similarity gives a
  lower supervised loss, as the seed argues ("the lower similarity contributes to lower loss in the loss
  function of the denoiser").
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DiscriminatorLoss", "GeneratorLoss", "alignment_weight"]

LOG4 = math.log(4.0)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class DiscriminatorLoss(nn.Module):
    """Binary cross-entropy of a discriminator: ``BCE(D(real), 1) + BCE(D(fake), 0)`` (equations 5 and 9).

    Args:
        weight: factor on the loss. Default 1.
        label_smoothing: target for real samples is ``1 - label_smoothing`` (one-sided smoothing). Default 0.
    """

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"DiscriminatorLoss: `label_smoothing` must lie in [0, 1), got {label_smoothing!r}.")
        self.weight = float(weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.weight * (_bce(real_logits, 1.0 - self.label_smoothing) + _bce(fake_logits, 0.0))


def alignment_weight(d_align_loss: torch.Tensor | float) -> torch.Tensor:
    """``s = clip(L_w^D / log 4, 0, 1)``, detached: 1 when the alignment critic is at chance, → 0 as it wins."""
    value = torch.as_tensor(d_align_loss).detach()
    return (value / LOG4).clamp(0.0, 1.0)


class GeneratorLoss(nn.Module):
    """The denoiser's objective ``L_all`` (equation 6) and its alignment terms; see the module docstring.

    Args:
        lambda_rec: λ0, weight of ``L_rec`` (MSE on source pairs). Default 0.67 (the seed's setting).
        lambda_per: λ1, weight of ``L_per`` (VGG-19 features). Default 0.33 (the seed's setting).
        lambda_adv: weight of ``L_adv`` on denoised target images. Default 1 (equation 6).
        lambda_align: weight of the generator's side of ``L_w``. Default 1.
        beta_kl: weight of the mask encoder's KL divergence. Default 0.01.
        perceptual: the ``L_per`` module, e.g. :class:`scripts.vgg.VGGPerceptualLoss`; ``None`` turns the
            perceptual term off (then ``lambda_per`` is unused).
        weighting: ``"sum"`` (default) or ``"alignment"``.
        rec_weighting: ``"mse"`` (default, the seed's ``L_rec``) or ``"noise"``: each source patch's squared error
            is scaled by ``(noise_ref² + noise_floor²) / (σ² + noise_floor²)``, ``σ²`` the variance of its
            ``input − label`` (its noise), as the project's real-data recipe trains: without it the noisiest
            patches own the loss and the network learns to blur what a low-noise image needs kept. Needs
            ``input_source`` in ``forward``.
        noise_ref, noise_floor: the weighting's reference noise and floor, in the network's intensity units
            (``configs/adapt.json`` sets 20 and 10 HU); a patch with ``σ = noise_ref`` weighs as with ``"mse"``.

    ``forward`` returns a dict of scalar tensors: ``total`` (to back-propagate) and each term that was
    computed (``rec``, ``per``, ``adv``, ``align``, ``kl``, ``align_weight``).
    """

    def __init__(
        self,
        lambda_rec: float = 0.67,
        lambda_per: float = 0.33,
        lambda_adv: float = 1.0,
        lambda_align: float = 1.0,
        beta_kl: float = 0.01,
        perceptual: nn.Module | None = None,
        weighting: Literal["sum", "alignment"] = "sum",
        rec_weighting: Literal["mse", "noise"] = "mse",
        noise_ref: float = 20.0 / 4096.0,
        noise_floor: float = 10.0 / 4096.0,
    ):
        super().__init__()
        for name, value in (
            ("lambda_rec", lambda_rec),
            ("lambda_per", lambda_per),
            ("lambda_adv", lambda_adv),
            ("lambda_align", lambda_align),
            ("beta_kl", beta_kl),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"GeneratorLoss: `{name}` must be a finite number >= 0, got {value!r}.")
        if rec_weighting not in ("mse", "noise"):
            raise ValueError(f"GeneratorLoss: `rec_weighting` must be either 'mse' or 'noise', got {rec_weighting!r}.")
        if not (noise_ref > 0 and noise_floor > 0):
            raise ValueError(f"GeneratorLoss: `noise_ref` and `noise_floor` must be > 0, got {noise_ref!r}, {noise_floor!r}.")
        if weighting not in ("sum", "alignment"):
            raise ValueError(f"GeneratorLoss: `weighting` must be either 'sum' or 'alignment', got {weighting!r}.")
        if perceptual is not None and not callable(perceptual):
            raise TypeError(f"GeneratorLoss: `perceptual` must be a callable module or None, got {type(perceptual)}.")
        self.lambda_rec = float(lambda_rec)
        self.lambda_per = float(lambda_per)
        self.lambda_adv = float(lambda_adv)
        self.lambda_align = float(lambda_align)
        self.beta_kl = float(beta_kl)
        self.perceptual = perceptual
        self.weighting = weighting
        self.rec_weighting, self.noise_ref, self.noise_floor = rec_weighting, float(noise_ref), float(noise_floor)

    def reconstruction(self, pred: torch.Tensor, label: torch.Tensor, inp: torch.Tensor | None = None) -> torch.Tensor:
        """``L_rec``: the MSE, or with ``rec_weighting="noise"`` the mean of each patch's MSE times its weight."""
        if self.rec_weighting == "mse":
            return F.mse_loss(pred, label)
        if inp is None:
            raise ValueError("GeneratorLoss: rec_weighting='noise' needs `input_source` (the noisy source patches).")
        per_patch = (pred - label).pow(2).flatten(1).mean(1)
        noise_var = (inp - label).detach().flatten(1).var(1)
        floor2 = self.noise_floor**2
        return (per_patch * (self.noise_ref**2 + floor2) / (noise_var + floor2)).mean()

    def forward(
        self,
        pred_source: torch.Tensor,
        label_source: torch.Tensor,
        adv_logits_target: torch.Tensor | None = None,
        align_logits_source: torch.Tensor | None = None,
        align_logits_target: torch.Tensor | None = None,
        kl: torch.Tensor | None = None,
        d_align_loss: torch.Tensor | float | None = None,
        input_source: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute ``L_G``.

        Args:
            pred_source: ``G(x_S)``, ``(B, 1, H, W)``.
            label_source: ``y_S``, same shape.
            adv_logits_target: ``D_y(G(x_T))``; ``None`` leaves out ``L_adv``.
            align_logits_source: ``D_w(M ⊙ x̂_S)``; with ``align_logits_target``, the alignment term.
            align_logits_target: ``D_w(M ⊙ x̂_T)``.
            kl: KL divergence of the mask encoder's latent; ``None`` leaves it out.
            d_align_loss: the alignment discriminator's loss at this step, for ``weighting="alignment"``.
            input_source: ``x_S``, the noisy source patches, for ``rec_weighting="noise"``.
        """
        terms: dict[str, torch.Tensor] = {"rec": self.reconstruction(pred_source, label_source, input_source)}
        supervised = self.lambda_rec * terms["rec"]
        if self.perceptual is not None:
            terms["per"] = self.perceptual(pred_source, label_source)
            supervised = supervised + self.lambda_per * terms["per"]
        total = torch.zeros((), dtype=pred_source.dtype, device=pred_source.device)
        if adv_logits_target is not None:
            terms["adv"] = _bce(adv_logits_target, 1.0)
            total = total + self.lambda_adv * terms["adv"]
        if (align_logits_source is None) != (align_logits_target is None):
            raise ValueError("GeneratorLoss: give both `align_logits_source` and `align_logits_target`, or neither.")
        if align_logits_source is not None:
            terms["align"] = _bce(align_logits_source, 0.0) + _bce(align_logits_target, 1.0)
            total = total + self.lambda_align * terms["align"]
        if kl is not None:
            terms["kl"] = kl
            total = total + self.beta_kl * kl
        if self.weighting == "alignment" and d_align_loss is not None:
            terms["align_weight"] = alignment_weight(d_align_loss).to(pred_source.device, pred_source.dtype)
            supervised = terms["align_weight"] * supervised
        terms["total"] = total + supervised
        return terms
