"""The clinical preset, the ApodizedRamp kernel family and ScannerProfile (save/load, geometry, errors)."""

import json
import math

import numpy as np
import pytest
import torch

from ldct_sim.fbp import ApodizedRamp, check_filter, fbp, filter_from_json, filter_to_json, ramp_filter
from ldct_sim.geometry import CLINICAL_PRESETS, FanBeamGeometry, get_clinical_preset
from ldct_sim.noise import make_generator
from ldct_sim.profile import ScannerProfile, load_profile, shipped_profiles
from ldct_sim.simulate import LowDoseSimulator


# ---- clinical preset -----------------------------------------------------------------------------
def test_definition_as_preset_numbers():
    p = get_clinical_preset("Definition-AS")
    assert p is CLINICAL_PRESETS["definition_as"]
    assert (p.sod_mm, p.sdd_mm, p.kvp, p.n_views) == (595.0, 1085.6, 100.0, 1152)
    # 736 channels of 0.0011844 rad: 1.2858 mm at the detector, 0.7047 mm at the rotation axis
    assert p.det_pixel_mm == pytest.approx(1.2858, abs=1e-4)
    assert p.det_pixel_mm * p.sod_mm / p.sdd_mm == pytest.approx(595.0 * 0.0011844, rel=1e-4)


@pytest.mark.parametrize("pixel_mm,n", [(0.66, 512), (0.78, 512), (0.7421875, 256)])
def test_clinical_preset_takes_any_image_grid(pixel_mm, n):
    g = get_clinical_preset("definition_as").geometry(pixel_size_mm=pixel_mm, n_pixels=n)
    assert (g.pixel_size_mm, g.n_pixels, g.det_pixel_mm, g.n_views) == (pixel_mm, n, 1.2858, 1152)
    # the detector covers the circle through the image corners
    r = g.fov_radius_mm
    assert g.n_det * g.det_pixel_mm / 2 >= g.sdd_mm * r / math.sqrt(g.sod_mm**2 - r**2) - g.det_pixel_mm


def test_unknown_clinical_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown clinical preset 'aquilion'; expected one of \['definition_as'\]"):
        get_clinical_preset("aquilion")


# ---- kernel family -------------------------------------------------------------------------------
def test_window_values_by_hand():
    k = ApodizedRamp(s_mm2=-2.0, q_mm4=4.0)
    f = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    expect = np.exp(-2.0 * f.numpy() ** 2 - 4.0 * f.numpy() ** 4)
    np.testing.assert_allclose(k.window(f).numpy(), expect, rtol=1e-12)
    # f50 solves ln 0.5 = s f² − q f⁴
    f50 = k.f50_per_mm
    assert float(k.window(f50)) == pytest.approx(0.5, rel=1e-9)
    assert ApodizedRamp(s_mm2=-1.0).f50_per_mm == pytest.approx(math.sqrt(math.log(2.0)))
    assert ApodizedRamp(s_mm2=0.5).f50_per_mm == math.inf
    assert ApodizedRamp().f50_per_mm == math.inf


def test_zero_parameters_are_the_ramp():
    ramp = ramp_filter(256, "ram-lak")
    flat = ramp_filter(256, ApodizedRamp(), sample_mm=0.7)
    torch.testing.assert_close(flat, ramp, rtol=0, atol=0)


def test_window_is_applied_in_cycles_per_mm_at_the_axis():
    """The same kernel gives the same response in cycles/mm for any sample step."""
    k = ApodizedRamp(s_mm2=-3.0, q_mm4=1.0)
    n = 512
    for ds in (0.5, 0.8):
        resp = ramp_filter(n, k, sample_mm=ds)
        ramp = ramp_filter(n, "ram-lak")
        f_mm = torch.fft.fftfreq(n, dtype=torch.float64) / ds
        ok = ramp > 1e-6
        np.testing.assert_allclose((resp[ok] / ramp[ok]).numpy(), k.window(f_mm[ok]).numpy(), rtol=1e-10)


def test_kernel_fbp_equals_ram_lak_at_zero_and_smooths_noise():
    g = FanBeamGeometry(pixel_size_mm=1.0, n_pixels=64, sod_mm=300.0, sdd_mm=600.0, n_views=128)
    gen = make_generator(0)
    noise = torch.randn(g.sinogram_shape, generator=gen, dtype=torch.float64) * 1e-2
    ref = fbp(noise, g, "ram-lak")
    torch.testing.assert_close(fbp(noise, g, ApodizedRamp()), ref, rtol=1e-12, atol=1e-15)
    smooth = fbp(noise, g, ApodizedRamp(s_mm2=-4.0))
    sharp = fbp(noise, g, ApodizedRamp(s_mm2=2.0))
    assert smooth.std() < 0.8 * ref.std() and sharp.std() > 1.2 * ref.std()


