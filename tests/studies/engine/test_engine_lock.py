"""``engine.lock``: one run per results folder (``filelock``), in this process and from another."""

import re
import subprocess
import sys

import pytest

from ldct_scripts.studies import engine as sc


def test_one_run_per_results_folder(tmp_path):
    with sc.ResultsLock(tmp_path):
        with pytest.raises(sc.StudyError, match="another run is using"):
            with sc.ResultsLock(tmp_path):
                pass
    with sc.ResultsLock(tmp_path):  # released
        pass


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
