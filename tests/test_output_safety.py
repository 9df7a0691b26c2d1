"""Bad input never yields bad output from ``python -m ldct_sim`` and the study runners (issue 10).

* ``simulate --input`` on a NIfTI of μ values (cm⁻¹) or of values implausible for CT is refused, naming the
  file, the unit the values look like and the option that fixes it, before anything is written;
  ``--input-unit mu`` reads μ (the same dataset as the HU file), ``--force-unit`` overrides the check.
* ``--out``/``--results-dir`` (``--results_dir`` for the cross-domain study) naming a file: a clear error (exit 2), nothing written.
* The resolution-transfer study's seed comparison leaves cells of models it did not train empty (not
  ``nan``) and says why.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ldct_sim.cli import main as ldct_sim_main
from ldct_sim.io import guess_value_unit

REPO = Path(__file__).resolve().parents[1]
MU_W = 0.2059
TINY = ["--resolutions", "625", "--n-pixels", "32", "--n-views", "48", "--backend", "torch", "--noiseless-label"]


def _volumes(folder: Path) -> dict[str, Path]:
    """A 48² disc of water (2 slices) in μ (cm⁻¹) and in HU, and one of 1e30."""
    yy, xx = np.mgrid[:48, :48]
    mu = np.zeros((48, 48, 2), np.float32)
    mu[(yy - 24) ** 2 + (xx - 24) ** 2 < 20**2] = MU_W
    mu[(yy - 20) ** 2 + (xx - 28) ** 2 < 4**2] = 0.4  # bone
    hu = (mu / MU_W - 1.0) * 1000.0
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, img in (("mu", mu), ("hu", hu), ("huge", np.full_like(mu, 1e30))):
        out[name] = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(img.astype(np.float32), np.diag([0.7, 0.7, 1.0, 1.0])), out[name])
    return out


def test_value_units_are_told_apart():
    rng = np.random.default_rng(0)
    body = np.r_[np.full(500, -1000.0), rng.normal(40, 20, 1000), np.full(50, 1200.0)]  # air, soft tissue, bone in HU
    assert guess_value_unit(body) == "hu"
    assert guess_value_unit(body / 1000 * MU_W + MU_W + rng.normal(0, 0.003, body.size)) == "mu"  # noisy μ, air < 0
    assert guess_value_unit(rng.normal(40, 20, 1000)) == "hu"  # soft tissue only, no air
    assert guess_value_unit(np.zeros(100)) == "hu"  # uniform water in HU (as μ it would be all air)
    assert guess_value_unit(np.r_[body, 1e30]) is None and guess_value_unit(np.r_[body, np.nan]) == "hu"


def test_simulate_refuses_mu_values_read_as_hu_and_reads_them_with_input_unit_mu(tmp_path, capsys):
    vols = _volumes(tmp_path / "in")
    for name, want in (("mu", ["values look like linear attenuation μ in cm⁻¹, not Hounsfield units",
                               "pass --input-unit mu", "--force-unit"]),
                       ("huge", ["values are implausible for CT", "scl_slope", "--force-unit"])):
        out = tmp_path / f"out_{name}"
        assert ldct_sim_main(["simulate", "--input", str(vols[name]), "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {vols[name]}: ") and all(w in err for w in want), err
        assert not out.exists()  # refused before anything was written
    out = tmp_path / "out_hu_as_mu"  # the other way round
    assert ldct_sim_main(["simulate", "--input", str(vols["hu"]), "--input-unit", "mu", "--out", str(out), *TINY]) == 2
    assert "values look like Hounsfield units (HU), not linear attenuation" in capsys.readouterr().err
    assert not out.exists()

    # --input-unit mu reads the μ file into the dataset the HU file gives (noiseless labels: no seed involved)
    assert ldct_sim_main(["simulate", "--input", str(vols["hu"]), "--out", str(tmp_path / "a"), *TINY]) == 0
    assert ldct_sim_main(["simulate", "--input", str(vols["mu"]), "--input-unit", "mu", "--out", str(tmp_path / "b"), *TINY]) == 0
    a = nib.load(tmp_path / "a" / "res625um" / "label" / "hu_0000.nii.gz").get_fdata()
    b = nib.load(tmp_path / "b" / "res625um" / "label" / "mu_0000.nii.gz").get_fdata()
    assert a.max() > 0.15 and np.abs(a - b).max() < 1e-3 * a.max()
    # --force-unit reads the μ file as HU, as asked (nearly air: μ = (0.2 / 1000 + 1) · μ_water)
    assert ldct_sim_main(["simulate", "--input", str(vols["mu"]), "--force-unit", "--out", str(tmp_path / "c"), *TINY]) == 0


def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    # ldct_sim simulate: --out, and a folder under a file
    for out, what in ((afile, "is a file"), (afile / "sub", f"lies under {str(afile)!r}, which is a file")):
        assert ldct_sim_main(["simulate", "--phantoms", "1", "--out", str(out), *TINY]) == 2
        assert f"{str(out)!r} {what}" in capsys.readouterr().err
    # the demo and the resolution-transfer study: argparse errors naming the option
    from ldct_scripts.examples import demo_simulation as demo
    from ldct_scripts.studies import resolution_transfer as rt

    for parse, option in ((lambda a: demo.parse_args(a), "--out"), (lambda a: rt.build_parser().parse_args(a), "--results-dir")):
        with pytest.raises(SystemExit) as exit_:
            parse([option, str(afile)])
        assert exit_.value.code == 2
        assert f"argument {option}: {str(afile)!r} is a file; pass a folder" in capsys.readouterr().err
    # the cross-domain study, as users run it
    r = subprocess.run([sys.executable, "-m", "ldct_scripts.studies.domain_adaptation", "--results-dir", str(afile / "x")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"argument --results-dir: {str(afile / 'x')!r} lies under" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and afile.read_text() == "keep me"


def test_seed_table3_comparison_leaves_models_not_trained_empty(tmp_path):
    from ldct_scripts.studies import resolution_transfer as rt
    from ldct_scripts.studies.resolution_transfer.tables import write_crosstest_tables

    args = rt.build_parser().parse_args(["--results-dir", str(tmp_path / "rt"), "--preset", "smoke"])
    study = rt.ResolutionTransferStudy(rt.resolve_config(args))
    res = study.cfg.resolutions
    assert len(res) < len(rt.ALL_RESOLUTIONS)  # the smoke preset trains a subset
    study.tables.mkdir(parents=True)
    keys = ("psnr_db", "psnr_input_db", "residual_variance", "nrmse_percent", "ssim")
    cells = [{"test_um": t, "model_um": m, "n": 2, **{f"{k}_{s}": 1.0 + i for k in keys for s in ("mean", "std")}}
             for i, (t, m) in enumerate((t, m) for t in res for m in res)]
    write_crosstest_tables(study.tables, cells, res, 0.4118)
    text = (study.tables / "seed_table3_comparison.csv").read_text()
    assert "nan" not in text
    rows = list(csv.DictReader(text.splitlines()))
    trained = [r for r in rows if any(math.isclose(float(r["model_um"]), m) for m in res)]
    not_trained = [r for r in rows if r not in trained]
    assert trained and not_trained
    assert all(r["psnr_mean"] and r["psnr_std"] for r in trained)
    assert all(r["psnr_mean"] == "" and r["psnr_std"] == "" and r["seed_psnr_mean"] for r in not_trained)
    md = (study.tables / "seed_table3_comparison.md").read_text()
    assert "were not trained in this run" in md and "empty in `seed_table3_comparison.csv`" in md and "not run" in md
