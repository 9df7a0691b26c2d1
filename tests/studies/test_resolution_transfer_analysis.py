"""The resolution-transfer study's analysis, tables and report text on hand-made arrays and rows: no
subprocesses, no simulation (``ldct_scripts.studies.resolution_transfer.analysis``, ``.tables``, ``.report``,
``.config``'s data files)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from bundle_loading import REPO

from ldct_scripts.bundle_import import load_bundle_module
from ldct_scripts.studies.resolution_transfer import analysis, config, report, tables

M = load_bundle_module(REPO / "bundles" / "unet_ldct", "metrics")  # the study's metrics are the bundle's


def _disc(n=32, value=0.2, noise=0.0, seed=0):
    yy, xx = np.mgrid[:n, :n]
    img = np.where((yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 3) ** 2, value, 0.0)
    return img + np.random.default_rng(seed).normal(0.0, noise, img.shape) if noise else img


def test_compare_is_the_seeds_equations_against_label_and_self_test():
    label, pred = _disc(), _disc(noise=0.01, seed=1)
    s = analysis.compare(pred, label, pred, M)
    assert s["residual_variance"] == 0.0 and s["nrmse_percent"] == 0.0 and s["ssim"] == pytest.approx(1.0)
    mse = float(np.mean((pred - label) ** 2))
    assert s["psnr_db"] == pytest.approx(10 * math.log10(M.DEFAULT_PEAK_CM**2 / mse))
    other = pred + 0.003
    s = analysis.compare(other, label, pred, M)
    assert s["residual_variance"] == pytest.approx(0.0, abs=1e-20)  # a constant offset has no variance
    assert s["nrmse_percent"] == pytest.approx(100 * 0.003 / other.mean())
    row = analysis.cross_row(62.5, 625.0, "p1", label + 0.02, pred, pred, label, M)
    assert row["psnr_input_db"] == pytest.approx(10 * math.log10(M.DEFAULT_PEAK_CM**2 / 0.02**2))
    assert list(row) == ["test_um", "model_um", "id", *analysis.METRICS]


def test_cells_are_mean_and_sample_sd_per_test_set_and_model():
    rows = [{"test_um": t, "model_um": m, "id": str(i), **{k: float(i + (t == m)) for k in analysis.METRICS}}
            for t in (62.5, 625.0) for m in (62.5, 625.0) for i in range(3)]
    cells = analysis.summarize_cells(rows, (62.5, 625.0), M)
    assert [(c["test_um"], c["model_um"]) for c in cells] == [(62.5, 62.5), (62.5, 625.0), (625.0, 62.5), (625.0, 625.0)]
    c = analysis.cell(cells, 62.5, 62.5 + 1e-12)  # found with isclose
    assert c["n"] == 3 and c["psnr_db_mean"] == 2.0 and c["ssim_std"] == pytest.approx(1.0)  # ddof=1 of 1, 2, 3
    assert analysis.cell(cells, 62.5, 625.0)["psnr_db_mean"] == 1.0


def test_seed_comparison_leaves_models_this_run_did_not_train_empty():
    cells = [{"test_um": t, "model_um": m, "psnr_db_mean": 30.0 + m / 1000, "psnr_db_std": 1.0}
             for t in (62.5, 625.0) for m in (62.5, 625.0)]
    comp = analysis.seed_comparison(cells, (62.5, 625.0), config.SEED, config.ALL_RESOLUTIONS)
    assert len(comp) == 12 and comp[0]["seed_psnr_mean"] == 37.17 and comp[6]["seed_psnr_mean"] == 37.06
    trained = [r for r in comp if r["psnr_mean"] is not None]
    assert [(r["test_um"], r["model_um"]) for r in trained] == [(62.5, 62.5), (62.5, 625.0), (625.0, 62.5), (625.0, 625.0)]
    assert analysis.seed_comparison(cells, (125.0,), config.SEED, config.ALL_RESOLUTIONS) == []  # no seed row


def test_noise_sd_map_is_relative_to_the_body_centre():
    n = 32
    variance = np.full((n, n), 4.0)
    variance[:2, :] = 16.0  # twice the SD along one edge of the body
    sd, ratio = analysis.noise_sd_map(variance, np.ones((n, n)))
    assert sd[n // 2, n // 2] == pytest.approx(1.0) and sd[0, 0] == pytest.approx(2.0)
    band = np.ones((n, n), bool)
    band[2:-2, 2:-2] = False  # the outer n/16 = 2 pixels
    expected = np.sqrt(variance)[band].mean() / 2.0
    assert ratio == pytest.approx(expected)
    sd, ratio = analysis.noise_sd_map(variance, np.zeros((n, n)))  # no body: no ratio
    assert math.isnan(ratio) and sd.shape == (n, n)


def test_nps_rows_convert_units():
    nps = SimpleNamespace(n_rois=8, variance=0.0004, integral=0.0004, mean_frequency_mm=2.0, peak_frequency_mm=1.0,
                          nyquist_mm=8.0, frequency_mm=np.array([1.0, 2.0]), nps=np.array([0.1, 0.2]))
    row = analysis.nps_summary_row(62.5, nps, 10, 8, 1.5, mu_water_cm=0.2)
    assert row["noise_std_cm"] == pytest.approx(0.02) and row["noise_std_hu"] == pytest.approx(100.0)
    assert row["mean_frequency_cycles_per_pixel"] == pytest.approx(0.125) and row["pixel_mm"] == 0.0625
    curve = analysis.nps_curve_rows(62.5, nps)
    assert curve[1]["frequency_cycles_per_pixel"] == pytest.approx(0.125)
    assert curve[0]["nps_normalised"] == pytest.approx(0.1 / 0.0004 * 16**2)


def test_spearman():
    assert analysis.spearman([1, 2, 3, 4], [10, 20, 25, 40]) == pytest.approx(1.0)
    assert analysis.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(analysis.spearman([1, 2], [1, 2]))


def test_presets_and_seed_numbers_are_data_files():
    assert config.PRESETS["smoke"]["resolutions"] == (62.5, 625.0) and config.PRESETS["paper"]["threads"] is None
    assert set(config.PRESETS) == {"smoke", "small", "paper"}
    assert config.SEED["table3"][625.0][0] == (37.06, 1.01) and config.SEED["retrain"]["nrmse"] == (0.1898, 0.1263)
    assert config.SEED["retrain_steps"][0.3] == 7000 and config.ALL_RESOLUTIONS == (62.5, 125.0, 250.0, 375.0, 500.0, 625.0)


def test_readings_are_computed_from_the_numbers():
    res = [62.5, 125.0, 250.0, 625.0]
    cells = [{"test_um": t, "model_um": m, "psnr_db_mean": 40.0 - abs(math.log(m / t)), "psnr_input_db_mean": 30.0,
              "residual_variance_mean": abs(math.log(m / t))} for t in res for m in res]
    text = report.crosstest_reading({"cells": cells, "resolutions": res, "report_rows": [62.5]})
    assert "62.5 µm test set: the self-test model changes PSNR by +10.00 dB" in text
    assert "the best model is the 62.5 µm one (the self-test)" in text and "Spearman ρ = +1.00" in text
    assert "(seed: best 250 µm, span 0.44 dB)" in text
    rows = [{"fraction": 0.0, "nrmse_percent_mean": 2.0, "ssim_mean": 0.8, "n_images": 0},
            {"fraction": 0.2, "nrmse_percent_mean": 1.0, "ssim_mean": 0.9, "n_images": 16}]
    text = report.retrain_reading({"rows": rows})
    assert "2 % before → 1 % after retraining on 20 % (-50 %)" in text and "0.1898 → 0.1263 (-33 %)" in text
    assert report.retrain_reading(None) == "" and report.noise_reading({"rows": []}, 128) == ""


def test_retrain_table_text(tmp_path):
    keys = {f"{k}_{s}": 1.0 for k in analysis.RETRAIN_METRICS for s in ("mean", "std")}
    rows = [{"fraction": 0.0, "n_images": 0, "model": "625 µm model (before)", "iterations": None, "best_iteration": None,
             "n": 2, **keys},
            {"fraction": 0.25, "n_images": 2, "model": "retrained, 25 %", "iterations": 2, "best_iteration": 2, "n": 2, **keys}]
    csv_path, md_path = tables.write_retrain_table(tmp_path, rows, 625.0, 62.5)
    assert csv_path.read_text().splitlines()[2].startswith("0.25,2,\"retrained, 25 %\",2,2,2,1.0,")
    md = md_path.read_text()
    assert "| 0 % | 0 | 625 µm model (before) | — | 1.00 ± 1.00 | 1.00e+00 ± 1.00e+00 | 1.000 ± 1.000 |" in md
