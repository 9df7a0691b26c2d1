"""SimulateLowDose, RandSimulateLowDose, their dict twins and SimulateLowDosePaird (tiny 32² geometry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from ldct_sim import get_preset, simulate
from ldct_sim.phantoms import water_disk
from ldct_sim.projectors import DEFAULT_BACKEND
from ldct_sim.transforms import (
    HUToMu,
    RandSimulateLowDose,
    RandSimulateLowDosed,
    SimulateLowDose,
    SimulateLowDosed,
    SimulateLowDosePaird,
)

G = get_preset(625).geometry(n_pixels=32, n_views=48)


@pytest.fixture(scope="module")
def mu():
    """A water disk in air as a (1, 32, 32) MetaTensor in cm⁻¹ with 0.7 mm pixels."""
    aff = torch.diag(torch.tensor([0.7, 0.7, 1.0, 1.0], dtype=torch.float64))
    return HUToMu()(MetaTensor(torch.from_numpy(water_disk(32, radius=0.7))[None], affine=aff))


def body_std(noise: torch.Tensor) -> float:
    mask = torch.from_numpy(water_disk(32, radius=0.6) > -500)
    return float(noise[..., mask].std())


def test_same_random_state_repeats_and_new_draws_differ(mu):
    t = SimulateLowDose(G, 1e4).set_random_state(0)
    a, b = t(mu), t(mu)
    assert not torch.equal(a, b)  # a fresh seed per call
    torch.testing.assert_close(SimulateLowDose(G, 1e4).set_random_state(0)(mu), a, rtol=0, atol=0)


def test_output_is_simulate_with_the_recorded_seed_and_carries_meta(mu):
    out = SimulateLowDose(G, 2e4).set_random_state(3)(mu)
    assert isinstance(out, MetaTensor) and out.shape == (1, 32, 32) and out.dtype == torch.float32
    ref = simulate(mu.as_tensor(), G, 2e4, seed=out.meta["seed"])
    torch.testing.assert_close(out.as_tensor(), ref, rtol=0, atol=0)
    m = out.meta
    assert (m["resolution_um"], m["i0"], m["backend"], m["forward_model"], m["filter"]) == (625.0, 2e4, DEFAULT_BACKEND, "strip", "ram-lak")
    assert m["geometry"] == G.to_dict() and m["electronic_noise_std"] == 0.0
    torch.testing.assert_close(out.pixdim[:2].float(), torch.tensor([0.625, 0.625]))  # the geometry's pixel


def test_numpy_input_gives_a_tensor_with_the_same_values(mu):
    a = SimulateLowDose(G, 1e4).set_random_state(1)(mu.numpy())
    b = SimulateLowDose(G, 1e4).set_random_state(1)(mu)
    torch.testing.assert_close(torch.as_tensor(a), b.as_tensor())


def test_noise_std_scales_with_inverse_sqrt_dose(mu):
    four = mu.repeat(4, 1, 1)  # channels are independent images: four noise draws
    clean = simulate(four.as_tensor(), G, None)
    std = {i0: body_std(SimulateLowDose(G, i0).set_random_state(0)(four).as_tensor() - clean) for i0 in (1e4, 1e5)}
    assert std[1e4] / std[1e5] == pytest.approx(math.sqrt(10.0), rel=0.15)


def test_dict_twin_equals_the_array_transform_and_shares_one_draw(mu):
    d = SimulateLowDosed(["image", "copy"], G, 1e4).set_random_state(5)({"image": mu, "copy": mu.clone()})
    ref = SimulateLowDose(G, 1e4).set_random_state(5)(mu)
    torch.testing.assert_close(d["image"], ref, rtol=0, atol=0)
    torch.testing.assert_close(d["copy"], ref, rtol=0, atol=0)  # documented: keys share the seed


@pytest.mark.parametrize(
    "img, message",
    [
        (torch.zeros(1, 32, 32, 8), r"got a 3-D image shaped \(1, 32, 32, 8\); slice 3-D volumes"),
        (torch.zeros(1, 64, 64), r"must be \(C, 32, 32\) to match geometry.n_pixels, got \(1, 64, 64\); resample"),
        (torch.zeros(32, 32), r"must be channel-first \(C, H, W\), got shape \(32, 32\)"),
        (torch.full((1, 32, 32), float("nan")), "holds NaN or infinite pixels"),
    ],
)
def test_rejects_bad_slices_with_a_clear_message(img, message):
    with pytest.raises(ValueError, match=message):
        SimulateLowDose(G, 1e4)(img)
    with pytest.raises(ValueError, match=message):
        SimulateLowDosePaird("image", G, 1e4)({"image": img})


def test_rejects_bad_doses():
    with pytest.raises(ValueError, match=r"SimulateLowDose: `i0` \(photons per detector element per view\) must be positive"):
        SimulateLowDose(G, 0.0)
    with pytest.raises(ValueError, match=r"RandSimulateLowDose: `i0_range` must have low <= high, got \(100.0, 10.0\)"):
        RandSimulateLowDose(G, (100.0, 10.0))
    with pytest.raises(ValueError, match="`i0_range` must be a \\(low, high\\) pair"):
        RandSimulateLowDose(G, 1e4)


def test_rand_draws_doses_log_uniformly_in_the_range():
    t = RandSimulateLowDose(G, (1e3, 1e5)).set_random_state(0)
    draws = []
    for _ in range(400):
        t.randomize()
        draws.append(t._i0)
    logs = np.log10(draws)
    assert 3.0 <= logs.min() and logs.max() <= 5.0
    assert np.median(logs) == pytest.approx(4.0, abs=0.15)  # log-uniform: median at the geometric mean
    assert np.mean(logs < 3.5) == pytest.approx(0.25, abs=0.07)


def test_rand_applies_at_the_drawn_dose_and_prob_zero_is_identity(mu):
    out = RandSimulateLowDose(G, (2e3, 5e4)).set_random_state(2)(mu)
    assert 2e3 <= out.meta["i0"] <= 5e4
    torch.testing.assert_close(out.as_tensor(), simulate(mu.as_tensor(), G, out.meta["i0"], seed=out.meta["seed"]))
    same = RandSimulateLowDose(G, (2e3, 5e4), prob=0.0)(mu)
    torch.testing.assert_close(same, mu, rtol=0, atol=0)
    d = RandSimulateLowDosed("image", G, (2e3, 5e4)).set_random_state(2)({"image": mu})
    assert d["image"].meta["i0"] == pytest.approx(RandSimulateLowDose(G, (2e3, 5e4)).set_random_state(2)(mu).meta["i0"])


def test_pair_image_equals_the_array_transform_and_label_is_noiseless(mu):
    d = SimulateLowDosePaird("image", G, 1e4, noise_key="noise").set_random_state(7)({"image": mu, "id": "x"})
    ref = SimulateLowDose(G, 1e4).set_random_state(7)(mu)
    torch.testing.assert_close(d["image"], ref, rtol=0, atol=0)
    noiseless = simulate(mu.as_tensor(), G, None)
    torch.testing.assert_close(d["label"].as_tensor(), noiseless)
    torch.testing.assert_close(d["noise"].as_tensor(), d["image"].as_tensor() - noiseless)
    assert d["id"] == "x"
    for key, role in (("image", "input"), ("label", "label"), ("noise", "noise")):
        m = d[key].meta
        assert m["role"] == role and m["input_i0"] == 1e4 and m["label_i0"] == math.inf and m["noiseless_label"]
        assert m["seed"] == ref.meta["seed"] and m["resolution_um"] == 625.0 and m["geometry"] == G.to_dict()
        assert (m["backend"], m["forward_model"]) == (DEFAULT_BACKEND, "strip")
    assert d["label"].meta["i0"] == math.inf


def test_pair_label_at_a_higher_dose_is_less_noisy(mu):
    four = mu.repeat(4, 1, 1)
    d = SimulateLowDosePaird("image", G, 1e4, label_i0=1e5).set_random_state(0)({"image": four})
    clean = simulate(four.as_tensor(), G, None)
    s_in, s_lab = body_std(d["image"].as_tensor() - clean), body_std(d["label"].as_tensor() - clean)
    assert s_in / s_lab == pytest.approx(math.sqrt(10.0), rel=0.15)
    assert d["label"].meta["label_i0"] == 1e5 and not d["label"].meta["noiseless_label"] and "noise" not in d


def test_pair_with_a_dose_range_draws_the_input_dose(mu):
    t = SimulateLowDosePaird("image", G, (1e3, 1e4)).set_random_state(0)
    doses = {t({"image": mu})["image"].meta["input_i0"] for _ in range(3)}
    assert len(doses) == 3 and all(1e3 <= x <= 1e4 for x in doses)


def test_pair_argument_validation():
    with pytest.raises(ValueError, match=r"`keys` must name exactly one image, got \('a', 'b'\)"):
        SimulateLowDosePaird(["a", "b"], G, 1e4)
    with pytest.raises(ValueError, match="`keys`, `label_key` and `noise_key` must differ"):
        SimulateLowDosePaird("image", G, 1e4, noise_key="label")
    with pytest.raises(TypeError, match="`geometry` must be a FanBeamGeometry, got dict"):
        SimulateLowDosePaird("image", G.to_dict(), 1e4)
    with pytest.raises(ValueError, match="`label_i0` .* must be positive"):
        SimulateLowDosePaird("image", G, 1e4, label_i0=-1.0)
