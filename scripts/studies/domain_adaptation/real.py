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
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ldct_scripts import REPO
from ldct_scripts.studies.engine import StudyError, Unit, bundle_command, file_digest, read_json, write_table

from . import analysis
from .config import CPCE_BUNDLE, PROFILE, REAL_METHODS, UNET_BUNDLE
from .report import write_real_report
from .study import _CPCE_EPOCH, _UNET_ITER, DomainAdaptationStudy

__all__ = ["RealTargetStudy", "write_normal_dose"]


def write_normal_dose(real_dir: Path, out_dir: Path, kernel: str = "B30f") -> list[Path]:
    """The shared normal-dose slices of one kernel as NIfTI in HU, one folder per patient (the simulator's input).

    Args:
        real_dir: the shared real folder (``normal_dose.npz`` with ``hu`` (N, H, W), ``normal_dose.json`` records).
        out_dir: where ``<patient>/<index>.nii.gz`` go.
        kernel: the kernel prefix of the slices kept.
    """
    import nibabel as nib

    records = json.loads((real_dir / "normal_dose.json").read_text())
    hu = np.load(real_dir / "normal_dose.npz")["hu"]
    written = []
    for i, rec in enumerate(records):
        if str(rec.get("kernel", "")).startswith(kernel):
            folder = out_dir / rec["patient"]
            folder.mkdir(parents=True, exist_ok=True)
            mm, thick = float(rec["pixel_spacing_mm"]), float(rec.get("slice_thickness_mm") or 1.0)
            nib.save(nib.Nifti1Image(hu[i].astype(np.float32)[:, :, None], np.diag([mm, mm, thick, 1.0])),
                     str(folder / f"{i:02d}.nii.gz"))
            written.append(folder / f"{i:02d}.nii.gz")
    return written


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
        units += [Unit("train", f"s2r_{m}", "train", c.max_epochs * c.patches_per_epoch) for m in trained if "train" in c.stages]
        if "evaluate" in c.stages:
            units += [Unit("evaluate", m, "infer", 1.0) for m in c.methods] + [Unit("evaluate", "table", "tables", 1.0)]
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

    # ---- training -------------------------------------------------------------------------------
    def _per_epoch(self) -> int:
        """The U-Net's iterations per "epoch" (one validation each) for the CPCE's number of source patches: the
        U-Net bundle's loader yields ``min(batch, training slices)`` patches per iteration (one per slice)."""
        c = self.cfg
        datalist = read_json(self.data_dir / "source" / PROFILE / "datalist.json")
        if not isinstance(datalist, dict):
            raise StudyError(f"no simulated source datalist in {self.data_dir / 'source' / PROFILE}; run --stages data first.")
        return max(1, c.patches_per_epoch // min(c.batch_size, len(datalist["training"])))

    def _iterations(self) -> int:
        """The U-Net's iterations: a whole number of validation intervals (its ``train.json`` requires it)."""
        return self._per_epoch() * self.cfg.max_epochs

    def _real_settings(self, method: str) -> dict:
        c = self.cfg
        if method == "unet":
            n = self._iterations()
            return {"train_fraction": 1.0, "num_iterations": n, "val_interval": self._per_epoch(),
                    "early_stop_patience": 1000, "patch_size": c.patch_size, "batch_size": c.batch_size, "num_workers": 0,
                    "seed": c.seed, "bundle": "train.json+finetune.json"}
        return {"max_epochs": c.max_epochs, "patches_per_epoch": c.patches_per_epoch, "batch_size": c.batch_size,
                "patch_size": f"[{c.patch_size},{c.patch_size}]", "seed": c.seed, **REAL_METHODS[method][1],
                "bundle": "train.json+adapt.json"}

    def train_marker(self, direction: str, method: str, run: bool = False) -> dict:
        """One method's training from its bundle's shipped weights on the simulated source: its marker.

        Args:
            direction: ``s2r`` (the only direction with a real target).
            method: a key of ``REAL_METHODS`` other than ``shipped``.
            run: run the unit unless it is done.
        """
        upstream = {"data": self.data_marker()["digest"]}  # first: the U-Net's settings read the simulated datalist
        c, name, settings = self.cfg, f"s2r_{method}", self._real_settings(method)
        if not run:
            return self.require("train", name, settings, upstream, "run the study with --stages train first.")
        run_dir, unet = self.root / "runs" / name, method == "unet"
        data = self.data_dir

        def work(uid):
            overrides = {k: v for k, v in settings.items() if k != "bundle"}
            overrides["device"] = f"$torch.device('{c.device}')"
            if unet:
                overrides.update(dataset_dir=data / "source" / PROFILE, output_dir=run_dir)
                configs, model = ["configs/train.json", "configs/finetune.json"], run_dir / "checkpoints" / "model.pt"
                total, pattern = self._iterations(), _UNET_ITER
            else:
                overrides.update(source_dir=data / "source", target_dir=data / "real" / "low_dose", run_dir=run_dir)
                configs, model = ["configs/train.json", "configs/adapt.json"], run_dir / "model.pt"
                total, pattern = c.max_epochs, _CPCE_EPOCH
            self.run_command(uid, bundle_command(configs, overrides), self.log_path("train", method),
                             UNET_BUNDLE if unet else CPCE_BUNDLE, total, pattern)
            if not model.is_file():
                raise StudyError(f"train {name}: the bundle finished without {model}; see {self.log_path('train', method)}.")
            return {"files": [str(model)], "model": str(model), "model_digest": file_digest(model)}, f"{model.name} written"

        return self.unit("train", name, settings, upstream, work, "train", c.max_epochs * c.patches_per_epoch)

    def stage_train(self) -> None:
        """One run per method (the shipped weights are not trained), same source pairs and patches."""
        self.data_marker()
        for method in self.cfg.methods:
            if method != "shipped":
                self.train_marker("s2r", method, run=True)

    # ---- evaluation and report ------------------------------------------------------------------
    def eval_marker(self, method: str) -> dict:
        """One method through ``python -m ldct_scripts.bench.bench_real`` on the shared pairs: its marker.

        Args:
            method: a key of ``REAL_METHODS``.
        """
        bundle = analysis.bundle_name(method)
        if method == "shipped":
            shipped = CPCE_BUNDLE / "models" / "model.pt"
            ckpt, upstream = None, {"weights": file_digest(shipped) if shipped.is_file() else None}
        else:
            train = self.train_marker("s2r", method)
            ckpt, upstream = train["outputs"]["model"], {"train": train["digest"]}
        upstream["pairs"] = self._pairs()["dev_pairs.npz"]
        out = self.root / "eval" / method

        def work(uid):
            argv = [sys.executable, "-m", "ldct_scripts.bench.bench_real", "--from-npz", Path(self.cfg.real_dir) / "dev_pairs.npz",
                    "--bundles", bundle, "--out", out, "--no-progress"]
            argv += ["--ckpt", f"{bundle}={ckpt}"] if ckpt else []
            if out.exists():  # an interrupted or outdated evaluation of ours: bench_real wants a new or empty folder
                shutil.rmtree(out)
            self.run_command(uid, argv, self.log_path("evaluate", method), cwd=REPO)
            return {"files": [str(out / "results.csv")]}, f"{bundle} on the shared pairs"

        return self.unit("evaluate", method, {"method": method, "bundle": bundle}, upstream, work, "infer")

    def table_marker(self) -> dict:
        """Every method on the shared pairs, then the table (``tables/s2r_real.{csv,md}``): the table unit's marker."""
        markers = {m: self.eval_marker(m) for m in self.cfg.methods}

        def work(uid):
            results = {}
            for m, marker in markers.items():
                with open(marker["outputs"]["files"][0], newline="", encoding="utf-8") as f:
                    results[m] = list(csv.DictReader(f))
            rows = analysis.real_rows(results, list(self.cfg.methods))
            columns = list(dict.fromkeys(k for r in rows for k in r))
            files = write_table(self.tables / "s2r_real", rows, columns, markdown=analysis.real_table(rows) + "\n")
            return {"files": [str(f) for f in files], "rows": rows}, f"{len(rows)} rows"

        upstream = {m: mk["digest"] for m, mk in markers.items()}
        return self.unit("evaluate", "table", {"methods": list(self.cfg.methods), "version": 1}, upstream, work, "tables")

    def stage_evaluate(self) -> None:
        """Every method on the shared pairs, and the table."""
        self.table_marker()

    def stage_report(self) -> None:
        """``report.md``: the table, the reading, whether the mask adapts, what differs from seed B, settings."""
        table = self.table_marker()  # evaluated first when the evaluate stage has not run (as before the move)
        mask = self.root / "runs" / "s2r_adaptive" / "mask_report.json"
        upstream = {"table": table["digest"], "mask": file_digest(mask) if mask.is_file() else None}
        settings = {"config": {k: v for k, v in self.cfg.to_dict().items() if k not in ("stages", "device")}, "version": 1}
        self.unit("report", "report", settings, upstream, lambda uid: write_real_report(self, table["outputs"]["rows"]), "report")
