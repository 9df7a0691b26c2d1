"""``engine.progress``: ETAs from seconds per unit of work, log lines, durations."""

import re
import time

import pytest

from ldct_scripts.studies import engine as sc


def test_progress_eta_uses_seconds_per_unit_of_work(caplog):
    units = [sc.Unit("train", "a", "train", 100.0), sc.Unit("train", "b", "train", 300.0), sc.Unit("infer", "c", "infer", 50.0)]
    p = sc.StudyProgress(units, min_interval_s=0)
    assert p.run_eta() is None  # nothing measured yet
    units[0].state, units[0].seconds = "done", 20.0  # 0.2 s per unit of work
    assert p.unit_eta(units[1]) == pytest.approx(60.0)
    assert p.run_eta() == pytest.approx(60.0 + 10.0)  # the infer kind borrows the overall rate
    with caplog.at_level("INFO", logger="study"):
        p.start("train/b")
        units[1].started = time.time() - 30.0
        p.step("train/b", 50, 100, "loss 0.1", force=True)
    assert p.unit_eta(units[1]) == pytest.approx(30.0, abs=1.0)  # half done after 30 s
    assert re.search(r"\[2/3 train b\] step 50/100 loss 0\.1 \| unit ETA 3\ds \| run ETA", caplog.text)
    p.close()
    assert sc.format_seconds(3725) == "1h02m" and sc.format_seconds(65) == "1m05s" and sc.format_seconds(None) == "?"
