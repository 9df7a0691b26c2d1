"""Plumbing shared by the study runners (``resolution_transfer.py``, ``domain_adaptation.py``).

Study-agnostic, and lighter than ``study_common`` (which ``resolution_transfer.py`` uses and whose file
writing and provenance these reuse): run a bundle command in a subprocess with its output in a log file and its progress
(step, ETA) on the console; mark finished work so re-runs skip it; write files atomically; import a
bundle's ``scripts`` modules by file path (the bundles and this folder all name their package
``scripts``); record versions. The bundles hold the training and metric logic; these helpers only
orchestrate them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from study_common import study_provenance
from study_common import write_text as atomic_write_text  # atomic: temporary file, then rename

REPO = Path(__file__).resolve().parents[1]

__all__ = ["REPO", "Stage", "Progress", "atomic_write_text", "run_bundle", "load_bundle_module", "versions"]


class Stage:
    """A unit of resumable work: ``<results>/done/<name>.json`` marks it finished, logs go to ``<results>/logs``.

    Args:
        results: the study's results folder.
        name: unique name of the unit (``"train_s2r_adaptive"``).
    """

    def __init__(self, results: str | os.PathLike, name: str):
        self.results, self.name = Path(results), name
        self.marker = self.results / "done" / f"{name}.json"
        self.started = time.time()

    def done(self, settings: dict | None = None) -> bool:
        """Whether the unit finished before (with the same ``settings``, when given: else it is redone)."""
        if not self.marker.is_file():
            return False
        if settings is None:
            return True
        return json.loads(self.marker.read_text()).get("settings") == json.loads(json.dumps(settings, default=str))

    def log_path(self, name: str) -> Path:
        path = self.results / "logs" / self.name.split("_")[0] / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def finish(self, settings: dict | None = None, **info) -> None:
        record = {"settings": settings, "seconds": round(time.time() - self.started, 1), **info}
        atomic_write_text(self.marker, json.dumps(record, indent=1, default=str))


class Progress:
    """A console progress line over units of work with stage, unit, step and ETA (a ``tqdm`` bar).

    ``advance()`` counts a finished unit; ``step(desc, k, n)`` shows the step inside the running one. The
    ETA comes from the mean time per finished unit.
    """

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        # On a terminal the line refreshes every 2 s; in a log file (no TTY) every 60 s, to keep logs short.
        self.bar = tqdm(total=total, desc=desc, unit="unit", dynamic_ncols=True, file=sys.stderr,
                        mininterval=2.0 if sys.stderr.isatty() else 60.0)

    def step(self, desc: str, k: int | None = None, n: int | None = None) -> None:
        self.bar.set_postfix_str(desc if k is None else f"{desc}: step {k}/{n}", refresh=False)
        self.bar.update(0)  # redraws only when mininterval has passed

    def advance(self) -> None:
        self.bar.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def _format_override(value) -> str:
    if isinstance(value, bool):
        return str(value)
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def run_bundle(
    bundle: str | os.PathLike,
    args: list[str],
    log_path: str | os.PathLike,
    desc: str,
    overrides: dict | None = None,
    progress: Progress | None = None,
    total_steps: int | None = None,
    step_pattern: str | None = None,
    raw: bool = False,
) -> None:
    """Run ``python -m monai.bundle <args> --key value ...`` (or ``python <args>`` with ``raw``) in ``bundle``.

    The command line goes first into the log, so every number can be reproduced by hand; stdout and
    stderr follow. With ``progress`` and ``step_pattern`` (a regex whose first group is the step), the
    latest step found in the log is shown while the command runs.

    Raises:
        RuntimeError: the command failed; the message names the log and quotes its end.
    """
    cmd = [sys.executable] + (list(args) if raw else ["-m", "monai.bundle", *args])
    for key, value in (overrides or {}).items():
        cmd += [f"--{key}", _format_override(value)]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} cwd={bundle}\n# " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=str(bundle), stdout=log, stderr=subprocess.STDOUT, env=env)
        pattern = re.compile(step_pattern) if step_pattern else None
        while proc.poll() is None:
            time.sleep(2.0)
            if progress is not None:
                step = _last_step(log_path, pattern) if pattern else None
                progress.step(desc, step, total_steps) if step is not None else progress.step(desc)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{desc}: exit status {proc.returncode}; log {log_path}:\n" + "\n".join(tail))


def _last_step(log_path: Path, pattern: re.Pattern) -> int | None:
    with open(log_path, "rb") as f:
        f.seek(max(0, os.path.getsize(log_path) - 20000))
        text = f.read().decode("utf-8", errors="replace")
    found = pattern.findall(text)
    if not found:
        return None
    last = found[-1]
    return int(last[0] if isinstance(last, tuple) else last)


def load_bundle_module(bundle: str | os.PathLike, module: str):
    """``bundles/<b>/scripts/<module>.py`` imported under a private name (``<b>_scripts.<module>``)."""
    bundle = Path(bundle)
    package = f"{bundle.name}_scripts"
    if package not in sys.modules:
        folder = bundle / "scripts"
        spec = importlib.util.spec_from_file_location(package, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[package] = mod
        spec.loader.exec_module(mod)
    return importlib.import_module(f"{package}.{module}")


def versions() -> dict:
    """Git commit, package versions, Python and platform (``study_common.study_provenance``), for reports."""
    return study_provenance()
