"""Linear attenuation from Hounsfield units and material tables.

Conventions: HU are dimensionless Hounsfield units, linear attenuation ``mu`` is in cm⁻¹,
photon energies are in keV. Mass attenuation data come from xraylib (NIST XCOM-compatible
total cross sections with coherent scattering), so no number in this module is typed by hand.

The HU relation is the one of the resolution-transfer study (Zhang et al., QIMS 2024):

    mu = HU / 1000 * mu_water + mu_water

with ``mu_water`` water's linear attenuation at the chosen (monochromatic) energy;
at 60 keV it is 0.2059 cm⁻¹.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["mu_water", "material_mu", "hu_to_mu", "mu_to_hu"]

# xraylib names its NIST compounds with these spellings (every value is in
# xraylib.GetCompoundDataNISTList(); tests check that); users may pass either.
_NIST_ALIASES = {
    "water": "Water, Liquid",
    "air": "Air, Dry (near sea level)",
    "bone": "Bone, Cortical (ICRP)",
    "cortical bone": "Bone, Cortical (ICRP)",
    "soft tissue": "Tissue, Soft (ICRP)",
    "adipose": "Adipose Tissue (ICRP)",
    "fat": "Adipose Tissue (ICRP)",
    "muscle": "Muscle, Skeletal",
    "blood": "Blood (ICRP)",
    "lung": "Lung (ICRP)",
}


def _check_energy(energy_kev: float) -> float:
    energy_kev = float(energy_kev)
    if not np.isfinite(energy_kev) or not 1.0 <= energy_kev <= 1000.0:
        raise ValueError(f"energy_kev must be a photon energy in [1, 1000] keV, got {energy_kev!r}.")
    return energy_kev


@lru_cache(maxsize=None)
def material_mu(material: str, energy_kev: float = 60.0, density_g_cm3: float | None = None) -> float:
    """Linear attenuation of a material at a monochromatic energy, in cm⁻¹.

    Args:
        material: a NIST compound name known to xraylib (``"Water, Liquid"``,
            ``"Bone, Cortical (ICRP)"``, ...), a short alias (``"water"``, ``"bone"``, ``"fat"``,
            ``"muscle"``, ``"blood"``, ``"lung"``, ``"air"``, ``"soft tissue"``) or a chemical formula
            (``"H2O"``, ``"CaCO3"``), in which case ``density_g_cm3`` is required.
        energy_kev: photon energy in keV, in [1, 1000]. Default 60.
        density_g_cm3: mass density in g/cm³; defaults to the NIST density for NIST compounds.

    Returns:
        mu in cm⁻¹ (mass attenuation coefficient times density).

    Raises:
        ValueError: unknown material, energy out of range, or a formula without a density.
    """
    import xraylib  # deferred: importing xraylib costs ~0.1 s and only this function needs it

    energy_kev = _check_energy(energy_kev)
    name = _NIST_ALIASES.get(material.lower(), material)
    if name in xraylib.GetCompoundDataNISTList():
        data = xraylib.GetCompoundDataNISTByName(name)
        density = data["density"] if density_g_cm3 is None else float(density_g_cm3)
        return float(xraylib.CS_Total_CP(name, energy_kev) * density)
    try:
        mass_att = xraylib.CS_Total_CP(name, energy_kev)
    except ValueError as err:
        raise ValueError(
            f"material_mu: unknown material {material!r}; expected a NIST compound name, "
            f"one of {sorted(_NIST_ALIASES)} or a chemical formula."
        ) from err
    if density_g_cm3 is None:
        raise ValueError(f"material_mu: `density_g_cm3` is required for the chemical formula {material!r}.")
    return float(mass_att * float(density_g_cm3))


def mu_water(energy_kev: float = 60.0) -> float:
    """Linear attenuation of liquid water (1.0 g/cm³) at ``energy_kev``, in cm⁻¹ (0.2059 at 60 keV)."""
    return material_mu("Water, Liquid", energy_kev)


def hu_to_mu(hu, energy_kev: float = 60.0):
    """Convert Hounsfield units to linear attenuation in cm⁻¹: ``mu = (HU/1000 + 1) * mu_water``.

    Args:
        hu: image in HU; numpy array, torch tensor (MetaTensor kept) or scalar.
        energy_kev: monochromatic energy in keV that ``mu_water`` is taken at. Default 60.

    Returns:
        Same type as ``hu``, in cm⁻¹. Air (-1000 HU) maps to 0.
    """
    mw = mu_water(energy_kev)
    return (hu / 1000.0 + 1.0) * mw


def mu_to_hu(mu, energy_kev: float = 60.0):
    """Inverse of :func:`hu_to_mu`: ``HU = 1000 * (mu - mu_water) / mu_water`` with mu in cm⁻¹."""
    mw = mu_water(energy_kev)
    return (mu - mw) * (1000.0 / mw)

