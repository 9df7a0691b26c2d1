"""What the data, evaluation and figures units of the simulated study derive once the bundles have run: images
are read from the run's files, numbers come from the bundle's metrics and :mod:`.analysis`, pictures from
:mod:`.figures`."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ldct_scripts.bundle_import import load_bundle_module
from ldct_scripts.studies.engine import StudyError, bundle_command, write_table, write_text

from . import analysis, figures
from .config import CPCE_BUNDLE, DIRECTIONS, HU_WINDOW, METHODS, UNET_BUNDLE, UNET_COLUMN

__all__ = ["write_unet_datalists", "evaluate_items", "read_image", "unet_predictions", "table_outputs", "figure_outputs",
           "TABLE_COLUMNS"]

TABLE_COLUMNS = ["direction", "method", "metric", "mean", "std", "n_images"]
#: The folder names the cross-domain bundle's ``evaluate.json`` reads under ``runs_dir``, per method.
_BUNDLE_RUN = {"baseline": "baseline", "fixed": "fixed_rfm", "adaptive": "adaptive_rfm"}


def write_unet_datalists(data_dir: Path, directions: Mapping[str, str]) -> list[Path]:
    """The U-Net bundle's ``{"training", "validation"}`` datalists: the same source pairs and target validation.

    Args:
        data_dir: the domains' folder (``datalist_<direction>.json`` in it).
        directions: the direction keys.

    Returns:
        Every datalist of the data unit: the cross-domain bundle's and the U-Net's.
    """
    files = []
    for direction in directions:
        source = data_dir / f"datalist_{direction}.json"
        dl = json.loads(source.read_text())
        files += [source, write_text(data_dir / f"unet_{direction}.json",
                                     json.dumps({"training": dl["source"], "validation": dl["validation"]}, indent=1))]
    return files


def evaluate_items(data_dir: Path, direction: str) -> list[dict]:
    """The target domain's test pairs of one direction, with absolute paths.

    Args:
        data_dir: the domains' folder.
        direction: ``s2r`` or ``r2s``.
    """
    dl = json.loads((data_dir / f"datalist_{direction}.json").read_text())
    return [{k: str(data_dir / v) for k, v in it.items()} for it in dl["test"]]


def read_image(path) -> np.ndarray:
    """A NIfTI slice as a float32 2-D array (cm⁻¹).

    Args:
        path: the file.
    """
    import nibabel as nib

    return np.squeeze(np.asarray(nib.load(str(path)).dataobj, dtype=np.float32))


def unet_predictions(study, uid: str, direction: str, model: str) -> dict:
    """Denoise one direction's test inputs with the U-Net bundle's own ``configs/inference.json``.

    Args:
        study: the :class:`~.study.DomainAdaptationStudy`.
        uid: the running unit's id.
        direction: ``s2r`` or ``r2s``.
        model: the U-Net's weights.

    Returns:
        The unit's outputs: ``files`` (the predictions, in test order).
    """
    in_dir, out_dir = study.root / "unet_inputs" / direction, study.root / "unet_outputs" / direction
    in_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for k, item in enumerate(evaluate_items(study.data_dir, direction)):
        link = in_dir / f"{k:04d}.nii.gz"
        if not link.exists():
            os.symlink(os.path.abspath(item["image"]), link)
        names.append(out_dir / f"{k:04d}_denoised.nii.gz")
    argv = bundle_command(["configs/inference.json"], {"dataset_dir": in_dir, "output_dir": out_dir, "ckpt_path": model,
                                                       "device": f"$torch.device('{study.cfg.device}')", "residual": False})
    study.run_command(uid, argv, study.log_path("evaluate", f"unet_{direction}"), UNET_BUNDLE)
    missing = [p for p in names if not p.is_file()]
    if missing:
        raise StudyError(f"{uid}: inference wrote no {missing[0]}; see {study.log_path('evaluate', f'unet_{direction}')}.")
    return {"files": [str(p) for p in names]}


def _link_bundle_runs(study) -> Path:
    """``bundle_runs/<direction>_<bundle folder>`` links to ``runs/<direction>_<method>``, as ``evaluate.json`` reads them."""
    bundle_runs = study.root / "bundle_runs"
    for direction in DIRECTIONS:
        for method, folder in _BUNDLE_RUN.items():
            src, dst = study.root / "runs" / f"{direction}_{method}", bundle_runs / f"{direction}_{folder}"
            if src.is_dir() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(src.resolve(), dst)
    return bundle_runs


def _unet_rows(study, direction: str) -> list[dict]:
    """The U-Net column of one direction: the bundle's metrics on its predictions, in HU."""
    import torch

    from ldct_sim import mu_water

    evaluate = load_bundle_module(CPCE_BUNDLE, "evaluate")
    mu_w = mu_water()  # cm⁻¹ at 60 keV, the energy the domains were simulated at
    items = evaluate_items(study.data_dir, direction)
    preds = study.unet_infer_marker(direction)["outputs"]["files"]
    as_hu = lambda p: torch.from_numpy(analysis.to_hu(read_image(p), mu_w))[None, None]  # noqa: E731
    per_image = [evaluate.image_metrics(as_hu(p), as_hu(it["label"])) for p, it in zip(preds, items)]
    return analysis.summarize(per_image, DIRECTIONS[direction], UNET_COLUMN)


