"""The real-target study's NIfTI copies (``real_data``): one patient's real pairs as a labelled dataset in cm⁻¹, and
a simulated dataset's pairs in HU for ``bench_real``; unit conversions against hand values."""

import json

import numpy as np
import pytest

from ldct_scripts.studies.domain_adaptation.real_data import write_real_source, write_simulated_test
from ldct_sim.attenuation import mu_water

nib = pytest.importorskip("nibabel")


def _shared(tmp_path, patients):
    real = tmp_path / "real"
    real.mkdir()
    n = len(patients)
    qd = np.full((n, 8, 8), 40.0, np.float32)
    qd[:, 0, 0] = -2000.0  # below air: raised to -1000 HU, 0 cm⁻¹
    fd = np.zeros((n, 8, 8), np.float32)
    np.savez(real / "dev_pairs.npz", quarter_dose_hu=qd, full_dose_hu=fd, id=np.array([f"{p}_{i}" for i, p in enumerate(patients)]))
    recs = [{"id": f"{p}_{i}", "patient": p, "kernel": "B30f (smooth)" if i % 4 else "D45f (sharp)", "pixel_spacing_mm": 0.75}
            for i, p in enumerate(patients)]
    (real / "dev_pairs.json").write_text(json.dumps(recs))
    return real


def test_real_source_keeps_one_patient_and_kernel_and_converts_hu_to_mu(tmp_path):
    real = _shared(tmp_path, ["L506"] * 8 + ["L291"])  # L506: pairs 1-3 and 5-7 are B30f (0 and 4 are D45f)
    path = write_real_source(real, tmp_path / "src", "L506", n_validation=2)
    d = json.loads(path.read_text())
    ids = sorted(it["image"] for split in d.values() for it in split)
    assert ids == sorted(f"input/L506_{i}.nii.gz" for i in (1, 2, 3, 5, 6, 7)) and len(d["validation"]) == 2
    img = nib.load(str(tmp_path / "src" / d["training"][0]["image"]))
    mu = np.asarray(img.dataobj)
    w = mu_water(60.0)
    assert mu[0, 0] == 0.0 and mu[1, 1] == pytest.approx(1.04 * w, rel=1e-6)  # -2000 -> air; 40 HU -> 1.04 mu_water
    assert np.linalg.norm(img.affine[:3, 0]) == pytest.approx(0.75)
    lab = np.asarray(nib.load(str(tmp_path / "src" / d["training"][0]["label"])).dataobj)
    assert np.allclose(lab, w)  # full dose 0 HU = water
    with pytest.raises(ValueError, match="0 B30f pair"):
        write_real_source(real, tmp_path / "none", "L291")


def test_simulated_test_writes_every_split_in_hu(tmp_path):
    src = tmp_path / "sim"
    w = mu_water(60.0)
    entries = {}
    for split, name in (("training", "a"), ("validation", "b")):
        for role, value in (("input", 1.1 * w), ("label", w)):
            (src / role).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.full((4, 4), value, np.float32), np.diag([0.7, 0.7, 1.0, 1.0])), str(src / role / f"{name}.nii.gz"))
        entries[split] = [{"image": f"input/{name}.nii.gz", "label": f"label/{name}.nii.gz"}]
    (src / "datalist.json").write_text(json.dumps(entries))
    assert write_simulated_test(src, tmp_path / "test") == ["a.nii.gz", "b.nii.gz"]
    low = np.asarray(nib.load(str(tmp_path / "test" / "low_dose" / "b.nii.gz")).dataobj)
    full = np.asarray(nib.load(str(tmp_path / "test" / "full_dose" / "a.nii.gz")).dataobj)
    assert np.allclose(low, 100.0, atol=1e-3) and np.allclose(full, 0.0, atol=1e-3)  # 1.1 mu_water = +100 HU
