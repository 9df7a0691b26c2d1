"""``engine.runner``: logged subprocesses (lines streamed, failures with the log's tail, children that die
with the study) and the ``monai.bundle run`` argument list."""

import os
import signal
import subprocess
import sys
import time

import pytest

from ldct_scripts.studies import engine as sc


def test_run_logged_streams_lines_and_reports_failures(tmp_path):
    lines = []
    code = "import sys\nprint('Epoch: 1/2, Iter: 3/5 -- train_loss: 0.25', flush=True)\nsys.stderr.write('bar 1\\rbar 2\\r')\n"
    sc.run_logged([sys.executable, "-c", code], tmp_path / "a.log", on_line=lines.append)
    assert lines == ["Epoch: 1/2, Iter: 3/5 -- train_loss: 0.25", "bar 1", "bar 2"]
    assert "exit status 0" in (tmp_path / "a.log").read_text()
    with pytest.raises(sc.StudyError, match=r"(?s)exit status 3.*a\.log.*went wrong"):
        sc.run_logged([sys.executable, "-c", "print('went wrong'); raise SystemExit(3)"], tmp_path / "a.log")
    assert (tmp_path / "a.log").read_text().count("===== $") == 2  # one header per attempt: the log is appended to


def test_children_die_with_the_study(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
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


def test_bundle_command():
    argv = sc.bundle_command(["a/train.json", "a/finetune.json"], {"resolution": 62.5, "amp": False, "device": None}, python="py")
    assert argv == ["py", "-m", "monai.bundle", "run", "--config_file", "['a/train.json','a/finetune.json']",
                    "--resolution", "62.5", "--amp", "false"]


class _Study:
    def __init__(self, root, raises=None):
        self.root, self.raises = root, raises

    def run(self):
        if self.raises is not None:
            raise self.raises
        (self.root / "report.md").write_text("# r\n")


def test_run_study_maps_outcomes_to_exit_statuses_and_restores_sigterm(tmp_path, caplog):
    before = signal.getsignal(signal.SIGTERM)
    with caplog.at_level("INFO", logger="study"):
        assert sc.run_study(_Study(tmp_path)) == 0
    assert "report at" in caplog.text
    assert sc.run_study(_Study(tmp_path, sc.StudyError("unit x failed"))) == 1
    assert "unit x failed" in caplog.text and "finished units are kept" in caplog.text
    assert sc.run_study(_Study(tmp_path, KeyboardInterrupt())) == 130
    assert signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(ValueError):  # anything else is a bug: it propagates
        sc.run_study(_Study(tmp_path, ValueError("bug")))


def test_study_main_reads_kebab_and_snake_options_and_exits_2_on_a_rejected_config(tmp_path, capsys):
    import argparse

    def build_parser():
        parser = argparse.ArgumentParser(prog="study")
        parser.add_argument("--results-dir", required=True)
        return parser

    def resolve(args):
        if args.results_dir == "bad":
            raise ValueError("results folder is inside the repository")
        return tmp_path / args.results_dir

    def make_study(root):
        root.mkdir()
        return _Study(root)

    assert sc.study_main(build_parser, resolve, make_study, ["--results-dir", "a"]) == 0
    assert (tmp_path / "a" / "report.md").is_file()
    assert sc.study_main(build_parser, resolve, make_study, ["--results_dir", "b"]) == 0  # the old spelling
    with pytest.raises(SystemExit) as exit_info:
        sc.study_main(build_parser, resolve, make_study, ["--results-dir", "bad"])
    assert exit_info.value.code == 2
    assert "inside the repository" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
