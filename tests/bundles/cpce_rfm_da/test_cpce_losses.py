"""The CPCE bundle's losses (bundles/cpce_rfm_da/scripts/losses.py)."""

from __future__ import annotations

import math

import pytest
import torch


def test_discriminator_loss_at_chance_is_log4(S):
    loss = S.losses.DiscriminatorLoss()
    assert math.isclose(float(loss(torch.zeros(4, 1), torch.zeros(4, 1))), math.log(4.0), rel_tol=1e-6)
    assert float(loss(torch.full((4, 1), 20.0), torch.full((4, 1), -20.0))) < 1e-6


def test_generator_loss_is_the_weighted_sum(S):
    torch.manual_seed(0)
    pred, label = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    adv, a_s, a_t, kl = torch.randn(2, 1), torch.randn(2, 1), torch.randn(2, 1), torch.tensor(0.3)
    per = lambda p, y: (p - y).abs().mean()  # noqa: E731 - stands in for VGG
    loss = S.losses.GeneratorLoss(lambda_adv=0.5, lambda_align=0.25, beta_kl=0.1, perceptual=per)
    terms = loss(pred, label, adv, a_s, a_t, kl)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = (
        0.5 * bce(adv, torch.ones_like(adv))
        + 0.25 * (bce(a_s, torch.zeros_like(a_s)) + bce(a_t, torch.ones_like(a_t)))
        + 0.67 * torch.mean((pred - label) ** 2)
        + 0.33 * per(pred, label)
        + 0.1 * kl
    )
    torch.testing.assert_close(terms["total"], expected)
    assert set(terms) == {"rec", "per", "adv", "align", "kl", "total"}
    baseline = S.losses.GeneratorLoss(perceptual=None)(pred, label)
    torch.testing.assert_close(baseline["total"], 0.67 * torch.mean((pred - label) ** 2))


def test_alignment_weighted_variant_scales_the_supervised_terms(S):
    pred, label = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    loss = S.losses.GeneratorLoss(weighting="alignment", lambda_align=0.0)
    zeros = torch.zeros(2, 1)
    at_chance = loss(pred, label, align_logits_source=zeros, align_logits_target=zeros, d_align_loss=math.log(4.0))
    torch.testing.assert_close(at_chance["total"], 0.67 * torch.mean((pred - label) ** 2))
    separated = loss(pred, label, align_logits_source=zeros, align_logits_target=zeros, d_align_loss=0.0)
    assert float(separated["align_weight"]) == 0.0 and float(separated["total"]) == 0.0
    assert math.isclose(float(S.losses.alignment_weight(math.log(4.0) / 2)), 0.5, rel_tol=1e-6)


def test_generator_loss_validates_arguments(S):
    with pytest.raises(ValueError, match="`lambda_rec` must be a finite number >= 0"):
        S.losses.GeneratorLoss(lambda_rec=-1.0)
    with pytest.raises(ValueError, match="`weighting` must be either 'sum' or 'alignment'"):
        S.losses.GeneratorLoss(weighting="product")
    with pytest.raises(ValueError, match="give both"):
        S.losses.GeneratorLoss()(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), align_logits_source=torch.zeros(1, 1))


def test_noise_weighted_reconstruction_matches_a_hand_computation(S):
    """rec_weighting='noise': each patch's MSE times (ref² + floor²) / (var(input - label) + floor²)."""
    label = torch.zeros(2, 1, 4, 4)
    noise = torch.tensor([1.0, -1.0]).repeat(8).reshape(1, 1, 4, 4)  # variance 16/15 (unbiased), mean 0
    inp = torch.cat([label[:1] + 0.1 * noise, label[1:] + 0.3 * noise])
    pred = torch.cat([torch.full((1, 1, 4, 4), 0.2), torch.full((1, 1, 4, 4), 0.1)])
    loss = S.losses.GeneratorLoss(perceptual=None, rec_weighting="noise", noise_ref=0.2, noise_floor=0.1)
    var = torch.tensor([0.01, 0.09]) * 16 / 15
    want = ((torch.tensor([0.04, 0.01]) * (0.04 + 0.01) / (var + 0.01)).mean())
    torch.testing.assert_close(loss.reconstruction(pred, label, inp), want)
    # the quieter patch weighs more than with plain MSE, the noisier one less
    assert loss.reconstruction(pred, label, inp) != S.losses.GeneratorLoss(perceptual=None).reconstruction(pred, label)
    with pytest.raises(ValueError, match="needs `input_source`"):
        loss(pred, label)
    with pytest.raises(ValueError, match="rec_weighting"):
        S.losses.GeneratorLoss(rec_weighting="l1")
