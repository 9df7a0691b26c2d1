"""A check of the training's run folder (the resumable checkpoint is ``checkpoints.TrainingCheckpoint``).

Needs only the standard library.
"""

from __future__ import annotations

import os

from .checkpoints import TrainingCheckpoint  # noqa: F401 (scripts.handlers.TrainingCheckpoint, the old name)
from .helpers import latest_checkpoint

__all__ = ["check_run_folder"]


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
    if present and latest_checkpoint(ckpt_dir) is None:
        raise ValueError(
            f"--ckpt_dir {ckpt_dir!r} holds {', '.join(present)} but no training checkpoint (checkpoint_epoch=N.pt): "
            "these weights were not written by a training run here, and training would replace them. Train into "
            "a run folder (default runs/train, e.g. --ckpt_dir runs/my_run), then export the weights you want to "
            "ship with `python -m scripts.export runs/my_run/model.pt models/model.pt`."
        )
    return ckpt_dir
