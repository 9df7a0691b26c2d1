"""The resolution-transfer study's runner: its units (what runs, what it reads, what it needs first) on the
engine (:mod:`ldct_scripts.studies.engine`), and the bundle and ``ldct_sim`` commands they run."""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from ldct_scripts import REPO
from ldct_scripts.bundle_import import load_bundle_module
from ldct_scripts.studies.engine import (
    Study,
    StudyError,
    Unit,
    UnitState,
    bundle_command,
    file_digest,
    read_json,
    run_logged,
)

from . import stages
from .config import Config, file_tag, pct, res_tag

__all__ = ["ResolutionTransferStudy"]

log = logging.getLogger("study")

_TRAIN_LINE = re.compile(r"Epoch: (\d+)/(\d+), Iter: (\d+)/(\d+) -- train_loss: ([-+0-9.eEnaif]+)")
_VAL_LINE = re.compile(r"Key metric: val_loss best value: ([-+0-9.eE]+) at epoch: (\d+)")
_RESUMED = re.compile(r"at iteration (\d+)")
_BAR = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")


class ResolutionTransferStudy(Study):
    """Runs the stages of one :class:`~.config.Config` under ``config.results_dir``.

    Args:
        config: the run's settings.
    """

    def __init__(self, config: Config):
        super().__init__(config)
        self.bundle = Path(config.bundle_root)
        self.data_dir = self.root / "data"
        self.tables = self.root / "tables"
        self.figures = self.root / "figures"
        self._metrics = None
        self._datalists: dict[float, dict] = {}

    # ---- environment ----------------------------------------------------------------------------
    def _env(self, bundle: bool) -> dict:
        env = dict(os.environ, TQDM_MININTERVAL="5", PYTHONUNBUFFERED="1")
        if bundle:
            env["TQDM_DISABLE"] = "1"  # the study prints its own progress; bundle logs stay readable
            env.pop("PYTHONPATH", None)  # the bundle needs neither ldct_sim nor this repository
            # monai.bundle builds the training and validation datasets in a string-hash-dependent order, which
            # moves the random crops: a fixed hash seed keeps reruns byte-identical (as the cross-domain study)
            env["PYTHONHASHSEED"] = "0"
        if self.cfg.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.cfg.threads)
        return env

    @property
    def metrics(self):
        """The bundle's ``scripts.metrics`` (PSNR, NRMSE, SSIM, residual variance), through ``bundle_import``."""
        if self._metrics is None:
            self._metrics = load_bundle_module(self.bundle, "metrics")
        return self._metrics

    # ---- planning -------------------------------------------------------------------------------
    def _n_slices(self) -> int:
        if self.cfg.phantoms is not None:
            return self.cfg.phantoms
        return 1000  # unknown until the data stage has read the source; only used for the first ETA

    def _split_count(self, split: str) -> int:
        share = dict(zip(("training", "validation", "test"), self.cfg.split))
        return max(1, round(self._n_slices() * share[split] / sum(self.cfg.split)))

    def _data_weight(self) -> float:
        c = self.cfg
        return len(c.resolutions) * self._n_slices() * c.n_pixels**2 * 10 * c.n_views / 720

    def plan(self) -> list[Unit]:
        """Every unit of the requested stages, with a work estimate in pixel-passes of the U-Net."""
        c = self.cfg
        n2 = c.n_pixels**2
        n_val, n_test = self._split_count("validation"), self._split_count("test")
        units: list[Unit] = []
        if "data" in c.stages:
            units.append(Unit("data", "simulate", "simulate", self._data_weight()))
        train_w = c.iterations * c.batch_size * c.patch_size**2 * 3 + c.iterations / c.val_interval * n_val * n2
        if "train" in c.stages:
            units += [Unit("train", res_tag(r), "train", train_w) for r in c.resolutions]
        if "crosstest" in c.stages:
            units += [Unit("crosstest", f"infer_model_{res_tag(m)}", "infer", n_test * len(c.resolutions) * n2)
                      for m in c.resolutions]
            units.append(Unit("crosstest", "tables", "tables", len(c.resolutions) ** 2 * n_test * n2 * 0.5))
        if "retrain" in c.stages:
            ft_w = c.finetune_iterations * c.batch_size * c.patch_size**2 * 3
            for f in c.fractions:
                units.append(Unit("retrain", f"finetune_{pct(f)}pct", "finetune", ft_w))
                units.append(Unit("retrain", f"infer_{pct(f)}pct", "infer", n_test * n2))
            units.append(Unit("retrain", "tables", "tables", len(c.fractions) * n_test * n2 * 0.5))
        if "noise" in c.stages:
            units.append(Unit("noise", "tables", "tables", len(c.resolutions) * n2))
        if "report" in c.stages:
            units.append(Unit("report", "report", "report", n2))
        return units

    # ---- running --------------------------------------------------------------------------------
    def describe(self) -> str:
        c = self.cfg
        return (f"resolution-transfer study in {self.root}: preset {c.preset}, stages {','.join(c.stages)}, resolutions "
                f"{', '.join(f'{r:g}' for r in c.resolutions)} µm, "
                f"{f'{c.phantoms} phantoms' if c.phantoms else f'source {c.source}'}, {c.n_pixels}² px, seed {c.seed}")

    def check(self) -> None:
        if not (self.bundle / "configs" / "train.json").is_file():
            raise StudyError(f"--bundle-root {str(self.bundle)!r} is not the U-Net bundle (no configs/train.json).")

    # ---- data -----------------------------------------------------------------------------------
    def _data_settings(self, res: float) -> dict:
        c = self.cfg
        return {"resolution_um": res, "source": c.source, "phantoms": c.phantoms, "split": list(c.split), "seed": c.seed,
                "n_pixels": c.n_pixels, "n_views": c.n_views, "phantom_size": c.phantom_size, "backend": c.sim_backend}

    def data_marker(self, res: float) -> dict:
        """The finished data marker of one resolution (a StudyError when the data stage has not made it).

        Args:
            res: the resolution (µm).
        """
        return self.require("data", res_tag(res), self._data_settings(res), {}, "run the study with --stages data first.")

    def _simulate_argv(self, todo: list[float]) -> list[str]:
        c = self.cfg
        argv = [sys.executable, "-m", "ldct_sim", "simulate"]
        argv += ["--input", c.source] if c.source else ["--phantoms", str(c.phantoms)]
        argv += ["--out", str(self.data_dir), "--resolutions", *(f"{r:g}" for r in todo), "--seed", str(c.seed),
                 "--split", *(repr(s) for s in c.split), "--n-pixels", str(c.n_pixels), "--n-views", str(c.n_views),
                 "--phantom-size", str(c.phantom_size), "--backend", c.sim_backend, "--progress"]
        return argv + (["--threads", str(c.threads)] if c.threads else [])

    def _finish_data(self, todo: list[float], states: dict, seconds: float, log_path: Path) -> dict:
        """Check what ``ldct_sim simulate`` made and write one marker per resolution; returns the split counts."""
        manifest = read_json(self.data_dir / "manifest.json") or {}
        for r in todo:
            info = manifest.get("resolutions", {}).get(f"{r:g}")
            if not info or not info.get("complete"):
                raise StudyError(f"data: ldct_sim simulate finished but the {r:g} µm data are incomplete "
                                 f"(see {self.data_dir / 'manifest.json'} and {log_path}).")
            counts = info["counts"]
            for split in ("training", "validation", "test"):
                if counts.get(split, 0) < 1:
                    raise StudyError(f"data: the {split} split is empty ({counts}); use more slices or other --split proportions.")
            datalist = self.data_dir / res_tag(r) / "datalist.json"
            states[r].finish({"files": [str(datalist)], "datalist": str(datalist), "counts": counts,
                              "fingerprint": info["fingerprint"], "datalist_digest": file_digest(datalist)}, seconds / len(todo))
        self._datalists.clear()
        return manifest["resolutions"][f"{todo[0]:g}"]["counts"]

    def stage_data(self) -> None:
        """Simulate every resolution not done yet, in one ``ldct_sim simulate`` run (one marker per resolution)."""
        states = {r: UnitState(self.state_dir, "data", res_tag(r), self._data_settings(r)) for r in self.cfg.resolutions}
        todo = [r for r, st in states.items() if st.status()[0] != "done"]
        unit = self.progress.add(Unit("data", "simulate", "simulate", self._data_weight()))
        if not todo:
            self.progress.skip(unit.id, "done, state/data/")
            self.outcome[unit.id] = "skipped"
            return
        for r in todo:
            states[r].start()
        self.progress.start(unit.id)

        def on_line(line):
            m = _BAR.search(line)
            if m:
                self.progress.step(unit.id, int(m.group(1)), int(m.group(2)), "slices")

        log_path = self.log_path("data", "simulate")
        seconds = run_logged(self._simulate_argv(todo), log_path, cwd=REPO, env=self._env(bundle=False), on_line=on_line)
        counts = self._finish_data(todo, states, seconds, log_path)
        self.progress.finish(unit.id, f"{', '.join(f'{r:g}' for r in todo)} µm; "
                                      f"{counts['training']}/{counts['validation']}/{counts['test']} slices each")
        self.outcome[unit.id] = "ran"

    def datalist(self, res: float) -> dict:
        """The datalist of one resolution (read once).

        Args:
            res: the resolution (µm).
        """
        if res not in self._datalists:
            path = self.data_dir / res_tag(res) / "datalist.json"
            d = read_json(path)
            if not isinstance(d, dict):
                raise StudyError(f"no datalist at {path}; run --stages data first.")
            self._datalists[res] = d
        return self._datalists[res]

    def items(self, res: float, split: str) -> list[dict]:
        """Datalist entries of one split with absolute paths, sorted by id.

        Args:
            res: the resolution (µm).
            split: ``training``, ``validation`` or ``test``.
        """
        base = self.data_dir / res_tag(res)
        out = [{**e, **{k: str(base / e[k]) for k in ("image", "label", "noise") if k in e}} for e in self.datalist(res).get(split, [])]
        return sorted(out, key=lambda e: e["id"])

    def load(self, path) -> np.ndarray:
        """A NIfTI slice as a float64 2-D array (cm⁻¹).

        Args:
            path: the file.
        """
        import nibabel as nib

        return np.squeeze(np.asarray(nib.load(str(path)).dataobj, dtype=np.float64))

    def pred(self, marker: dict, res: float, sid: str) -> np.ndarray:
        """An inference unit's output for one test image.

        Args:
            marker: the inference unit's marker.
            res: the test resolution (µm).
            sid: the image's id.
        """
        return self.load(marker["outputs"]["predictions"][f"{file_tag(res)}__{sid}"])

    # ---- bundle runs ----------------------------------------------------------------------------
    def _common_overrides(self) -> dict:
        c = self.cfg
        return {"bundle_root": str(self.bundle), "dataset_dir": str(self.data_dir), "batch_size": c.batch_size,
                "patch_size": c.patch_size, "learning_rate": c.learning_rate, "lr_decay_steps": c.lr_decay_steps,
                "seed": c.seed, "num_workers": c.num_workers, "device": c.device, "amp": c.amp, "resume": True,
                "residual": False}  # the seed's U-Net: the image itself, not the noise (the bundle's default is residual)

    def _training_line_reader(self, uid: str, total: int, seen: dict):
        """A ``run_logged`` callback that reads the bundle's training log into ``seen`` and reports progress."""
        def on_line(line):
            m = _TRAIN_LINE.search(line)
            if m:
                epoch, _, it, epoch_len = (int(m.group(i)) for i in range(1, 5))
                seen["step"] = (epoch - 1) * epoch_len + it
                self.progress.step(uid, seen["step"], total, f"loss {float(m.group(5)):.4g}")
                return
            m = _VAL_LINE.search(line)
            if m:
                seen["best"], seen["best_epoch"] = float(m.group(1)), int(m.group(2))
                return
            if "resumed from" in line:
                m = _RESUMED.search(line)
                seen["resumed_at"] = int(m.group(1)) if m else -1
                log.info("%s: the bundle resumed from its checkpoint%s", uid, f" at iteration {m.group(1)}" if m else "")
            elif "EarlyStopping: Stop training" in line or "early stop" in line.lower():
                seen["stopped_early"] = True

        return on_line

    def _run_training(self, uid: str, stage: str, name: str, configs: list[str], overrides: dict, out_dir: Path,
                      total: int, val_interval: int) -> dict:
        """Run a bundle training config (resuming from its own latest checkpoint); returns what the log said."""
        seen = {"step": 0, "best": None, "best_epoch": None, "resumed_at": None, "stopped_early": False}
        argv = bundle_command([self.bundle / "configs" / f for f in configs], {**overrides, "output_dir": str(out_dir)})
        run_logged(argv, self.log_path(stage, name), cwd=self.bundle, env=self._env(bundle=True),
                   on_line=self._training_line_reader(uid, total, seen))
        model = out_dir / "checkpoints" / "model.pt"
        if not model.is_file():
            raise StudyError(f"{uid}: the bundle finished without writing {model}; see {self.log_path(stage, name)}.")
        if not self.cfg.keep_checkpoints:
            for ckpt in (out_dir / "checkpoints").glob("checkpoint_iteration=*.pt"):
                ckpt.unlink()
        return {"files": [str(model)], "model": str(model), "model_digest": file_digest(model),
                "best_val_loss": seen["best"],
                "best_iteration": None if seen["best_epoch"] is None else seen["best_epoch"] * val_interval,
                "last_iteration": seen["step"], "resumed_at": seen["resumed_at"], "stopped_early": seen["stopped_early"]}

    def _link_inputs(self, folder: Path, resolutions) -> dict[tuple[float, str], Path]:
        """A flat folder of links ``<res>__<id>.nii.gz`` to the test inputs, so one inference run covers them."""
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for res in resolutions:
            for e in self.items(res, "test"):
                link = folder / f"{file_tag(res)}__{e['id']}.nii.gz"
                target = Path(e["image"])
                if not (link.is_symlink() and os.readlink(link) == str(target)):
                    if link.is_symlink() or link.exists():
                        link.unlink()
                    try:
                        link.symlink_to(target)
                    except OSError:  # file systems without symlinks
                        shutil.copyfile(target, link)
                out[(res, e["id"])] = link
        return out

    def _infer(self, uid: str, stage: str, name: str, model: str, inputs: dict, out_dir: Path) -> dict:
        folder = next(iter(inputs.values())).parent
        overrides = {"bundle_root": str(self.bundle), "dataset_dir": str(folder), "output_dir": str(out_dir),
                     "ckpt_path": model, "device": self.cfg.device, "residual": False}
        argv = bundle_command([self.bundle / "configs" / "inference.json"], overrides)
        run_logged(argv, self.log_path(stage, name), cwd=self.bundle, env=self._env(bundle=True))
        preds = {f"{file_tag(res)}__{sid}": str(out_dir / f"{file_tag(res)}__{sid}_denoised.nii.gz") for res, sid in inputs}
        missing = [p for p in preds.values() if not Path(p).is_file()]
        if missing:
            raise StudyError(f"{uid}: inference wrote no {missing[0]} (and {len(missing) - 1} more); "
                             f"see {self.log_path(stage, name)}.")
        for stray in set(p.name for p in out_dir.glob("*.nii.gz")) - set(Path(p).name for p in preds.values()):
            (out_dir / stray).unlink()  # outputs of inputs no longer in the test sets
        return {"files": sorted(preds.values()), "predictions": preds}

    # ---- training and cross-test ----------------------------------------------------------------
    def _train_settings(self, res: float) -> dict:
        c = self.cfg
        return {"resolution_um": res, "iterations": c.iterations, "val_interval": c.val_interval,
                "save_interval": c.save_interval, "batch_size": c.batch_size, "patch_size": c.patch_size,
                "learning_rate": c.learning_rate, "lr_decay_steps": c.lr_decay_steps,
                "early_stop_patience": c.early_stop_patience, "seed": c.seed, "amp": c.amp, "bundle": "train.json"}

    def train_marker(self, res: float, run: bool = False) -> dict:
        """The training unit of one resolution: its marker, after running it when ``run`` (else it must be done).

        Args:
            res: the resolution (µm).
            run: run the unit unless it is done.
        """
        settings = self._train_settings(res)
        upstream = {"data": self.data_marker(res)["digest"]}
        if not run:
            return self.require("train", res_tag(res), settings, upstream, "run the study with --stages train first.")
        c = self.cfg

        def work(uid):
            # patience 0 = off: the bundle's EarlyStopHandler needs a positive patience, and one equal to the
            # number of validations can never be reached (the first validation sets the best score)
            patience = c.early_stop_patience or c.iterations // c.val_interval
            overrides = {**self._common_overrides(), "resolution": res, "num_iterations": c.iterations,
                         "val_interval": c.val_interval, "save_interval": c.save_interval,
                         "early_stop_patience": patience}
            out = self._run_training(uid, "train", res_tag(res), ["train.json"], overrides, self.root / "models" / res_tag(res),
                                     c.iterations, c.val_interval)
            return out, f"best val_loss {out['best_val_loss']} at iteration {out['best_iteration']}"

        weight = c.iterations * c.batch_size * c.patch_size**2 * 3
        return self.unit("train", res_tag(res), settings, upstream, work, "train", weight)

    def stage_train(self) -> None:
        """Train one model per resolution."""
        for res in self.cfg.resolutions:
            self.train_marker(res, run=True)

    def crosstest_marker(self, model_res: float, run: bool = False) -> dict:
        """The inference unit of one model on every test set: its marker, after running it when ``run``.

        Args:
            model_res: the model's training resolution (µm).
            run: run the unit unless it is done.
        """
        c = self.cfg
        settings = {"model_um": model_res, "test_resolutions": list(c.resolutions)}
        upstream = {"train": self.train_marker(model_res)["digest"],
                    **{f"data_{res_tag(r)}": self.data_marker(r)["digest"] for r in c.resolutions}}
        name = f"infer_model_{res_tag(model_res)}"
        if not run:
            return self.require("crosstest", name, settings, upstream, "run the study with --stages crosstest first.")

        def work(uid):
            inputs = self._link_inputs(self.root / "crosstest" / "inputs", c.resolutions)
            model = self.train_marker(model_res)["outputs"]["model"]
            out = self._infer(uid, "crosstest", name, model, inputs, self.root / "crosstest" / "pred" / f"model_{res_tag(model_res)}")
            return out, f"{len(inputs)} test images"

        return self.unit("crosstest", name, settings, upstream, work, "infer",
                          self._split_count("test") * len(c.resolutions) * c.n_pixels**2)

    def stage_crosstest(self) -> None:
        """Every model on every test set, then the cross-test tables and figures."""
        c = self.cfg
        for r in c.resolutions:
            self.train_marker(r)  # every model must exist before the first inference
        markers = {m: self.crosstest_marker(m, run=True) for m in c.resolutions}
        upstream = {f"infer_{res_tag(m)}": mk["digest"] for m, mk in markers.items()}
        settings = {"resolutions": list(c.resolutions), "report_rows": list(c.report_rows), "version": 2,
                    "psnr_peak_cm": self.metrics.DEFAULT_PEAK_CM}
        self.unit("crosstest", "tables", settings, upstream, lambda uid: stages.crosstest_outputs(self, markers), "tables")

    # ---- retraining -----------------------------------------------------------------------------
    def retrain_pair(self) -> tuple[float, float]:
        """``(source, target)`` resolutions of the retraining, as they appear in ``resolutions``."""
        c = self.cfg
        src, tgt = c.retrain_source, c.retrain_target
        for name, r in (("retrain-source", src), ("retrain-target", tgt)):
            if not any(math.isclose(r, x) for x in c.resolutions):
                raise StudyError(f"--{name} {r:g} µm is not among --resolutions ({', '.join(f'{x:g}' for x in c.resolutions)}).")
        if math.isclose(src, tgt):
            raise StudyError("--retrain-source and --retrain-target must differ.")
        return next(x for x in c.resolutions if math.isclose(x, src)), next(x for x in c.resolutions if math.isclose(x, tgt))

    def _finetune_marker(self, f: float) -> dict:
        c = self.cfg
        src, tgt = self.retrain_pair()
        name = f"finetune_{pct(f)}pct"
        settings = {"source_um": src, "target_um": tgt, "fraction": f, "iterations": c.finetune_iterations,
                    "val_interval": c.finetune_val_interval, "patience": c.finetune_patience, "batch_size": c.batch_size,
                    "patch_size": c.patch_size, "learning_rate": c.learning_rate, "lr_decay_steps": c.lr_decay_steps,
                    "seed": c.seed, "amp": c.amp, "bundle": "train.json+finetune.json"}
        upstream = {"train": self.train_marker(src)["digest"], "data": self.data_marker(tgt)["digest"]}

        def work(uid):
            overrides = {**self._common_overrides(), "resolution": tgt, "pretrained_ckpt": self.train_marker(src)["outputs"]["model"],
                         "train_fraction": f, "subset_seed": c.seed, "num_iterations": c.finetune_iterations,
                         "val_interval": c.finetune_val_interval, "save_interval": c.finetune_val_interval,
                         "early_stop_patience": c.finetune_patience}
            out = self._run_training(uid, "retrain", name, ["train.json", "finetune.json"], overrides,
                                     self.root / "retrain" / f"frac{pct(f)}pct", c.finetune_iterations, c.finetune_val_interval)
            out["n_images"] = max(1, int(round(f * len(self.items(tgt, "training")))))  # as the bundle's load_split keeps
            return out, f"{out['n_images']} images, best at iteration {out['best_iteration']}"

        return self.unit("retrain", name, settings, upstream, work, "finetune",
                          c.finetune_iterations * c.batch_size * c.patch_size**2 * 3)

    def _retrain_infer_marker(self, f: float, ft: dict) -> dict:
        _, tgt = self.retrain_pair()
        name = f"infer_{pct(f)}pct"
        upstream = {"finetune": ft["digest"], "data": self.data_marker(tgt)["digest"]}

        def work(uid):
            inputs = self._link_inputs(self.root / "retrain" / "inputs", [tgt])
            out = self._infer(uid, "retrain", name, ft["outputs"]["model"], inputs, self.root / "retrain" / "pred" / f"frac{pct(f)}pct")
            return out, f"{len(inputs)} test images"

        return self.unit("retrain", name, {"fraction": f, "test_um": tgt}, upstream, work, "infer",
                          self._split_count("test") * self.cfg.n_pixels**2)

    def stage_retrain(self) -> None:
        """Fine-tune the source model on each fraction of the target training set, test it, tabulate."""
        c = self.cfg
        src, tgt = self.retrain_pair()
        self.train_marker(src)  # prerequisite, with a clear message when missing
        base = {m: self.crosstest_marker(m, run=True) for m in (src, tgt)}  # "before" and the self-test reference
        markers = {}
        for f in c.fractions:
            ft = self._finetune_marker(f)
            markers[f] = (ft, self._retrain_infer_marker(f, ft))
        upstream = {**{f"infer_{pct(f)}pct": mk[1]["digest"] for f, mk in markers.items()},
                    **{f"finetune_{pct(f)}pct": mk[0]["digest"] for f, mk in markers.items()},
                    "before": base[src]["digest"], "self": base[tgt]["digest"]}
        settings = {"source_um": src, "target_um": tgt, "fractions": list(c.fractions), "version": 2,
                    "psnr_peak_cm": self.metrics.DEFAULT_PEAK_CM}
        self.unit("retrain", "tables", settings, upstream, lambda uid: stages.retrain_outputs(self, src, tgt, base, markers))

    # ---- noise and report -----------------------------------------------------------------------
    def stage_noise(self) -> None:
        """Noise power spectra and noise maps of the noise-only images."""
        c = self.cfg
        upstream = {f"data_{res_tag(r)}": self.data_marker(r)["digest"] for r in c.resolutions}
        settings = {"roi": c.nps_roi, "grid": c.nps_grid, "split": c.nps_split, "max_images": c.nps_max_images, "version": 2}
        self.unit("noise", "tables", settings, upstream, lambda uid: stages.noise_outputs(self))

    def stage_report(self) -> None:
        """``report.md`` from whatever the other stages have made."""
        from .report import write_report

        upstream = {}
        for stage in ("crosstest", "retrain", "noise"):
            m = read_json(self.state_dir / stage / "tables.json")
            if isinstance(m, dict):
                upstream[stage] = m.get("digest")
        for r in self.cfg.resolutions:
            for stage in ("data", "train"):
                m = read_json(self.state_dir / stage / f"{res_tag(r)}.json")
                if isinstance(m, dict):
                    upstream[f"{stage}_{res_tag(r)}"] = m.get("digest")
        settings = {"config": {k: v for k, v in self.cfg.to_dict().items() if k not in ("stages", "device", "threads")},
                    "version": 2}
        self.unit("report", "report", settings, upstream,
                   lambda uid: write_report(self.root, self.cfg, self.metrics.DEFAULT_PEAK_CM), "report")

