"""Intensity transforms: Hounsfield units ↔ linear attenuation μ in cm⁻¹ at a monochromatic energy.

Part of :mod:`ldct_sim.transforms.array` (which re-exports both classes); split out to keep modules short.
"""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from ..attenuation import hu_to_mu, mu_to_hu, mu_water

__all__ = ["HUToMu", "MuToHU"]


class HUToMu(Transform):
    """Hounsfield units to linear attenuation in cm⁻¹: ``μ = (HU/1000 + 1)·μ_water(E)``.

    Args:
        energy_kev: monochromatic energy in keV at which μ_water is taken (0.2059 cm⁻¹ at 60 keV).
            Default 60, the resolution-transfer study's.
        min_hu: values below are raised to it before the conversion. Default -1000 (air, μ = 0): scanners
            pad outside their reconstruction circle with -2048 or -3024, which would give negative μ.
            ``None`` keeps values as they are.
        dtype: output dtype. Default ``torch.float32``.

    Input any shape in HU; output the same shape in cm⁻¹, meta kept.

    Raises:
        ValueError: ``energy_kev`` outside [1, 1000] keV.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, energy_kev: float = 60.0, min_hu: float | None = -1000.0, dtype=torch.float32) -> None:
        mu_water(energy_kev)  # validates the energy
        self.energy_kev = float(energy_kev)
        self.min_hu = None if min_hu is None else float(min_hu)
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        img = convert_to_tensor(img, track_meta=get_track_meta())
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float64)
        if self.min_hu is not None:
            t = t.clamp_min(self.min_hu)
        out, *_ = convert_to_dst_type(hu_to_mu(t, self.energy_kev), dst=img, dtype=self.dtype)
        return out


class MuToHU(Transform):
    """Linear attenuation in cm⁻¹ to Hounsfield units, the inverse of :class:`HUToMu` (without its clamp).

    Args:
        energy_kev: energy in keV that μ_water is taken at. Default 60.
        dtype: output dtype. Default ``torch.float32``.

    Raises:
        ValueError: ``energy_kev`` outside [1, 1000] keV.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, energy_kev: float = 60.0, dtype=torch.float32) -> None:
        mu_water(energy_kev)
        self.energy_kev = float(energy_kev)
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        img = convert_to_tensor(img, track_meta=get_track_meta())
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float64)
        out, *_ = convert_to_dst_type(mu_to_hu(t, self.energy_kev), dst=img, dtype=self.dtype)
        return out
