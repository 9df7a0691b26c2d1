"""Progress of a study: :class:`Unit` (one planned unit), :class:`StudyProgress` (log lines, ETAs, a tqdm bar)
and :func:`setup_logging` (the ``study`` logger to the console and a file)."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["format_seconds", "Unit", "StudyProgress", "setup_logging"]

logger = logging.getLogger("study")


def format_seconds(seconds: float | None) -> str:
    """``"1h02m"``, ``"4m05s"``, ``"12s"``; ``"?"`` when unknown.

    Args:
        seconds: a duration in seconds, or ``None``.
    """
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
        """Add a unit discovered late (e.g. after the data stage counted the images).

        Args:
            unit: the unit; one with a known id is not added twice.
        """
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
        """Seconds left for ``unit`` (from its own progress once 2 % is done, else the rate of its kind); ``None``
        before anything is measured.

        Args:
            unit: a unit of the plan.
        """
        elapsed = time.time() - unit.started if unit.state == "running" else 0.0
        if unit.state == "running" and unit.fraction > 0.02 and elapsed > 1:
            return elapsed * (1 - unit.fraction) / unit.fraction
        rate = self._rate(unit.kind)
        return None if rate is None else max(0.0, rate * unit.weight - elapsed)

    def run_eta(self) -> float | None:
        """Seconds left for the units not done or skipped; ``None`` while one of them has no estimate."""
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
        """Mark a unit running and log its start with the ETAs.

        Args:
            unit_id: ``<stage>/<name>``.
        """
        u = self.units[unit_id]
        u.state, u.started, u.fraction = "running", time.time(), 0.0
        self.log.info("%s start | unit ETA %s | run ETA %s", self._position(u), format_seconds(self.unit_eta(u)),
                      format_seconds(self.run_eta()))
        if self._bar is not None:
            self._bar.set_postfix_str(f"{u.stage} {u.name}")
        return u

    def step(self, unit_id: str, step: int, total: int, extra: str = "", force: bool = False) -> None:
        """Report ``step`` of ``total`` inside a running unit: logged at the first and last step and at most
        every ``min_interval_s`` in between.

        Args:
            unit_id: ``<stage>/<name>``.
            step: steps done.
            total: steps in the unit.
            extra: text after the step count (e.g. ``"loss 0.1"``).
            force: log this step whatever the interval.
        """
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
        """Mark a unit done (its seconds measured) and log it.

        Args:
            unit_id: ``<stage>/<name>``.
            note: text in parentheses after the duration.
        """
        u = self.units[unit_id]
        u.state, u.seconds, u.fraction = "done", time.time() - u.started, 1.0
        self.log.info("%s done in %s%s | run ETA %s | elapsed %s", self._position(u), format_seconds(u.seconds),
                      f" ({note})" if note else "", format_seconds(self.run_eta()), format_seconds(time.time() - self.t0))
        if self._bar is not None:
            self._bar.update(1)

    def skip(self, unit_id: str, reason: str = "done") -> None:
        """Mark a unit skipped (finished work with no time) and log why.

        Args:
            unit_id: ``<stage>/<name>``.
            reason: the log line's reason.
        """
        u = self.units[unit_id]
        u.state = "skipped"
        self.log.info("%s skipped (%s)", self._position(u), reason)
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        """Close the progress bar."""
        if self._bar is not None:
            self._bar.close()


def setup_logging(log_file=None, level: int = logging.INFO) -> logging.Logger:
    """Log the ``study`` logger to stderr (through tqdm, so bars stay intact) and to ``log_file`` (appended).

    Args:
        log_file: a log file, or ``None`` for the console only.
        level: the logger's level.
    """
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
