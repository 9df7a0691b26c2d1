"""Study-agnostic pieces of the study runners (``scripts/resolution_transfer.py``, and later others).

A study is a list of *units* of work (simulate one dataset, train one model, run one inference, make
one set of tables) grouped in *stages*. This module gives each runner the same machinery:

* :func:`run_logged`: run a command (``python -m ldct_sim simulate``, ``python -m monai.bundle run``)
  in a subprocess, appending its merged output to a log file and handing each line to a callback
  (progress parsing); a failure raises :class:`StudyError` with the log's tail.
* :func:`bundle_command`: the ``python -m monai.bundle run --config_file ... --key value`` argument
  list for a bundle's configs and overrides.
* :class:`UnitState`: resumability. A unit writes ``state/<stage>/<unit>.started.json`` (its settings)
  before it runs and ``.../<unit>.json`` (settings, upstream digests, outputs, seconds) when it has
  finished. A re-run skips units whose marker exists with the same settings, the same upstream digests
  and outputs still on disk; it refuses (with the differences named) to mix units made with other
  settings into one results folder; and it redoes a unit whose upstream changed. A unit killed half-way
  has only a ``started`` marker and is run again (long units resume through their own checkpoints).
* :class:`ResultsLock`: one run per results folder at a time. Children started by :func:`run_logged` die
  with the study (Linux), so a restarted study never races an orphaned training.
* :class:`StudyProgress`: one log line per unit (stage, unit, step, ETA for the unit and the whole
  run) and a tqdm bar over the units on a terminal. The run's ETA comes from seconds per unit of
  estimated work, measured on the units finished so far (per kind of unit when that kind has run).
* Tables: :func:`write_table` (CSV + Markdown), :func:`markdown_table`, :func:`mean_std`.
* :func:`study_provenance`: git commit, package versions, platform, command line.
* :func:`load_module`: import one file of a bundle (e.g. ``scripts/metrics.py``) under a private name,
  so that a study reuses the bundle's code without importing its ``scripts`` package by that name.

Everything here writes files atomically (temporary name, then :func:`os.replace`).
"""

from __future__ import annotations

import argparse
import codecs
import csv
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "StudyError",
    "fingerprint",
    "file_digest",
    "write_json",
    "read_json",
    "write_text",
    "run_logged",
    "bundle_command",
    "UnitState",
    "ResultsLock",
    "Unit",
    "StudyProgress",
    "format_seconds",
    "markdown_table",
    "write_table",
    "mean_std",
    "study_provenance",
    "load_module",
    "setup_logging",
    "output_folder",
]

logger = logging.getLogger("study")


class StudyError(RuntimeError):
    """A study cannot go on: a failed command, a missing prerequisite, or a results folder made with other settings."""


# ---------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------
def output_folder(text: str) -> str:
    """``argparse`` type of an output-folder option (``--results_dir``): the path, if it can be a folder.

    Refuses (``argparse.ArgumentTypeError``, which argparse prints as ``error: argument --results_dir:
    ...``, exit status 2) a path that is a file or lies under one, before anything is written.
    """
    from ldct_sim.io import check_output_folder

    try:
        check_output_folder(text)
    except NotADirectoryError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _jsonable(obj):
    """Plain JSON: tuples to lists, paths to strings, non-finite floats to None."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _jsonable(obj.item())
    return obj


def write_json(path, obj) -> Path:
    """Write strict JSON atomically (non-finite floats become ``null``)."""
    return write_text(path, json.dumps(_jsonable(obj), indent=1, allow_nan=False) + "\n")


def read_json(path):
    """The JSON in ``path``, or ``None`` when it is missing or unreadable (a half-written file counts as missing)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def fingerprint(obj) -> str:
    """16 hex digits of the SHA-256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(_jsonable(obj), sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path, chunk: int = 1 << 20) -> str:
    """16 hex digits of the SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------
# subprocesses
# ---------------------------------------------------------------------------------------------------
def _split_lines(buffer: str) -> tuple[list[str], str]:
    """Complete lines of ``buffer`` (split on ``\\n`` and on the ``\\r`` of progress bars) and the rest."""
    parts = buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return parts[:-1], parts[-1]


