"""The cross-domain study's runner: its units (what runs, what it reads, what it needs first) on the engine
(:mod:`ldct_scripts.studies.engine`), and the bundle commands they run. The real target's units are in :mod:`.real`."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from ldct_scripts.studies.engine import (
    Study,
    StudyError,
    Unit,
    bundle_command,
    file_digest,
    read_json,
    run_logged,
)

from . import stages
from .config import CPCE_BUNDLE, DIRECTIONS, METHODS, UNET_BUNDLE, Config

__all__ = ["DomainAdaptationStudy"]

log = logging.getLogger("study")

_CPCE_EPOCH = re.compile(r"Epoch\[(\d+)\] Complete")
_UNET_ITER = re.compile(r"Epoch: (\d+)/\d+, Iter: (\d+)/(\d+)")


class DomainAdaptationStudy(Study):
    """Runs the stages of one :class:`~.config.Config` (two simulated domains) under ``config.results_dir``.

    Args:
        config: the run's settings.
    """

    #: Inference is redone too when its settings change (its outputs are derived, like the tables).
    REDO_KINDS = ("infer", "tables", "report")

    def __init__(self, config: Config):
        super().__init__(config)
        self.data_dir = self.root / "data"
        self.tables = self.root / "tables"
        self.figures = self.root / "figures"

    # ---- machinery ------------------------------------------------------------------------------
    def run_command(self, uid: str, argv: list, log_path: Path, cwd=None, total: int | None = None,
                    pattern: re.Pattern | None = None) -> float:
        """Run a command logged to ``log_path`` (its command line first), showing its step when ``pattern`` matches.

        Args:
            uid: the running unit's id.
            argv: the command.
            log_path: its log (appended to).
            cwd: its working folder; default the cross-domain bundle (``monai.bundle`` runs a bundle from its folder).
            total: the steps of the unit, for the progress line.
            pattern: a regex on the output: one group (the step), or three (epoch, iteration, iterations per epoch).
        """
        def on_line(line):
            m = pattern.search(line) if pattern else None
            if m and total:
                g = [int(v) for v in m.groups()]
                self.progress.step(uid, g[0] if len(g) == 1 else (g[0] - 1) * g[2] + g[1], total)

        # A fixed hash seed: `monai.bundle run` builds the U-Net bundle's training and validation datasets in an order
        # that follows Python's string hashing (either first, run to run), which changes the random crops; fixed, the
        # same config gives the same models, tables and figures, byte for byte.
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONHASHSEED="0")
        return run_logged([str(a) for a in argv], log_path, cwd=cwd or CPCE_BUNDLE, env=env, on_line=on_line)

    # ---- running --------------------------------------------------------------------------------
    def plan(self) -> list[Unit]:
        """Every unit of the requested stages, with a work estimate (pixels × epochs or iterations)."""
        c = self.cfg
        n2, units = c.n_pixels**2, []
        if "data" in c.stages:
            units.append(Unit("data", "domains", "simulate", 2 * (c.n_train + c.n_validation + c.n_test) * n2))
        if "train" in c.stages:
            for d in c.directions:
                units += [Unit("train", f"{d}_{m}", "train", c.max_epochs * c.n_train * n2) for m in c.methods]
                if c.unet:
                    units.append(Unit("train", f"{d}_unet", "train", c.unet_iterations * c.unet_batch_size * c.unet_patch_size**2))
        if "evaluate" in c.stages:
            units += [Unit("evaluate", f"unet_{d}", "infer", c.n_test * n2) for d in c.directions if c.unet]
            units.append(Unit("evaluate", "table1", "tables", 2 * c.n_test * n2 * len(c.methods)))
        units += [Unit(s, n, "tables" if s == "figures" else "report", n2)
                  for s, n in (("figures", "examples"), ("report", "report")) if s in c.stages]
        return units

    def describe(self) -> str:
        c = self.cfg
        return (f"cross-domain study in {self.root}: preset {c.preset}, stages {','.join(c.stages)}, directions "
                f"{','.join(c.directions)}, methods {','.join(c.methods)}")

    # ---- data -----------------------------------------------------------------------------------
    def _data_settings(self) -> dict:
        c = self.cfg
        return {k: getattr(c, k) for k in ("n_pixels", "n_views", "n_train", "n_validation", "n_test", "seed")}

    def data_marker(self, run: bool = False) -> dict:
        """The data unit (both domains, ``python -m scripts.domains`` of the cross-domain bundle): its marker,
        after running it when ``run`` (else it must be done).

        Args:
            run: run the unit unless it is done.
        """
        if not run:
            return self.require("data", "domains", self._data_settings(), {}, "run the study with --stages data first.")
        c = self.cfg

        def work(uid):
            argv = [sys.executable, "-m", "scripts.domains", "--output_dir", self.data_dir, "--n_pixels", c.n_pixels,
                    "--n_train", c.n_train, "--n_validation", c.n_validation, "--n_test", c.n_test, "--seed", c.seed]
            argv += ["--n_views", c.n_views] if c.n_views else []
            self.run_command(uid, argv, self.log_path("data", "domains"))
            files = stages.write_unet_datalists(self.data_dir, DIRECTIONS)
            return {"files": [str(f) for f in files], "digests": {f.name: file_digest(f) for f in files}}, "both domains"

        return self.unit("data", "domains", self._data_settings(), {}, work, "simulate",
                         2 * (c.n_train + c.n_validation + c.n_test) * c.n_pixels**2)

    def stage_data(self) -> None:
        """Simulate both domains."""
        self.data_marker(run=True)

    # ---- training -------------------------------------------------------------------------------
    def _cpce_settings(self, method: str) -> dict:
        c = self.cfg
        settings = {"max_epochs": c.max_epochs, "batch_size": c.batch_size, "patch_size": f"[{c.patch_size},{c.patch_size}]",
                    "val_interval": c.val_interval, "seed": c.seed, "num_workers": 0, "lambda_adv": c.lambda_adv,
                    "lambda_align": c.lambda_align, **METHODS[method][1],
                    "residual": False}  # the seed's CPCE, from scratch (the bundle's default is its residual network)
        if c.vgg_weights:
            settings["vgg_weights"] = c.vgg_weights
        else:
            settings["use_perceptual"] = False
        return settings

    def _unet_settings(self) -> dict:
        c = self.cfg
        return {"num_iterations": c.unet_iterations, "val_interval": max(1, c.unet_iterations // 4),
                "patch_size": c.unet_patch_size, "batch_size": c.unet_batch_size, "num_workers": 0, "seed": c.seed}

    def train_marker(self, direction: str, method: str, run: bool = False) -> dict:
        """One training unit (a CPCE method, or ``"unet"``) of one direction: its marker, after running it when ``run``.

        Args:
            direction: ``s2r`` or ``r2s``.
            method: a key of ``METHODS``, or ``"unet"``.
            run: run the unit unless it is done.
        """
        c, name = self.cfg, f"{direction}_{method}"
        unet = method == "unet"
        settings = {**(self._unet_settings() if unet else self._cpce_settings(method)), "bundle": "train.json"}
        upstream = {"data": self.data_marker()["digest"]}
        if not run:
            return self.require("train", name, settings, upstream, "run the study with --stages train first.")
        run_dir = self.root / "runs" / name
        device = {"device": f"$torch.device('{c.device}')"}

        def work(uid):
            if unet:
                overrides = {"dataset_dir": self.data_dir / f"unet_{direction}.json", "output_dir": run_dir,
                             **self._unet_settings(), **device, "residual": False}  # the seed's U-Net, from scratch
                model, total, pattern = run_dir / "checkpoints" / "model.pt", c.unet_iterations, _UNET_ITER
            else:
                overrides = {"datalist": self.data_dir / f"datalist_{direction}.json", "ckpt_dir": run_dir,
                             "output_dir": run_dir / "logs", **self._cpce_settings(method), **device}
                model, total, pattern = run_dir / "model.pt", c.max_epochs, _CPCE_EPOCH
            argv = bundle_command(["configs/train.json"], overrides)
            self.run_command(uid, argv, self.log_path("train", name), UNET_BUNDLE if unet else CPCE_BUNDLE, total, pattern)
            if not model.is_file():
                raise StudyError(f"train {name}: the bundle finished without {model}; see {self.log_path('train', name)}.")
            return {"files": [str(model)], "model": str(model), "model_digest": file_digest(model)}, f"{model.name} written"

        weight = c.unet_iterations * c.unet_batch_size * c.unet_patch_size**2 if unet else c.max_epochs * c.n_train * c.n_pixels**2
        return self.unit("train", name, settings, upstream, work, "train", weight)

    def _trained(self) -> list[tuple[str, str]]:
        """``(direction, method)`` of every training unit of the run, the U-Net last per direction."""
        return [(d, m) for d in self.cfg.directions for m in (*self.cfg.methods, *(("unet",) if self.cfg.unet else ()))]

    def stage_train(self) -> None:
        """One run per direction and method (and the U-Net), the same budget for each."""
        self.data_marker()  # a clear message when the data stage has not run
        for direction, method in self._trained():
            self.train_marker(direction, method, run=True)

    # ---- evaluation, figures, report ------------------------------------------------------------
    def unet_infer_marker(self, direction: str) -> dict:
        """The U-Net's inference on one direction's target test inputs (its own ``configs/inference.json``).

        Args:
            direction: ``s2r`` or ``r2s``.
        """
        train = self.train_marker(direction, "unet")
        upstream = {"train": train["digest"], "data": self.data_marker()["digest"]}

        def work(uid):
            return stages.unet_predictions(self, uid, direction, train["outputs"]["model"]), f"{direction} test inputs"

        return self.unit("evaluate", f"unet_{direction}", {"direction": direction}, upstream, work, "infer")

    def _derived_upstream(self) -> dict:
        """Digests of every unit that tables and figures read."""
        upstream = {f"train_{d}_{m}": self.train_marker(d, m)["digest"] for d, m in self._trained()}
        upstream.update({f"unet_{d}": self.unet_infer_marker(d)["digest"] for d in self.cfg.directions if self.cfg.unet})
        return upstream

    def _derived_settings(self) -> dict:
        c = self.cfg
        return {"directions": list(c.directions), "methods": list(c.methods), "unet": c.unet, "version": 1}

    def table_marker(self) -> dict:
        """Table 1 (``tables/table1.{csv,md}``): every model on the target domain's test pairs, run unless done."""
        upstream = self._derived_upstream()
        return self.unit("evaluate", "table1", self._derived_settings(), upstream, lambda uid: stages.table_outputs(self, uid),
                         "tables")

    def stage_evaluate(self) -> None:
        """Table 1 with the input, each method and the U-Net."""
        self.table_marker()

    def stage_figures(self) -> None:
        """One test image per direction, every method, in the seed's display window with a zoomed ROI."""
        self.unit("figures", "examples", self._derived_settings(), self._derived_upstream(),
                  lambda uid: stages.figure_outputs(self), "tables")

    def stage_report(self) -> None:
        """``report.md``: the table beside the seed's, the reading, figures, settings and versions."""
        from .report import write_report

        upstream = {"table1": self.table_marker()["digest"]}
        figures = read_json(self.state_dir / "figures" / "examples.json")
        if isinstance(figures, dict):
            upstream["figures"] = figures.get("digest")
        settings = {"config": {k: v for k, v in self.cfg.to_dict().items() if k not in ("stages", "device")}, "version": 1}
        self.unit("report", "report", settings, upstream, lambda uid: write_report(self), "report")
