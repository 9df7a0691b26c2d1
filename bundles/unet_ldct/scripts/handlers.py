"""Ignite handlers for the bundle: validation bookkeeping for resuming, the per-image metric table, progress bar.

The resumable checkpoint itself is ``checkpoints.TrainingCheckpoint``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Sequence

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, EarlyStopping

from .metrics import METRIC_NAMES, summarize

__all__ = ["ValidationState", "MetricTableWriter", "ProgressBarHandler"]


class ValidationState:
    """The validation bookkeeping of a training run, as one object with ``state_dict``/``load_state_dict``.

    Saved with the interval checkpoints and restored by ``checkpoints.TrainingCheckpoint``, it carries across a
    restart: the best score of the best-model ``Checkpoint`` (so a worse model after the restart does not
    overwrite the best one), the ``EarlyStopping`` patience counter and best score, and the evaluator's
    ``best_metric``/``best_metric_epoch``. Each part is optional. Only public API is used: ignite's
    ``Checkpoint`` and ``EarlyStopping`` are serializable (``state_dict``/``load_state_dict``), and MONAI's
    workflows keep the best metric in ``engine.state`` (``train.json`` uses these ignite handlers rather than
    MONAI's ``CheckpointSaver``/``EarlyStopHandler``, which do not expose the objects holding that state).

    Args:
        best_checkpoint: the ignite ``Checkpoint`` with a ``score_function`` attached to the evaluator.
        early_stopping: the ignite ``EarlyStopping`` attached to the evaluator.
        evaluator: the validation engine.
    """

    def __init__(self, best_checkpoint: Checkpoint | None = None, early_stopping: EarlyStopping | None = None,
                 evaluator: Engine | None = None):
        self.best_checkpoint = best_checkpoint
        self.early_stopping = early_stopping
        self.evaluator = evaluator

    def state_dict(self) -> dict:
        out: dict = {}
        if self.best_checkpoint is not None:
            out["best_checkpoint"] = self.best_checkpoint.state_dict()
        if self.early_stopping is not None:
            out["early_stopping"] = self.early_stopping.state_dict()
        if self.evaluator is not None:
            out["best_metric"] = float(self.evaluator.state.best_metric)
            out["best_metric_epoch"] = int(self.evaluator.state.best_metric_epoch)
        return out

    def load_state_dict(self, state: dict) -> None:
        if "best_checkpoint" in state and self.best_checkpoint is not None:
            self.best_checkpoint.load_state_dict(state["best_checkpoint"])
        if "early_stopping" in state and self.early_stopping is not None:
            self.early_stopping.load_state_dict(state["early_stopping"])
        if "best_metric" in state and self.evaluator is not None:
            self.evaluator.state.best_metric = state["best_metric"]
            self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]


class MetricTableWriter:
    """The per-image metrics of an evaluation as one full-precision table, with a summary.

    The metrics themselves are MONAI metric handlers (``IgniteMetricHandler`` over
    :class:`scripts.metrics.ImageMetric`, ``save_details=True``), which leave each image's values in
    ``engine.state.metric_details``; MONAI's ``MetricsSaver`` writes them as ``<metric>_raw.csv`` and
    ``<metric>_summary.csv``. Those print 4 decimals, which would round a residual variance in cm⁻² (about
    1e-5) to zero, so this handler writes the same values once more at full precision, when the epoch
    completes: ``metrics.csv`` (one row per image, column ``id`` then :data:`scripts.metrics.METRIC_NAMES`),
    ``summary.csv`` (``metric, mean, std, n``; sample standard deviation) and ``summary.json`` (strict JSON:
    non-finite values, such as the infinite PSNR of identical images, become ``null``), and logs
    ``mean ± std`` of each metric. The summary is also stored in ``engine.state.metric_summary``.

    Args:
        output_dir: folder for the files (created if needed).
        id_key: key of each decollated batch item naming the image (the datalist's ``"id"``); if absent,
            the file name in the ``"image"`` item's metadata.
        names: the ``metric_details`` columns, in order. Default :data:`scripts.metrics.METRIC_NAMES`.
        info: extra entries of ``summary.json`` (the evaluate config records the references, the data range
            and the SSIM window).
        name: logger name; default the engine's logger.
    """

    def __init__(self, output_dir: str, id_key: str = "id", names: Sequence[str] = METRIC_NAMES,
                 info: dict | None = None, name: str | None = None) -> None:
        self.output_dir, self.id_key, self.names, self.info = output_dir, id_key, tuple(names), dict(info or {})
        self.logger = logging.getLogger(name)
        self._name = name
        self.ids: list[str] = []

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.ids.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect_ids)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def collect_ids(self, engine: Engine) -> None:
        batch = engine.state.batch
        for item in [batch] if isinstance(batch, dict) else batch:
            if self.id_key in item:
                self.ids.append(str(item[self.id_key]))
            else:
                meta = getattr(item.get("image"), "meta", {}) or {}
                self.ids.append(os.path.basename(str(meta.get("filename_or_obj", f"image_{len(self.ids)}"))))

    def write(self, engine: Engine) -> dict:
        details = getattr(engine.state, "metric_details", {})
        missing = [k for k in self.names if k not in details]
        if missing:
            raise KeyError(f"MetricTableWriter: engine.state.metric_details lacks {missing}; it has {sorted(details)}. "
                           "Attach an IgniteMetricHandler with save_details=True for each.")
        columns = {k: torch.as_tensor(details[k]).double().reshape(-1).tolist() for k in self.names}
        rows = [{"id": i, **{k: columns[k][n] for k in self.names}} for n, i in enumerate(self.ids)]
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, "metrics.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["id", *self.names])
            writer.writeheader()
            writer.writerows(rows)
        summary = summarize(rows, self.names)
        with open(os.path.join(self.output_dir, "summary.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["metric", "mean", "std", "n"])
            writer.writerows([k, s["mean"], s["std"], s["n"]] for k, s in summary.items())
        finite = {k: {kk: (None if isinstance(v, float) and not math.isfinite(v) else v) for kk, v in s.items()}
                  for k, s in summary.items()}
        with open(os.path.join(self.output_dir, "summary.json"), "w") as f:
            json.dump({**self.info, "metrics": finite}, f, indent=2)
        for k in self.names:
            self.logger.info(f"{k}: {summary[k]['mean']:.6g} ± {summary[k]['std']:.3g} (n={summary[k]['n']})")
        engine.state.metric_summary = summary
        return summary


class ProgressBarHandler:
    """Ignite's ``ProgressBar`` (tqdm) as a config handler, showing the running loss.

    Args:
        output_transform: maps ``engine.state.output`` to the number to show; default the ``"loss"``
            entry of the first item.
        persist: keep the bar after each epoch. Default false.
    """

    def __init__(self, output_transform: Callable | None = None, persist: bool = False) -> None:
        self.output_transform = output_transform or _loss_of
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        from ignite.handlers import ProgressBar

        ProgressBar(persist=self.persist).attach(engine, output_transform=lambda o: {"loss": self.output_transform(o)})


def _loss_of(output) -> float:
    item = output[0] if isinstance(output, Sequence) and not isinstance(output, dict) else output
    loss = item["loss"] if isinstance(item, dict) else item
    return float(loss.item() if isinstance(loss, torch.Tensor) else loss)
