"""The study engine (``ldct_scripts.studies.engine``): resumability markers, the results-folder lock, logged
subprocesses that die with the study, progress and ETA, tables, atomic writes, and the shim the older
runners still import (``scripts/study_common.py``)."""

import json
import math
import re
import subprocess
import sys
import time

import pytest

from ldct_scripts.studies import engine as sc


def test_unit_state_skips_refuses_and_redoes(tmp_path):
    out = tmp_path / "model.pt"
    st = sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 4}, {"data": "abc"})
    assert st.status() == ("todo", None)
    st.start()
    assert st.status() == ("todo", None)  # killed while running: only the started marker exists, so it runs again
    out.write_bytes(b"w")
    marker = st.finish({"files": [str(out)], "model": str(out)}, 1.5)
    assert st.status() == ("done", marker) and not st.started_path.exists()
    again = sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 4}, {"data": "abc"})
    assert again.finish({"files": [str(out)], "model": str(out)}, 9.0)["digest"] == marker["digest"]  # times not hashed
    with pytest.raises(sc.StudyError, match=r"other settings \(iterations: 4 -> 8\)"):
        sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 8}, {"data": "abc"}).status()
    assert sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 4}, {"data": "new"}).status()[0] == "stale"
    # cheap derived units (tables, figures) are redone rather than refused when their settings change
    assert sc.UnitState(tmp_path / "state", "train", "res625um", {"iterations": 8}, {"data": "abc"}, strict=False).status()[0] == "stale"
    out.unlink()
    assert st.status()[0] == "stale"  # an output is gone


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


def test_run_logged_streams_lines_and_reports_failures(tmp_path):
    lines = []
    code = "import sys\nprint('Epoch: 1/2, Iter: 3/5 -- train_loss: 0.25', flush=True)\nsys.stderr.write('bar 1\\rbar 2\\r')\n"
    sc.run_logged([sys.executable, "-c", code], tmp_path / "a.log", on_line=lines.append)
    assert lines == ["Epoch: 1/2, Iter: 3/5 -- train_loss: 0.25", "bar 1", "bar 2"]
    assert "exit status 0" in (tmp_path / "a.log").read_text()
    with pytest.raises(sc.StudyError, match=r"(?s)exit status 3.*a\.log.*went wrong"):
        sc.run_logged([sys.executable, "-c", "print('went wrong'); raise SystemExit(3)"], tmp_path / "a.log")
    assert (tmp_path / "a.log").read_text().count("===== $") == 2  # one header per attempt: the log is appended to


def test_one_run_per_results_folder_and_children_die_with_the_study(tmp_path):
    with sc.ResultsLock(tmp_path):
        with pytest.raises(sc.StudyError, match="another run is using"):
            with sc.ResultsLock(tmp_path):
                pass
    with sc.ResultsLock(tmp_path):  # released
        pass
    if not sys.platform.startswith("linux"):
        return
    import os
    import signal
    import subprocess

    # a "study" that runs a long child through run_logged, then is killed with SIGKILL: the child must go too
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    study = ("from ldct_scripts.studies import engine as sc; import sys; "
             f"sc.run_logged([sys.executable, '-c', {child!r}], {str(tmp_path / 'c.log')!r})")
    proc = subprocess.Popen([sys.executable, "-c", study])
    deadline = time.time() + 60
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while True:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break  # gone
        try:  # a zombie waiting for init counts as gone
            if open(f"/proc/{child_pid}/stat").read().split(")")[-1].split()[0] == "Z":
                break
        except OSError:
            break
        assert time.time() < deadline, "the child outlived the killed study"
        time.sleep(0.1)


def test_bundle_command_and_tables(tmp_path):
    argv = sc.bundle_command(["a/train.json", "a/finetune.json"], {"resolution": 62.5, "amp": False, "device": None}, python="py")
    assert argv == ["py", "-m", "monai.bundle", "run", "--config_file", "['a/train.json','a/finetune.json']",
                    "--resolution", "62.5", "--amp", "false"]
    csv_path, md_path = sc.write_table(tmp_path / "t", [{"a": 1.5, "b": math.nan, "c": "x"}], ["a", "b"], title="T")
    assert csv_path.read_text() == "a,b\n1.5,nan\n"
    assert md_path.read_text() == "## T\n\n| a | b |\n|---|---:|\n| 1.5 | nan |\n"
    assert sc.mean_std(37.171, 1.034) == "37.17 ± 1.03" and sc.mean_std(1.5e-6, math.nan, scientific=True) == "1.50e-06"


def test_write_json_is_strict_and_atomic_and_read_json_tolerates_half_files(tmp_path):
    import numpy as np

    path = sc.write_json(tmp_path / "a" / "b.json", {"x": (1, 2), "nan": math.nan, "np": np.float32(0.5), "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": [1, 2], "nan": None, "np": 0.5, "p": str(tmp_path)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.json"]  # no temporary file left
    (tmp_path / "half.json").write_text('{"x": ')
    assert sc.read_json(tmp_path / "half.json") is None and sc.read_json(tmp_path / "none.json") is None
    assert sc.fingerprint({"b": 1, "a": (1,)}) == sc.fingerprint({"a": [1], "b": 1})


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    from ldct_scripts.files import atomic_path, atomic_write

    target = atomic_write(tmp_path / "t.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]
    assert atomic_write(target, b"new").read_bytes() == b"new"


def test_the_lock_is_held_by_another_process(tmp_path):
    holder = ("from ldct_scripts.studies import engine as sc; import sys, time\n"
              f"with sc.ResultsLock({str(tmp_path)!r}):\n    print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(sc.StudyError, match=f"another run is using {re.escape(str(tmp_path))}"):
            with sc.ResultsLock(tmp_path):
                pass
    finally:
        proc.stdin.close()
        proc.wait()
    with sc.ResultsLock(tmp_path):  # released when the holder ended
        pass


def test_study_common_shim_re_exports_the_engine():
    """``bench_real.py``, ``study_tools.py`` and ``domain_adaptation.py`` still import ``study_common`` by file."""
    import ldct_scripts.study_common as shim

    assert shim.UnitState is sc.UnitState and shim.write_text is sc.write_text and set(sc.__all__) <= set(shim.__all__)
