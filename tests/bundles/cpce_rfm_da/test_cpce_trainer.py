"""The CPCE bundle's trainer (bundles/cpce_rfm_da/scripts/trainer.py)."""

from __future__ import annotations

import math

import pytest
import torch


def _tiny_parts(S, rfm_mode="adaptive"):
    torch.manual_seed(0)
    net = S.networks.CPCE2D(channels=8)
    enc = S.networks.VariationalMaskEncoder(channels=(4, 8), latent_dim=4, n_bins=4, hidden=8)
    rfm = {"adaptive": S.frequency.AdaptiveRFM(enc), "fixed": S.frequency.FixedRFM(), "none": None}[rfm_mode]
    d_w = S.networks.Discriminator(in_channels=8, channels=(8, 8), strides=(1, 2), hidden=8)
    d_y = S.networks.Discriminator(in_channels=1, channels=(8, 8), strides=(1, 2), hidden=8)
    opt = torch.optim.Adam(list(net.parameters()) + list(enc.parameters()), lr=1e-3)
    d_opt = torch.optim.Adam(list(d_w.parameters()) + list(d_y.parameters()), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    data = [
        {
            "image": torch.rand(2, 1, 20, 20, generator=gen),
            "label": torch.rand(2, 1, 20, 20, generator=gen),
            "target": torch.rand(2, 1, 20, 20, generator=gen),
        }
        for _ in range(2)
    ]
    return net, enc, rfm, d_w, d_y, opt, d_opt, data


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize("rfm_mode,weighting", [("adaptive", "sum"), ("fixed", "alignment"), ("none", "sum")])
def test_trainer_updates_every_part_with_finite_losses(S, rfm_mode, weighting):
    net, enc, rfm, d_w, d_y, opt, d_opt, data = _tiny_parts(S, rfm_mode)
    before = {m: _snapshot(m) for m in (net, enc, d_w, d_y)}
    trainer = S.trainer.DomainAdaptationTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=opt,
        loss_function=S.losses.GeneratorLoss(weighting=weighting),
        d_loss_function=S.losses.DiscriminatorLoss(),
        align_discriminator=d_w,
        image_discriminator=d_y,
        d_optimizer=d_opt,
        rfm=rfm,
    )
    trainer.run()
    out = trainer.state.output
    for key in ("loss", "d_loss", "d_loss_align", "d_loss_image", "loss_rec", "loss_adv", "loss_align"):
        assert math.isfinite(out[key]), key
    assert ("loss_kl" in out) == (rfm_mode == "adaptive")
    assert ("loss_align_weight" in out) == (weighting == "alignment")
    assert _changed(before[net], net) and _changed(before[d_w], d_w) and _changed(before[d_y], d_y)
    assert _changed(before[enc], enc) == (rfm_mode == "adaptive")
    assert all(p.requires_grad for p in list(d_w.parameters()) + list(d_y.parameters()))


def test_trainer_baseline_needs_no_target_and_leaves_discriminators_alone(S):
    net, enc, rfm, d_w, d_y, opt, d_opt, data = _tiny_parts(S)
    data = [{"image": b["image"], "label": b["label"]} for b in data]
    before = _snapshot(d_w) + _snapshot(d_y)
    trainer = S.trainer.DomainAdaptationTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=opt,
        loss_function=S.losses.GeneratorLoss(),
        d_loss_function=S.losses.DiscriminatorLoss(),
        align_discriminator=d_w,
        image_discriminator=d_y,
        d_optimizer=d_opt,
        rfm=rfm,
        align=False,
        adversarial=False,
    )
    trainer.run()
    out = trainer.state.output
    assert out["d_loss"] == 0.0 and "loss_adv" not in out and "loss_align" not in out
    assert all(torch.equal(a, b) for a, b in zip(before, list(d_w.parameters()) + list(d_y.parameters())))


def test_trainer_validates_its_configuration(S):
    net, enc, rfm, d_w, d_y, opt, d_opt, data = _tiny_parts(S)
    common = dict(device="cpu", max_epochs=1, train_data_loader=data, network=net, optimizer=opt)
    loss = S.losses.GeneratorLoss()
    with pytest.raises(ValueError, match="`align=True` needs an `align_discriminator`"):
        S.trainer.DomainAdaptationTrainer(**common, loss_function=loss, image_discriminator=d_y)
    with pytest.raises(ValueError, match="`representation` must be either"):
        S.trainer.DomainAdaptationTrainer(**common, loss_function=loss, representation="latent")
    with pytest.raises(ValueError, match="need `d_optimizer` and `d_loss_function`"):
        S.trainer.DomainAdaptationTrainer(
            **common, loss_function=loss, align_discriminator=d_w, image_discriminator=d_y
        )