def run_logged(
    argv: Sequence[str],
    log_path,
    *,
    cwd=None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 40,
) -> float:
    """Run ``argv``, appending its stdout and stderr (merged) to ``log_path``; returns the seconds it took.

    The log gets a header with the time, folder and command, so a resumed unit's log shows every
    attempt. ``on_line`` is called with each output line (``\\r``-separated progress updates count as
    lines) as it arrives.

    Raises:
        StudyError: the command is not found or exits with a non-zero status; the message holds the
            command, the status, the log's path and its last ``tail_lines`` lines.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(a) for a in argv]
    started = time.time()
    tail: list[str] = []
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} cwd={cwd or os.getcwd()}\n===== $ "
                  + " ".join(_quote(a) for a in argv) + "\n")
        log.flush()
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=dict(env) if env is not None else None, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        except OSError as err:
            raise StudyError(f"could not start {argv[0]!r}: {err}") from err
        buffer = ""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = proc.stdout.fileno()
        try:
            while True:
                data = os.read(fd, 65536)  # returns what the pipe holds: lines reach on_line as they come
                chunk = decoder.decode(data, final=not data)
                if not data:
                    break
                log.write(chunk)
                log.flush()
                lines, buffer = _split_lines(buffer + chunk)
                for line in lines:
                    if line.strip():
                        tail = (tail + [line])[-tail_lines:]
                        if on_line is not None:
                            on_line(line)
            if buffer.strip():
                tail = (tail + [buffer])[-tail_lines:]
                if on_line is not None:
                    on_line(buffer)
            proc.stdout.close()
            rc = proc.wait()
        except BaseException:
            proc.kill()  # our own child: do not leave it running when we are interrupted
            proc.wait()
            raise
        log.write(("\n" if buffer else "") + f"===== exit status {rc} after {time.time() - started:.1f} s\n")
    if rc != 0:
        raise StudyError(
            f"command failed with exit status {rc}: {' '.join(_quote(a) for a in argv)}\n"
            f"log: {log_path}\n--- last lines ---\n" + "\n".join(tail)
        )
    return time.time() - started


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this child when the study dies, even by ``kill -9``: a restarted study must not
    meet an orphaned training still writing into the same folder (``prctl(PR_SET_PDEATHSIG)``)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort; without it a killed study may leave its child running
        pass


class ResultsLock:
    """An exclusive lock on a results folder (``<folder>/.lock``, ``fcntl.flock``), so two runs never write
    into one folder at once. The operating system releases it when the process ends, however it ends.

    Raises:
        StudyError: another process holds the lock (on entering the ``with`` block).
    """

    def __init__(self, folder):
        self.path = Path(folder) / ".lock"
        self._file = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no locking
            return self
        except OSError:
            self._file.close()
            self._file = None
            raise StudyError(f"another run is using {self.path.parent} (it holds {self.path}); wait for it or stop it.") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()
        return self

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None
        return False


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _override_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def bundle_command(config_files: Sequence, overrides: Mapping[str, object], python: str = sys.executable) -> list[str]:
    """``python -m monai.bundle run`` arguments for ``config_files`` (merged in order) and ``overrides``.

    Args:
        config_files: config paths; several are passed as a list, which ``monai.bundle`` merges in order.
        overrides: ``{key: value}`` passed as ``--key value``; ``None`` values are left out, booleans become
            ``true``/``false`` (the U-Net bundle's configs read them with ``to_bool``).

    Example:
        >>> bundle_command(["configs/train.json"], {"resolution": 62.5, "amp": False, "device": None}, python="python")
        ['python', '-m', 'monai.bundle', 'run', '--config_file', 'configs/train.json', '--resolution', '62.5', '--amp', 'false']
    """
    files = [str(f) for f in config_files]
    spec = files[0] if len(files) == 1 else "[" + ",".join(repr(f) for f in files) + "]"
    argv = [python, "-m", "monai.bundle", "run", "--config_file", spec]
    for key, value in overrides.items():
        if value is not None:
            argv += [f"--{key}", _override_value(value)]
    return argv


# ---------------------------------------------------------------------------------------------------
# resumability
# ---------------------------------------------------------------------------------------------------
class UnitState:
    """Markers of one unit of work under ``<state_dir>/<stage>/<name>{.started,}.json``.

    Args:
        state_dir: the study's state folder.
        stage, name: the unit's stage and name (file-name safe).
        settings: everything that determines the unit's outputs (plain JSON).
        upstream: ``{unit id: digest}`` of the units whose outputs it reads.
        strict: refuse a marker made with other settings (default; for costly units such as training).
            ``False`` redoes the unit instead (for cheap derived units such as tables and figures).
    """

    def __init__(self, state_dir, stage: str, name: str, settings: Mapping, upstream: Mapping[str, str] | None = None,
                 strict: bool = True):
        self.strict = strict
        self.stage, self.name = stage, name
        self.id = f"{stage}/{name}"
        self.settings = _jsonable(dict(settings))
        self.upstream = dict(upstream or {})
        folder = Path(state_dir) / stage
        self.done_path = folder / f"{name}.json"
        self.started_path = folder / f"{name}.started.json"

    def _check_settings(self, recorded: Mapping | None, what: str) -> bool:
        """True when ``recorded`` matches; False (not strict) or StudyError (strict) otherwise."""
        if recorded is None or recorded == self.settings:
            return True
        if not self.strict:
            return False
        keys = sorted(set(recorded) | set(self.settings))
        diff = [f"{k}: {recorded.get(k)!r} -> {self.settings.get(k)!r}" for k in keys if recorded.get(k) != self.settings.get(k)]
        raise StudyError(
            f"{self.id}: the results folder holds this unit {what} with other settings ({'; '.join(diff)}). "
            f"Use another --results_dir, or delete {self.done_path.parent} and the unit's outputs to redo it."
        )

    def status(self) -> tuple[str, dict | None]:
        """``("done", marker)``, ``("stale", marker)`` (an upstream unit changed, an output is gone, or, when
        not strict, the settings changed) or ``("todo", None)``.

        Raises:
            StudyError: the unit was started or finished with other settings.
        """
        started = read_json(self.started_path)
        if isinstance(started, dict):
            self._check_settings(started.get("settings"), "started")
        done = read_json(self.done_path)
        if not isinstance(done, dict):
            return "todo", None
        if not self._check_settings(done.get("settings"), "finished"):
            return "stale", done
        if done.get("upstream", {}) != self.upstream:
            return "stale", done
        missing = [p for p in done.get("outputs", {}).get("files", []) if not Path(p).exists()]
        if missing:
            return "stale", done
        return "done", done

    def start(self) -> None:
        """Record that the unit is running (its settings), dropping any previous finished marker."""
        write_json(self.started_path, {"settings": self.settings, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
        if self.done_path.exists():
            self.done_path.unlink()

    def finish(self, outputs: Mapping, seconds: float) -> dict:
        """Write the finished marker. ``outputs`` may list ``files`` (checked on re-runs) and anything else
        the unit's consumers need; the marker's ``digest`` covers settings, upstream and outputs, not times."""
        outputs = _jsonable(dict(outputs))
        marker = {
            "unit": self.id,
            "settings": self.settings,
            "upstream": self.upstream,
            "outputs": outputs,
            "digest": fingerprint({"settings": self.settings, "upstream": self.upstream, "outputs": outputs}),
            "seconds": round(float(seconds), 2),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        write_json(self.done_path, marker)
        if self.started_path.exists():
            self.started_path.unlink()
        return marker


# ---------------------------------------------------------------------------------------------------
# progress and ETA
# ---------------------------------------------------------------------------------------------------
def format_seconds(seconds: float | None) -> str:
    """``"1h02m"``, ``"4m05s"``, ``"12s"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


@dataclass
class Unit:
    """One planned unit of work: ``kind`` groups units of similar cost per ``weight`` (estimated work)."""

    stage: str
    name: str
    kind: str
    weight: float = 1.0
    state: str = "pending"  # pending, running, done, skipped
    seconds: float = 0.0
    fraction: float = 0.0  # progress inside a running unit, 0..1
    started: float = field(default=0.0, repr=False)

    @property
    def id(self) -> str:
        return f"{self.stage}/{self.name}"


class StudyProgress:
    """Progress of a study's units: log lines with stage, unit, step and ETAs, and a tqdm bar on a terminal.

    ETA model: each unit has an estimated ``weight`` (e.g. training iterations × pixels per batch). The
    seconds per weight of a kind of unit come from the units of that kind finished in this run (and the
    running one, from its progress); kinds not seen yet use the rate of all measured units; before
    anything is measured, the ETA is unknown.
    Units skipped as already done count as finished work with no time.

    Args:
        units: the plan.
        log: logger for the lines. Default the ``study`` logger.
        min_interval_s: least seconds between two step lines of one unit. Default 20.
    """

    def __init__(self, units: Iterable[Unit], log: logging.Logger | None = None, min_interval_s: float = 20.0):
        self.units = {u.id: u for u in units}
        self.order = list(self.units)
        self.log = log or logger
        self.min_interval_s = min_interval_s
        self.t0 = time.time()
        self._last_line = 0.0
        self._last_step: dict[str, int] = {}
        self._bar = None
        try:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=len(self.units), desc="study", unit="unit", disable=None, leave=False)
        except ImportError:  # pragma: no cover - tqdm is a dependency of ldct_sim
            self._bar = None

    def add(self, unit: Unit) -> Unit:
        """Add a unit discovered late (e.g. after the data stage counted the images)."""
        if unit.id not in self.units:
            self.units[unit.id] = unit
            self.order.append(unit.id)
            if self._bar is not None:
                self._bar.total = len(self.units)
                self._bar.refresh()
        return self.units[unit.id]

    def _rate(self, kind: str) -> float | None:
        """Seconds per unit of weight: finished units, plus a running unit once 5 % of it is done."""
        now = time.time()
        measured = [(u.kind, u.seconds, u.weight) for u in self.units.values()
                    if u.state == "done" and u.seconds > 0 and u.weight > 0]
        measured += [(u.kind, (now - u.started) / u.fraction, u.weight) for u in self.units.values()
                     if u.state == "running" and u.fraction >= 0.05 and u.weight > 0]
        pool = [m for m in measured if m[0] == kind] or measured
        if not pool:
            return None
        return sum(m[1] for m in pool) / sum(m[2] for m in pool)

    def unit_eta(self, unit: Unit) -> float | None:
        elapsed = time.time() - unit.started if unit.state == "running" else 0.0
        if unit.state == "running" and unit.fraction > 0.02 and elapsed > 1:
            return elapsed * (1 - unit.fraction) / unit.fraction
        rate = self._rate(unit.kind)
        return None if rate is None else max(0.0, rate * unit.weight - elapsed)

    def run_eta(self) -> float | None:
        total = 0.0
        for u in self.units.values():
            if u.state in ("done", "skipped"):
                continue
            eta = self.unit_eta(u)
            if eta is None:
                return None
            total += eta
        return total

    def _position(self, unit: Unit) -> str:
        return f"[{self.order.index(unit.id) + 1}/{len(self.order)} {unit.stage} {unit.name}]"

    def start(self, unit_id: str) -> Unit:
        u = self.units[unit_id]
        u.state, u.started, u.fraction = "running", time.time(), 0.0
        self.log.info("%s start | unit ETA %s | run ETA %s", self._position(u), format_seconds(self.unit_eta(u)),
                      format_seconds(self.run_eta()))
        if self._bar is not None:
            self._bar.set_postfix_str(f"{u.stage} {u.name}")
        return u

    def step(self, unit_id: str, step: int, total: int, extra: str = "", force: bool = False) -> None:
        """Report ``step`` of ``total`` inside a running unit: logged at the first and last step and at most
        every ``min_interval_s`` in between."""
        u = self.units[unit_id]
        u.fraction = min(1.0, max(0.0, step / total)) if total else 0.0
        now = time.time()
        if not force and (self._last_step.get(unit_id) == step
                          or not (step in (1, total) or now - self._last_line >= self.min_interval_s)):
            return
        self._last_line = now
        self._last_step[unit_id] = step
        self.log.info("%s step %d/%d%s | unit ETA %s | run ETA %s", self._position(u), step, total,
                      f" {extra}" if extra else "", format_seconds(self.unit_eta(u)), format_seconds(self.run_eta()))

    def finish(self, unit_id: str, note: str = "") -> None:
        u = self.units[unit_id]
        u.state, u.seconds, u.fraction = "done", time.time() - u.started, 1.0
        self.log.info("%s done in %s%s | run ETA %s | elapsed %s", self._position(u), format_seconds(u.seconds),
                      f" ({note})" if note else "", format_seconds(self.run_eta()), format_seconds(time.time() - self.t0))
        if self._bar is not None:
            self._bar.update(1)

    def skip(self, unit_id: str, reason: str = "done") -> None:
        u = self.units[unit_id]
        u.state = "skipped"
        self.log.info("%s skipped (%s)", self._position(u), reason)
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# ---------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------
def mean_std(mean: float, std: float | None = None, digits: int = 2, scientific: bool = False) -> str:
    """``"37.17 ± 1.03"`` (or ``"1.2e-05 ± 3.4e-06"``); ``"—"`` for a missing mean; no ``±`` part without a finite std."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    fmt = (lambda v: f"{v:.{digits}e}") if scientific else (lambda v: f"{v:.{digits}f}")
    if std is None or not math.isfinite(std):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(std)}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one of ``l``/``r``/``c`` per column (default: first left, rest right)."""
    header = [str(h) for h in header]
    align = align or ("l" + "r" * (len(header) - 1))
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule[a] for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(stem, rows: Sequence[Mapping], columns: Sequence[str], markdown: str | None = None,
                title: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` (``columns`` of ``rows``; floats at full precision) and ``<stem>.md``.

    Args:
        stem: path without extension.
        rows: dicts holding at least ``columns``.
        columns: CSV columns, in order.
        markdown: the Markdown body; default a table of the CSV's columns.
        title: a heading line for the Markdown file.

    Returns:
        The two paths.
    """
    stem = Path(stem)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    csv_path = write_text(stem.with_suffix(".csv"), buf.getvalue())
    body = markdown if markdown is not None else markdown_table(columns, [[_md_value(r.get(k)) for k in columns] for r in rows])
    md_path = write_text(stem.with_suffix(".md"), (f"## {title}\n\n" if title else "") + body)
    return csv_path, md_path


def _csv_value(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return "" if v is None else v


def _md_value(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


# ---------------------------------------------------------------------------------------------------
# provenance, modules, logging
# ---------------------------------------------------------------------------------------------------
def study_provenance(extra_packages: Sequence[str] = ("pytorch-ignite", "matplotlib", "tqdm", "fire")) -> dict:
    """:func:`ldct_sim.provenance.provenance` (git commit, package versions, Python, platform, time) plus
    ``extra_packages`` and the command line."""
    import importlib.metadata

    from ldct_sim.provenance import provenance

    prov = provenance()
    for dist in extra_packages:
        try:
            prov["packages"][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            prov["packages"][dist] = None
    prov["argv"] = [os.path.basename(sys.executable), *sys.argv]
    return prov


def load_module(path, name: str | None = None):
    """Import one Python file as a module under a private name (default: derived from the path).

    Used to reuse a bundle's self-contained modules (e.g. ``bundles/unet_ldct/scripts/metrics.py``)
    without importing the bundle's package as ``scripts``, which would clash with this repository's
    ``scripts/`` folder.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"load_module: {str(path)!r} does not exist.")
    name = name or "_study_" + hashlib.sha1(str(path).encode()).hexdigest()[:10] + "_" + path.stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def setup_logging(log_file=None, level: int = logging.INFO) -> logging.Logger:
    """Log the ``study`` logger to stderr (through tqdm, so bars stay intact) and to ``log_file`` (appended)."""
    log = logging.getLogger("study")
    log.setLevel(level)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")

    class _TqdmHandler(logging.StreamHandler):
        def emit(self, record):
            try:
                from tqdm import tqdm

                tqdm.write(self.format(record), file=sys.stderr)
            except Exception:  # noqa: BLE001 - logging must never raise
                super().emit(record)

    console = _TqdmHandler(sys.stderr)
    console.setFormatter(fmt)
    log.addHandler(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(fh)
    return log
