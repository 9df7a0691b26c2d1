"""The cross-domain study of Huang et al. (the seed's Table 1, Figures 2 and 3), end to end and resumable.

Synthetic→real (S→R) and real→synthetic (R→S) on two simulated domains (``bundles/cpce_rfm_da``'s
``python -m scripts.domains``): for each direction, plain CPCE and CPCE + adaptive RFM alignment (and,
with ``--methods``, the fixed-RFM ablation) trained by the cross-domain bundle's ``configs/train.json``
with the same budget, the U-Net bundle's ``configs/train.json`` on the same source pairs as an extra
column, then PSNR/SSIM (mean ± std) of every model on the target domain's test pairs through the
cross-domain bundle's ``configs/evaluate.json``. The bundles hold all training and metric logic; this
script only orchestrates, so every number here can be reproduced with the bundle commands it logs.

Stages (each resumable: finished work is skipped, an interrupted training resumes from its last
checkpoint through the bundle's own ``resume``):

1. ``data``: simulate both domains (``<results>/data``).
2. ``train``: one run per direction and method (``<results>/runs/<direction>_<method>``).
3. ``evaluate``: Table 1 with the input, each method and the U-Net (``<results>/tables``).
4. ``figures``: one test image per direction, all methods, in the seed's [40, 400] HU window with a
   zoomed ROI (``<results>/figures``).
5. ``report``: ``<results>/report.md`` with settings, versions, the table beside the seed's, figures.

Usage::

    python scripts/domain_adaptation.py --results_dir results/domain_adaptation --preset small
    python scripts/domain_adaptation.py --results_dir /tmp/da --preset smoke
    python scripts/domain_adaptation.py --results_dir results/da_paper --preset paper --vgg_weights vgg19.pth

Every preset size is also a flag (``--n_pixels``, ``--n_train``, ``--max_epochs``, ...).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_tools import (  # noqa: E402
    REPO,
    Stage,
    atomic_write_text,
    load_bundle_module,
    run_bundle,
    versions,
)
from study_common import output_folder  # noqa: E402

logger = logging.getLogger("domain_adaptation")

CPCE_BUNDLE = REPO / "bundles" / "cpce_rfm_da"
UNET_BUNDLE = REPO / "bundles" / "unet_ldct"
DIRECTIONS = {"s2r": "S→R", "r2s": "R→S"}
METHODS = {  # method key -> (Table 1 column, train.json overrides)
    "baseline": ("CPCE", {"baseline": True}),
    "fixed": ("CPCE + fixed RFM alignment (ablation)", {"rfm_mode": "fixed"}),
    "adaptive": ("CPCE + adaptive RFM alignment", {"rfm_mode": "adaptive"}),
}
UNET_COLUMN = "U-Net (extra)"
MU_WATER = 0.2059  # cm^-1 at 60 keV, the bundles' value
HU_WINDOW = (-1024.0, 3072.0)  # the cross-domain bundle's network scale
DISPLAY_HU = (40.0, 400.0)  # the seed's Figures 2 and 3

#: The seed's Table 1 (Mayo/LIDC data; "mean±var", conventions unstated).
SEED_TABLE1 = {
    "psnr": {"S→R": {"LDCT": "34.21±0.81", "CPCE": "38.58±0.73", "Ours": "42.27±0.63"},
             "R→S": {"LDCT": "34.21±0.81", "CPCE": "36.31±0.89", "Ours": "40.92±0.58"}},
    "ssim": {"S→R": {"LDCT": "0.93±0.79", "CPCE": "0.95±0.73", "Ours": "0.99±0.51"},
             "R→S": {"LDCT": "0.93±0.79", "CPCE": "0.94±0.78", "Ours": "0.98±0.53"}},
}

PRESETS = {
    # a couple of minutes on 2 CPU cores: checks that everything is produced, numbers mean nothing
    "smoke": dict(n_pixels=48, n_views=60, n_train=4, n_validation=2, n_test=2, max_epochs=1, batch_size=4,
                  patch_size=32, unet_iterations=2, unet_patch_size=32, unet_batch_size=2),
    # about half an hour on 2 CPU cores
    "small": dict(n_pixels=128, n_views=360, n_train=64, n_validation=8, n_test=24, max_epochs=40, batch_size=16,
                  patch_size=64, unet_iterations=300, unet_patch_size=64, unet_batch_size=8),
    # the real target (scripts/domain_adaptation_real.py): S→R onto the shared AAPM–Mayo quarter-dose images,
    # every method from its shipped weights, 8 epochs × 384 patches each: about 20 minutes on 2 CPU cores
    "real": dict(n_pixels=512, n_views=576, n_train=0, n_validation=0, n_test=0, max_epochs=8, batch_size=16,
                 patch_size=64, unet_iterations=0, unet_patch_size=64, unet_batch_size=16),
    # the seed's batch size, 512² slices, the bundle's default epochs: for a GPU
    "paper": dict(n_pixels=512, n_views=None, n_train=200, n_validation=20, n_test=50, max_epochs=100,
                  batch_size=16, patch_size=64, unet_iterations=20000, unet_patch_size=64, unet_batch_size=16),
}


def _train_overrides(args, direction: str, method: str, data_dir: Path, run_dir: Path) -> dict:
    overrides = {
        "datalist": data_dir / f"datalist_{direction}.json",
        "ckpt_dir": run_dir,
        "output_dir": run_dir / "logs",
        "max_epochs": args.max_epochs,
        "batch_size": args.batch_size,
        "patch_size": f"[{args.patch_size},{args.patch_size}]",
        "val_interval": args.val_interval,
        "seed": args.seed,
        "num_workers": 0,
        "lambda_adv": args.lambda_adv,
        "lambda_align": args.lambda_align,
        "device": f"$torch.device('{args.device}')",
        **METHODS[method][1],
    }
    if args.vgg_weights:
        overrides["vgg_weights"] = Path(args.vgg_weights).resolve()
    else:
        overrides["use_perceptual"] = False
    return overrides


def stage_data(args, results: Path) -> Stage:
    data_dir = results / "data"
    stage = Stage(results, "data")
    settings = {"sizes": [args.n_pixels, args.n_views, args.n_train, args.n_validation, args.n_test, args.seed]}
    if stage.done(settings):
        return stage
    cmd = ["-m", "scripts.domains", "--output_dir", str(data_dir), "--n_pixels", str(args.n_pixels),
           "--n_train", str(args.n_train), "--n_validation", str(args.n_validation), "--n_test", str(args.n_test),
           "--seed", str(args.seed)]
    if args.n_views:
        cmd += ["--n_views", str(args.n_views)]
    run_bundle(CPCE_BUNDLE, cmd, stage.log_path("domains"), desc="data: simulate both domains", raw=True)
    # The U-Net bundle reads {"training", "validation"} datalists: the same source pairs and target validation.
    for direction in DIRECTIONS:
        dl = json.loads((data_dir / f"datalist_{direction}.json").read_text())
        atomic_write_text(data_dir / f"unet_{direction}.json",
                          json.dumps({"training": dl["source"], "validation": dl["validation"]}, indent=1))
    stage.finish(settings)
    return stage


def stage_train(args, results: Path, progress) -> None:
    data_dir = results / "data"
    for direction in args.directions:
        for method in args.methods:
            name = f"{direction}_{method}"
            run_dir = results / "runs" / name
            stage = Stage(results, f"train_{name}")
            if not stage.done():
                run_bundle(CPCE_BUNDLE, ["run", "--config_file", "configs/train.json"],
                           stage.log_path(name), desc=f"train {name}", progress=progress,
                           overrides=_train_overrides(args, direction, method, data_dir, run_dir),
                           total_steps=args.max_epochs, step_pattern=r"Epoch\[(\d+)\] Complete")
                if not (run_dir / "model.pt").is_file():
                    raise RuntimeError(f"train {name}: the bundle finished without {run_dir / 'model.pt'}; "
                                       f"see {stage.log_path(name)}.")
                stage.finish()
            progress.advance()
        if args.unet:
            name = f"{direction}_unet"
            run_dir = results / "runs" / name
            stage = Stage(results, f"train_{name}")
            if not stage.done():
                run_bundle(UNET_BUNDLE, ["run", "--config_file", "configs/train.json"], stage.log_path(name),
                           desc=f"train {name}", progress=progress, total_steps=args.unet_iterations,
                           step_pattern=r"Iter: (\d+)/", overrides={
                               "dataset_dir": data_dir / f"unet_{direction}.json",
                               "output_dir": run_dir,
                               "num_iterations": args.unet_iterations,
                               "val_interval": max(1, args.unet_iterations // 4),
                               "patch_size": args.unet_patch_size,
                               "batch_size": args.unet_batch_size,
                               "num_workers": 0,
                               "seed": args.seed,
                               "device": f"$torch.device('{args.device}')",
                           })
                stage.finish()
            progress.advance()


def _unet_predictions(args, results: Path, direction: str, items: list[dict]) -> list[Path]:
    """Denoise the test inputs with the U-Net bundle's own inference config; returns the output files."""
    in_dir = results / "unet_inputs" / direction
    out_dir = results / "unet_outputs" / direction
    in_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for k, item in enumerate(items):
        link = in_dir / f"{k:04d}.nii.gz"
        if not link.exists():
            os.symlink(os.path.abspath(item["image"]), link)
        names.append(out_dir / f"{k:04d}_denoised.nii.gz")
    if not all(p.is_file() for p in names):
        run_bundle(UNET_BUNDLE, ["run", "--config_file", "configs/inference.json"],
                   results / "logs" / "evaluate" / f"unet_{direction}.log", desc=f"U-Net inference {direction}",
                   overrides={"dataset_dir": in_dir, "output_dir": out_dir,
                              "ckpt_path": results / "runs" / f"{direction}_unet" / "checkpoints" / "model.pt",
                              "device": f"$torch.device('{args.device}')"})
    return names


