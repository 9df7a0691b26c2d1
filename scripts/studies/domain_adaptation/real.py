"""The cross-domain study with a real target (``--preset real``): synthetic → real (S→R) on the shared AAPM–Mayo pairs.

* **S** (source, labelled): real normal-dose anatomy of patients *not* in the target (``normal_dose.npz`` of
  ``../shared/real_ldct``, the smooth-kernel slices) through ``python -m ldct_sim simulate`` with the shipped
  Siemens B30f profile, by noise insertion (``--noise-insertion``): the label is the normal-dose slice itself and
  the input adds the profile's simulated quarter-dose noise to it, the way Mayo made the target's quarter-dose
  images (a noiseless reconstruction as the label would apply the B30f blur a second time).
* **R** (target): the real quarter-dose images of the shared pairs, *unlabelled* while training; their full-dose
  partners only score the test, through ``python -m ldct_scripts.bench.bench_real``.

Every method starts from its bundle's shipped weights and trains on the same source pairs for the same number
of patches; one selection rule for all, chosen without target labels (``config.SELECTION_RULE``). The real images
never enter the repository: the results folder must lie outside it (``config.check_real``).
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

from ldct_scripts import REPO
from ldct_scripts.studies.engine import StudyError, Unit, bundle_command, file_digest, read_json, write_table

from . import analysis
from .config import CPCE_BUNDLE, PROFILE, R2S_PATIENT, REAL_METHODS, UNET_BUNDLE
from .real_data import write_normal_dose, write_real_source, write_simulated_test
from .report import write_real_report
from .study import _CPCE_EPOCH, _UNET_ITER, DomainAdaptationStudy

__all__ = ["RealTargetStudy", "write_normal_dose"]

#: Where each direction's labelled source, unlabelled target and test pairs lie under ``<results>/data``.
_SOURCE = {"s2r": f"source/{PROFILE}", "r2s": "real_source"}
_TARGET = {"s2r": "real/low_dose", "r2s": f"source/{PROFILE}/input"}


class RealTargetStudy(DomainAdaptationStudy):
    """Runs ``--preset real``: data (target NIfTI and simulated source), one training per method, ``bench_real`` per
    method, the table and the report.

    Args:
        config: the run's settings (``config.real``).
    """

    def plan(self) -> list[Unit]:
        """Every unit of the requested stages (weights: patches seen)."""
        c = self.cfg
        trained = [m for m in c.methods if m != "shipped"]
        units = [Unit("data", "real", "simulate", 1.0)] if "data" in c.stages else []
        units += [Unit("data", "r2s", "simulate", 0.1)] if "data" in c.stages and "r2s" in c.directions else []
        units += [Unit("train", f"{d}_{m}", "train", c.max_epochs * c.patches_per_epoch)
                  for d in c.directions for m in trained if "train" in c.stages]
        if "evaluate" in c.stages:
            units += [u for d in c.directions for u in
                      [Unit("evaluate", f"{d}_{m}", "infer", 1.0) for m in c.methods] + [Unit("evaluate", f"table_{d}", "tables", 1.0)]]
        return units + ([Unit("report", "report", "report", 1.0)] if "report" in c.stages else [])

    def _pairs(self) -> dict:
        """Digests of the shared files the study reads: a changed file makes every unit stale."""
        if not hasattr(self, "_pair_digests"):
            real = Path(self.cfg.real_dir)
            self._pair_digests = {n: file_digest(real / n) for n in ("dev_pairs.npz", "normal_dose.npz")}
        return self._pair_digests

    # ---- data -----------------------------------------------------------------------------------
    def data_marker(self, run: bool = False) -> dict:
        """Target NIfTI (quarter dose, and full dose for scoring) and the simulated source: the unit's marker.

        Args:
            run: run the unit unless it is done.
        """
        c = self.cfg
        settings = {"profile": PROFILE, "n_views": c.n_views, "seed": c.seed, "labels": "noise insertion"}
        if not run:
            return self.require("data", "real", settings, self._pairs(), "run the study with --stages data first.")

        def work(uid):
            from ldct_scripts.bench.bench_real import npz_to_nifti

            real = Path(c.real_dir)
            npz_to_nifti(real / "dev_pairs.npz", self.data_dir / "real", layout="dicom")
            write_normal_dose(real, self.data_dir / "normal_dose")
            argv = [sys.executable, "-m", "ldct_sim", "simulate", "--input", self.data_dir / "normal_dose", "--profile", PROFILE,
                    "--noise-insertion", "--n-views", c.n_views, "--split", "80", "20", "0", "--seed", c.seed,
                    "--out", self.data_dir / "source", "--no-progress"]
            self.run_command(uid, argv, self.log_path("data", "simulate"), cwd=REPO)
            files = [self.data_dir / "real" / "low_dose", self.data_dir / "source" / PROFILE]
            return {"files": [str(f) for f in files]}, "target NIfTI and simulated source"

        return self.unit("data", "real", settings, self._pairs(), work, "simulate")

    def r2s_data_marker(self, run: bool = False) -> dict:
        """R→S's data: the real pairs of ``R2S_PATIENT`` as the labelled source, and S→R's simulated pairs in HU as
        the test (their inputs are the unlabelled target): the unit's marker.

        Args:
            run: run the unit unless it is done.
        """
        settings, upstream = {"patient": R2S_PATIENT, "kernel": "B30f", "n_validation": 2}, {"data": self.data_marker()["digest"]}
        if not run:
            return self.require("data", "r2s", settings, upstream, "run the study with --stages data first.")

        def work(uid):
            source = write_real_source(Path(self.cfg.real_dir), self.data_dir / _SOURCE["r2s"], R2S_PATIENT)
            names = write_simulated_test(self.data_dir / _SOURCE["s2r"], self.data_dir / "simulated_test")
            return {"files": [str(source), str(self.data_dir / "simulated_test")]}, f"real source, {len(names)} test pairs"

        return self.unit("data", "r2s", settings, upstream, work, "simulate")

    def stage_data(self) -> None:
        """The target NIfTI and the simulated source; with R→S, its real source and simulated test too."""
        self.data_marker(run=True)
        if "r2s" in self.cfg.directions:
            self.r2s_data_marker(run=True)

    # ---- training -------------------------------------------------------------------------------
    def _per_epoch(self, direction: str = "s2r") -> int:
        """The U-Net's iterations per "epoch" (one validation each) for the CPCE's number of source patches: the
        U-Net bundle's loader yields ``min(batch, training slices)`` patches per iteration (one per slice)."""
        c, folder = self.cfg, self.data_dir / _SOURCE[direction]
        datalist = read_json(folder / "datalist.json")
        if not isinstance(datalist, dict):
            raise StudyError(f"no source datalist in {folder}; run --stages data first.")
        return max(1, c.patches_per_epoch // min(c.batch_size, len(datalist["training"])))

    def _iterations(self, direction: str = "s2r") -> int:
        """The U-Net's iterations: a whole number of validation intervals (its ``train.json`` requires it)."""
        return self._per_epoch(direction) * self.cfg.max_epochs

    def _real_settings(self, method: str, direction: str = "s2r") -> dict:
        c = self.cfg
        if method == "unet":
            n = self._iterations(direction)
            return {"train_fraction": 1.0, "num_iterations": n, "val_interval": self._per_epoch(direction),
                    "early_stop_patience": 1000, "patch_size": c.patch_size, "batch_size": c.batch_size, "num_workers": 0,
                    "seed": c.seed, "bundle": "train.json+finetune.json"}
        return {"max_epochs": c.max_epochs, "patches_per_epoch": c.patches_per_epoch, "batch_size": c.batch_size,
                "patch_size": f"[{c.patch_size},{c.patch_size}]", "seed": c.seed, **REAL_METHODS[method][1],
                "rec_weighting": "noise", "bundle": "train.json+adapt.json", **({"target_unit": "mu"} if direction == "r2s" else {})}

    def train_marker(self, direction: str, method: str, run: bool = False) -> dict:
        """One method's training from its bundle's shipped weights on the direction's source: its marker.

        Args:
            direction: ``s2r`` (simulated source, real target) or ``r2s`` (real source, simulated target).
            method: a key of ``REAL_METHODS`` other than ``shipped``.
            run: run the unit unless it is done.
        """
        data = self.data_marker() if direction == "s2r" else self.r2s_data_marker()
        upstream = {"data": data["digest"]}  # first: the U-Net's settings read the source datalist
        c, name, settings = self.cfg, f"{direction}_{method}", self._real_settings(method, direction)
        if not run:
            return self.require("train", name, settings, upstream, "run the study with --stages train first.")
        run_dir, unet = self.root / "runs" / name, method == "unet"
        data = self.data_dir

        def work(uid):
            overrides = {k: v for k, v in settings.items() if k != "bundle"}
            overrides["device"] = f"$torch.device('{c.device}')"
            if unet:
                overrides.update(dataset_dir=data / _SOURCE[direction], output_dir=run_dir)
                configs, model = ["configs/train.json", "configs/finetune.json"], run_dir / "checkpoints" / "model.pt"
                total, pattern = self._iterations(direction), _UNET_ITER
            else:
                overrides.update(source_dir=data / _SOURCE[direction], target_dir=data / _TARGET[direction], run_dir=run_dir)
                configs, model = ["configs/train.json", "configs/adapt.json"], run_dir / "model.pt"
                total, pattern = c.max_epochs, _CPCE_EPOCH
            self.run_command(uid, bundle_command(configs, overrides), self.log_path("train", name),
                             UNET_BUNDLE if unet else CPCE_BUNDLE, total, pattern)
            if not model.is_file():
                raise StudyError(f"train {name}: the bundle finished without {model}; see {self.log_path('train', name)}.")
            return {"files": [str(model)], "model": str(model), "model_digest": file_digest(model)}, f"{model.name} written"

        return self.unit("train", name, settings, upstream, work, "train", c.max_epochs * c.patches_per_epoch)

    def stage_train(self) -> None:
        """One run per direction and method (the shipped weights are not trained), same source pairs and patches."""
        for direction in self.cfg.directions:
            (self.data_marker if direction == "s2r" else self.r2s_data_marker)()
            for method in self.cfg.methods:
                if method != "shipped":
                    self.train_marker(direction, method, run=True)

    # ---- evaluation and report ------------------------------------------------------------------
    def eval_marker(self, direction: str, method: str) -> dict:
        """One method through ``python -m ldct_scripts.bench.bench_real``: its marker. S→R scores the shared real
        pairs; R→S the simulated pairs of the other patients (``data/simulated_test``, B30f profile).

        Args:
            direction: ``s2r`` or ``r2s``.
            method: a key of ``REAL_METHODS``.
        """
        bundle, name = analysis.bundle_name(method), f"{direction}_{method}"
        if method == "shipped":
            shipped = CPCE_BUNDLE / "models" / "model.pt"
            ckpt, upstream = None, {"weights": file_digest(shipped) if shipped.is_file() else None}
        else:
            train = self.train_marker(direction, method)
            ckpt, upstream = train["outputs"]["model"], {"train": train["digest"]}
        if direction == "s2r":
            upstream["pairs"] = self._pairs()["dev_pairs.npz"]
            pairs = ["--from-npz", Path(self.cfg.real_dir) / "dev_pairs.npz"]
        else:
            upstream["data"] = self.r2s_data_marker()["digest"]
            test = self.data_dir / "simulated_test"
            pairs = ["--low-dose", test / "low_dose", "--full-dose", test / "full_dose", "--kernel", "B30f"]
        out = self.root / "eval" / name

        def work(uid):
            argv = [sys.executable, "-m", "ldct_scripts.bench.bench_real", *pairs, "--bundles", bundle, "--out", out,
                    "--no-progress"]
            argv += ["--ckpt", f"{bundle}={ckpt}"] if ckpt else []
            if out.exists():  # an interrupted or outdated evaluation of ours: bench_real wants a new or empty folder
                shutil.rmtree(out)
            self.run_command(uid, argv, self.log_path("evaluate", name), cwd=REPO)
            return {"files": [str(out / "results.csv")]}, f"{bundle} on the {direction} test pairs"

        return self.unit("evaluate", name, {"method": method, "bundle": bundle, "direction": direction}, upstream, work,
                         "infer")

    def table_marker(self, direction: str = "s2r") -> dict:
        """Every method on one direction's test pairs, then its table (``tables/<direction>_real.{csv,md}``).

        Args:
            direction: ``s2r`` or ``r2s``.
        """
        markers = {m: self.eval_marker(direction, m) for m in self.cfg.methods}

        def work(uid):
            results = {}
            for m, marker in markers.items():
                with open(marker["outputs"]["files"][0], newline="", encoding="utf-8") as f:
                    results[m] = list(csv.DictReader(f))
            rows = analysis.real_rows(results, list(self.cfg.methods))
            columns = list(dict.fromkeys(k for r in rows for k in r))
            files = write_table(self.tables / f"{direction}_real", rows, columns, markdown=analysis.real_table(rows) + "\n")
            return {"files": [str(f) for f in files], "rows": rows}, f"{len(rows)} rows"

        upstream = {m: mk["digest"] for m, mk in markers.items()}
        return self.unit("evaluate", f"table_{direction}", {"methods": list(self.cfg.methods), "version": 1}, upstream,
                         work, "tables")

    def stage_evaluate(self) -> None:
        """Every method on each direction's test pairs, and the tables."""
        for direction in self.cfg.directions:
            self.table_marker(direction)

    def stage_report(self) -> None:
        """``report.md``: the tables, the readings, whether the mask adapts, what differs from seed B, settings."""
        tables = {d: self.table_marker(d) for d in self.cfg.directions}  # evaluated first when evaluate has not run
        masks = {d: self.root / "runs" / f"{d}_adaptive" / "mask_report.json" for d in self.cfg.directions}
        upstream = {**{f"table_{d}": t["digest"] for d, t in tables.items()},
                    **{f"mask_{d}": file_digest(m) if m.is_file() else None for d, m in masks.items()}}
        settings = {"config": {k: v for k, v in self.cfg.to_dict().items() if k not in ("stages", "device")}, "version": 2}
        rows = {d: t["outputs"]["rows"] for d, t in tables.items()}
        self.unit("report", "report", settings, upstream, lambda uid: write_real_report(self, rows), "report")
