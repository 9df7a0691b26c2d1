"""The CPCE bundle's inferers (bundles/cpce_rfm_da/scripts/inferers.py)."""

from __future__ import annotations

import torch


def test_slicewise_inferer_runs_volumes_slice_by_slice(S):
    net = S.networks.CPCE2D(channels=4).eval()
    vol = torch.rand(1, 1, 12, 12, 3)
    inferer = S.inferers.SlicewiseInferer(sw_batch_size=2)
    with torch.no_grad():
        out = inferer(vol, net)
        assert out.shape == vol.shape
        torch.testing.assert_close(out[..., 1], net(vol[..., 1]))
        torch.testing.assert_close(inferer(vol[..., 0], net), net(vol[..., 0]))
