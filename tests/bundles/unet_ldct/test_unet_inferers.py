"""The U-Net bundle's inferers (bundles/unet_ldct/scripts/inferers.py)."""

import pytest
import torch
from monai.data import MetaTensor

from bundle_loading import bundle_scripts

S = bundle_scripts("unet_ldct")


def test_slice_inferer_runs_volumes_slice_by_slice_and_keeps_metadata():
    torch.manual_seed(0)
    net = S.networks.LDCTUNet(pad_mode="replicate").eval()
    vol = MetaTensor(torch.rand(1, 1, 24, 20, 3), affine=torch.diag(torch.tensor([0.7, 0.7, 2.0, 1.0])))
    inferer = S.inferers.SliceInferer2D(sw_batch_size=2)
    with torch.no_grad():
        out = inferer(vol, net)
        expected = torch.stack([net(vol.as_tensor()[..., k]) for k in range(3)], dim=-1)
        assert isinstance(out, MetaTensor) and out.shape == vol.shape
        torch.testing.assert_close(out.as_tensor(), expected)
        torch.testing.assert_close(out.affine, vol.affine)
        torch.testing.assert_close(inferer(vol[..., 0], net).as_tensor(), expected[..., 0])
    with pytest.raises(ValueError, match="got shape"):
        inferer(torch.zeros(1, 16, 16), net)
    with pytest.raises(ValueError, match="`sw_batch_size` must be a positive integer"):
        S.inferers.SliceInferer2D(0)


def test_self_ensemble_averages_the_eight_turns_through_the_fast_forward():
    torch.manual_seed(1)
    net = S.networks.LDCTUNet(pad_mode="reflect").eval()
    vol = MetaTensor(torch.rand(1, 1, 24, 20, 2))
    with torch.no_grad():
        out = S.inferers.SliceInferer2D(sw_batch_size=2, margin=4, self_ensemble=True)(vol, net)
        plain = S.inferers.SliceInferer2D(margin=4)
        want = S.slice_inference.dihedral_mean(lambda t: plain(t, net), vol.as_tensor()[..., 0])
    assert isinstance(out, MetaTensor) and out.shape == vol.shape
    torch.testing.assert_close(out.as_tensor()[..., 0], want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out.as_tensor()[..., 0], plain(vol.as_tensor()[..., 0], net), atol=1e-6)