def table_outputs(study, uid: str) -> tuple[dict, str]:
    """Table 1: the cross-domain bundle's ``evaluate.json`` on every CPCE run, plus the U-Net column.

    Args:
        study: the :class:`~.study.DomainAdaptationStudy`.
        uid: the running unit's id.
    """
    c, eval_dir = study.cfg, study.root / "eval"
    argv = bundle_command(["configs/evaluate.json"], {"dataset_dir": study.data_dir, "runs_dir": _link_bundle_runs(study),
                                                      "output_dir": eval_dir, "device": f"$torch.device('{c.device}')",
                                                      "residual": False})  # the runs are the seed's CPCE
    study.run_command(uid, argv, study.log_path("evaluate", "cpce"))
    with open(eval_dir / "table.csv", newline="", encoding="utf-8") as f:
        rows = [dict(r, mean=float(r["mean"]), std=float(r["std"]), n_images=int(r["n_images"])) for r in csv.DictReader(f)]
    directions = [DIRECTIONS[d] for d in c.directions]
    for direction in c.directions if c.unet else ():
        rows += _unet_rows(study, direction)
    columns = ["LDCT"] + [METHODS[m][0] for m in c.methods] + ([UNET_COLUMN] if c.unet else [])
    rows = analysis.select_rows(rows, directions, columns)
    markdown = load_bundle_module(CPCE_BUNDLE, "evaluate").format_markdown(rows, directions, columns)
    files = write_table(study.tables / "table1", rows, TABLE_COLUMNS, markdown=markdown)
    return {"files": [str(f) for f in files]}, f"{len(rows)} cells"


def _cpce_prediction(model: Path, image_mu: np.ndarray) -> np.ndarray:
    """One CPCE model on one image (cm⁻¹), on the bundle's own network scale."""
    import torch

    networks = load_bundle_module(CPCE_BUNDLE, "networks")
    lo, hi = load_bundle_module(CPCE_BUNDLE, "helpers").intensity_range(HU_WINDOW, "mu")  # the bundle's μ_water
    net = networks.CPCE2D(in_channels=1, out_channels=1, channels=32)
    net.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
    x = torch.from_numpy((image_mu - lo) / (hi - lo)).float()[None, None]
    with torch.no_grad():
        y = net.eval()(x)[0, 0].numpy()
    return y * (hi - lo) + lo


def figure_outputs(study) -> tuple[dict, str]:
    """``figures/examples_<direction>.png``: target test image 0, every method, the label.

    Args:
        study: the :class:`~.study.DomainAdaptationStudy`.
    """
    from ldct_sim import mu_water

    c, mu_w, written = study.cfg, mu_water(), []
    for direction in c.directions:
        item = evaluate_items(study.data_dir, direction)[0]
        ldct, ndct = read_image(item["image"]), read_image(item["label"])
        panels = [("LDCT", ldct)]
        for method in c.methods:
            model = study.root / "runs" / f"{direction}_{method}" / "model.pt"
            if model.is_file():
                panels.append((METHODS[method][0], _cpce_prediction(model, ldct)))
        unet_out = study.root / "unet_outputs" / direction / "0000_denoised.nii.gz"
        if c.unet and unet_out.is_file():
            panels.append(("U-Net", read_image(unet_out)))
        panels.append(("NDCT (label)", ndct))
        title = f"{DIRECTIONS[direction]}: target-domain test image 0, display [40, 400] HU"
        written.append(figures.examples_figure(study.figures / f"examples_{direction}.png", title,
                                               [(t, analysis.to_hu(img, mu_w)) for t, img in panels], analysis.to_hu(ndct, mu_w)))
    return {"files": [str(p) for p in written]}, f"{len(written)} figures"
