"""What every study runner does the same way: its results folder, lock and log, one marker per unit, the stage loop.

A study subclasses :class:`Study`, sets ``plan()`` (its units, for the progress line), ``describe()`` (the run's first
log line) and one ``stage_<name>()`` method per stage, and wraps each piece of work in :meth:`Study.unit`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .errors import StudyError
from .files import write_json
from .lock import ResultsLock
from .progress import StudyProgress, Unit, setup_logging
from .provenance import study_provenance
from .units import UnitState

__all__ = ["Study"]

log = logging.getLogger("study")


class Study:
    """A study's shared machinery over ``config.results_dir``; the subclass runs the stages ``config.stages``.

    Attributes:
        cfg: the run's settings (``results_dir``, ``stages``, ``to_dict()``).
        root, state_dir: the results folder and its ``state/`` (the units' markers).
        outcome: ``{unit id: "ran" | "skipped"}`` of this run.

    Args:
        config: the run's settings.
    """

    #: Unit kinds redone when their settings change; the others refuse a results folder made with other settings.
    REDO_KINDS: tuple[str, ...] = ("tables", "report")

    def __init__(self, config) -> None:
        self.cfg = config
        self.root = Path(config.results_dir)
        self.state_dir = self.root / "state"
        self.progress: StudyProgress | None = None
        self.outcome: dict[str, str] = {}

    def plan(self) -> list[Unit]:
        """Every unit of the requested stages, with its weight (for the ETA)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The run's first log line: the study, its folder and its main settings."""
        raise NotImplementedError

    def check(self) -> None:
        """Refuse, with a :class:`StudyError`, what can only be checked once the run holds its folder. Default: nothing."""

    def log_path(self, stage: str, name: str) -> Path:
        """``logs/<stage>/<name>.log``: the log of one unit's command.

        Args:
            stage: the unit's stage.
            name: the log's name.
        """
        return self.root / "logs" / stage / f"{name}.log"

    def run(self) -> dict:
        """Run the requested stages under the folder's lock; returns ``{unit id: "ran" | "skipped"}``.

        Raises:
            StudyError: a unit failed, a prerequisite is missing, the folder holds other settings, or another
                run holds the folder's lock.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with ResultsLock(self.root):
            setup_logging(self.root / "logs" / "study.log")
            write_json(self.root / "config.json", {"config": self.cfg.to_dict(), "provenance": study_provenance()})
            log.info(self.describe())
            self.check()
            self.outcome = {}
            self.progress = StudyProgress(self.plan())
            try:
                for stage in self.cfg.stages:
                    getattr(self, f"stage_{stage}")()
            finally:
                self.progress.close()
        ran = sum(v == "ran" for v in self.outcome.values())
        log.info("finished: %d units run, %d skipped; results in %s", ran, len(self.outcome) - ran, self.root)
        return self.outcome

    def unit(self, stage: str, name: str, settings: dict, upstream: dict, work, kind: str = "tables",
             weight: float = 1.0) -> dict:
        """Run ``work(unit_id) -> (outputs, note)`` unless its marker says it is done; returns the marker.

        Units of a kind in :attr:`REDO_KINDS` are redone when their settings change; the others refuse a results
        folder made with other settings. A unit already handled in this run (a shared prerequisite) is returned.

        Args:
            stage: the unit's stage.
            name: the unit's name.
            settings: what determines its outputs.
            upstream: ``{name: digest}`` of the units it reads.
            work: the function that does it.
            kind: ``simulate``, ``train``, ``finetune``, ``infer``, ``tables`` or ``report``.
            weight: its estimated cost, for the ETA.
        """
        state = UnitState(self.state_dir, stage, name, settings, upstream, strict=kind not in self.REDO_KINDS)
        unit = self.progress.add(Unit(stage, name, kind, weight))
        status, marker = state.status()
        if status == "done":
            if unit.id not in self.outcome:
                self.progress.skip(unit.id, f"done, {state.done_path.relative_to(self.root)}")
                self.outcome[unit.id] = "skipped"
            return marker
        if status == "stale":
            log.info("%s: an input changed or an output is missing since it ran; running it again", unit.id)
        state.start()
        self.progress.start(unit.id)
        t0 = time.time()
        outputs, note = work(unit.id)
        marker = state.finish(outputs, time.time() - t0)
        self.progress.finish(unit.id, note)
        self.outcome[unit.id] = "ran"
        return marker

    def require(self, stage: str, name: str, settings: dict, upstream: dict, hint: str) -> dict:
        """The marker of a finished prerequisite, or a :class:`StudyError` saying which stage to run.

        Args:
            stage: its stage.
            name: its name.
            settings: its settings.
            upstream: its upstream digests.
            hint: what to do when it is not done.
        """
        status, marker = UnitState(self.state_dir, stage, name, settings, upstream).status()
        if status != "done":
            raise StudyError(f"{stage}/{name} is {'out of date' if status == 'stale' else 'not done'}; {hint}")
        return marker