def _read_image(path) -> np.ndarray:
    import nibabel as nib

    return np.squeeze(np.asarray(nib.load(str(path)).dataobj, dtype=np.float32))


def _to_hu(mu):
    return (np.asarray(mu, dtype=np.float64) / MU_WATER - 1.0) * 1000.0


def stage_evaluate(args, results: Path) -> list[dict]:
    stage = Stage(results, "evaluate")
    tables = results / "tables"
    if stage.done():
        with open(tables / "table1.csv", newline="", encoding="utf-8") as f:
            return [dict(r, mean=float(r["mean"]), std=float(r["std"])) for r in csv.DictReader(f)]
    eval_dir = results / "eval"
    # The bundle's evaluate.json reads runs/<direction>_{baseline,fixed_rfm,adaptive_rfm}/model.pt.
    bundle_runs = results / "bundle_runs"
    for direction in DIRECTIONS:
        for method, folder in (("baseline", "baseline"), ("fixed", "fixed_rfm"), ("adaptive", "adaptive_rfm")):
            src, dst = results / "runs" / f"{direction}_{method}", bundle_runs / f"{direction}_{folder}"
            if src.is_dir() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(src.resolve(), dst)
    run_bundle(CPCE_BUNDLE, ["run", "--config_file", "configs/evaluate.json"], stage.log_path("cpce"),
               desc="evaluate CPCE models", overrides={
                   "dataset_dir": results / "data", "runs_dir": bundle_runs, "output_dir": eval_dir,
                   "device": f"$torch.device('{args.device}')"})
    with open(eval_dir / "table.csv", newline="", encoding="utf-8") as f:
        rows = [dict(r, mean=float(r["mean"]), std=float(r["std"])) for r in csv.DictReader(f)]
    rows = [r for r in rows if r["direction"] in [DIRECTIONS[d] for d in args.directions]]
    evaluate = load_bundle_module(CPCE_BUNDLE, "evaluate")
    import torch

    if args.unet:
        for direction in args.directions:
            items = evaluate_items(results, direction)
            preds = _unet_predictions(args, results, direction, items)
            per_image = [evaluate.image_metrics(torch.from_numpy(_to_hu(_read_image(p)))[None, None],
                                                torch.from_numpy(_to_hu(_read_image(it["label"])))[None, None])
                         for p, it in zip(preds, items)]
            for metric in per_image[0]:
                values = np.array([m[metric] for m in per_image])
                rows.append({"direction": DIRECTIONS[direction], "method": UNET_COLUMN, "metric": metric,
                             "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                             "n_images": len(values)})
    methods = ["LDCT"] + [METHODS[m][0] for m in args.methods] + ([UNET_COLUMN] if args.unet else [])
    tables.mkdir(parents=True, exist_ok=True)
    with open(tables / "table1.csv.tmp", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["direction", "method", "metric", "mean", "std", "n_images"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in writer.fieldnames} for r in rows if r["method"] in methods)
    os.replace(tables / "table1.csv.tmp", tables / "table1.csv")
    markdown = evaluate.format_markdown(rows, [DIRECTIONS[d] for d in args.directions], methods)
    atomic_write_text(tables / "table1.md", markdown)
    stage.finish()
    return rows


def evaluate_items(results: Path, direction: str) -> list[dict]:
    """The target domain's test pairs of one direction, with absolute paths."""
    base = results / "data"
    dl = json.loads((base / f"datalist_{direction}.json").read_text())
    return [{k: str(base / v) for k, v in it.items()} for it in dl["test"]]


def _cpce_prediction(results: Path, run: str, image_mu: np.ndarray) -> np.ndarray | None:
    import torch

    path = results / "runs" / run / "model.pt"
    if not path.is_file():
        return None
    networks = load_bundle_module(CPCE_BUNDLE, "networks")
    net = networks.CPCE2D(in_channels=1, out_channels=1, channels=32)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    lo, hi = ((np.asarray(HU_WINDOW) / 1000.0 + 1.0) * MU_WATER).tolist()
    x = torch.from_numpy((image_mu - lo) / (hi - lo)).float()[None, None]
    with torch.no_grad():
        y = net.eval()(x)[0, 0].numpy()
    return y * (hi - lo) + lo


def stage_figures(args, results: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    figures = results / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    written = []
    for direction in args.directions:
        items = evaluate_items(results, direction)
        item = items[0]
        ldct, ndct = _read_image(item["image"]), _read_image(item["label"])
        panels = [("LDCT", ldct)]
        for method in args.methods:
            pred = _cpce_prediction(results, f"{direction}_{method}", ldct)
            if pred is not None:
                panels.append((METHODS[method][0], pred))
        unet_out = results / "unet_outputs" / direction / "0000_denoised.nii.gz"
        if args.unet and unet_out.is_file():
            panels.append(("U-Net", _read_image(unet_out)))
        panels.append(("NDCT (label)", ndct))
        n = ndct.shape[0]
        size = max(8, n // 4)
        r0, c0 = n // 2 - size // 2, n // 2 + n // 16 - size // 2  # a central ROI with organ boundaries
        fig, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 5.4), squeeze=False)
        for j, (title, img) in enumerate(panels):
            hu = _to_hu(img)
            label_hu = _to_hu(ndct)
            rmse = float(np.sqrt(np.mean((hu - label_hu) ** 2)))
            axes[0, j].imshow(hu, cmap="gray", vmin=DISPLAY_HU[0], vmax=DISPLAY_HU[1])
            axes[0, j].add_patch(Rectangle((c0, r0), size, size, fill=False, edgecolor="yellow", linewidth=1.2))
            axes[0, j].set_title(title if title.startswith("NDCT") else f"{title}\nRMSE {rmse:.1f} HU", fontsize=8)
            axes[1, j].imshow(hu[r0:r0 + size, c0:c0 + size], cmap="gray", vmin=DISPLAY_HU[0], vmax=DISPLAY_HU[1])
            for ax in axes[:, j]:
                ax.set_xticks([])
                ax.set_yticks([])
        axes[1, 0].set_ylabel("ROI (yellow box)", fontsize=8)
        fig.suptitle(f"{DIRECTIONS[direction]}: target-domain test image 0, display [40, 400] HU", fontsize=9)
        fig.tight_layout()
        path = figures / f"examples_{direction}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _lookup(rows, direction, method, metric):
    for r in rows:
        if r["direction"] == direction and r["method"] == method and r["metric"] == metric:
            return r
    return None


def reading(rows: list[dict], args) -> list[str]:
    """Plain sentences comparing alignment with plain CPCE on the target domain, from the numbers."""
    lines = []
    if "baseline" not in args.methods or "adaptive" not in args.methods:
        return lines
    for direction in args.directions:
        d = DIRECTIONS[direction]
        for metric, unit in (("psnr_full", "dB"), ("psnr_window", "dB")):
            a = _lookup(rows, d, METHODS["adaptive"][0], metric)
            b = _lookup(rows, d, METHODS["baseline"][0], metric)
            x = _lookup(rows, d, "LDCT", metric)
            if a is None or b is None or x is None:
                continue
            diff = a["mean"] - b["mean"]
            verdict = "higher than" if diff > 0 else "lower than" if diff < 0 else "equal to"
            lines.append(f"- {d}, {metric.replace('_', ' ')}: CPCE + adaptive RFM alignment {a['mean']:.2f} dB is "
                         f"{verdict} plain CPCE {b['mean']:.2f} dB ({diff:+.2f} {unit}; input {x['mean']:.2f} dB).")
    return lines


def stage_report(args, results: Path, rows: list[dict], figures: list[Path]) -> Path:
    table = (results / "tables" / "table1.md").read_text()
    seed_lines = ["| | LDCT | CPCE | CPCE + alignment (theirs) |", "|---|---|---|---|"]
    for metric, name in (("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
        seed_lines.append(f"| **{name}, mean±var as printed** | | | |")
        for d in ("S→R", "R→S"):
            v = SEED_TABLE1[metric][d]
            seed_lines.append(f"| {d} | {v['LDCT']} | {v['CPCE']} | {v['Ours']} |")
    settings = {k: v for k, v in vars(args).items() if k not in ("stages",)}
    text = [
        "# Cross-domain denoising study (Huang et al., Table 1)",
        "",
        f"Preset `{args.preset}`; written by `scripts/domain_adaptation.py`. Domains simulated by "
        "`bundles/cpce_rfm_da` (`python -m scripts.domains`, settings in `data/domains.json`): *real* = "
        "projection-domain Poisson noise + fan-beam FBP at the 625 µm system, *synthetic* = normal-dose "
        "images of the 250 µm system plus extracted noise images (the seed's noise-extraction method).",
        "",
        "## Table 1, this run (target-domain test pairs)",
        "",
        table,
        "",
        "Perceptual term: " + ("on (VGG-19 weights from " + str(args.vgg_weights) + ")." if args.vgg_weights else
                               "off (no local VGG-19 weights given; `--vgg_weights FILE` turns it on)."),
        "",
        "## The seed's Table 1 (Mayo / LIDC data, conventions unstated, not comparable in absolute terms)",
        "",
        "\n".join(seed_lines),
        "",
        "## Reading",
        "",
        *(reading(rows, args) or ["- (needs both the baseline and the adaptive method)"]),
        "",
        "## Figures",
        "",
        *[f"![{p.stem}](figures/{p.name})" for p in figures],
        "",
        "## Settings and versions",
        "",
        "```json",
        json.dumps({"settings": settings, "versions": versions()}, indent=1, default=str),
        "```",
        "",
    ]
    path = results / "report.md"
    atomic_write_text(path, "\n".join(text))
    return path


ALL_STAGES = ("data", "train", "evaluate", "figures", "report")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results_dir", required=True, type=output_folder,
                   help="folder for everything this study writes (re-runs resume)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--stages", default=",".join(ALL_STAGES), help=f"comma-separated subset of {','.join(ALL_STAGES)}")
    p.add_argument("--directions", default="s2r,r2s", help="s2r, r2s or both")
    p.add_argument("--methods", default=None,
                   help="comma-separated: baseline, fixed, adaptive (default baseline,adaptive); with --preset real "
                   "also shipped and unet (default all five)")
    p.add_argument("--real-dir", "--real_dir", dest="real_dir", default=str(REPO.parent / "shared" / "real_ldct"),
                   help="with --preset real: the shared real pairs (dev_pairs.npz, normal_dose.npz)")
    p.add_argument("--patches-per-epoch", "--patches_per_epoch", dest="patches_per_epoch", type=int, default=384,
                   help="with --preset real: source patches per epoch")
    p.add_argument("--no_unet", dest="unet", action="store_false", help="leave out the U-Net column")
    p.add_argument("--vgg_weights", default=None, help="local VGG-19 ImageNet state dict; without it L_per is off")
    p.add_argument("--lambda_adv", type=float, default=1.0, help="weight of the realness loss (seed: 1)")
    p.add_argument("--lambda_align", type=float, default=1.0, help="weight of the alignment loss (ours: 1)")
    p.add_argument("--val_interval", type=int, default=None, help="epochs between validations (default max_epochs/10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda:0")
    for key, value in PRESETS["small"].items():
        p.add_argument(f"--{key}", type=int, default=None, help=f"preset size (small: {value})")
    return p


def main(argv=None) -> Path:
    args = build_parser().parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.val_interval = args.val_interval or max(1, args.max_epochs // 10)
    args.directions = [d.strip() for d in args.directions.split(",") if d.strip()]
    if args.preset == "real":
        return main_real(args)
    args.methods = [m.strip() for m in (args.methods or "baseline,adaptive").split(",") if m.strip()]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for value, allowed, what in ((args.directions, DIRECTIONS, "direction"), (args.methods, METHODS, "method"),
                                 (stages, ALL_STAGES, "stage")):
        bad = [v for v in value if v not in allowed]
        if bad:
            raise SystemExit(f"domain_adaptation: unknown {what} {bad}; choose from {list(allowed)}.")
    if args.vgg_weights and not os.path.isfile(args.vgg_weights):
        raise SystemExit(f"domain_adaptation: --vgg_weights {args.vgg_weights!r} is not a file.")
    results = Path(args.results_dir).resolve()
    results.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from study_tools import Progress

    n_units = len(args.directions) * (len(args.methods) + int(args.unet))
    rows, figures = None, []
    with Progress(total=n_units, desc="domain_adaptation") as progress:
        if "data" in stages:
            stage_data(args, results)
        if "train" in stages:
            stage_train(args, results, progress)
        if "evaluate" in stages:
            rows = stage_evaluate(args, results)
        if "figures" in stages:
            figures = stage_figures(args, results)
        if "report" in stages:
            rows = rows if rows is not None else stage_evaluate(args, results)
            figures = figures or sorted((results / "figures").glob("examples_*.png"))
            path = stage_report(args, results, rows, figures)
            logger.info("domain_adaptation: report at %s", path)
            return path
    return results


def main_real(args) -> Path:
    """``--preset real``: S→R with the shared real quarter-dose images as the unlabelled target."""
    import domain_adaptation_real as real

    args.methods = [m.strip() for m in (args.methods or ",".join(real.REAL_METHODS)).split(",") if m.strip()]
    bad = [m for m in args.methods if m not in real.REAL_METHODS]
    if bad:
        raise SystemExit(f"domain_adaptation: unknown method {bad} for --preset real; choose from {list(real.REAL_METHODS)}.")
    results = Path(args.results_dir).resolve()
    real.check_real_args(args, results)
    results.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from study_tools import Progress

    with Progress(total=len(args.methods), desc="domain_adaptation (real target)") as progress:
        data = real.stage_real_data(args, results)
        real.stage_real_train(args, results, data, progress)
    rows = real.stage_real_evaluate(args, results)
    path = real.stage_real_report(args, results, rows, versions())
    logger.info("domain_adaptation: report at %s", path)
    return path


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # a running bundle command got the Ctrl-C too, and saved its checkpoint
        print("\ndomain_adaptation: interrupted; run the same command again to continue (finished stages are "
              "kept; an interrupted training resumes from its last checkpoint).", file=sys.stderr)
        sys.exit(130)
