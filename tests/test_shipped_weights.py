"""Each bundle's shipped weights denoise its shipped sample: the README's inference command, run as a user would."""

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
SAMPLES = {"unet_ldct": "abdomen_625um.nii.gz", "cpce_rfm_da": "abdomen_250um.nii.gz"}
MU_WATER = 0.2059


def _load(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64).squeeze()


def _psnr_full_range_hu(img, ref) -> float:
    """PSNR over the full [-1024, 3072] HU range (peak 4096), images given in cm⁻¹."""
    to_hu = lambda m: 1000.0 * (m - MU_WATER) / MU_WATER  # noqa: E731
    return float(10 * np.log10(4096.0**2 / np.mean((to_hu(img) - to_hu(ref)) ** 2)))


@pytest.mark.parametrize("bundle", sorted(SAMPLES))
def test_shipped_weights_raise_psnr_on_the_sample(bundle, tmp_path):
    BUNDLE = BUNDLES / bundle
    assert (BUNDLE / "models" / "model.pt").is_file(), f"{bundle} ships no models/model.pt"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", "--output_dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=BUNDLE, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (out,) = tmp_path.glob("*_denoised.nii.gz")
    noisy = _load(BUNDLE / "sample_data" / "input" / SAMPLES[bundle])
    label = _load(BUNDLE / "sample_data" / "label" / SAMPLES[bundle])
    denoised = _load(out)
    assert denoised.shape == noisy.shape
    before, after = _psnr_full_range_hu(noisy, label), _psnr_full_range_hu(denoised, label)
    print(f"sample PSNR against its label (full HU range, peak 4096): input {before:.2f} dB, denoised {after:.2f} dB")
    assert after > before + 0.5
    # the output stays in cm⁻¹: water-like soft tissue near 0.2 cm⁻¹, air near 0
    assert 0.15 < np.median(denoised[denoised > 0.1]) < 0.25
