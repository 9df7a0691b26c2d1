"""``scripts/domain_adaptation.py --preset real``: the real-target study's table, reading and guards.

The full run needs ``../shared/real_ldct`` and about 20 CPU minutes; these tests check its pure parts and
its refusals without training.
"""

import argparse
import importlib

import pytest

from bundle_loading import REPO, repo_script


@pytest.fixture(scope="module")
def real():
    repo_script("domain_adaptation", "domain_adaptation.py")  # puts scripts/ first for its sibling modules
    return importlib.import_module("domain_adaptation_real")


def _row(kernel, method, rmse, psnr, cut=""):
    return {"kernel": kernel, "n_pairs": "2", "method": method, "rmse_body_mean": str(rmse), "rmse_body_sd": "1.0",
            "psnr_body_mean": str(psnr), "psnr_body_sd": "0.5", "ssim_body_mean": "0.9", "ssim_body_sd": "",
            "rmse_body_cut_pct": cut}


def test_reading_compares_adaptive_with_plain_cpce_whatever_the_sign(real):
    rows = [_row("B30f", "low-dose input", 30.0, 40.0), _row("B30f", real.REAL_METHODS["baseline"][0], 20.0, 43.0, "33.3"),
            _row("B30f", real.REAL_METHODS["adaptive"][0], 21.0, 42.5, "30.0")]
    (line,) = real.real_reading(rows)
    assert "B30f" in line and "-0.50 dB" in line and "+1.0 HU" in line
    table = real.real_table(rows)
    assert table.splitlines()[2].startswith("| B30f | 2 | low-dose input | 30.0 ± 1.0 |  |")  # input first, no cut
    assert "| 21.0 ± 1.0 | +30 % | 42.50 ± 0.50 | 0.9000 |" in table


def test_results_inside_the_repository_are_refused(real, tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    for name in ("dev_pairs.npz", "normal_dose.npz"):
        (real_dir / name).write_bytes(b"")
    args = argparse.Namespace(real_dir=str(real_dir))
    with pytest.raises(SystemExit, match="outside the repository"):
        real.check_real_args(args, REPO / "results_da_real")
    real.check_real_args(args, tmp_path / "results")  # outside: accepted


def test_unknown_method_and_missing_real_folder_are_named_before_anything_is_written(tmp_path):
    da = repo_script("domain_adaptation", "domain_adaptation.py")
    base = ["--results_dir", str(tmp_path / "r"), "--preset", "real"]
    with pytest.raises(SystemExit, match="magic"):
        da.main(base + ["--methods", "shipped,magic"])
    with pytest.raises(SystemExit, match="dev_pairs.npz"):
        da.main(base + ["--real-dir", str(tmp_path / "nowhere")])
    assert not (tmp_path / "r").exists()
