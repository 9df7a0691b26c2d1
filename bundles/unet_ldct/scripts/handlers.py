"""Ignite handlers for the bundle: validation bookkeeping for resuming, per-image metrics to CSV, progress bar.

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
from monai.handlers import CheckpointSaver

from .metrics import DEFAULT_PEAK_CM, METRIC_NAMES, image_metrics, summarize

__all__ = ["ValidationState", "ImageMetricsWriter", "ProgressBarHandler"]


class ValidationState:
    """The validation bookkeeping of a training run, as one object with ``state_dict``/``load_state_dict``.

    Saved with the interval checkpoints and restored by ``checkpoints.TrainingCheckpoint``, it carries across a
    restart: the best score the best-model ``CheckpointSaver`` has seen (so a worse model after the
    restart does not overwrite the best one), the ``EarlyStopHandler``'s patience counter and best
    score, and the evaluator's ``best_metric``/``best_metric_epoch``. Each part is optional.

    Args:
        best_saver: the ``CheckpointSaver`` with ``save_key_metric=True`` attached to the evaluator.
        early_stop: the ``EarlyStopHandler`` attached to the evaluator (after ``set_trainer``).
        evaluator: the validation engine.
    """

    def __init__(self, best_saver: CheckpointSaver | None = None, early_stop=None, evaluator: Engine | None = None):
        self.best_saver = best_saver
        self.early_stop = early_stop
        self.evaluator = evaluator

    def _best_checkpoint(self):
        # MONAI's CheckpointSaver restores this state (load_state_dict) but does not expose it for saving
        return getattr(self.best_saver, "_key_metric_checkpoint", None)

    def _early_stopping(self):
        return getattr(self.early_stop, "_handler", None)  # ignite EarlyStopping, made by set_trainer()

    def state_dict(self) -> dict:
        out: dict = {}
        best = self._best_checkpoint()
        if best is not None:
            out["best_checkpoint"] = best.state_dict()
        stopper = self._early_stopping()
        if stopper is not None:
            out["early_stopping"] = stopper.state_dict()
        if self.evaluator is not None:
            out["best_metric"] = float(self.evaluator.state.best_metric)
            out["best_metric_epoch"] = int(self.evaluator.state.best_metric_epoch)
        return out

    def load_state_dict(self, state: dict) -> None:
        if "best_checkpoint" in state and self.best_saver is not None:
            self.best_saver.load_state_dict(state["best_checkpoint"])
        stopper = self._early_stopping()
        if "early_stopping" in state and stopper is not None:
            stopper.load_state_dict(state["early_stopping"])
        if "best_metric" in state and self.evaluator is not None:
            self.evaluator.state.best_metric = state["best_metric"]
            self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]


class ImageMetricsWriter:
    """Per-image PSNR, NRMSE, SSIM and residual variance of an evaluation, written to CSV with a summary.

    Attach it to a ``SupervisedEvaluator`` whose postprocessing leaves ``pred_key``, ``reference_key``
    and ``label_key`` in the same unit (the evaluate config uses cm⁻¹). After each iteration it scores
    every image of the batch with :func:`scripts.metrics.image_metrics`: PSNR and RMSE against the
    label, NRMSE, SSIM and residual variance against the reference (the seed's equations 4 to 6,
    where the reference is the self-test output); when the run completes it
    writes ``metrics.csv`` (one row per image, column ``id`` then :data:`METRIC_NAMES`),
    ``summary.csv`` (``metric, mean, std, n``; sample standard deviation) and ``summary.json`` (strict
    JSON: non-finite values, such as the infinite PSNR of identical images, become ``null``), and
    logs ``mean ± std`` of each metric. The summary is also stored in ``engine.state.metric_summary``.

    Args:
        output_dir: folder for the files (created if needed).
        pred_key: key of the image under test. Default ``"pred"``.
        reference_key: key of the reference of NRMSE, SSIM and residual variance: ``"label"``
            (normal-dose image) or a reference model's output, e.g. ``"reference"`` (the study's
            self-test).
        label_key: key of the normal-dose label that PSNR and RMSE are computed against. Default
            ``"label"``; ``None``: the reference.
        data_range: PSNR peak and SSIM ``L``: a number in the images' unit (default
            :data:`scripts.metrics.DEFAULT_PEAK_CM`, 0.4118 cm⁻¹ = +1000 HU, fixed), or
            ``"reference_max"`` / ``"reference_range"`` (grow with the label's noise).
        ssim_window: ``"gaussian"`` (default), ``"uniform"`` or ``"global"``.
        id_key: batch key naming each image (the datalist's ``"id"``); if absent, the file name of the
            prediction's metadata is used.
        metrics_file, summary_file: file names. Defaults ``"metrics.csv"`` and ``"summary.csv"``.
        name: logger name; default the engine's logger.
    """

    def __init__(
        self,
        output_dir: str,
        pred_key: str = "pred",
        reference_key: str = "label",
        label_key: str | None = "label",
        data_range: float | str = DEFAULT_PEAK_CM,
        ssim_window: str = "gaussian",
        id_key: str = "id",
        metrics_file: str = "metrics.csv",
        summary_file: str = "summary.csv",
        name: str | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.pred_key = pred_key
        self.reference_key = reference_key
        self.label_key = label_key or reference_key
        self.data_range = data_range
        self.ssim_window = ssim_window
        self.id_key = id_key
        self.metrics_file = metrics_file
        self.summary_file = summary_file
        self.logger = logging.getLogger(name)
        self._name = name
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows = []

    def _image_id(self, batch_item, pred) -> str:
        if isinstance(batch_item, dict) and self.id_key in batch_item:
            return str(batch_item[self.id_key])
        meta = getattr(pred, "meta", {}) or {}
        return os.path.basename(str(meta.get("filename_or_obj", f"image_{len(self.rows)}")))

    def update(self, engine: Engine) -> None:
        outputs = engine.state.output
        batches = engine.state.batch
        if isinstance(outputs, dict):
            outputs, batches = [outputs], [batches]
        for i, out in enumerate(outputs):
            missing = [k for k in (self.pred_key, self.reference_key, self.label_key) if k not in out]
            if missing:
                raise KeyError(f"ImageMetricsWriter: engine output lacks {missing}; it has {sorted(out)}.")
            pred, ref, label = out[self.pred_key], out[self.reference_key], out[self.label_key]
            row = {"id": self._image_id(batches[i] if i < len(batches) else None, pred)}
            row.update(image_metrics(pred, ref, self.data_range, self.ssim_window, label=label))
            self.rows.append(row)

    def write(self, engine: Engine | None = None) -> dict:
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, self.metrics_file), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["id", *METRIC_NAMES])
            writer.writeheader()
            writer.writerows(self.rows)
        summary = summarize(self.rows)
        with open(os.path.join(self.output_dir, self.summary_file), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["metric", "mean", "std", "n"])
            for k, s in summary.items():
                writer.writerow([k, s["mean"], s["std"], s["n"]])
        with open(os.path.join(self.output_dir, os.path.splitext(self.summary_file)[0] + ".json"), "w") as f:
            json.dump(
                {"reference": self.reference_key, "psnr_reference": self.label_key,
                 "data_range": self.data_range, "ssim_window": self.ssim_window,
                 "metrics": {k: {kk: (None if isinstance(v, float) and not math.isfinite(v) else v) for kk, v in s.items()}
                             for k, s in summary.items()}},
                f, indent=2,
            )
        for k in ("psnr_db", "nrmse_percent", "ssim", "residual_variance"):
            self.logger.info(f"{k}: {summary[k]['mean']:.6g} ± {summary[k]['std']:.3g} (n={summary[k]['n']})")
        if engine is not None:
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
