"""The resolution-transfer report's readings, computed from the numbers of a run."""

import math

from ldct_scripts.studies.resolution_transfer import report


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
