"""The U-Net bundle's inference precision and layout overrides: ``SliceInferer2D(dtype=..., channels_last=...)``.

No timings here; ``python -m ldct_scripts.bench.bench_train`` measures the speed.
"""

from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor

from bundle_loading import bundle_scripts

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "unet_ldct"



S = bundle_scripts("unet_ldct")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture()
def net_and_input():
    torch.manual_seed(0)
    net = S.networks.LDCTUNet(pad_mode="reflect").eval()
    x = torch.rand(2, 1, 40, 36)  # sides not multiples of 16: the padding path runs too
    with torch.no_grad():
        ref = net(x)
    return net, x, ref


def test_bfloat16_override_agrees_with_float32_within_2_percent(net_and_input):
    net, x, ref = net_and_input
    with torch.no_grad():
        out = S.inferers.SliceInferer2D(dtype="bfloat16")(x, net)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert _rel(out, ref) < 0.02
    assert all(p.dtype == torch.float32 for p in net.parameters())  # the network itself is left alone


def test_bfloat16_override_on_a_volume_keeps_metadata(net_and_input):
    net, x, _ = net_and_input
    vol = MetaTensor(x.permute(1, 2, 3, 0)[None], affine=torch.diag(torch.tensor([0.7, 0.7, 2.0, 1.0])))
    with torch.no_grad():
        out = S.inferers.SliceInferer2D(sw_batch_size=1, dtype=torch.bfloat16)(vol, net)
        ref = torch.stack([net(vol.as_tensor()[..., k]) for k in range(vol.shape[-1])], dim=-1)
    assert isinstance(out, MetaTensor) and out.shape == vol.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.affine, vol.affine)
    assert _rel(out.as_tensor(), ref) < 0.02


def test_default_float32_channels_last_is_exact_and_follows_new_weights(net_and_input):
    net, x, ref = net_and_input
    inferer = S.inferers.SliceInferer2D()
    with torch.no_grad():
        out = inferer(x, net)
        assert out.is_contiguous() and _rel(out, ref) < 1e-5
        torch.manual_seed(1)
        net.load_state_dict(S.networks.LDCTUNet(pad_mode="reflect").state_dict())  # new weights: a new copy
        assert _rel(inferer(x, net), net(x)) < 1e-5
        assert _rel(S.inferers.SliceInferer2D(channels_last=False)(x, net), net(x)) < 1e-6
    assert all(p.is_contiguous() for p in net.parameters())  # the network's own layout is unchanged


def test_gradients_flow_when_enabled(net_and_input):
    net, x, _ = net_and_input
    out = S.inferers.SliceInferer2D()(x, net)  # grad mode: the network itself runs, no copy
    out.mean().backward()
    assert net.head.weight.grad is not None


def test_unknown_dtype_is_refused_with_the_accepted_values():
    with pytest.raises(ValueError, match=r"unknown inference `dtype` 'float64'; expected one of \('float32', 'bfloat16', 'float16'\)"):
        S.inferers.SliceInferer2D(dtype="float64")
    with pytest.raises(ValueError, match="unknown inference `dtype`"):
        S.inferers.SliceInferer2D(dtype=torch.int8)
    with pytest.raises(ValueError, match="`channels_last` must be true or false"):
        S.inferers.SliceInferer2D(channels_last="yes")
