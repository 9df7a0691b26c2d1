"""Ignite handlers of the bundle: a resumable training checkpoint, and a check of the training's run folder.

Needs only torch, ignite and MONAI.
"""

from __future__ import annotations

import glob
import logging
import os

from ignite.engine import Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from .data import find_latest_checkpoint

__all__ = ["TrainingCheckpoint", "check_run_folder"]


class TrainingCheckpoint:
    """Save everything needed to resume training every ``save_interval`` epochs, and resume from it.

    At ``attach`` the engine itself (its epoch and iteration counters) joins ``save_dict``, which avoids a
    circular reference in the bundle config. Files are ``<save_dir>/checkpoint_epoch=N.pt`` written
    atomically; only the newest is kept. With ``resume=True`` and such a file present when training
    starts, every object is restored from the newest one, so a killed run continues from its last
    completed epoch when started again with the same command.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: ``{name: object with state_dict()}`` (networks, optimizers, ...), without the trainer.
        save_interval: epochs between checkpoints. Default 1.
        resume: load the newest checkpoint when training starts. Default True.
        map_location: ``torch.load`` map location for resuming (e.g. the training device).
        name: logger name; default the engine's logger.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict,
        save_interval: int = 1,
        resume: bool = True,
        map_location=None,
        name: str | None = None,
    ):
        if not save_dict:
            raise ValueError("TrainingCheckpoint: `save_dict` must name at least one object to save.")
        if "trainer" in save_dict:
            raise ValueError("TrainingCheckpoint: `save_dict` must not hold 'trainer'; the engine is added at attach.")
        if isinstance(save_interval, bool) or not isinstance(save_interval, int) or save_interval < 1:
            raise ValueError(f"TrainingCheckpoint: `save_interval` must be a positive integer, got {save_interval!r}.")
        self.save_dir = os.fspath(save_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.resume = bool(resume)
        self.map_location = map_location
        self.logger = logging.getLogger(name)
        self._name = name
        self.resumed_from: str | None = None
        self._saver: CheckpointSaver | None = None

    def attach(self, engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        objects = {**self.save_dict, "trainer": engine}
        if self.resume:
            latest = find_latest_checkpoint(self.save_dir)
            if latest is not None:
                self.resumed_from = latest
                self.logger.info(f"TrainingCheckpoint: resuming from {latest}.")
                CheckpointLoader(load_path=latest, load_dict=objects, map_location=self.map_location).attach(engine)
        os.makedirs(self.save_dir, exist_ok=True)
        self._saver = CheckpointSaver(
            save_dir=self.save_dir, save_dict=objects, save_interval=self.save_interval, n_saved=1, epoch_level=True
        )
        self._saver.attach(engine)
        # MONAI's saver writes in place (DiskSaver(atomic=False)): a save cut short by a kill or a second
        # Ctrl-C would leave a truncated newest checkpoint that the next run resumes from and fails on.
        self._saver._interval_checkpoint.save_handler._atomic = True  # temporary file, then os.replace
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._remove_stale)

    def save_now(self, engine) -> str | None:
        """Write the checkpoint now, mid-epoch (a stopped run; :class:`scripts.interrupt.StopOnInterrupt` calls it).

        The file is named after the epoch in progress, ``checkpoint_epoch=N.pt``, and holds the trainer's
        iteration, so a resumed run continues inside epoch ``N`` at the next iteration. It replaces the
        previous checkpoint. Returns its path (``None`` before :meth:`attach`).
        """
        if self._saver is None:
            return None
        interval = self._saver._interval_checkpoint  # ignite Checkpoint; no-op if this epoch's file is current
        interval(engine)
        self._remove_stale(engine)
        path = interval.last_checkpoint
        return None if path is None else os.fspath(path)

    def _remove_stale(self, engine) -> None:
        """Delete checkpoints older than the newest (left behind by an earlier, resumed run)."""
        latest = find_latest_checkpoint(self.save_dir)
        if latest is None:
            return
        for path in glob.glob(os.path.join(glob.escape(self.save_dir), "checkpoint_epoch=*.pt")):
            if os.path.abspath(path) != os.path.abspath(latest):
                try:
                    os.remove(path)
                except OSError:  # another process may have removed it
                    pass


def check_run_folder(ckpt_dir: str, weights: tuple[str, ...] = ("model.pt", "model_final.pt")) -> str:
    """Refuse to train into a folder holding weights that no training run of this bundle wrote there.

    Training writes ``model.pt`` (best validation PSNR) and ``model_final.pt`` into ``ckpt_dir``, beside its
    resumable ``checkpoint_epoch=N.pt``. A folder that holds such weights without a checkpoint, such as
    the bundle's own ``models/`` (the shipped weights), was not written by a training run, and training
    would replace the files in it. Called first in ``train.json``'s ``initialize``, before anything is written.

    Returns:
        ``ckpt_dir``.

    Raises:
        ValueError: ``ckpt_dir`` is a file, or holds one of ``weights`` and no ``checkpoint_*.pt``.
    """
    ckpt_dir = os.fspath(ckpt_dir)
    if os.path.exists(ckpt_dir) and not os.path.isdir(ckpt_dir):
        raise ValueError(f"--ckpt_dir {ckpt_dir!r} is a file, not a folder; pass a folder for the run (default runs/train).")
    present = [w for w in weights if os.path.isfile(os.path.join(ckpt_dir, w))]
    if present and find_latest_checkpoint(ckpt_dir) is None:
        raise ValueError(
            f"--ckpt_dir {ckpt_dir!r} holds {', '.join(present)} but no training checkpoint (checkpoint_epoch=N.pt): "
            "these weights were not written by a training run here, and training would replace them. Train into "
            "a run folder (default runs/train, e.g. --ckpt_dir runs/my_run), then export the weights you want to "
            "ship with `python -m scripts.export runs/my_run/model.pt models/model.pt`."
        )
    return ckpt_dir
