"""ldct_sim: low-dose CT simulation for denoising research.

HU → linear attenuation (cm⁻¹) at a monochromatic energy → fan-beam projection (ASTRA, PyTorch or
tomosipo) → Poisson + electronic noise on the transmission counts → fan-beam FBP, with the six
scanner systems of Zhang et al. (QIMS 2024) as presets, MONAI transforms and a dataset builder.
"""

from .attenuation import hu_to_mu, material_mu, mu_to_hu, mu_water
from .fbp import FILTERS, ApodizedRamp, fbp
from .dataset import DatasetConfig, build_dataset
from .geometry import (
    CLINICAL_PRESETS,
    DEFAULT_N_VIEWS,
    PAPER_PRESETS,
    ClinicalPreset,
    FanBeamGeometry,
    ScannerPreset,
    get_clinical_preset,
    get_preset,
)
from .io import CTReadError, find_ct, iter_ct_slices
from .profile import ScannerProfile, load_profile
from .projectors import BACKENDS, available_backends, get_projector
from .simulate import LowDoseSimulator, forward_project, simulate

__version__ = "0.1.0"

__all__ = [
    "ApodizedRamp",
    "BACKENDS",
    "CLINICAL_PRESETS",
    "ClinicalPreset",
    "ScannerProfile",
    "get_clinical_preset",
    "load_profile",
    "CTReadError",
    "DatasetConfig",
    "DEFAULT_N_VIEWS",
    "FILTERS",
    "FanBeamGeometry",
    "LowDoseSimulator",
    "PAPER_PRESETS",
    "ScannerPreset",
    "available_backends",
    "build_dataset",
    "fbp",
    "find_ct",
    "forward_project",
    "get_preset",
    "get_projector",
    "hu_to_mu",
    "iter_ct_slices",
    "material_mu",
    "mu_to_hu",
    "mu_water",
    "simulate",
    "__version__",
]
