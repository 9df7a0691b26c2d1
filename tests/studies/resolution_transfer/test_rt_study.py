"""The resolution-transfer study's runner: the paper preset's training settings, and the ``smoke`` preset end to
end (every table and figure, finite values, a report that embeds every figure, re-runs that skip finished work
and redo only what was lost, the same bytes when redone)."""

import csv
import json
import math
import re

import pytest

from ldct_scripts.studies import resolution_transfer as rt


def _config(tmp_path, *extra):
    args = rt.build_parser().parse_args(["--results-dir", str(tmp_path), "--preset", "smoke", *extra])
    return rt.resolve_config(args)


def test_paper_preset_trains_the_seeds_fixed_50000_steps(tmp_path, monkeypatch):
    """The seed trains every model for 50,000 steps (Table 2) and early-stops only the retraining."""
    paper = _config(tmp_path, "--preset", "paper")
    assert (paper.iterations, paper.early_stop_patience, paper.val_interval) == (50000, 0, 1000)
    assert paper.finetune_patience == 4  # retraining keeps its early stopping, as the seed's
    study = rt.ResolutionTransferStudy(paper)
    seen = {}

    def fake_training(uid, stage, name, configs, overrides, out_dir, total, val_interval):
        seen.update(overrides, total=total)
        return {"best_val_loss": 0.0, "best_iteration": 0}

    monkeypatch.setattr(study, "data_marker", lambda res: {"digest": "d"})
    monkeypatch.setattr(study, "unit", lambda stage, name, settings, upstream, work, *a, **k: work("u")[0])
    monkeypatch.setattr(study, "_run_training", fake_training)
    study.train_marker(625.0, run=True)
    # the bundle's EarlyStopHandler needs a positive patience: 50 validations without improvement cannot
    # happen in 50 validations (the first sets the best score), so all 50,000 steps run
    assert (seen["num_iterations"], seen["total"], seen["early_stop_patience"]) == (50000, 50000, 50)
    assert seen["residual"] is False  # the seed's U-Net, not the bundle's residual default
    assert _config(tmp_path, "--early-stop-patience", "3").early_stop_patience == 3


TABLES = ["crosstest_psnr", "crosstest_vs_selftest", "seed_table3_comparison", "retrain", "nps_summary", "nps_curves"]


FIGURES = ["examples", "crosstest_res62p5um", "crosstest_res625um", "metrics_vs_training_resolution", "crosstest_heatmap",
           "retrain_curve", "retrain_images", "noise_images", "nps", "nps_2d", "noise_sd_maps"]


def _run(results, *extra):
    args = rt.build_parser().parse_args(["--results-dir", str(results), "--preset", "smoke", *extra])
    return rt.ResolutionTransferStudy(rt.resolve_config(args)).run()


def _numbers(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert rows, path
    values = []
    for row in rows:
        for key, v in row.items():
            try:
                values.append((key, float(v)))
            except (TypeError, ValueError):
                pass  # labels such as the model name
    return rows, values


def test_smoke_preset_end_to_end_and_resume(tmp_path):
    results = tmp_path / "rt"
    # 1. the data stage alone, as an interrupted run would leave it
    outcome = _run(results, "--stages", "data")
    assert outcome == {"data/simulate": "ran"}
    assert (results / "data" / "res62.5um" / "datalist.json").is_file() and not (results / "models").exists()

    # 2. everything: the data are not simulated again
    outcome = _run(results)
    assert outcome["data/simulate"] == "skipped"
    assert all(v == "ran" for k, v in outcome.items() if k != "data/simulate"), outcome
    assert {"train/res62.5um", "train/res625um", "crosstest/tables", "retrain/finetune_25pct", "retrain/tables",
            "noise/tables", "report/report"} <= set(outcome)
    study_log = (results / "logs" / "study.log").read_text()
    assert re.search(r"\[1/\d+ data simulate\] skipped", study_log)
    assert re.search(r"\[\d+/\d+ train res625um\] step 2/2 loss [0-9.]+ \| unit ETA \S+ \| run ETA \S+", study_log)

    for name in TABLES:
        assert (results / "tables" / f"{name}.md").read_text().strip(), name
        rows, values = _numbers(results / "tables" / f"{name}.csv")
        bad = [(k, v) for k, v in values if not math.isfinite(v)]
        assert not bad, (name, bad)
    seed_rows, _ = _numbers(results / "tables" / "seed_table3_comparison.csv")  # four resolutions not trained: empty
    assert sum(r["psnr_mean"] == "" for r in seed_rows) == len(seed_rows) - 4
    psnr_rows, _ = _numbers(results / "tables" / "crosstest_psnr.csv")
    assert len(psnr_rows) == 4 and {(float(r["test_um"]), float(r["model_um"])) for r in psnr_rows} == {
        (62.5, 62.5), (62.5, 625.0), (625.0, 62.5), (625.0, 625.0)}
    vs_self, _ = _numbers(results / "tables" / "crosstest_vs_selftest.csv")
    for r in vs_self:  # the self-test against itself: no residual, SSIM 1
        if r["test_um"] == r["model_um"]:
            assert float(r["residual_variance_mean"]) == 0.0 and float(r["ssim_mean"]) == pytest.approx(1.0)
        else:
            assert float(r["residual_variance_mean"]) > 0.0 and float(r["ssim_mean"]) < 1.0
    retrain_rows, _ = _numbers(results / "tables" / "retrain.csv")
    assert [float(r["fraction"]) for r in retrain_rows] == [0.0, 0.25] and retrain_rows[1]["n_images"] == "2"
    nps_rows, _ = _numbers(results / "tables" / "nps_summary.csv")
    for r in nps_rows:  # the NPS integrates to the variance of the noise ROIs
        assert float(r["nps_integral_cm2"]) == pytest.approx(float(r["noise_std_cm"]) ** 2, rel=1e-9)

    report = (results / "report.md").read_text()
    for name in FIGURES:
        png = results / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"](figures/{name}.png)" in report, name
    assert sorted(p.stem for p in (results / "figures").glob("*.png")) == sorted(FIGURES)
    assert "37.17 ± 1.03" in report and "0.1898" in report and "0.7558" in report  # the seed's numbers beside ours
    config = json.loads((results / "config.json").read_text())
    assert config["config"]["seed"] == 0 and config["provenance"]["packages"]["monai"]
    assert re.search(r"at commit `([0-9a-f]{40}|unknown)`", report)

    # 3. nothing left to do: every unit is skipped and no bundle command runs again
    train_log = (results / "logs" / "train" / "res625um.log").read_text()
    outcome = _run(results)
    assert set(outcome.values()) == {"skipped"}
    assert (results / "logs" / "train" / "res625um.log").read_text() == train_log

    # 4. outputs lost (as after a crash or a manual clean-up): only the units that made them run again
    before = {p: p.read_bytes() for p in [results / "figures" / "nps.png", results / "figures" / "noise_sd_maps.png",
                                          results / "tables" / "nps_summary.csv"]}
    (results / "figures" / "nps.png").unlink()  # an output of noise/tables: that unit is stale
    (results / "state" / "retrain" / "tables.json").unlink()  # a unit whose marker is gone (killed before it finished)
    outcome = _run(results)
    assert sorted(k for k, v in outcome.items() if v == "ran") == ["noise/tables", "retrain/tables"]
    assert {p: p.read_bytes() for p in before} == before  # the same figures and tables, byte for byte
    assert (results / "logs" / "train" / "res625um.log").read_text() == train_log
    assert "[10/11 noise tables] done" in (results / "logs" / "study.log").read_text()
