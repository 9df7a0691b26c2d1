"""The CPCE bundle's inferers (bundles/cpce_rfm_da/scripts/inferers.py)."""

from __future__ import annotations

import pytest
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


def test_dihedral_mean_of_a_one_pixel_shift_is_the_mean_of_the_four_neighbour_shifts(S):
    """Hand computation: turning the slice, shifting it one pixel along W and turning it back gives a one-pixel
    shift along +W, -W, +H or -H, each direction in 2 of the 8 turns; an equivariant map is left unchanged."""
    x = torch.rand(2, 1, 6, 9)
    got = S.slice_inference.dihedral_mean(lambda t: torch.roll(t, 1, dims=-1), x)
    want = sum(torch.roll(x, s, dims=d) for s in (1, -1) for d in (-1, -2)) / 4
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(S.slice_inference.dihedral_mean(torch.square, x), torch.square(x))


def test_self_ensemble_runs_eight_turns_per_slice_and_refuses_non_bool(S):
    net = S.networks.CPCE2D(channels=4).eval()
    vol = torch.rand(1, 1, 12, 14, 3)
    calls = []

    def counted(t):
        calls.append(tuple(t.shape))
        return net(t)

    inferer = S.inferers.SlicewiseInferer(sw_batch_size=3, margin=2, self_ensemble=True)
    with torch.no_grad():
        out = inferer(vol, counted)
        plain = S.inferers.SlicewiseInferer(margin=2)
        want = S.slice_inference.dihedral_mean(lambda t: plain(t, net), vol[..., 1])
    assert out.shape == vol.shape and len(calls) == 8 and {(3, 1, 16, 18), (3, 1, 18, 16)} == set(calls)
    torch.testing.assert_close(out[..., 1], want)
    with pytest.raises(ValueError, match="self_ensemble"):
        S.inferers.SlicewiseInferer(self_ensemble="yes")
