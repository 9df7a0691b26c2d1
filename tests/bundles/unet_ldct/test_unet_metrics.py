"""Metrics of the U-Net bundle (bundles/unet_ldct/scripts/metrics.py) against hand computations."""

import math

import numpy as np
import pytest
import torch

from bundle_loading import bundle_scripts

M = bundle_scripts("unet_ldct").metrics


def test_psnr_by_hand():
    ref = np.array([[0.0, 1.0], [2.0, 1.0]])
    pred = ref + 0.1  # MSE = 0.01
    assert M.psnr(pred, ref, 1.0) == pytest.approx(20.0)
    assert M.psnr(pred, ref, "reference_max") == pytest.approx(10 * math.log10(4 / 0.01))  # MAX = 2
    assert M.psnr(pred, ref, "reference_range") == pytest.approx(10 * math.log10(4 / 0.01))  # 2 - 0
    assert M.psnr(ref, ref, 1.0) == math.inf


def test_default_psnr_peak_is_a_fixed_two_mu_water_that_label_noise_cannot_move():
    assert M.DEFAULT_PEAK_CM == pytest.approx(2 * 0.2059)  # cm^-1: +1000 HU at 60 keV
    rng = np.random.default_rng(5)
    label = np.full((16, 16), 0.2059)  # water
    label[4:8, 4:8] = 0.30  # a brighter insert; the label's maximum (0.30) is not the peak
    pred = label + 0.01  # MSE = 1e-4
    assert M.psnr(pred, label) == pytest.approx(10 * math.log10(0.4118**2 / 1e-4))  # = 32.293 dB by hand
    noisy = label + rng.normal(0, 0.02, label.shape)  # a noisier label: its maximum grows...
    assert noisy.max() > label.max() + 0.02
    mse_noisy = np.mean((pred - noisy) ** 2)
    # ...but the peak does not; PSNR changes only through the MSE
    assert M.image_metrics(pred, noisy)["data_range"] == M.image_metrics(pred, label)["data_range"] == 0.4118
    assert M.psnr(pred, noisy) == pytest.approx(10 * math.log10(0.4118**2 / mse_noisy))
    assert M.resolve_data_range(noisy) == M.resolve_data_range(label) == M.DEFAULT_PEAK_CM
    # the old convention, kept only on request, moves with the noise
    assert M.resolve_data_range(noisy, "reference_max") == pytest.approx(noisy.max()) != pytest.approx(label.max())


def test_psnr_is_against_the_label_and_the_rest_against_the_self_test():
    """The seed's equations 4-6: PSNR (and RMSE) against the label, NRMSE, SSIM and residual variance against
    the self-test output. Here the cross-test equals the self-test output, which differs from the label."""
    label = np.full((16, 16), 0.20)
    self_test = label + np.where(np.indices((16, 16)).sum(0) % 2, 0.004, -0.004)  # MSE vs label 1.6e-5
    m = M.image_metrics(self_test, self_test, ssim_window="global", label=label)
    assert m["psnr_db"] == pytest.approx(10 * math.log10(0.4118**2 / 1.6e-5))
    assert m["rmse"] == pytest.approx(0.004)
    assert (m["nrmse_percent"], m["residual_variance"], m["ssim"]) == (0.0, 0.0, pytest.approx(1.0))
    same = M.image_metrics(self_test, label)  # no label given: the reference is the label
    assert same["psnr_db"] == pytest.approx(m["psnr_db"]) and same["nrmse_percent"] == pytest.approx(100 * 0.004 / 0.2)


def test_metric_handlers_score_psnr_against_the_label_with_a_reference_model(tmp_path):
    """evaluate.json with --reference_ckpt: the old writer scored every metric against the reference (PSNR = inf
    for a model compared with itself); PSNR and RMSE use the label. The per-image values pass through MONAI's
    metric details (IgniteMetricHandler, save_details=True) into the full-precision table."""
    import json

    from ignite.engine import Engine
    from monai.handlers import IgniteMetricHandler, from_engine

    handlers = bundle_scripts("unet_ldct").handlers
    label = torch.full((1, 16, 16), 0.20, dtype=torch.float64)
    pred = label + 0.01  # MSE vs label 1e-4
    out = {"pred": pred, "label": label, "reference": pred.clone()}
    engine = Engine(lambda e, b: [out])
    for name in M.METRIC_NAMES:
        y = "label" if name in ("psnr_db", "rmse", "data_range") else "reference"
        IgniteMetricHandler(M.ImageMetric(name), output_transform=from_engine(["pred", y])).attach(engine, name)
    w = handlers.MetricTableWriter(str(tmp_path), info={"reference": "reference", "psnr_reference": "label"}, name="t")
    w.attach(engine)
    engine.run([[{"id": "a"}]], max_epochs=1)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    row = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert row["id"] == "a" and float(row["psnr_db"]) == pytest.approx(10 * math.log10(0.4118**2 / 1e-4))
    assert float(row["rmse"]) == pytest.approx(0.01) and float(row["nrmse_percent"]) == 0.0
    assert float(row["residual_variance"]) == 0.0 and float(row["data_range"]) == 0.4118
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["reference"], summary["psnr_reference"], summary["metrics"]["psnr_db"]["n"]) == ("reference", "label", 1)
    with pytest.raises(ValueError, match="must be one of"):
        M.ImageMetric("psnr")


