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
