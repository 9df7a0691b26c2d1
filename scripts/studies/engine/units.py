"""Resumable units of work: markers with settings, upstream digests and outputs (:class:`UnitState`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from .errors import StudyError
from .files import fingerprint, jsonable, read_json, write_json

__all__ = ["UnitState"]


class UnitState:
    """Markers of one unit of work under ``<state_dir>/<stage>/<name>{.started,}.json``.

    Args:
        state_dir: the study's state folder.
        stage: the unit's stage (file-name safe).
        name: the unit's name (file-name safe).
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
        self.settings = jsonable(dict(settings))
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
            f"Use another --results-dir, or delete {self.done_path.parent} and the unit's outputs to redo it."
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
        the unit's consumers need; the marker's ``digest`` covers settings, upstream and outputs, not times.

        Args:
            outputs: what the unit made (``files`` and anything its consumers need).
            seconds: the unit's run time.
        """
        outputs = jsonable(dict(outputs))
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
