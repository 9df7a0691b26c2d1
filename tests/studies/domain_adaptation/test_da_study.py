"""``python -m ldct_scripts.studies.domain_adaptation --preset smoke``: every stage runs, writes finite tables and the
figures; a second run skips the finished work and makes the same bytes; a folder made with other settings, or held
by another run, is refused."""

import csv
import math
import subprocess
import sys

import pytest

from ldct_scripts import REPO
from ldct_scripts.studies.engine import ResultsLock


def _run(results, *extra):
    return subprocess.run([sys.executable, "-m", "ldct_scripts.studies.domain_adaptation", "--results-dir", str(results),
                           "--preset", "smoke", *extra], cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("da_smoke")
    proc = _run(results)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


def test_table_has_every_cell_finite(smoke_run):
    with open(smoke_run / "tables" / "table1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["direction"], r["method"], r["metric"]) for r in rows}
    for direction in ("S→R", "R→S"):
        for method in ("LDCT", "CPCE", "CPCE + adaptive RFM alignment", "U-Net (extra)"):
            for metric in ("psnr_full", "psnr_window", "ssim_full", "ssim_window"):
                assert (direction, method, metric) in cells
    assert all(math.isfinite(float(r["mean"])) and math.isfinite(float(r["std"])) for r in rows)
    assert all(int(r["n_images"]) == 2 for r in rows)
    table = (smoke_run / "tables" / "table1.md").read_text()
    assert "full range [-1024, 3072] HU, peak 4096 HU" in table and "window [-160, 240] HU, peak 400 HU" in table


def test_report_embeds_figures_and_settings(smoke_run):
    report = (smoke_run / "report.md").read_text()
    for direction in ("s2r", "r2s"):
        figure = smoke_run / "figures" / f"examples_{direction}.png"
        assert figure.stat().st_size > 5000
        assert f"(figures/{figure.name})" in report
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert commit and commit in report and '"preset": "smoke"' in report  # the code version that made it
    assert "34.21±0.81" in report and "${" not in report  # the seed's numbers beside ours
    # every training command is in a log, so each number can be reproduced by hand
    log = (smoke_run / "logs" / "train" / "s2r_adaptive.log").read_text()
    assert "configs/train.json" in log and "--rfm_mode adaptive" in log
    # the seed's CPCE, trained and scored as such (the bundle's own default is its residual network)
    assert "--residual false" in log and "--residual false" in (smoke_run / "logs" / "evaluate" / "cpce.log").read_text()


def test_rerun_skips_finished_work_and_remakes_the_same_bytes(smoke_run):
    logs = sorted(p for p in (smoke_run / "logs").rglob("*.log") if p.name != "study.log")
    before = {p: p.stat().st_mtime for p in logs}
    made = {p: p.read_bytes() for p in [*(smoke_run / "figures").glob("*.png"), *(smoke_run / "tables").glob("table1.*")]}
    for path in (smoke_run / "state" / "figures", smoke_run / "state" / "evaluate" / "table1.json"):
        subprocess.run(["rm", "-r", str(path)], check=True)  # redo the derived units from the same models
    proc = _run(smoke_run, "--stages", "data,train,evaluate,figures")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[1/" in proc.stderr and "data domains] skipped" in proc.stderr
    assert {p: p.stat().st_mtime for p in logs if p.parent.name != "evaluate"} == \
        {p: t for p, t in before.items() if p.parent.name != "evaluate"}  # no data or training was run again
    assert {p: p.read_bytes() for p in made} == made  # tables and figures: byte for byte


def test_other_settings_and_a_held_folder_are_refused(smoke_run):
    proc = _run(smoke_run, "--stages", "data,train", "--max-epochs", "2")
    assert proc.returncode == 1 and "max_epochs: 1 -> 2" in proc.stderr
    with ResultsLock(smoke_run):
        proc = _run(smoke_run, "--stages", "report")
    assert proc.returncode == 1 and "another run is using" in proc.stderr


def test_bad_arguments_are_named(tmp_path):
    proc = _run(tmp_path / "r", "--methods", "baseline,cyclegan")
    assert proc.returncode == 2 and "unknown method ['cyclegan']" in proc.stderr and not (tmp_path / "r").exists()
