"""Domain-adaptation trainer: CPCE-2D with semantic alignment through random frequency masks (Huang et al.).

One iteration on a batch ``{image: x_S, label: y_S, target: x_T}``:

1. Forward ``G`` on ``x_S`` (and on ``x_T`` when a target term is active), keeping the encoder's last
   activation (``representation="features"``) or the denoised images (``"output"``) as the
   representations to align.
2. Mask both representations with the random frequency mask ``X' = IDCT(M ⊙ DCT(X))`` (adaptive:
   ``M`` inferred from each input image; fixed: a Bernoulli mask by radius; ``None``: no mask), then
   divide both by their joint root-mean-square (``normalize_representation``).
3. Discriminator step (``d_train_steps`` times): ``D_w`` on masked source (1) vs target (0)
   representations (equation 5) and ``D_y`` on normal-dose source labels (1) vs denoised target images
   (0) (equation 9), on detached inputs.
4. Denoiser step: ``L_G`` of :class:`scripts.losses.GeneratorLoss` (``L_rec`` and ``L_per`` on source pairs,
   ``L_adv`` and the alignment term with swapped labels, the mask encoder's KL), back-propagated into
   ``G`` and the mask encoder (both in ``optimizer``); discriminator weights are frozen during this step.

With ``align=False`` and ``adversarial=False`` the same code trains plain CPCE on source pairs only (the
baseline): no target batch, no discriminator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys
from torch import nn
from torch.optim import Optimizer

__all__ = ["DomainAdaptationTrainer"]


def _to(x, device, non_blocking):
    if hasattr(x, "as_tensor"):
        x = x.as_tensor()
    return x.to(device=device, non_blocking=non_blocking)


def _set_requires_grad(modules: Iterable[nn.Module | None], flag: bool) -> None:
    for m in modules:
        if m is not None:
            for p in m.parameters():
                p.requires_grad_(flag)


class DomainAdaptationTrainer(Trainer):
    """Adversarial cross-domain training of a denoiser, an Ignite engine like MONAI's ``GanTrainer``.

    Args:
        device: device of the run.
        max_epochs: epochs to train.
        train_data_loader: yields dicts with ``image_key`` (source low-dose), ``label_key`` (source
            normal-dose) and, unless both target terms are off, ``target_key`` (target low-dose), each
            ``(B, 1, H, W)``.
        network: the denoiser ``G``; with ``representation="features"`` it must have a method
            ``forward_with_features(x) -> (pred, features)`` (as :class:`scripts.networks.CPCE2D`).
        optimizer: optimizer of ``G`` and, for the adaptive mask, of the mask encoder.
        loss_function: :class:`scripts.losses.GeneratorLoss`.
        d_loss_function: :class:`scripts.losses.DiscriminatorLoss`, needed when a discriminator is used.
        align_discriminator: ``D_w`` on masked representations, or ``None``.
        image_discriminator: ``D_y`` on images, or ``None``.
        d_optimizer: optimizer of the discriminators that are used.
        rfm: the mask module (:class:`scripts.frequency.AdaptiveRFM` or :class:`~scripts.frequency.FixedRFM`),
            or ``None`` to align unmasked representations.
        align: use the alignment term (``L_w``). Default True.
        adversarial: use the realness term on denoised target images (``L_adv``). Default True.
        representation: ``"features"`` (default, the CPCE encoder's last activation) or ``"output"``.
        d_train_steps: discriminator updates per iteration. Default 1.
        normalize_representation: divide both masked representations by their joint root-mean-square
            over the source and target batch (one detached scalar per iteration) before ``D_w``. This fixes
            the scale ``D_w`` sees (CPCE's features start near 1e-2) without removing differences between
            the domains, and keeps the denoiser from fooling ``D_w`` by shrinking its features. Default True.
        image_key, label_key, target_key: batch keys. Defaults ``"image"``, ``"label"``, ``"target"``.
        epoch_length: iterations per epoch; default ``len(train_data_loader)``.
        non_blocking: non-blocking host-to-device copies.
        postprocessing, key_train_metric, additional_metrics, metric_cmp_fn, train_handlers, decollate:
            as in ``monai.engines.SupervisedTrainer``.
        optim_set_to_none: ``zero_grad(set_to_none=...)``.

    ``engine.state.output`` holds ``image``, ``label``, ``pred`` (``G(x_S)``), ``loss`` (``L_G``), ``d_loss``
    and every term of ``L_G`` as ``loss_<term>`` (python floats).

    Raises:
        ValueError: a term is on without the module it needs, or an unknown ``representation``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        d_loss_function: Callable | None = None,
        align_discriminator: nn.Module | None = None,
        image_discriminator: nn.Module | None = None,
        d_optimizer: Optimizer | None = None,
        rfm: nn.Module | None = None,
        align: bool = True,
        adversarial: bool = True,
        representation: Literal["features", "output"] = "features",
        d_train_steps: int = 1,
        normalize_representation: bool = True,
        image_key: str = Keys.IMAGE,
        label_key: str = Keys.LABEL,
        target_key: str = "target",
        epoch_length: int | None = None,
        non_blocking: bool = False,
        postprocessing: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable | None = None,
        train_handlers: Sequence | None = None,
        decollate: bool = False,
        optim_set_to_none: bool = False,
    ):
        align, adversarial = bool(align), bool(adversarial)
        self._check_args(network, representation, align, adversarial, align_discriminator, image_discriminator,
                         d_optimizer, d_loss_function, d_train_steps)
        kwargs: dict[str, Any] = {}
        if metric_cmp_fn is not None:
            kwargs["metric_cmp_fn"] = metric_cmp_fn
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            handlers=train_handlers,
            decollate=decollate,
            **kwargs,
        )
        self.network = network
        self.optimizer = optimizer
        self.loss_function = loss_function
        self.d_loss_function = d_loss_function
        self.align_discriminator = align_discriminator if align else None
        self.image_discriminator = image_discriminator if adversarial else None
        self.d_optimizer = d_optimizer
        self.rfm = rfm
        self.align = align
        self.adversarial = adversarial
        self.representation = representation
        self.d_train_steps = d_train_steps
        self.normalize_representation = bool(normalize_representation)
        self.image_key, self.label_key, self.target_key = image_key, label_key, target_key
        self.optim_set_to_none = optim_set_to_none

    @staticmethod
    def _check_args(network, representation, align, adversarial, align_discriminator, image_discriminator,
                    d_optimizer, d_loss_function, d_train_steps) -> None:
        """Refuse a term that is on without the module it needs, an unknown representation, a bad ``d_train_steps``."""
        if representation not in ("features", "output"):
            raise ValueError(
                "DomainAdaptationTrainer: `representation` must be either 'features' or 'output', "
                f"got {representation!r}."
            )
        if align and representation == "features" and not callable(getattr(network, "forward_with_features", None)):
            raise ValueError(
                "DomainAdaptationTrainer: `representation='features'` needs a network with "
                "`forward_with_features(x) -> (pred, features)`; use representation='output' for other denoisers."
            )
        if align and align_discriminator is None:
            raise ValueError("DomainAdaptationTrainer: `align=True` needs an `align_discriminator`.")
        if adversarial and image_discriminator is None:
            raise ValueError("DomainAdaptationTrainer: `adversarial=True` needs an `image_discriminator`.")
        if (align or adversarial) and (d_optimizer is None or d_loss_function is None):
            raise ValueError(
                "DomainAdaptationTrainer: the alignment and adversarial terms need `d_optimizer` and `d_loss_function`."
            )
        if isinstance(d_train_steps, bool) or not isinstance(d_train_steps, int) or d_train_steps < 1:
            raise ValueError(
                f"DomainAdaptationTrainer: `d_train_steps` must be a positive integer, got {d_train_steps!r}."
            )

    # ------------------------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, need_rep: bool):
        if need_rep and self.align and self.representation == "features":
            return self.network.forward_with_features(x)
        pred = self.network(x)
        return pred, pred

    def _mask(self, rep: torch.Tensor, image: torch.Tensor):
        if self.rfm is None:
            return rep, None
        masked = self.rfm(rep, image)
        return masked, getattr(self.rfm, "last_kl", None)

    def _iteration(self, engine: DomainAdaptationTrainer, batchdata: dict) -> dict:
        x_s, y_s, x_t = engine._batch(batchdata)
        use_target = x_t is not None
        for m in (engine.network, engine.rfm, engine.align_discriminator, engine.image_discriminator):
            if m is not None:
                m.train()
        pred_s, pred_t, masked_s, masked_t, kl = engine._represent(x_s, x_t)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        d_total = torch.zeros((), device=engine.state.device)
        d_align_loss = d_image_loss = None
        if use_target:
            d_total, d_align_loss, d_image_loss = engine._discriminator_step(y_s, pred_t, masked_s, masked_t)
        terms = engine._generator_step(pred_s, y_s, pred_t, masked_s, masked_t, kl, d_align_loss, x_s)
        if use_target:
            _set_requires_grad([engine.align_discriminator, engine.image_discriminator], True)

        output: dict[str, Any] = {
            Keys.IMAGE: x_s.detach(),
            Keys.LABEL: y_s.detach(),
            Keys.PRED: pred_s.detach(),
            Keys.LOSS: float(terms["total"].detach()),
            "d_loss": float(d_total),
        }
        for name, value in terms.items():
            if name != "total":
                output[f"loss_{name}"] = float(value.detach())
        if d_align_loss is not None:
            output["d_loss_align"] = float(d_align_loss.detach())
        if d_image_loss is not None:
            output["d_loss_image"] = float(d_image_loss.detach())
        engine.state.output = output
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _batch(self, batchdata: dict):
        """``(x_S, y_S, x_T)`` on the engine's device; ``x_T`` is ``None`` when both target terms are off."""
        if batchdata is None:
            raise ValueError("DomainAdaptationTrainer: must provide batch data for the current iteration.")
        device, nb = self.state.device, self.non_blocking
        x_s = _to(batchdata[self.image_key], device, nb)
        y_s = _to(batchdata[self.label_key], device, nb)
        use_target = self.align or self.adversarial
        if use_target and self.target_key not in batchdata:
            raise ValueError(
                f"DomainAdaptationTrainer: the batch has no target images under {self.target_key!r}; "
                "the alignment and adversarial terms need them (or set align and adversarial to False)."
            )
        x_t = _to(batchdata[self.target_key], device, nb) if use_target else None
        return x_s, y_s, x_t

    def _represent(self, x_s: torch.Tensor, x_t: torch.Tensor | None):
        """Forward ``G`` on both domains, mask and normalise the representations.

        Returns:
            ``(pred_s, pred_t, masked_s, masked_t, kl)``; the target ones ``None`` without ``x_t``.
        """
        use_target = x_t is not None
        pred_s, rep_s = self._forward(x_s, use_target)
        pred_t = rep_t = masked_s = masked_t = kl = None
        if use_target:
            pred_t, rep_t = self._forward(x_t, True)
        if self.align:
            masked_s, kl_s = self._mask(rep_s, x_s)
            masked_t, kl_t = self._mask(rep_t, x_t)
            if kl_s is not None and kl_t is not None:
                kl = 0.5 * (kl_s + kl_t)
            if self.normalize_representation:
                rms = torch.cat([masked_s.detach().flatten(), masked_t.detach().flatten()]).pow(2).mean().sqrt()
                scale = rms.clamp_min(1e-8)
                masked_s, masked_t = masked_s / scale, masked_t / scale
        return pred_s, pred_t, masked_s, masked_t, kl

    def _discriminator_step(self, y_s, pred_t, masked_s, masked_t):
        """``d_train_steps`` updates of the discriminators on detached inputs: ``(mean d_loss, last L_Dw, last L_Dy)``.

        Leaves the discriminators' weights frozen (``requires_grad=False``) for the denoiser step.
        """
        device = self.state.device
        d_align_loss = d_image_loss = None
        d_total = torch.zeros((), device=device)
        discs = [self.align_discriminator, self.image_discriminator]
        _set_requires_grad(discs, True)
        for _ in range(self.d_train_steps):
            self.d_optimizer.zero_grad(set_to_none=self.optim_set_to_none)
            d_loss = torch.zeros((), device=device)
            if self.align:
                d_align_loss = self.d_loss_function(
                    self.align_discriminator(masked_s.detach()), self.align_discriminator(masked_t.detach())
                )
                d_loss = d_loss + d_align_loss
            if self.adversarial:
                d_image_loss = self.d_loss_function(
                    self.image_discriminator(y_s), self.image_discriminator(pred_t.detach())
                )
                d_loss = d_loss + d_image_loss
            d_loss.backward()
            self.d_optimizer.step()
            d_total = d_total + d_loss.detach()
        d_total = d_total / self.d_train_steps
        _set_requires_grad(discs, False)
        return d_total, d_align_loss, d_image_loss

    def _generator_step(self, pred_s, y_s, pred_t, masked_s, masked_t, kl, d_align_loss, x_s=None) -> dict:
        """One update of the denoiser (and mask encoder) on ``L_G``; returns its terms (``total`` and each term)."""
        self.optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        terms = self.loss_function(
            pred_s,
            y_s,
            adv_logits_target=self.image_discriminator(pred_t) if self.adversarial else None,
            align_logits_source=self.align_discriminator(masked_s) if self.align else None,
            align_logits_target=self.align_discriminator(masked_t) if self.align else None,
            kl=kl,
            d_align_loss=None if d_align_loss is None else d_align_loss.detach(),
            input_source=x_s,
        )
        self.fire_event(IterationEvents.LOSS_COMPLETED)
        terms["total"].backward()
        self.fire_event(IterationEvents.BACKWARD_COMPLETED)
        self.optimizer.step()
        return terms
