"""The resolution-transfer study's analysis (pure functions) on hand-made arrays and rows: the seed's
equations with the bundle's metrics, cells, the seed comparison, noise maps and NPS rows, Spearman."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from bundle_loading import REPO

from ldct_scripts.bundle_import import load_bundle_module
from ldct_scripts.studies.resolution_transfer import analysis, config

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
