"""HU ↔ linear attenuation (cm⁻¹) and material tables (ldct_sim.attenuation)."""

import numpy as np
import pytest
import torch

from ldct_sim.attenuation import _NIST_ALIASES, hu_to_mu, material_mu, mu_to_hu, mu_water


def test_water_mu_at_60kev_matches_nist():
    # NIST XCOM: water, 60 keV, total with coherent scattering: 0.2059 cm²/g at 1.0 g/cm³
    assert mu_water(60.0) == pytest.approx(0.2059, abs=0.0005)
    assert mu_water() == mu_water(60.0)  # 60 keV is the study's energy and the default


def test_water_mu_falls_with_energy():
    mus = [mu_water(e) for e in (40.0, 60.0, 80.0, 100.0)]
    assert all(a > b for a, b in zip(mus, mus[1:]))
    # NIST XCOM: 0.2683 cm²/g at 40 keV, 0.1837 at 80 keV
    assert mus[0] == pytest.approx(0.2683, abs=0.001)
    assert mus[2] == pytest.approx(0.1837, abs=0.001)


def test_hu_fixed_points():
    mw = mu_water()
    assert hu_to_mu(-1000.0) == pytest.approx(0.0, abs=1e-12)  # air
    assert hu_to_mu(0.0) == pytest.approx(mw)  # water
    assert hu_to_mu(1000.0) == pytest.approx(2.0 * mw)  # the study's μ = HU/1000·μw + μw
    assert mu_to_hu(mw) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("energy_kev", [60.0, 80.0])
@pytest.mark.parametrize("kind", ["numpy", "torch", "scalar"])
def test_hu_round_trip(kind, energy_kev):
    hu = np.linspace(-1000.0, 3000.0, 41)
    x = {"numpy": hu, "torch": torch.from_numpy(hu), "scalar": 123.4}[kind]
    back = mu_to_hu(hu_to_mu(x, energy_kev), energy_kev)
    assert type(back) is type(x) or kind == "scalar"
    np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=1e-9)


@pytest.mark.parametrize("make", [np.asarray, torch.as_tensor])
def test_hu_to_mu_keeps_float32(make):
    x = make(np.zeros((4, 4), np.float32))
    out = hu_to_mu(x)
    assert out.dtype in (np.float32, torch.float32)
    assert float(out.max()) == pytest.approx(mu_water(), rel=1e-6)


def test_every_alias_names_an_xraylib_nist_compound():
    import xraylib

    known = set(xraylib.GetCompoundDataNISTList())
    missing = {alias: name for alias, name in _NIST_ALIASES.items() if name not in known}
    assert not missing
    for alias in _NIST_ALIASES:
        assert material_mu(alias) > 0


def test_tissue_hu_values_are_plausible_at_60kev():
    hu = {m: mu_to_hu(material_mu(m)) for m in ("air", "fat", "muscle", "blood", "bone")}
    assert hu["air"] == pytest.approx(-1000.0, abs=2.0)
    assert -150.0 < hu["fat"] < -50.0
    assert 20.0 < hu["muscle"] < 70.0
    assert 20.0 < hu["blood"] < 80.0
    assert hu["bone"] > 1000.0
    assert material_mu("water") == mu_water()
    assert material_mu("Water") == mu_water()  # aliases are case-insensitive


def test_formula_with_density_matches_nist_water():
    assert material_mu("H2O", 60.0, density_g_cm3=1.0) == pytest.approx(mu_water(60.0), rel=1e-3)
    # linear in density
    assert material_mu("H2O", 60.0, density_g_cm3=2.0) == pytest.approx(2.0 * material_mu("H2O", 60.0, 1.0))


def test_rejects_unknown_material():
    with pytest.raises(ValueError, match="unknown material 'unobtainium'"):
        material_mu("unobtainium")


def test_rejects_formula_without_density():
    with pytest.raises(ValueError, match="`density_g_cm3` is required for the chemical formula 'CaCO3'"):
        material_mu("CaCO3")


@pytest.mark.parametrize("energy", [0.5, 2000.0, float("nan")])
def test_rejects_energy_out_of_range(energy):
    with pytest.raises(ValueError, match=r"energy_kev must be a photon energy in \[1, 1000\] keV"):
        mu_water(energy)