def test_table_writer_names_the_missing_metric_details(tmp_path):
    from ignite.engine import Engine

    engine = Engine(lambda e, b: b)
    bundle_scripts("unet_ldct").handlers.MetricTableWriter(str(tmp_path)).attach(engine)
    with pytest.raises(KeyError, match="lacks .*'psnr_db'.*save_details=True"):
        engine.run([{"id": "a"}], max_epochs=1)
    assert not any(tmp_path.iterdir())  # nothing written


def test_nrmse_is_normalised_by_the_predicted_mean():
    pred, ref = np.array([[1.0, 3.0]]), np.array([[1.0, 1.0]])
    # MSE = (0 + 4) / 2 = 2, mean(pred) = 2 -> 100 * sqrt(2) / 2
    assert M.nrmse(pred, ref) == pytest.approx(100 * math.sqrt(2) / 2)
    assert M.nrmse(ref, pred) == pytest.approx(100 * math.sqrt(2) / 1)  # normalised by the other mean


def test_residual_variance_by_hand():
    pred, ref = np.array([[1.0, 3.0, 5.0, 7.0]]), np.zeros((1, 4))
    assert M.residual_variance(pred, ref) == pytest.approx(5.0)  # population variance of 1, 3, 5, 7
    assert M.residual_variance(ref + 0.3, ref) == pytest.approx(0.0)  # a constant offset has no variance


def test_global_ssim_is_equation_6():
    rng = np.random.default_rng(0)
    ref = rng.random((16, 16))
    pred = 0.8 * ref + 0.1 * rng.random((16, 16))
    L = 2.0
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    mx, my = pred.mean(), ref.mean()
    vx, vy = pred.var(), ref.var()
    cov = ((pred - mx) * (ref - my)).mean()
    expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert M.ssim(pred, ref, L, window="global") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("window", ["gaussian", "uniform", "global"])
def test_ssim_of_constant_images_is_the_luminance_term(window):
    a, b, L = 0.20, 0.25, 0.5
    c1 = (0.01 * L) ** 2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)  # no contrast or structure: sigma = 0
    got = M.ssim(np.full((24, 24), a), np.full((24, 24), b), L, window=window)
    assert got == pytest.approx(expected, rel=1e-5)
    assert M.ssim(np.full((24, 24), a), np.full((24, 24), a), L, window=window) == pytest.approx(1.0, rel=1e-6)


def test_uniform_window_ssim_by_hand():
    rng = np.random.default_rng(1)
    ref, pred = rng.random((12, 12)), rng.random((12, 12))
    L, k = 1.0, 11
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    values = []
    for i in range(12 - k + 1):  # 2 x 2 valid windows of 11 x 11
        for j in range(12 - k + 1):
            x, y = pred[i : i + k, j : j + k], ref[i : i + k, j : j + k]
            cov = (x * y).mean() - x.mean() * y.mean()
            values.append(
                (2 * x.mean() * y.mean() + c1) * (2 * cov + c2) / ((x.mean() ** 2 + y.mean() ** 2 + c1) * (x.var() + y.var() + c2))
            )
    assert M.ssim(pred, ref, L, window="uniform") == pytest.approx(np.mean(values), rel=1e-5)


def test_image_metrics_accepts_numpy_torch_and_channel_dims():
    rng = np.random.default_rng(2)
    ref = rng.random((32, 32)).astype(np.float32) * 0.3
    pred = ref + rng.normal(0, 0.01, ref.shape).astype(np.float32)
    a = M.image_metrics(pred, ref)
    b = M.image_metrics(torch.from_numpy(pred)[None], torch.from_numpy(ref)[None])
    assert list(a) == list(M.METRIC_NAMES)
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-6)
    assert a["data_range"] == M.DEFAULT_PEAK_CM  # the fixed peak, not the label's maximum
    assert a["rmse"] == pytest.approx(math.sqrt(np.mean((pred.astype(np.float64) - ref) ** 2)), rel=1e-9)


def test_summary_is_mean_and_sample_std():
    rows = [{"psnr_db": 30.0}, {"psnr_db": 32.0}, {"psnr_db": 34.0}]
    s = M.summarize(rows, ["psnr_db"])["psnr_db"]
    assert (s["mean"], s["std"], s["n"]) == (32.0, pytest.approx(2.0), 3)
    assert math.isnan(M.summarize(rows[:1], ["psnr_db"])["psnr_db"]["std"])


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 2\) and \(2, 3\)"):
        M.psnr(np.zeros((2, 2)), np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="`window` must be one of"):
        M.ssim(np.zeros((16, 16)), np.zeros((16, 16)), 1.0, window="box")
    with pytest.raises(ValueError, match="must be a number or one of"):
        M.psnr(np.ones((2, 2)), np.ones((2, 2)), "max")
    with pytest.raises(ValueError, match="data range must be positive"):
        M.psnr(np.zeros((2, 2)), np.zeros((2, 2)), "reference_max")
    with pytest.raises(ValueError, match="zero mean"):
        M.nrmse(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="smaller than the 11-pixel window"):
        M.ssim(np.ones((8, 8)), np.ones((8, 8)), 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        M.mse(np.array([np.nan]), np.array([0.0]))


def test_windowed_ssim_agrees_with_monai_ssimmetric():
    from monai.metrics import SSIMMetric

    rng = np.random.default_rng(3)
    ref = rng.random((40, 40))
    pred = np.clip(ref + rng.normal(0, 0.1, ref.shape), 0, 1)
    monai_value = SSIMMetric(spatial_dims=2, data_range=1.0)(
        torch.tensor(pred, dtype=torch.float32)[None, None], torch.tensor(ref, dtype=torch.float32)[None, None]
    )
    assert M.ssim(pred, ref, 1.0) == pytest.approx(float(monai_value), abs=1e-5)
