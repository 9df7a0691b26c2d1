"""The simulation transforms driven by a ScannerProfile: each slice keeps its own grid, the profile's kernel and dose."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from ldct_sim.fbp import ApodizedRamp
from ldct_sim.io import slice_affine
from ldct_sim.phantoms import abdominal_phantom
from ldct_sim.profile import ScannerProfile
from ldct_sim.simulate import LowDoseSimulator
from ldct_sim.transforms import HUToMu
from ldct_sim.transforms.array import RandSimulateLowDose, SimulateLowDose
from ldct_sim.transforms.dictionary import RandSimulateLowDosed, SimulateLowDosed, SimulateLowDosePaird

KERNEL = ApodizedRamp(s_mm2=-2.0, q_mm4=3.0)


@pytest.fixture(scope="module")
def profile():
    # few views keep the test fast; everything else is the clinical preset's
    return ScannerProfile.from_preset("definition_as", kernel=KERNEL, i0=2e5, name="t", n_views=96, backend="torch",
                                      forward_model="line")


def _slice(n, px, seed=0):
    hu = abdominal_phantom(n, seed=seed)
    return HUToMu()(MetaTensor(torch.from_numpy(hu)[None], affine=torch.as_tensor(slice_affine(px, (n, n)))))


def test_profile_simulates_each_slice_on_its_own_grid(profile):
    t = SimulateLowDose(profile=profile, backend="torch", forward_model="line")
    t.set_random_state(0)
    for n, px in ((48, 0.7), (64, 0.9)):
        out = t(_slice(n, px))
        assert out.shape == (1, n, n)
        assert out.meta["i0"] == pytest.approx(2e5) and out.meta["filter"] == str(KERNEL)
        assert out.meta["geometry"]["pixel_size_mm"] == pytest.approx(px) and out.meta["geometry"]["sod_mm"] == 595.0
        assert np.allclose(torch.linalg.norm(out.affine[:3, :2], dim=0).numpy(), px)
    assert len(t.source._cache) == 2


def test_profile_transform_equals_the_profiles_simulator(profile):
    """Same seed: the transform's output is LowDoseSimulator(profile.geometry(px, n), kernel) at profile.i0."""
    img = _slice(48, 0.7)
    t = SimulateLowDose(profile=profile, backend="torch", forward_model="line")
    t.set_random_state(3)
    out = t(img)
    sim = LowDoseSimulator(profile.geometry(0.7, 48), backend="torch", forward_model="line", filter=KERNEL)
    ref = sim.run(img.as_tensor(), [profile.i0], noiseless=False, seed=t._seed).low_dose[0]
    torch.testing.assert_close(out.as_tensor(), ref)


def test_profile_accepts_a_file_or_dict_and_explicit_dose(profile, tmp_path):
    path = profile.save(tmp_path / "p.json")
    for src in (str(path), profile.to_dict()):
        t = SimulateLowDose(i0=5e4, profile=src, backend="torch", forward_model="line")
        assert t.i0 == 5e4 and t.profile == profile


def test_dict_twins_with_profile(profile):
    d = {"image": _slice(48, 0.7)}
    pair = SimulateLowDosePaird("image", profile=profile, noise_key="noise", backend="torch", forward_model="line")
    pair.set_random_state(1)
    out = pair(d)
    assert out["image"].meta["input_i0"] == pytest.approx(2e5) and out["label"].meta["noiseless_label"]
    torch.testing.assert_close(out["image"] - out["label"], out["noise"], atol=1e-5, rtol=0)
    one = SimulateLowDosed("image", profile=profile, backend="torch", forward_model="line")
    assert one(d)["image"].shape == (1, 48, 48)
    rand = RandSimulateLowDosed("image", None, (1e5, 4e5), profile=profile, backend="torch", forward_model="line")
    rand.set_random_state(2)
    assert 1e5 <= rand(d)["image"].meta["i0"] <= 4e5
    assert RandSimulateLowDose(None, (1e5, 2e5), profile=profile, backend="torch", forward_model="line").sim.profile == profile


def test_profile_errors(profile):
    with pytest.raises(ValueError, match="give `filter`/`electronic_noise_std` or `profile`, not both"):
        SimulateLowDose(profile=profile, filter="hann")
    with pytest.raises(ValueError, match="give a `geometry` or a scanner `profile`"):
        SimulateLowDose(i0=1e5)
    with pytest.raises(ValueError, match="`i0` .* is required without a `profile`"):
        SimulateLowDose(profile.geometry(0.7, 48))
    t = SimulateLowDose(profile=profile, backend="torch", forward_model="line")
    with pytest.raises(ValueError, match="the pixel size comes from the input's affine; give a MetaTensor"):
        t(np.zeros((1, 48, 48), np.float32))
    rect = MetaTensor(torch.zeros(1, 48, 40), affine=torch.as_tensor(slice_affine(0.7, (48, 40))))
    with pytest.raises(ValueError, match=r"square slices with square pixels, got 48x40 .* mode='physical'"):
        t(rect)