def test_kernel_keeps_a_uniform_level():
    """W(0) = 1: a flat sinogram region reconstructs to the same mean with any kernel."""
    from ldct_sim.phantoms import water_disk
    from ldct_sim.simulate import forward_project

    g = FanBeamGeometry(pixel_size_mm=1.0, n_pixels=64, sod_mm=300.0, sdd_mm=600.0, n_views=180)
    mu = (water_disk(64, radius=0.8) / 1000.0 + 1.0).astype(np.float32) * 0.2
    sino = forward_project(mu, g, model="line")
    inner = slice(24, 40)
    a = fbp(sino, g, "ram-lak")[inner, inner].mean()
    b = fbp(sino, g, ApodizedRamp(s_mm2=-3.0, q_mm4=2.0))[inner, inner].mean()
    assert b == pytest.approx(a, rel=2e-3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"q_mm4": -1.0}, r"`q_mm4` must be >= 0"),
        ({"s_mm2": 20.0}, r"`s_mm2` must be in \[-100, 10\]"),
        ({"s_mm2": math.nan}, r"`s_mm2` must be finite"),
    ],
)
def test_kernel_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ApodizedRamp(**kwargs)


def test_filter_json_round_trip_and_errors():
    k = ApodizedRamp(s_mm2=-2.5, q_mm4=3.0)
    assert filter_from_json(json.loads(json.dumps(filter_to_json(k)))) == k
    assert filter_to_json("hann") == "hann" and check_filter("hann") == "hann"
    with pytest.raises(ValueError, match="Unknown filter family 'gauss'"):
        filter_from_json({"family": "gauss", "sigma": 1})
    with pytest.raises(ValueError, match=r"Unknown apodized-ramp parameters \['cutoff'\]"):
        filter_from_json({"family": "apodized-ramp", "cutoff": 1})
    with pytest.raises(ValueError, match="Unknown filter 'hamm'"):
        check_filter("hamm")
    with pytest.raises(ValueError, match="needs `sample_mm`"):
        ramp_filter(64, k)


def test_simulator_accepts_a_kernel_and_records_it():
    g = FanBeamGeometry(pixel_size_mm=1.0, n_pixels=32, sod_mm=200.0, sdd_mm=400.0, n_views=64)
    k = ApodizedRamp(s_mm2=-1.0)
    sim = LowDoseSimulator(g, backend="torch", forward_model="line", filter=k)
    assert sim.config()["filter"] == {"family": "apodized-ramp", "s_mm2": -1.0, "q_mm4": 0.0}
    json.dumps(sim.config())
    out = sim.run(np.full((32, 32), 0.02, np.float32), [1e5], seed=1)
    assert torch.isfinite(out.low_dose[0]).all()


# ---- scanner profile -----------------------------------------------------------------------------
def _profile(**kw):
    return ScannerProfile.from_preset("definition_as", kernel=ApodizedRamp(s_mm2=-2.0, q_mm4=4.0), i0=2.5e5, **kw)


def test_profile_round_trips_through_json(tmp_path):
    p = _profile(name="mine", fit={"residual": [0.1]}, provenance={"git": {"commit": "x"}})
    path = p.save(tmp_path / "sub" / "p.json")
    raw = json.loads(path.read_text())
    assert raw["format"] == "ldct_sim-profile/1" and raw["full_dose_i0"] == pytest.approx(1e6)
    q = ScannerProfile.load(path)
    assert q == p and q.fit == p.fit and q.kernel == p.kernel
    assert load_profile(str(path)) == p
    assert [f.name for f in tmp_path.joinpath("sub").iterdir()] == ["p.json"]  # no temporary left behind


def test_profile_doses_and_geometry():
    p = _profile()
    assert p.full_dose_i0 == pytest.approx(4 * 2.5e5)
    assert p.i0_at(0.25) == pytest.approx(2.5e5)
    g = p.geometry(0.7, 384)
    assert (g.pixel_size_mm, g.n_pixels, g.sod_mm, g.sdd_mm, g.n_views) == (0.7, 384, 595.0, 1085.6, 1152)
    sim = p.simulator(0.7, 384, backend="torch")
    assert sim.filter == p.kernel and sim.geometry == g and sim.forward_model == "strip"


@pytest.mark.parametrize(
    "change,match",
    [
        ({"format": "other/2"}, "unknown profile format 'other/2'"),
        ({"colour": "red"}, r"unknown profile keys \['colour'\]"),
        ({"i0": -1}, "`i0` must be a positive finite number"),
        ({"kernel": "hamm"}, "Unknown filter 'hamm'"),
        ({"sdd_mm": 500.0}, r"`sdd_mm` \(500.0\) must exceed `sod_mm` \(595.0\)"),
    ],
)
def test_profile_rejects_bad_files(tmp_path, change, match):
    d = {**_profile().to_dict(), **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=match):
        ScannerProfile.load(path)


def test_profile_missing_keys_and_not_json(tmp_path):
    d = _profile().to_dict()
    del d["i0"]
    (tmp_path / "a.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"a.json.*lacks \['i0'\]"):
        ScannerProfile.load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match="b.json' is not a JSON file"):
        ScannerProfile.load(tmp_path / "b.json")


def test_load_profile_unknown_name_lists_shipped():
    with pytest.raises(FileNotFoundError, match=r"neither a profile JSON file nor a shipped profile; shipped: \["):
        load_profile("no_such_scanner")


def test_shipped_profiles_load():
    for name in shipped_profiles():
        p = load_profile(name)
        assert p.preset == "definition_as" and isinstance(p.kernel, ApodizedRamp) and p.i0 > 0
