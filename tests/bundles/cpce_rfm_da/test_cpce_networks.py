"""The CPCE bundle's networks (bundles/cpce_rfm_da/scripts/networks.py): CPCE-2D, discriminators, encoder."""

from __future__ import annotations

import pytest
import torch


def test_cpce_has_62016_parameters(S):
    net = S.networks.CPCE2D()
    assert sum(p.numel() for p in net.parameters()) == 62_016


def test_cpce_layers_follow_the_reference(S):
    net = S.networks.CPCE2D()
    convs = [net.conv1, net.conv2, net.conv3, net.conv4]
    deconvs = [net.deconv5, net.deconv6, net.deconv7]
    squeezes = [net.transpose1, net.transpose2, net.transpose3]
    for m in convs + deconvs + squeezes + [net.deconv8]:
        assert m.bias is None
        assert m.padding == (0, 0) and m.stride == (1, 1)
    assert [m.kernel_size for m in convs + deconvs] == [(3, 3)] * 7
    assert all(isinstance(m, torch.nn.ConvTranspose2d) for m in deconvs + [net.deconv8])
    assert [m.out_channels for m in convs + deconvs + squeezes] == [32] * 10
    assert [(m.in_channels, m.kernel_size) for m in squeezes] == [(64, (1, 1))] * 3
    assert (net.deconv8.out_channels, net.deconv8.kernel_size) == (1, (3, 3))


@pytest.mark.parametrize("shape", [(9, 9), (32, 32), (37, 50)])
def test_cpce_output_size_equals_input_size(S, shape):
    net = S.networks.CPCE2D()
    x = torch.rand(2, 1, *shape)
    y, features = net.forward_with_features(x)
    torch.testing.assert_close(net(x), y)
    assert y.shape == x.shape
    assert features.shape == (2, 32, shape[0] - 8, shape[1] - 8)
    assert (y >= 0).all()  # final ReLU


def test_residual_adds_the_input_under_the_final_relu_and_keeps_the_parameters(S):
    torch.manual_seed(0)
    plain = S.networks.CPCE2D().eval()
    residual = S.networks.CPCE2D(residual=True).eval()
    residual.load_state_dict(plain.state_dict())  # no new parameters: the seed's weights load unchanged
    x = torch.rand(2, 1, 21, 30)
    with torch.no_grad():
        # the same layers up to deconv8, then ReLU(x + deconv8) instead of ReLU(deconv8)
        _, feats = plain.forward_with_features(x)
        last = {}
        plain.deconv8.register_forward_hook(lambda m, i, o: last.update(y=o))
        plain(x)
        torch.testing.assert_close(residual(x), torch.relu(x + last["y"]))
        torch.testing.assert_close(residual.forward_with_features(x)[1], feats)
        torch.nn.init.zeros_(residual.deconv8.weight)
        assert torch.equal(residual(x), x)  # a zeroed last layer passes a non-negative input through
        assert torch.equal(residual(x - 2.0), torch.zeros_like(x))  # the output stays >= 0 (-1024 HU)
        torch.testing.assert_close(torch.jit.script(residual)(x), x)
    with pytest.raises(ValueError, match="`residual` needs in_channels == out_channels"):
        S.networks.CPCE2D(out_channels=2, residual=True)


def test_cpce_scripts_to_torchscript(S, tmp_path):
    net = S.networks.CPCE2D().eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "cpce.ts"))
    loaded = torch.jit.load(str(tmp_path / "cpce.ts"))
    x = torch.rand(1, 1, 21, 17)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
        torch.testing.assert_close(loaded.forward_with_features(x)[1], net.forward_with_features(x)[1])


def test_cpce_rejects_small_or_unbatched_input(S):
    net = S.networks.CPCE2D()
    with pytest.raises(ValueError, match="H, W >= 9"):
        net(torch.rand(1, 1, 8, 16))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.rand(1, 16, 16))


@pytest.mark.parametrize("shape", [(16, 16), (24, 40)])
def test_discriminator_and_encoder_shapes(S, shape):
    d = S.networks.Discriminator(in_channels=3, channels=(8, 16), strides=(1, 2), hidden=16)
    assert d(torch.rand(2, 3, *shape)).shape == (2, 1)
    enc = S.networks.VariationalMaskEncoder(latent_dim=5, n_bins=7).eval()
    logits, mu, logvar = enc(torch.rand(2, 1, *shape))
    assert logits.shape == (2, 7) and mu.shape == logvar.shape == (2, 5)
    torch.testing.assert_close(enc(torch.ones(1, 1, *shape))[0], enc(torch.ones(1, 1, *shape))[0])
    with pytest.raises(ValueError, match="one entry per convolution"):
        S.networks.Discriminator(channels=(8, 16), strides=(1,))
