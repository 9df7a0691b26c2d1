"""HUToMu / MuToHU and their dictionary twins: values at 60 keV, clamping, meta and type handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from ldct_sim.attenuation import mu_water
from ldct_sim.transforms import HUToMu, HUToMud, MuToHU, MuToHUd

INPUT_TYPES = [np.asarray, torch.as_tensor, lambda x: MetaTensor(x, affine=torch.diag(torch.tensor([0.7, 0.7, 1.0, 1.0])))]


@pytest.mark.parametrize("as_type", INPUT_TYPES)
def test_water_is_0_2059_and_air_is_zero_at_60_kev(as_type):
    hu = np.array([[[0.0, -1000.0], [1000.0, -500.0]]], dtype=np.float32)
    mu = HUToMu()(as_type(hu))
    assert isinstance(mu, torch.Tensor) and mu.dtype == torch.float32 and mu.shape == (1, 2, 2)
    assert float(mu[0, 0, 0]) == pytest.approx(0.2059, abs=5e-5)
    assert float(mu[0, 0, 1]) == 0.0
    assert float(mu[0, 1, 0]) == pytest.approx(2 * mu_water(60.0), rel=1e-6)  # 1000 HU: twice water
    assert float(mu[0, 1, 1]) == pytest.approx(0.5 * mu_water(60.0), rel=1e-6)


def test_meta_and_affine_are_kept():
    affine = torch.diag(torch.tensor([0.7, 0.7, 1.0, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.zeros(1, 4, 4), affine=affine, meta={"filename_or_obj": "x.dcm"})
    out = HUToMu()(img)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "x.dcm"
    torch.testing.assert_close(out.affine, affine)


def test_scanner_padding_below_air_is_clamped_to_air_unless_disabled():
    pad = np.array([[[-3024.0, -2048.0]]], np.float32)
    assert torch.count_nonzero(HUToMu()(pad)) == 0
    assert (HUToMu(min_hu=None)(pad) < 0).all()


def test_energy_changes_water_attenuation():
    assert float(HUToMu(energy_kev=80.0)(np.zeros((1, 1, 1)))) == pytest.approx(mu_water(80.0))
    assert mu_water(80.0) < mu_water(60.0)  # attenuation falls with energy


def test_round_trip_mu_to_hu():
    hu = np.random.default_rng(0).uniform(-1000, 2000, size=(2, 8, 8)).astype(np.float32)
    back = MuToHU()(HUToMu()(hu))
    np.testing.assert_allclose(back.numpy(), hu, atol=2e-3)


def test_rejects_an_energy_out_of_range():
    with pytest.raises(ValueError, match=r"energy_kev must be a photon energy in \[1, 1000\] keV, got 0.5"):
        HUToMu(energy_kev=0.5)
    with pytest.raises(ValueError, match="energy_kev must be a photon energy"):
        MuToHUd("image", energy_kev=5000.0)


def test_dict_twins_equal_the_array_transforms():
    hu = np.random.default_rng(1).uniform(-1000, 1000, size=(1, 4, 4)).astype(np.float32)
    d = HUToMud(["image", "label"])({"image": hu, "label": hu.copy(), "other": 1})
    torch.testing.assert_close(d["image"], HUToMu()(hu))
    torch.testing.assert_close(d["label"], HUToMu()(hu))
    assert d["other"] == 1
    back = MuToHUd("image")(d)["image"]
    np.testing.assert_allclose(back.numpy(), hu, atol=2e-3)
    with pytest.raises(KeyError):
        HUToMud("missing")({"image": hu})
    assert "missing" not in HUToMud("missing", allow_missing_keys=True)({"image": hu})
