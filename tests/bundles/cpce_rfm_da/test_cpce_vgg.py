"""The CPCE bundle's VGG-19 feature extractor (bundles/cpce_rfm_da/scripts/vgg.py)."""

from __future__ import annotations

import pytest
import torch


def test_vgg_layer_names_match_torchvision_indices(S):
    names = S.vgg.VGG19_LAYER_NAMES
    assert len(names) == 37
    assert names[0] == "conv1_1" and names[4] == "pool1" and names[34] == "conv5_4" and names[35] == "relu5_4"


def test_vgg_without_weights_stops_with_a_clear_message(S, tmp_path):
    with pytest.raises(FileNotFoundError, match="use_perceptual False"):
        S.vgg.VGGPerceptualLoss(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        S.vgg.VGGPerceptualLoss(tmp_path / "missing.pth")


def test_vgg_loads_a_torchvision_layout_state_dict(S, tmp_path):
    gen = torch.Generator().manual_seed(0)
    reference = S.vgg.VGG19Features(None, layer="pool5", require_weights=False)
    state = {
        k: (torch.randn(v.shape, generator=gen) * 0.01).half()
        for k, v in S.vgg.torchvision_layout_state_dict(reference.features).items()
    }
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's classifier entries are ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loss = S.vgg.VGGPerceptualLoss(path, layer="relu5_4")
    torch.testing.assert_close(loss.vgg.features[34].weight, state["features.34.weight"].float())
    assert len(loss.vgg.features) == 36
    assert all(not p.requires_grad for p in loss.parameters())
    y = torch.rand(1, 1, 32, 32)
    pred = (y + 0.1 * torch.randn_like(y)).requires_grad_(True)
    assert float(loss(y, y)) == 0.0
    value = loss(pred, y)
    value.backward()
    assert value > 0 and pred.grad.abs().sum() > 0
    loss.train()
    assert not loss.vgg.training
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision-layout VGG-19"):
        S.vgg.VGG19Features(tmp_path / "bad.pth", layer="relu1_2")
