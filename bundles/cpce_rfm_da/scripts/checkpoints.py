# Generated from bundles/common/checkpoints.py by `python bundles/common/sync.py`: edit it there, not here.
"""A resumable training checkpoint: ignite's ``Checkpoint`` written atomically, resumed with ``Checkpoint.load_objects``.

Needs only torch and ignite (and ``helpers`` for finding the newest file).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver

from .helpers import latest_checkpoint

__all__ = ["TrainingCheckpoint"]


class TrainingCheckpoint:
    """Save everything needed to resume training every ``save_interval`` epochs (or iterations), and resume from it.

    Files are ``<save_dir>/<prefix>_epoch=N.pt`` (``_iteration=N`` with ``epoch_level=False``), written by
    ignite's ``Checkpoint`` with an atomic ``DiskSaver`` (a temporary file renamed when complete, so a kill
    never leaves a truncated newest checkpoint); only the newest is kept. The engine joins ``save_dict`` as
    ``"trainer"`` at ``attach`` unless it is there already. When training starts with ``resume`` true and a
    checkpoint present, every object is restored from the newest with ``Checkpoint.load_objects`` (the
    trainer keeps its own ``max_epochs``), and that file is replaced at the next save. With nothing to
    resume, ``initial_checkpoint`` (a state dict, or a dict holding them) is loaded into ``initial_keys``:
    fine-tuning starts from pretrained weights, and a restarted fine-tune resumes from its own progress.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: ``{name: object with state_dict()}`` (networks, optimizers, schedulers, ...).
        save_interval: epochs (or iterations) between checkpoints, >= 1. Default 1.
        epoch_level: count ``save_interval`` in epochs (default) or iterations.
        resume: load the newest checkpoint when training starts. Default true.
        map_location: ``torch.load`` map location (e.g. the training device).
        initial_checkpoint: weights to start from when there is nothing to resume (optional).
        initial_keys: entries of ``save_dict`` that ``initial_checkpoint`` restores. Default ``("model",)``.
        prefix: file-name prefix. Default ``"checkpoint"``.
        name: logger name; default the engine's logger.

    Raises:
        ValueError: an empty ``save_dict``, a bad ``save_interval``, ``initial_keys`` not in ``save_dict``.
        FileNotFoundError: a missing ``initial_checkpoint``.
    """

    def __init__(self, save_dir: str | os.PathLike, save_dict: dict, save_interval: int = 1, epoch_level: bool = True,
                 resume: bool = True, map_location=None, initial_checkpoint: str | None = None,
                 initial_keys: Sequence[str] = ("model",), prefix: str = "checkpoint", name: str | None = None) -> None:
        if not save_dict:
            raise ValueError("TrainingCheckpoint: `save_dict` must name at least one object to save.")
        if isinstance(save_interval, bool) or not isinstance(save_interval, int) or save_interval < 1:
            raise ValueError(f"TrainingCheckpoint: `save_interval` must be a positive integer, got {save_interval!r}.")
        missing = [k for k in initial_keys if k not in save_dict]
        if initial_checkpoint is not None and missing:
            raise ValueError(f"TrainingCheckpoint: `initial_keys` {missing} are not in `save_dict` ({sorted(save_dict)}).")
        if initial_checkpoint is not None and not os.path.isfile(initial_checkpoint):
            raise FileNotFoundError(f"TrainingCheckpoint: `initial_checkpoint` not found: {initial_checkpoint!r}.")
        self.save_dir, self.save_dict, self.save_interval = os.fspath(save_dir), dict(save_dict), save_interval
        self.epoch_level, self.resume, self.map_location, self.prefix = bool(epoch_level), bool(resume), map_location, prefix
        self.initial_checkpoint, self.initial_keys = initial_checkpoint, tuple(initial_keys)
        self.logger, self._name = logging.getLogger(name), name
        self.resumed_from: str | None = None
        self.checkpoint: Checkpoint | None = None  # the ignite Checkpoint, made at attach

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        self.save_dict.setdefault("trainer", engine)
        unit = "epoch" if self.epoch_level else "iteration"
        self.checkpoint = Checkpoint(
            self.save_dict, DiskSaver(self.save_dir, require_empty=False, atomic=True), n_saved=1,
            score_function=lambda e: e.state.epoch if self.epoch_level else e.state.iteration, score_name=unit,
            filename_pattern=f"{self.prefix}_{{score_name}}={{score}}.{{ext}}")
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.save_interval), self.checkpoint)
        engine.add_event_handler(Events.STARTED, self.load)

    def load(self, engine: Engine) -> None:
        """Restore every object from the newest checkpoint (or ``initial_checkpoint``; or nothing)."""
        path = latest_checkpoint(self.save_dir, self.prefix) if self.resume else None
        if path is None:
            if self.initial_checkpoint is not None:
                state = torch.load(self.initial_checkpoint, map_location=self.map_location, weights_only=True)
                Checkpoint.load_objects({k: self.save_dict[k] for k in self.initial_keys}, state)
                self.logger.info(f"TrainingCheckpoint: nothing to resume, started from {self.initial_checkpoint}.")
            return
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(self.save_dict, torch.load(path, map_location=self.map_location, weights_only=True))
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(f"{path}: training there reached epoch {engine.state.epoch}, beyond this run's max_epochs "
                             f"({max_epochs}); pass a longer run, or another --ckpt_dir to start afresh.")
        engine.state.max_epochs = max_epochs
        self.resumed_from = path
        step = int(os.path.basename(path).rsplit("=", 1)[1][: -len(".pt")])  # the N of <prefix>_epoch=N.pt
        self.checkpoint.load_state_dict({"_saved": [(step, os.path.basename(path))]})  # replaced at the next save
        self.logger.info(f"TrainingCheckpoint: resumed from {path} at iteration {engine.state.iteration}.")

    def save_now(self, engine: Engine) -> str | None:
        """Write the checkpoint now, mid-interval (a stopped run: ``interrupt.StopOnInterrupt`` calls it).

        The file is named after the epoch (or iteration) in progress and holds the trainer's iteration, so a
        resumed run continues at the next iteration. Returns its path (``None`` before :meth:`attach`).
        """
        if self.checkpoint is None:
            return None
        self.checkpoint(engine)  # a no-op when this step's file is already the newest
        path = self.checkpoint.last_checkpoint
        return None if path is None else os.fspath(path)
