"""The seed paper's U-Net (bundles/unet_ldct/scripts/networks.py): architecture, sizes, padding, TorchScript."""


import pytest
import torch
from torch import nn

from bundle_loading import bundle_scripts

LDCTUNet = bundle_scripts("unet_ldct").networks.LDCTUNet


def _weight_layers(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return LDCTUNet().eval()


def test_parameter_count_is_the_papers(net):
    assert sum(p.numel() for p in net.parameters()) == 8_639_169


def test_24_weight_layers_with_the_papers_channels(net):
    layers = _weight_layers(net)
    assert len(layers) == 24
    contracting, expansive = layers[:11], layers[11:]
    assert [m.out_channels for m in contracting] == [32, 32, 32, 64, 64, 128, 128, 256, 256, 512, 512]
    assert [m.out_channels for m in expansive] == [256, 256, 256, 128, 128, 128, 64, 64, 64, 32, 32, 32, 1]
    assert all(m.kernel_size == (3, 3) for m in layers[:-1]) and layers[-1].kernel_size == (1, 1)
    ups = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in ups] == [256, 128, 64, 32]
    assert all(m.stride == (2, 2) and m.kernel_size == (3, 3) for m in ups)
    # the first convolution after each transposed one sees the concatenated skip: twice its channels
    after_up = [expansive[i + 1] for i, m in enumerate(expansive) if isinstance(m, nn.ConvTranspose2d)]
    assert [m.in_channels for m in after_up] == [512, 256, 128, 64]
    assert all(m.bias is not None for m in layers)


def test_max_pooling_leaky_relu_and_no_normalisation(net):
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 23 and all(a.negative_slope == 0.2 for a in acts)
    norms = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)
    assert not [m for m in net.modules() if isinstance(m, norms)]
    assert all(a.negative_slope == 0.05 for a in LDCTUNet(negative_slope=0.05).modules() if isinstance(a, nn.LeakyReLU))


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 1, 16, 48)])
def test_output_has_the_input_shape(net, shape):
    with torch.no_grad():
        assert net(torch.rand(shape)).shape == shape


def test_rejects_sides_not_multiple_of_16(net):
    with pytest.raises(ValueError, match=r"multiples of 16, got 40x32.*pad_mode='reflect'"):
        net(torch.zeros(1, 1, 40, 32))
    with pytest.raises(ValueError, match="batch, channel, height, width"):
        net(torch.zeros(1, 32, 32))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "constant"])
def test_padding_crops_back_and_leaves_multiples_of_16_untouched(net, mode):
    padded = LDCTUNet(pad_mode=mode).eval()
    padded.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, 40, 27)
    with torch.no_grad():
        assert padded(x).shape == x.shape
        y = torch.rand(1, 1, 32, 48)
        torch.testing.assert_close(padded(y), net(y), rtol=0, atol=0)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown `pad_mode` 'wrap'"):
        LDCTUNet(pad_mode="wrap")
    with pytest.raises(ValueError, match="`negative_slope` must be >= 0"):
        LDCTUNet(negative_slope=-0.1)
    with pytest.raises(ValueError, match="`in_channels` must be a positive integer"):
        LDCTUNet(in_channels=0)


def test_torchscript_matches_eager_including_padding(net):
    padded = LDCTUNet(pad_mode="reflect").eval()
    padded.load_state_dict(net.state_dict())
    scripted = torch.jit.script(padded)
    x = torch.rand(1, 1, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), padded(x))


def test_residual_adds_the_input_and_keeps_the_parameter_count(net):
    residual = LDCTUNet(pad_mode="reflect", residual=True).eval()
    residual.load_state_dict(net.state_dict())  # no new parameters: the seed's weights load unchanged
    plain = LDCTUNet(pad_mode="reflect").eval()
    plain.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(residual(x), plain(x) + x)
        nn.init.zeros_(residual.head.weight), nn.init.zeros_(residual.head.bias)
        assert torch.equal(residual(x), x)  # a zeroed head passes the input through
        torch.testing.assert_close(torch.jit.script(residual)(x), x)
    with pytest.raises(ValueError, match="`residual` needs in_channels == out_channels"):
        LDCTUNet(out_channels=2, residual=True)
