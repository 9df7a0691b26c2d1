"""MONAI transforms for LDCT simulation: HU ↔ μ, resampling to a preset's pixel size, low-dose simulation.

Array transforms live in :mod:`ldct_sim.transforms.array`, their dictionary twins (``d`` suffix) and the
pair maker :class:`SimulateLowDosePaird` in :mod:`ldct_sim.transforms.dictionary`.
"""

from .array import (
    INTERP_MODES,
    RESAMPLE_MODES,
    HUToMu,
    MuToHU,
    RandSimulateLowDose,
    ResampleToResolution,
    SimulateLowDose,
    resample_slice,
    simulate_low_dose_pair,
    simulation_meta,
)
from .dictionary import (
    HUToMuD,
    HUToMud,
    HUToMuDict,
    MuToHUD,
    MuToHUd,
    MuToHUDict,
    RandSimulateLowDoseD,
    RandSimulateLowDosed,
    RandSimulateLowDoseDict,
    ResampleToResolutionD,
    ResampleToResolutiond,
    ResampleToResolutionDict,
    SimulateLowDoseD,
    SimulateLowDosed,
    SimulateLowDoseDict,
    SimulateLowDosePairD,
    SimulateLowDosePaird,
    SimulateLowDosePairDict,
)

__all__ = [
    "INTERP_MODES",
    "RESAMPLE_MODES",
    "HUToMu",
    "HUToMuD",
    "HUToMud",
    "HUToMuDict",
    "MuToHU",
    "MuToHUD",
    "MuToHUd",
    "MuToHUDict",
    "RandSimulateLowDose",
    "RandSimulateLowDoseD",
    "RandSimulateLowDosed",
    "RandSimulateLowDoseDict",
    "ResampleToResolution",
    "ResampleToResolutionD",
    "ResampleToResolutiond",
    "ResampleToResolutionDict",
    "SimulateLowDose",
    "SimulateLowDoseD",
    "SimulateLowDosed",
    "SimulateLowDoseDict",
    "SimulateLowDosePairD",
    "SimulateLowDosePaird",
    "SimulateLowDosePairDict",
    "resample_slice",
    "simulate_low_dose_pair",
    "simulation_meta",
]
