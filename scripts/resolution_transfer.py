"""The resolution-transfer study of Zhang et al. (QIMS 2024) end to end, resumable, with tables, figures and a report.

One command simulates the six Table 1 systems from CT data or generated phantoms, trains one U-Net per
resolution through the U-Net bundle, tests every model on every resolution, fine-tunes the 625 µm
model on 5–30 % of the 62.5 µm training set, measures the noise texture (noise-only images and their
noise power spectra) and writes ``report.md``::

    python scripts/resolution_transfer.py --results_dir results/rt_smoke --preset smoke        # ~1 min, CPU
    python scripts/resolution_transfer.py --results_dir results/rt_small --preset small        # ~45 min, 2 CPU cores
    python scripts/resolution_transfer.py --results_dir results/rt_paper --preset paper --device cuda:0
    python scripts/resolution_transfer.py --results_dir results/rt_ct --preset small --source /data/ct
    python scripts/resolution_transfer.py --results_dir results/rt_small --preset small --stages noise,report

Stages (``--stages``, default all, in this order; each writes under ``--results_dir``):

``data``
    one ``python -m ldct_sim simulate`` run for the resolutions not done yet, into ``data/``
    (``data/res<R>um/datalist.json``), split training/validation/test in the study's 2400:300:300
    proportions (by patient or phantom).
``train``
    the bundle's ``configs/train.json`` per resolution (``models/res<R>um/checkpoints/model.pt``).
``crosstest``
    the bundle's ``configs/inference.json`` with every model on every resolution's test set
    (``crosstest/pred/``), then PSNR against the labels (Table 3) and residual variance, NRMSE and SSIM
    against the self-test output (Figures 5 and 8), with the bundle's own metric functions.
``retrain``
    ``configs/train.json`` + ``configs/finetune.json``: the source model (625 µm) fine-tuned on
    5–30 % of the target (62.5 µm) training set with early stopping (``retrain/frac<P>pct/``), evaluated
    on the target test set (Figure 11).
``noise``
    noise-only images per resolution (Figure 12), their radially averaged noise power spectra
    (:mod:`ldct_sim.noise_power`) and maps of where the noise is (per-pixel SD over all images).
``report``
    ``report.md`` embedding every table and figure, with settings, seeds, versions and the seed's numbers.

Outputs: ``tables/*.csv`` + ``tables/*.md``, ``figures/*.png``, ``report.md``; logs under ``logs/``
(``logs/study.log`` and one log per unit); resumability markers under ``state/``. Re-running the same
command skips finished units, continues an interrupted one (training resumes from the bundle's own
latest checkpoint) and redoes units whose inputs changed or whose outputs are gone; a results folder whose
simulations or models were made with other settings is refused with the differences named (tables, figures
and the report are simply redone). One run at a time holds a results folder (``.lock``). The study only orchestrates: training and inference logic lives in
the bundle (``--bundle_root``), the metrics in the bundle's ``scripts/metrics.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldct_scripts import REPO
from ldct_scripts.bundle_import import load_bundle_module
from ldct_scripts.studies.engine import (
    ResultsLock,
    StudyError,
    StudyProgress,
    Unit,
    UnitState,
    bundle_command,
    file_digest,
    fingerprint,
    format_seconds,
    markdown_table,
    mean_std,
    output_folder,
    read_json,
    run_logged,
    setup_logging,
    study_provenance,
    write_json,
    write_table,
    write_text,
)

DEFAULT_BUNDLE = REPO / "bundles" / "unet_ldct"
STAGES = ("data", "train", "crosstest", "retrain", "noise", "report")
ALL_RESOLUTIONS = (62.5, 125.0, 250.0, 375.0, 500.0, 625.0)
MU_WATER = 0.2059  # cm^-1 at 60 keV, as ldct_sim and the bundle
IMAGE_WINDOW = (0.17, 0.26)  # cm^-1, the seed's Figures 3 and 6
RESIDUAL_WINDOW = (-0.007, 0.007)  # cm^-1, the seed's residual images
NOISE_WINDOW = (-0.026, 0.027)  # cm^-1, the seed's Figure 12

#: The seed's reference numbers (Zhang et al., QIMS 2024): Table 3 (PSNR in dB, mean ± SD over 300 test
#: images, models in ALL_RESOLUTIONS order), the abstract's retraining numbers (625 µm model on 62.5 µm
#: images, before and after retraining with about 20 % of the data), the retraining steps per fraction
#: and Table 2 (training time per model).
SEED = {
    "table3": {
        62.5: [(37.17, 1.03), (37.26, 1.03), (37.31, 1.03), (37.11, 1.01), (36.98, 1.01), (36.87, 1.00)],
        625.0: [(37.06, 1.01), (37.43, 1.04), (37.71, 1.05), (37.73, 1.06), (37.71, 1.06), (37.75, 1.06)],
    },
    "retrain": {"nrmse": (0.1898, 0.1263), "ssim": (0.7558, 0.8036), "fraction": 0.20},
    "retrain_steps": {0.05: 3000, 0.10: 5000, 0.15: 5000, 0.20: 5000, 0.25: 6000, 0.30: 7000},
    "train_time": "50,000 steps in 6 h 47 min to 6 h 52 min per model on one NVIDIA RTX A6000 (Table 2)",
    "sizes": "2,400 / 300 / 300 images per resolution, 512 x 512",
}

#: Sizes of the presets; every key is also a command-line option.
PRESETS: dict[str, dict] = {
    # a few minutes on 2 busy CPU cores: two resolutions, 32² images, a handful of steps (the test suite runs it)
    "smoke": dict(resolutions=(62.5, 625.0), n_train=8, n_val=2, n_test=2, n_pixels=32, phantom_size=64, n_views=48,
                  iterations=2, val_interval=2, save_interval=2, batch_size=2, patch_size=32, learning_rate=3e-4,
                  early_stop_patience=10, finetune_iterations=2, finetune_val_interval=2, finetune_patience=4,
                  fractions=(0.25,), num_workers=0, nps_roi=8, threads=1),
    # about 45 minutes on 2 CPU cores (see the README): all six systems at 128², 80/10/10 phantoms, 64² patches
    "small": dict(resolutions=ALL_RESOLUTIONS, n_train=80, n_val=10, n_test=10, n_pixels=128, phantom_size=256, n_views=256,
                  iterations=600, val_interval=100, save_interval=100, batch_size=8, patch_size=64, learning_rate=3e-4,
                  early_stop_patience=10, finetune_iterations=200, finetune_val_interval=25, finetune_patience=4,
                  fractions=(0.05, 0.10, 0.15, 0.20, 0.25, 0.30), num_workers=0, nps_roi=32, threads=1),
    # the seed's sizes: 2400/300/300 slices of 512², a fixed 50,000 steps (its Table 2: no early stopping of the
    # main training, which the seed uses only for retraining) of 4 whole slices, retraining up to 7,000 steps (a GPU job)
    "paper": dict(resolutions=ALL_RESOLUTIONS, n_train=2400, n_val=300, n_test=300, n_pixels=512, phantom_size=512,
                  n_views=720, iterations=50000, val_interval=1000, save_interval=500, batch_size=4, patch_size=512,
                  learning_rate=1e-4, early_stop_patience=0, finetune_iterations=7000, finetune_val_interval=250,
                  finetune_patience=4, fractions=(0.05, 0.10, 0.15, 0.20, 0.25, 0.30), num_workers=4, nps_roi=128,
                  threads=None),
}

log = logging.getLogger("study")


# ---------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Resolved settings of one study run (preset + overrides). Sizes in pixels, rates per iteration."""

    results_dir: str
    preset: str
    stages: tuple[str, ...]
    bundle_root: str
    source: str | None
    phantoms: int | None
    split: tuple[float, float, float]
    resolutions: tuple[float, ...]
    n_pixels: int
    phantom_size: int
    n_views: int
    sim_backend: str
    seed: int
    iterations: int
    val_interval: int
    save_interval: int
    batch_size: int
    patch_size: int
    learning_rate: float
    lr_decay_steps: int
    early_stop_patience: int
    finetune_iterations: int
    finetune_val_interval: int
    finetune_patience: int
    fractions: tuple[float, ...]
    retrain_source: float
    retrain_target: float
    report_rows: tuple[float, ...]
    nps_roi: int
    nps_grid: int
    nps_split: str
    nps_max_images: int
    num_workers: int
    device: str | None
    amp: bool
    threads: int | None
    keep_checkpoints: bool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"`--{name}` must be comma-separated numbers, got {text!r}.") from None
    if not values:
        raise ValueError(f"`--{name}` must name at least one value, got {text!r}.")
    return values


def stable_split(shares) -> tuple[float, float, float]:
    """Training/validation/test proportions, summing to one, that ``ldct_sim`` normalises to themselves.

    ``ldct_sim``'s ``DatasetConfig`` divides the split by its sum when it is made and again when the
    datalists are rewritten, and fingerprints the result; proportions such as 8:2:2 (sum
    0.9999999999999999 after one division) change in the last bit on the second division and the
    finished slices no longer match. Among a few float representations of the same proportions this
    returns one that is a fixed point of that normalisation.

    Raises:
        ValueError: none of them is (rare; change a count by one).
    """
    s = [float(x) for x in shares]
    p = [x / sum(s) for x in s]
    norm = lambda q: tuple(x / sum(q) for x in q)  # noqa: E731 - DatasetConfig's normalisation
    for cand in (p, (p[0], p[1], 1.0 - p[0] - p[1]), (p[0], 1.0 - p[0] - p[2], p[2]), (1.0 - p[1] - p[2], p[1], p[2])):
        q = norm(cand)
        if min(q) >= 0 and norm(q) == q:
            return tuple(cand)
    raise ValueError(f"the split {tuple(shares)} has no stable float representation; change one count by one.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/resolution_transfer.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Presets: " + "; ".join(f"{k}: {v['n_pixels']}² px, {v['n_train']}/{v['n_val']}/{v['n_test']} "
                                                               f"slices, {v['iterations']} iterations" for k, v in PRESETS.items()))
    p.add_argument("--results_dir", required=True, type=output_folder,
                   help="folder for everything the study writes (re-runs resume)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="smoke", help="sizes (default smoke); every size is also an option")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)} (default all)")
    p.add_argument("--bundle_root", default=str(DEFAULT_BUNDLE), help="the U-Net bundle (default bundles/unet_ldct)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--source", help="DICOM/NIfTI CT (a series folder, a volume, or a folder of them) in HU")
    src.add_argument("--phantoms", type=int, help="number of generated phantom slices (default: n_train + n_val + n_test)")
    g = p.add_argument_group("data sizes (default: the preset's)")
    g.add_argument("--n_train", type=int)
    g.add_argument("--n_val", type=int)
    g.add_argument("--n_test", type=int)
    g.add_argument("--split", help="training,validation,test proportions instead of counts, e.g. 0.8,0.1,0.1")
    g.add_argument("--resolutions", help="comma-separated Table 1 resolutions in µm (default: the preset's)")
    g.add_argument("--n_pixels", type=int, help="image side in pixels")
    g.add_argument("--phantom_size", type=int, help="phantom side in pixels before resampling")
    g.add_argument("--n_views", type=int, help="views over 360°")
    g.add_argument("--sim_backend", default="astra", help="ldct_sim projector backend: astra (default), torch or tomosipo")
    t = p.add_argument_group("training (default: the preset's)")
    t.add_argument("--iterations", type=int, help="training iterations per model")
    t.add_argument("--val_interval", type=int, help="iterations between validations (divides --iterations)")
    t.add_argument("--save_interval", type=int, help="iterations between resumable checkpoints")
    t.add_argument("--batch_size", type=int)
    t.add_argument("--patch_size", type=int, help="random crop side in pixels (<= n_pixels)")
    t.add_argument("--learning_rate", type=float)
    t.add_argument("--lr_decay_steps", type=int, help="halve the learning rate every N iterations (default 0.4 x iterations)")
    t.add_argument("--early_stop_patience", type=int,
                   help="validations without improvement before training stops; 0: off, train all --iterations (paper)")
    t.add_argument("--finetune_iterations", type=int, help="most retraining iterations (early stopping may end sooner)")
    t.add_argument("--finetune_val_interval", type=int)
    t.add_argument("--finetune_patience", type=int)
    t.add_argument("--fractions", help="retraining fractions of the target training set, e.g. 0.05,0.1,0.15,0.2,0.25,0.3")
    t.add_argument("--retrain_source", type=float, default=625.0, help="resolution of the model to retrain (default 625)")
    t.add_argument("--retrain_target", type=float, default=62.5, help="resolution it is retrained for (default 62.5)")
    t.add_argument("--seed", type=int, default=0, help="seed of phantoms, noise, splits, subsets and training (default 0)")
    t.add_argument("--device", help="torch device for the bundle (default: the bundle's choice, the first GPU if any)")
    t.add_argument("--amp", action="store_true", help="mixed precision training (GPU)")
    t.add_argument("--num_workers", type=int, help="data-loader workers")
    t.add_argument("--threads", type=int,
                   help="CPU threads per subprocess (OMP_NUM_THREADS and ldct_sim --threads); smoke and small use 1, which "
                        "is up to 10x faster than 2 on CPU cores shared with other jobs; 0: torch's default (paper)")
    r = p.add_argument_group("report and noise")
    r.add_argument("--report_rows", help="test resolutions shown in detail (default 62.5,625: the seed's rows)")
    r.add_argument("--nps_roi", type=int, help="NPS ROI side in pixels (default n_pixels/4)")
    r.add_argument("--nps_grid", type=int, default=2, help="NPS ROIs per side tiled over the image centre (default 2)")
    r.add_argument("--nps_split", default="all", choices=("all", "training", "validation", "test"),
                   help="noise-only images used for the NPS (default all)")
    r.add_argument("--nps_max_images", type=int, default=300, help="at most this many noise images per resolution (default 300)")
    p.add_argument("--keep_checkpoints", action="store_true",
                   help="keep the resumable interval checkpoints (about 100 MB each) after a model is finished")
    return p


def resolve_config(args: argparse.Namespace) -> Config:
    """The preset with the command-line overrides applied, checked.

    Raises:
        ValueError: inconsistent or out-of-range settings, naming the option.
    """
    pre = dict(PRESETS[args.preset])

    def pick(name):
        v = getattr(args, name, None)
        return pre.get(name) if v is None else v

    stages = tuple(s for s in str(args.stages).replace(" ", "").split(",") if s)
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ValueError(f"`--stages` must be a comma-separated subset of {','.join(STAGES)}, got {args.stages!r}.")
    stages = tuple(s for s in STAGES if s in stages)
    resolutions = tuple(sorted(set(_floats(args.resolutions, "resolutions")))) if args.resolutions else tuple(pre["resolutions"])
    for res in resolutions:
        if not any(math.isclose(res, a) for a in ALL_RESOLUTIONS):
            raise ValueError(f"`--resolutions`: {res:g} is not a Table 1 system; choose from {', '.join(f'{a:g}' for a in ALL_RESOLUTIONS)}.")
    counts = [pick(k) for k in ("n_train", "n_val", "n_test")]
    if args.split:
        split = _floats(args.split, "split")
        if len(split) != 3 or any(s < 0 for s in split) or split[0] <= 0 or split[2] <= 0:
            raise ValueError(f"`--split` must be three proportions with positive training and test shares, got {args.split!r}.")
    else:
        if any(not isinstance(c, int) or c < 1 for c in counts):
            raise ValueError(f"`--n_train`, `--n_val` and `--n_test` must be positive integers, got {counts}.")
        split = tuple(float(c) for c in counts)
    phantoms = None
    if args.source is None:
        phantoms = args.phantoms if args.phantoms is not None else (int(sum(counts)) if not args.split else None)
        if phantoms is None:
            raise ValueError("`--split` with generated phantoms needs `--phantoms N`.")
        if phantoms < 3:
            raise ValueError(f"`--phantoms` must be at least 3 (one per split), got {phantoms!r}.")
    elif not Path(args.source).exists():
        raise ValueError(f"`--source` {args.source!r} does not exist.")
    ints = {k: pick(k) for k in ("n_pixels", "phantom_size", "n_views", "iterations", "val_interval", "save_interval",
                                 "batch_size", "patch_size", "early_stop_patience", "finetune_iterations",
                                 "finetune_val_interval", "finetune_patience", "num_workers")}
    for k, v in ints.items():
        zero_ok = k in ("num_workers", "early_stop_patience")  # early_stop_patience 0: off
        if not isinstance(v, int) or v < (0 if zero_ok else 1):
            raise ValueError(f"`--{k}` must be a {'non-negative' if zero_ok else 'positive'} integer, got {v!r}.")
    if ints["iterations"] % ints["val_interval"]:
        raise ValueError(f"`--iterations` ({ints['iterations']}) must be a multiple of `--val_interval` ({ints['val_interval']}).")
    if ints["finetune_iterations"] % ints["finetune_val_interval"]:
        raise ValueError(f"`--finetune_iterations` ({ints['finetune_iterations']}) must be a multiple of "
                         f"`--finetune_val_interval` ({ints['finetune_val_interval']}).")
    if ints["patch_size"] > ints["n_pixels"]:
        raise ValueError(f"`--patch_size` ({ints['patch_size']}) must not exceed `--n_pixels` ({ints['n_pixels']}).")
    fractions = tuple(sorted(set(_floats(args.fractions, "fractions")))) if args.fractions else tuple(pre["fractions"])
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"`--fractions` must lie in (0, 1], got {fractions}.")
    lr = float(pick("learning_rate"))
    if not lr > 0:
        raise ValueError(f"`--learning_rate` must be positive, got {lr!r}.")
    decay = args.lr_decay_steps if args.lr_decay_steps is not None else max(1, round(0.4 * ints["iterations"]))
    rows = _floats(args.report_rows, "report_rows") if args.report_rows else (62.5, 625.0)
    rows = tuple(r for r in resolutions if any(math.isclose(r, x) for x in rows)) or (resolutions[0], resolutions[-1])
    nps_roi = args.nps_roi if args.nps_roi is not None else max(8, ints["n_pixels"] // 4)
    if not 4 <= nps_roi <= ints["n_pixels"]:
        raise ValueError(f"`--nps_roi` must be in [4, n_pixels], got {nps_roi!r}.")
    threads = pick("threads")
    if threads is not None and threads < 0:
        raise ValueError(f"`--threads` must be a non-negative integer (0: torch's default), got {threads!r}.")
    threads = threads or None
    return Config(
        results_dir=str(Path(args.results_dir).resolve()), preset=args.preset, stages=stages,
        bundle_root=str(Path(args.bundle_root).resolve()), source=None if args.source is None else str(Path(args.source).resolve()),
        phantoms=phantoms, split=stable_split(split), resolutions=resolutions,
        n_pixels=ints["n_pixels"], phantom_size=ints["phantom_size"], n_views=ints["n_views"], sim_backend=args.sim_backend,
        seed=int(args.seed), iterations=ints["iterations"], val_interval=ints["val_interval"],
        save_interval=ints["save_interval"], batch_size=ints["batch_size"], patch_size=ints["patch_size"],
        learning_rate=lr, lr_decay_steps=int(decay), early_stop_patience=ints["early_stop_patience"],
        finetune_iterations=ints["finetune_iterations"], finetune_val_interval=ints["finetune_val_interval"],
        finetune_patience=ints["finetune_patience"], fractions=fractions, retrain_source=float(args.retrain_source),
        retrain_target=float(args.retrain_target), report_rows=rows, nps_roi=int(nps_roi), nps_grid=int(args.nps_grid),
        nps_split=args.nps_split, nps_max_images=int(args.nps_max_images), num_workers=ints["num_workers"],
        device=args.device, amp=bool(args.amp), threads=threads, keep_checkpoints=bool(args.keep_checkpoints),
    )


def res_tag(res: float) -> str:
    """``res62.5um``: the dataset builder's folder name of a resolution."""
    return f"res{float(res):g}um"


def _file_tag(res: float) -> str:
    """``res62p5um``: a resolution tag without dots, for file names."""
    return res_tag(res).replace(".", "p")


def _pct(f: float) -> str:
    return f"{100 * f:g}"


# ---------------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------------
_TRAIN_LINE = re.compile(r"Epoch: (\d+)/(\d+), Iter: (\d+)/(\d+) -- train_loss: ([-+0-9.eEnaif]+)")
_VAL_LINE = re.compile(r"Key metric: val_loss best value: ([-+0-9.eE]+) at epoch: (\d+)")
_RESUMED = re.compile(r"at iteration (\d+)")
_BAR = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")


class ResolutionTransferStudy:
    """Runs the stages of one :class:`Config` under ``config.results_dir``."""

    def __init__(self, config: Config):
        self.cfg = config
        self.root = Path(config.results_dir)
        self.bundle = Path(config.bundle_root)
        self.state_dir = self.root / "state"
        self.data_dir = self.root / "data"
        self.tables = self.root / "tables"
        self.figures = self.root / "figures"
        self.progress: StudyProgress | None = None
        self._metrics = None
        self._datalists: dict[float, dict] = {}

    # ---- environment ----------------------------------------------------------------------------
    def _env(self, bundle: bool) -> dict:
        env = dict(os.environ, TQDM_MININTERVAL="5", PYTHONUNBUFFERED="1")
        if bundle:
            env["TQDM_DISABLE"] = "1"  # the study prints its own progress; bundle logs stay readable
            env.pop("PYTHONPATH", None)  # the bundle needs neither ldct_sim nor this folder (its `scripts` would clash)
        else:
            env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if self.cfg.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.cfg.threads)
        return env

    @property
    def metrics(self):
        """The bundle's ``scripts/metrics.py`` (PSNR, NRMSE, SSIM, residual variance), imported by path."""
        if self._metrics is None:
            self._metrics = load_bundle_module(self.bundle, "metrics")
        return self._metrics

    def _log_path(self, stage: str, name: str) -> Path:
        return self.root / "logs" / stage / f"{name}.log"

    # ---- planning -------------------------------------------------------------------------------
    def _n_slices(self) -> int:
        if self.cfg.phantoms is not None:
            return self.cfg.phantoms
        return 1000  # unknown until the data stage has read the source; only used for the first ETA

    def _split_count(self, split: str) -> int:
        tot = self._n_slices()
        share = dict(zip(("training", "validation", "test"), self.cfg.split))
        return max(1, round(tot * share[split] / sum(self.cfg.split)))

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
                units.append(Unit("retrain", f"finetune_{_pct(f)}pct", "finetune", ft_w))
                units.append(Unit("retrain", f"infer_{_pct(f)}pct", "infer", n_test * n2))
            units.append(Unit("retrain", "tables", "tables", len(c.fractions) * n_test * n2 * 0.5))
        if "noise" in c.stages:
            units.append(Unit("noise", "tables", "tables", len(c.resolutions) * n2))
        if "report" in c.stages:
            units.append(Unit("report", "report", "report", n2))
        return units

    # ---- running --------------------------------------------------------------------------------
    def run(self) -> dict:
        """Run the requested stages; returns ``{unit id: "ran" | "skipped"}``.

        Raises:
            StudyError: a unit failed, a prerequisite is missing, the folder holds other settings, or another
                run holds the folder's lock.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with ResultsLock(self.root):
            return self._run()

    def _run(self) -> dict:
        setup_logging(self.root / "logs" / "study.log")
        c = self.cfg
        write_json(self.root / "config.json", {"config": c.to_dict(), "provenance": study_provenance()})
        log.info("resolution-transfer study in %s: preset %s, stages %s, resolutions %s µm, %s, %d² px, seed %d",
                 self.root, c.preset, ",".join(c.stages), ", ".join(f"{r:g}" for r in c.resolutions),
                 f"{c.phantoms} phantoms" if c.phantoms else f"source {c.source}", c.n_pixels, c.seed)
        if not (self.bundle / "configs" / "train.json").is_file():
            raise StudyError(f"--bundle_root {str(self.bundle)!r} is not the U-Net bundle (no configs/train.json).")
        self.progress = StudyProgress(self.plan())
        self.outcome: dict[str, str] = {}
        try:
            for stage in c.stages:
                getattr(self, f"stage_{stage}")()
        finally:
            self.progress.close()
        ran = sum(v == "ran" for v in self.outcome.values())
        log.info("finished: %d units run, %d skipped; results in %s", ran, len(self.outcome) - ran, self.root)
        return self.outcome

    def _unit(self, stage: str, name: str, settings: dict, upstream: dict, work, kind: str = "tables",
              weight: float = 1.0) -> dict:
        """Run ``work(unit_id) -> (outputs, note)`` unless its marker says it is done; returns the marker.

        Units that only derive tables, figures or the report (kind ``tables``/``report``) are redone when their
        settings change; the others refuse a results folder made with other settings."""
        state = UnitState(self.state_dir, stage, name, settings, upstream, strict=kind not in ("tables", "report"))
        unit = self.progress.add(Unit(stage, name, kind, weight))
        status, marker = state.status()
        if status == "done" and unit.id in self.outcome:  # already handled in this run (a shared prerequisite)
            return marker
        if status == "done":
            self.progress.skip(unit.id, f"done, {state.done_path.relative_to(self.root)}")
            self.outcome[unit.id] = "skipped"
            return marker
        if status == "stale":
            log.info("%s: an input changed or an output is missing since it ran; running it again", unit.id)
        state.start()
        self.progress.start(unit.id)
        t0 = time.time()
        outputs, note = work(unit.id)
        marker = state.finish(outputs, time.time() - t0)
        self.progress.finish(unit.id, note)
        self.outcome[unit.id] = "ran"
        return marker

    def _require(self, stage: str, name: str, settings: dict, upstream: dict, hint: str) -> dict:
        """The marker of a finished prerequisite, or a StudyError saying which stage to run."""
        state = UnitState(self.state_dir, stage, name, settings, upstream)
        status, marker = state.status()
        if status != "done":
            raise StudyError(f"{state.id} is {'out of date' if status == 'stale' else 'not done'}; {hint}")
        return marker

    # ---- data -----------------------------------------------------------------------------------
    def _data_settings(self, res: float) -> dict:
        c = self.cfg
        return {"resolution_um": res, "source": c.source, "phantoms": c.phantoms, "split": list(c.split), "seed": c.seed,
                "n_pixels": c.n_pixels, "n_views": c.n_views, "phantom_size": c.phantom_size, "backend": c.sim_backend}

    def data_marker(self, res: float) -> dict:
        """The finished data marker of one resolution (a StudyError when the data stage has not made it)."""
        return self._require("data", res_tag(res), self._data_settings(res), {}, "run the study with --stages data first.")

    def stage_data(self) -> None:
        """Simulate every resolution not done yet, in one ``ldct_sim simulate`` run (one marker per resolution)."""
        c = self.cfg
        states = {r: UnitState(self.state_dir, "data", res_tag(r), self._data_settings(r)) for r in c.resolutions}
        todo = [r for r, st in states.items() if st.status()[0] != "done"]
        unit = self.progress.add(Unit("data", "simulate", "simulate", self._data_weight()))
        if not todo:
            self.progress.skip(unit.id, "done, state/data/")
            self.outcome[unit.id] = "skipped"
            return
        for r in todo:
            states[r].start()
        self.progress.start(unit.id)
        argv = [sys.executable, "-m", "ldct_sim", "simulate"]
        argv += ["--input", c.source] if c.source else ["--phantoms", str(c.phantoms)]
        argv += ["--out", str(self.data_dir), "--resolutions", *(f"{r:g}" for r in todo), "--seed", str(c.seed),
                 "--split", *(repr(s) for s in c.split), "--n-pixels", str(c.n_pixels), "--n-views", str(c.n_views),
                 "--phantom-size", str(c.phantom_size), "--backend", c.sim_backend, "--progress"]
        if c.threads:
            argv += ["--threads", str(c.threads)]

        def on_line(line):
            m = _BAR.search(line)
            if m:
                self.progress.step(unit.id, int(m.group(1)), int(m.group(2)), "slices")

        log_path = self._log_path("data", "simulate")
        seconds = run_logged(argv, log_path, cwd=REPO, env=self._env(bundle=False), on_line=on_line)
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
        counts = manifest["resolutions"][f"{todo[0]:g}"]["counts"]
        self.progress.finish(unit.id, f"{', '.join(f'{r:g}' for r in todo)} µm; "
                                      f"{counts['training']}/{counts['validation']}/{counts['test']} slices each")
        self.outcome[unit.id] = "ran"

    def _data_weight(self) -> float:
        c = self.cfg
        return len(c.resolutions) * self._n_slices() * c.n_pixels**2 * 10 * c.n_views / 720

    def datalist(self, res: float) -> dict:
        if res not in self._datalists:
            path = self.data_dir / res_tag(res) / "datalist.json"
            d = read_json(path)
            if not isinstance(d, dict):
                raise StudyError(f"no datalist at {path}; run --stages data first.")
            self._datalists[res] = d
        return self._datalists[res]

    def items(self, res: float, split: str) -> list[dict]:
        """Datalist entries of one split with absolute paths, sorted by id."""
        base = self.data_dir / res_tag(res)
        out = []
        for e in self.datalist(res).get(split, []):
            out.append({**e, **{k: str(base / e[k]) for k in ("image", "label", "noise") if k in e}})
        return sorted(out, key=lambda e: e["id"])

    # ---- training -------------------------------------------------------------------------------
    def _train_settings(self, res: float) -> dict:
        c = self.cfg
        return {"resolution_um": res, "iterations": c.iterations, "val_interval": c.val_interval,
                "save_interval": c.save_interval, "batch_size": c.batch_size, "patch_size": c.patch_size,
                "learning_rate": c.learning_rate, "lr_decay_steps": c.lr_decay_steps,
                "early_stop_patience": c.early_stop_patience, "seed": c.seed, "amp": c.amp, "bundle": "train.json"}

    def _common_overrides(self) -> dict:
        c = self.cfg
        return {"bundle_root": str(self.bundle), "dataset_dir": str(self.data_dir), "batch_size": c.batch_size,
                "patch_size": c.patch_size, "learning_rate": c.learning_rate, "lr_decay_steps": c.lr_decay_steps,
                "seed": c.seed, "num_workers": c.num_workers, "device": c.device, "amp": c.amp, "resume": True}

    def _run_training(self, uid: str, stage: str, name: str, configs: list[str], overrides: dict, out_dir: Path,
                      total: int, val_interval: int) -> dict:
        """Run a bundle training config (resuming from its own latest checkpoint); returns what the log said."""
        seen = {"step": 0, "best": None, "best_epoch": None, "resumed_at": None, "stopped_early": False}

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

        argv = bundle_command([self.bundle / "configs" / f for f in configs], {**overrides, "output_dir": str(out_dir)})
        run_logged(argv, self._log_path(stage, name), cwd=self.bundle, env=self._env(bundle=True), on_line=on_line)
        model = out_dir / "checkpoints" / "model.pt"
        if not model.is_file():
            raise StudyError(f"{uid}: the bundle finished without writing {model}; see {self._log_path(stage, name)}.")
        if not self.cfg.keep_checkpoints:
            for ckpt in (out_dir / "checkpoints").glob("checkpoint_iteration=*.pt"):
                ckpt.unlink()
        return {"files": [str(model)], "model": str(model), "model_digest": file_digest(model),
                "best_val_loss": seen["best"],
                "best_iteration": None if seen["best_epoch"] is None else seen["best_epoch"] * val_interval,
                "last_iteration": seen["step"], "resumed_at": seen["resumed_at"], "stopped_early": seen["stopped_early"]}

    def train_marker(self, res: float, run: bool = False) -> dict:
        settings = self._train_settings(res)
        upstream = {"data": self.data_marker(res)["digest"]}
        if not run:
            return self._require("train", res_tag(res), settings, upstream, "run the study with --stages train first.")
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
        return self._unit("train", res_tag(res), settings, upstream, work, "train", weight)

    def stage_train(self) -> None:
        for res in self.cfg.resolutions:
            self.train_marker(res, run=True)

    # ---- inference ------------------------------------------------------------------------------
    def _link_inputs(self, folder: Path, resolutions) -> dict[tuple[float, str], Path]:
        """A flat folder of links ``<res>__<id>.nii.gz`` to the test inputs, so one inference run covers them."""
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for res in resolutions:
            for e in self.items(res, "test"):
                link = folder / f"{_file_tag(res)}__{e['id']}.nii.gz"
                target = Path(e["image"])
                if link.is_symlink() and os.readlink(link) == str(target):
                    pass
                else:
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
                     "ckpt_path": model, "device": self.cfg.device}
        argv = bundle_command([self.bundle / "configs" / "inference.json"], overrides)
        run_logged(argv, self._log_path(stage, name), cwd=self.bundle, env=self._env(bundle=True))
        preds = {f"{_file_tag(res)}__{sid}": str(out_dir / f"{_file_tag(res)}__{sid}_denoised.nii.gz") for res, sid in inputs}
        missing = [p for p in preds.values() if not Path(p).is_file()]
        if missing:
            raise StudyError(f"{uid}: inference wrote no {missing[0]} (and {len(missing) - 1} more); "
                             f"see {self._log_path(stage, name)}.")
        extra = set(p.name for p in out_dir.glob("*.nii.gz")) - set(Path(p).name for p in preds.values())
        for stray in extra:  # outputs of inputs no longer in the test sets
            (out_dir / stray).unlink()
        return {"files": sorted(preds.values()), "predictions": preds}

    def crosstest_marker(self, model_res: float, run: bool = False) -> dict:
        c = self.cfg
        settings = {"model_um": model_res, "test_resolutions": list(c.resolutions)}
        upstream = {"train": self.train_marker(model_res)["digest"],
                    **{f"data_{res_tag(r)}": self.data_marker(r)["digest"] for r in c.resolutions}}
        name = f"infer_model_{res_tag(model_res)}"
        if not run:
            return self._require("crosstest", name, settings, upstream, "run the study with --stages crosstest first.")

        def work(uid):
            inputs = self._link_inputs(self.root / "crosstest" / "inputs", c.resolutions)
            model = self.train_marker(model_res)["outputs"]["model"]
            out = self._infer(uid, "crosstest", name, model, inputs, self.root / "crosstest" / "pred" / f"model_{res_tag(model_res)}")
            return out, f"{len(inputs)} test images"

        return self._unit("crosstest", name, settings, upstream, work, "infer",
                          self._split_count("test") * len(c.resolutions) * c.n_pixels**2)

    # ---- cross-test -----------------------------------------------------------------------------
    def stage_crosstest(self) -> None:
        c = self.cfg
        for r in c.resolutions:
            self.train_marker(r)  # every model must exist before the first inference
        markers = {m: self.crosstest_marker(m, run=True) for m in c.resolutions}
        upstream = {f"infer_{res_tag(m)}": mk["digest"] for m, mk in markers.items()}
        settings = {"resolutions": list(c.resolutions), "report_rows": list(c.report_rows), "version": 2,
                    "psnr_peak_cm": self.metrics.DEFAULT_PEAK_CM}
        self._unit("crosstest", "tables", settings, upstream, lambda uid: self._crosstest_tables(markers), "tables")

    def _load(self, path) -> np.ndarray:
        import nibabel as nib

        return np.squeeze(np.asarray(nib.load(str(path)).dataobj, dtype=np.float64))

    def _pred(self, marker: dict, res: float, sid: str) -> np.ndarray:
        return self._load(marker["outputs"]["predictions"][f"{_file_tag(res)}__{sid}"])

    def _cell_metrics(self, test_res: float, model_res: float, markers: dict) -> list[dict]:
        """Per-image metrics of one model on one test set, cached under ``crosstest/metrics``."""
        M = self.metrics
        key = fingerprint([markers[model_res]["digest"], markers[test_res]["digest"], "v2", M.DEFAULT_PEAK_CM])
        cache = self.root / "crosstest" / "metrics" / f"model_{_file_tag(model_res)}__test_{_file_tag(test_res)}.json"
        cached = read_json(cache)
        if isinstance(cached, dict) and cached.get("key") == key:
            return cached["rows"]
        rows = []
        for e in self.items(test_res, "test"):
            pred = self._pred(markers[model_res], test_res, e["id"])
            self_test = self._pred(markers[test_res], test_res, e["id"])
            label = self._load(e["label"])
            rows.append({
                "test_um": test_res, "model_um": model_res, "id": e["id"],
                # the seed's equations 4-6: PSNR against the label, the rest against the self-test output;
                # PSNR peak and SSIM L: the fixed 2·μ_water (not the noisy label's maximum, which grows with its noise)
                "psnr_db": M.psnr(pred, label, M.DEFAULT_PEAK_CM),
                "psnr_input_db": M.psnr(self._load(e["image"]), label, M.DEFAULT_PEAK_CM),
                "residual_variance": M.residual_variance(pred, self_test),
                "nrmse_percent": M.nrmse(pred, self_test),
                "ssim": M.ssim(pred, self_test, M.DEFAULT_PEAK_CM),
            })
        write_json(cache, {"key": key, "rows": rows})
        return rows

    def _crosstest_tables(self, markers: dict) -> tuple[dict, str]:
        c, M = self.cfg, self.metrics
        rows = []
        for t in c.resolutions:
            for m in c.resolutions:
                rows.extend(self._cell_metrics(t, m, markers))
        write_table(self.root / "crosstest" / "per_image", rows,
                    ["test_um", "model_um", "id", "psnr_db", "psnr_input_db", "residual_variance", "nrmse_percent", "ssim"])
        names = ("psnr_db", "psnr_input_db", "residual_variance", "nrmse_percent", "ssim")
        cells = []
        for t in c.resolutions:
            for m in c.resolutions:
                s = M.summarize([r for r in rows if r["test_um"] == t and r["model_um"] == m], names)
                cells.append({"test_um": t, "model_um": m, "n": s["psnr_db"]["n"],
                              **{f"{k}_{stat}": s[k][stat] for k in names for stat in ("mean", "std")}})
        summary = {"cells": cells, "resolutions": list(c.resolutions), "report_rows": list(c.report_rows)}
        write_json(self.tables / "crosstest_summary.json", summary)
        files = self._write_crosstest_tables(cells)
        files += self._crosstest_figures(cells, markers)
        return {"files": [str(f) for f in files], "summary": str(self.tables / "crosstest_summary.json")}, f"{len(rows)} image pairs"

    def _cell(self, cells, t, m) -> dict:
        return next(x for x in cells if math.isclose(x["test_um"], t) and math.isclose(x["model_um"], m))

    def _write_crosstest_tables(self, cells) -> list[Path]:
        res = self.cfg.resolutions
        header = ["test set \\ model"] + [f"{m:g} µm" for m in res] + ["LDCT input"]
        md_rows = []
        for t in res:
            row = [f"{t:g} µm"] + [mean_std(self._cell(cells, t, m)["psnr_db_mean"], self._cell(cells, t, m)["psnr_db_std"])
                                   for m in res]
            first = self._cell(cells, t, res[0])
            md_rows.append(row + [mean_std(first["psnr_input_db_mean"], first["psnr_input_db_std"])])
        md = ("PSNR (dB) against the normal-dose labels, mean ± SD over the test images (fixed peak 2·μ_water = "
              f"{self.metrics.DEFAULT_PEAK_CM:.4f} cm⁻¹, i.e. +1000 HU, μ in cm⁻¹; the seed's Table 3).\n\n" + markdown_table(header, md_rows))
        out = list(write_table(self.tables / "crosstest_psnr", cells,
                               ["test_um", "model_um", "n", "psnr_db_mean", "psnr_db_std", "psnr_input_db_mean",
                                "psnr_input_db_std"], md, "Cross-test PSNR"))
        parts = []
        for key, title, fmt in (("residual_variance", "Residual variance vs self-test (cm⁻²)", dict(digits=2, scientific=True)),
                                ("nrmse_percent", "NRMSE vs self-test (%)", dict(digits=3)),
                                ("ssim", "SSIM vs self-test", dict(digits=4))):
            rows = [[f"{t:g} µm"] + [mean_std(self._cell(cells, t, m)[f"{key}_mean"], self._cell(cells, t, m)[f"{key}_std"], **fmt)
                                     for m in res] for t in res]
            parts.append(f"### {title}\n\n" + markdown_table(header[:-1], rows))
        md = ("Cross-test outputs against the self-test output (the model trained at the test resolution), "
              "mean ± SD over the test images (the seed's Figures 5 and 8). Rows: test set; columns: training resolution.\n\n"
              + "\n".join(parts))
        out += write_table(self.tables / "crosstest_vs_selftest", cells,
                           ["test_um", "model_um", "n"] + [f"{k}_{s}" for k in ("residual_variance", "nrmse_percent", "ssim")
                                                           for s in ("mean", "std")], md, "Cross-test against the self-test")
        # the seed's Table 3 beside ours, for the rows it reports
        comp, md_rows = [], []
        for t in (62.5, 625.0):
            if not any(math.isclose(t, r) for r in res):
                continue
            for m, (sm, ss) in zip(ALL_RESOLUTIONS, SEED["table3"][t]):
                ours = self._cell(cells, t, m) if any(math.isclose(m, r) for r in res) else None
                comp.append({"test_um": t, "model_um": m, "seed_psnr_mean": sm, "seed_psnr_std": ss,  # None: empty CSV cell
                             "psnr_mean": ours["psnr_db_mean"] if ours else None,
                             "psnr_std": ours["psnr_db_std"] if ours else None})
                md_rows.append([f"{t:g} µm", f"{m:g} µm", mean_std(sm, ss),
                                mean_std(ours["psnr_db_mean"], ours["psnr_db_std"]) if ours else "not run"])
        if comp:
            not_run = [m for m in ALL_RESOLUTIONS if not any(math.isclose(m, r) for r in res)]
            note = (f" Models at {', '.join(f'{m:g}' for m in not_run)} µm were not trained in this run (it trains "
                    f"{', '.join(f'{r:g}' for r in res)} µm): their cells say \"not run\" here and are empty in "
                    "`seed_table3_comparison.csv`." if not_run else "")
            md = ("PSNR (dB), the seed's Table 3 (its 300 TCIA test images per resolution, 512², 50,000 steps) beside this run. "
                  "The absolute values depend on the data, the peak convention and the training length; compare trends "
                  "along a row, not numbers." + note + "\n\n"
                  + markdown_table(["test set", "model", "seed (Table 3)", "this run"], md_rows))
            out += write_table(self.tables / "seed_table3_comparison", comp,
                               ["test_um", "model_um", "seed_psnr_mean", "seed_psnr_std", "psnr_mean", "psnr_std"], md,
                               "Seed Table 3 beside this run")
        return out

    # ---- figures --------------------------------------------------------------------------------
    @staticmethod
    def _plt():
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt

    def _save(self, fig, name: str) -> Path:
        path = self.figures / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        self._plt().close(fig)
        os.replace(tmp, path)
        return path

    @staticmethod
    def _show(ax, img, window, title):
        ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])

    def _crosstest_figures(self, cells, markers) -> list[Path]:
        plt = self._plt()
        c = self.cfg
        res = c.resolutions
        out = []
        # example images: input, label and self-test output at every resolution
        fig, axes = plt.subplots(len(res), 3, figsize=(7.5, 2.5 * len(res)), squeeze=False)
        for row, t in zip(axes, res):
            e = self.items(t, "test")[0]
            self._show(row[0], self._load(e["image"]), IMAGE_WINDOW, f"{t:g} µm LDCT input")
            self._show(row[1], self._load(e["label"]), IMAGE_WINDOW, f"{t:g} µm label (normal dose)")
            self._show(row[2], self._pred(markers[t], t, e["id"]), IMAGE_WINDOW, f"{t:g} µm self-test output")
        fig.suptitle(f"Test slice {self.items(res[0], 'test')[0]['id']}, window [{IMAGE_WINDOW[0]}, {IMAGE_WINDOW[1]}] cm⁻¹", fontsize=9)
        out.append(self._save(fig, "examples.png"))
        # per reported test row: every model's output and its residual against the self-test (Figures 4 and 7)
        for t in c.report_rows:
            e = self.items(t, "test")[0]
            fig, axes = plt.subplots(2, len(res) + 1, figsize=(2.2 * (len(res) + 1), 4.6), squeeze=False)
            self._show(axes[0][0], self._load(e["image"]), IMAGE_WINDOW, "LDCT input")
            self._show(axes[1][0], self._load(e["label"]), IMAGE_WINDOW, "label")
            self_test = self._pred(markers[t], t, e["id"])
            for k, m in enumerate(res, start=1):
                pred = self._pred(markers[m], t, e["id"])
                self._show(axes[0][k], pred, IMAGE_WINDOW, f"{m:g} µm model" + (" (self)" if math.isclose(m, t) else ""))
                self._show(axes[1][k], pred - self_test, RESIDUAL_WINDOW, f"{m:g} µm − self-test")
            fig.suptitle(f"{t:g} µm test slice {e['id']}: images [{IMAGE_WINDOW[0]}, {IMAGE_WINDOW[1]}] cm⁻¹, "
                         f"residuals [{RESIDUAL_WINDOW[0]}, {RESIDUAL_WINDOW[1]}] cm⁻¹", fontsize=9)
            out.append(self._save(fig, f"crosstest_{_file_tag(t)}.png"))
        # metrics against the training resolution for the reported rows (Figures 5 and 8, Table 3)
        fig, axes = plt.subplots(1, 4, figsize=(18, 4), layout="constrained")
        for t in c.report_rows:
            ys = {k: [self._cell(cells, t, m)[f"{k}_mean"] for m in res] for k in ("psnr_db", "residual_variance", "nrmse_percent", "ssim")}
            es = {k: [self._cell(cells, t, m)[f"{k}_std"] for m in res] for k in ys}
            for ax, k in zip(axes, ys):
                ax.errorbar(res, ys[k], yerr=[0 if not math.isfinite(v) else v for v in es[k]], marker="o", capsize=3,
                            label=f"{t:g} µm test set")
        twin = axes[0].twinx()
        for t, style in ((62.5, "s--"), (625.0, "^--")):
            if any(math.isclose(t, r) for r in c.report_rows):
                twin.plot(ALL_RESOLUTIONS, [v for v, _ in SEED["table3"][t]], style, color="0.6", mfc="none",
                          label=f"seed Table 3, {t:g} µm (right axis)")
        twin.set_ylabel("seed's PSNR (dB, its data)", color="0.4", fontsize=8)
        twin.legend(loc="lower right", fontsize=7)
        for ax, (title, unit) in zip(axes, (("PSNR vs label", "dB"), ("residual variance vs self-test", "cm⁻²"),
                                           ("NRMSE vs self-test", "%"), ("SSIM vs self-test", ""))):
            ax.set_xscale("log")
            ax.set_xticks(res)
            ax.set_xticklabels([f"{r:g}" for r in res], fontsize=7)
            ax.minorticks_off()
            ax.set_xlabel("training resolution (µm)")
            ax.set_title(title + (f" ({unit})" if unit else ""), fontsize=9)
            ax.grid(alpha=0.3)
        axes[0].legend(loc="upper left", fontsize=7)
        out.append(self._save(fig, "metrics_vs_training_resolution.png"))
        # the full matrix as heat maps
        fig, axes = plt.subplots(1, 2, figsize=(4.2 * 2 + 1, 0.55 * len(res) + 3), layout="constrained")
        for ax, key, title, fmt in ((axes[0], "psnr_db_mean", "PSNR vs label (dB)", "{:.1f}"),
                                    (axes[1], "nrmse_percent_mean", "NRMSE vs self-test (%)", "{:.2f}")):
            mat = np.array([[self._cell(cells, t, m)[key] for m in res] for t in res])
            im = ax.imshow(mat, cmap="viridis")
            for i in range(len(res)):
                for j in range(len(res)):
                    ax.text(j, i, fmt.format(mat[i, j]), ha="center", va="center", fontsize=7,
                            color="w" if mat[i, j] < np.nanmean(mat) else "k")
            ax.set_xticks(range(len(res)))
            ax.set_xticklabels([f"{r:g}" for r in res], fontsize=7)
            ax.set_yticks(range(len(res)))
            ax.set_yticklabels([f"{r:g}" for r in res], fontsize=7)
            ax.set_xlabel("model (training resolution, µm)")
            ax.set_ylabel("test set (µm)")
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
        out.append(self._save(fig, "crosstest_heatmap.png"))
        return out

    # ---- retraining -----------------------------------------------------------------------------
    def _check_retrain_pair(self) -> tuple[float, float]:
        c = self.cfg
        src, tgt = c.retrain_source, c.retrain_target
        for name, r in (("retrain_source", src), ("retrain_target", tgt)):
            if not any(math.isclose(r, x) for x in c.resolutions):
                raise StudyError(f"--{name} {r:g} µm is not among --resolutions ({', '.join(f'{x:g}' for x in c.resolutions)}).")
        if math.isclose(src, tgt):
            raise StudyError("--retrain_source and --retrain_target must differ.")
        return next(x for x in c.resolutions if math.isclose(x, src)), next(x for x in c.resolutions if math.isclose(x, tgt))

    def _finetune_marker(self, f: float) -> dict:
        c = self.cfg
        src, tgt = self._check_retrain_pair()
        name = f"finetune_{_pct(f)}pct"
        settings = {"source_um": src, "target_um": tgt, "fraction": f, "iterations": c.finetune_iterations,
                    "val_interval": c.finetune_val_interval, "patience": c.finetune_patience, "batch_size": c.batch_size,
                    "patch_size": c.patch_size, "learning_rate": c.learning_rate, "lr_decay_steps": c.lr_decay_steps,
                    "seed": c.seed, "amp": c.amp, "bundle": "train.json+finetune.json"}
        upstream = {"train": self.train_marker(src)["digest"], "data": self.data_marker(tgt)["digest"]}
        out_dir = self.root / "retrain" / f"frac{_pct(f)}pct"

        def work(uid):
            overrides = {**self._common_overrides(), "resolution": tgt, "pretrained_ckpt": self.train_marker(src)["outputs"]["model"],
                         "train_fraction": f, "subset_seed": c.seed, "num_iterations": c.finetune_iterations,
                         "val_interval": c.finetune_val_interval, "save_interval": c.finetune_val_interval,
                         "early_stop_patience": c.finetune_patience}
            out = self._run_training(uid, "retrain", name, ["train.json", "finetune.json"], overrides, out_dir,
                                     c.finetune_iterations, c.finetune_val_interval)
            n = len(self.items(tgt, "training"))
            out["n_images"] = max(1, int(round(f * n)))  # as the bundle's load_split keeps
            return out, f"{out['n_images']} images, best at iteration {out['best_iteration']}"

        return self._unit("retrain", name, settings, upstream, work, "finetune",
                          c.finetune_iterations * c.batch_size * c.patch_size**2 * 3)

    def _retrain_infer_marker(self, f: float, ft: dict) -> dict:
        _, tgt = self._check_retrain_pair()
        name = f"infer_{_pct(f)}pct"
        settings = {"fraction": f, "test_um": tgt}
        upstream = {"finetune": ft["digest"], "data": self.data_marker(tgt)["digest"]}

        def work(uid):
            inputs = self._link_inputs(self.root / "retrain" / "inputs", [tgt])
            out = self._infer(uid, "retrain", name, ft["outputs"]["model"], inputs,
                              self.root / "retrain" / "pred" / f"frac{_pct(f)}pct")
            return out, f"{len(inputs)} test images"

        return self._unit("retrain", name, settings, upstream, work, "infer", self._split_count("test") * self.cfg.n_pixels**2)

    def stage_retrain(self) -> None:
        c = self.cfg
        src, tgt = self._check_retrain_pair()
        self.train_marker(src)  # prerequisite, with a clear message when missing
        base = {m: self.crosstest_marker(m, run=True) for m in (src, tgt)}  # "before" and the self-test reference
        markers = {}
        for f in c.fractions:
            ft = self._finetune_marker(f)
            markers[f] = (ft, self._retrain_infer_marker(f, ft))
        upstream = {**{f"infer_{_pct(f)}pct": mk[1]["digest"] for f, mk in markers.items()},
                    **{f"finetune_{_pct(f)}pct": mk[0]["digest"] for f, mk in markers.items()},
                    "before": base[src]["digest"], "self": base[tgt]["digest"]}
        settings = {"source_um": src, "target_um": tgt, "fractions": list(c.fractions), "version": 2,
                    "psnr_peak_cm": self.metrics.DEFAULT_PEAK_CM}
        self._unit("retrain", "tables", settings, upstream, lambda uid: self._retrain_tables(src, tgt, base, markers))

    def _retrain_tables(self, src, tgt, base, markers) -> tuple[dict, str]:
        M = self.metrics
        items = self.items(tgt, "test")
        names = ("psnr_db", "residual_variance", "nrmse_percent", "ssim")

        def scores(pred_of) -> dict:
            rows = []
            for e in items:
                pred, ref, label = pred_of(e["id"]), self._pred(base[tgt], tgt, e["id"]), self._load(e["label"])
                rows.append({"psnr_db": M.psnr(pred, label, M.DEFAULT_PEAK_CM), "residual_variance": M.residual_variance(pred, ref),
                             "nrmse_percent": M.nrmse(pred, ref), "ssim": M.ssim(pred, ref, M.DEFAULT_PEAK_CM)})
            s = M.summarize(rows, names)
            return {f"{k}_{stat}": s[k][stat] for k in names for stat in ("mean", "std")} | {"n": s["psnr_db"]["n"]}

        rows = [{"fraction": 0.0, "n_images": 0, "model": f"{src:g} µm model (before)", "iterations": None, "best_iteration": None,
                 **scores(lambda sid: self._pred(base[src], tgt, sid))}]
        for f, (ft, inf) in markers.items():
            o = ft["outputs"]
            rows.append({"fraction": f, "n_images": o.get("n_images"), "model": f"retrained, {_pct(f)} %",
                         "iterations": o.get("last_iteration"), "best_iteration": o.get("best_iteration"),
                         **scores(lambda sid, inf=inf: self._load(inf["outputs"]["predictions"][f"{_file_tag(tgt)}__{sid}"]))})
        cols = ["fraction", "n_images", "model", "iterations", "best_iteration", "n"] + [f"{k}_{s}" for k in names for s in ("mean", "std")]
        md_rows = [[f"{_pct(r['fraction'])} %", r["n_images"], r["model"], r["iterations"] if r["iterations"] is not None else "—",
                    mean_std(r["psnr_db_mean"], r["psnr_db_std"]),
                    mean_std(r["residual_variance_mean"], r["residual_variance_std"], scientific=True),
                    mean_std(r["nrmse_percent_mean"], r["nrmse_percent_std"], 3), mean_std(r["ssim_mean"], r["ssim_std"], 4)]
                   for r in rows]
        md = (f"The {src:g} µm model fine-tuned on fractions of the {tgt:g} µm training set (`finetune.json`, early stopping), "
              f"tested on the {tgt:g} µm test set: PSNR against the labels; residual variance, NRMSE and SSIM against the "
              f"{tgt:g} µm self-test output (the seed's Figure 11). Mean ± SD over the test images.\n\n"
              + markdown_table(["fraction", "images", "model", "iterations run", "PSNR (dB)", "residual variance (cm⁻²)",
                                "NRMSE (%)", "SSIM"], md_rows))
        files = list(write_table(self.tables / "retrain", rows, cols, md, "Retraining"))
        summary = {"source_um": src, "target_um": tgt, "rows": rows,
                   "self_test_psnr": scores(lambda sid: self._pred(base[tgt], tgt, sid))["psnr_db_mean"]}
        write_json(self.tables / "retrain_summary.json", summary)
        files += self._retrain_figures(src, tgt, rows, base, markers)
        return {"files": [str(f) for f in files], "summary": str(self.tables / "retrain_summary.json")}, f"{len(rows)} rows"

    def _retrain_figures(self, src, tgt, rows, base, markers) -> list[Path]:
        plt = self._plt()
        out = []
        fr = [100 * r["fraction"] for r in rows[1:]]
        fig, axes = plt.subplots(1, 4, figsize=(19, 4), layout="constrained")
        for ax, key, title in zip(axes, ("psnr_db", "residual_variance", "nrmse_percent", "ssim"),
                                  ("PSNR vs label (dB)", "residual variance vs self-test (cm⁻²)", "NRMSE vs self-test (%)",
                                   "SSIM vs self-test")):
            ax.errorbar([0.0] + fr, [r[f"{key}_mean"] for r in rows],
                        yerr=[0 if not math.isfinite(r[f"{key}_std"]) else r[f"{key}_std"] for r in rows],
                        marker="o", capsize=3, label=f"{src:g} µm model retrained (0 %: before)")
            ax.axhline(rows[0][f"{key}_mean"], color="C3", ls="--", lw=0.8, label="before retraining")
            ax.set_xlabel(f"share of the {tgt:g} µm training set (%)")
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            seed_key = {"nrmse_percent": "nrmse", "ssim": "ssim"}.get(key)
            if seed_key:
                twin = ax.twinx()
                before, after = SEED["retrain"][seed_key]
                twin.plot([0, 100 * SEED["retrain"]["fraction"]], [before, after], "*:", color="0.5", ms=10,
                          label="seed's abstract: before → after (right axis)")
                twin.set_ylabel(f"seed's {seed_key.upper()} (its data{', as printed' if seed_key == 'nrmse' else ''})",
                                color="0.4", fontsize=8)
                twin.legend(loc="center right", fontsize=7)
        axes[0].legend(fontsize=7)
        out.append(self._save(fig, "retrain_curve.png"))
        # images: self-test, before, after (Figure 10)
        e = self.items(tgt, "test")[0]
        ref = self._pred(base[tgt], tgt, e["id"])
        panels = [(f"{src:g} µm model (before)", self._pred(base[src], tgt, e["id"]))]
        for f, (_, inf) in markers.items():
            panels.append((f"retrained, {_pct(f)} %", self._load(inf["outputs"]["predictions"][f"{_file_tag(tgt)}__{e['id']}"])))
        fig, axes = plt.subplots(2, len(panels) + 1, figsize=(2.2 * (len(panels) + 1), 4.6), squeeze=False)
        self._show(axes[0][0], ref, IMAGE_WINDOW, f"{tgt:g} µm self-test")
        self._show(axes[1][0], self._load(e["label"]), IMAGE_WINDOW, "label")
        for k, (title, img) in enumerate(panels, start=1):
            self._show(axes[0][k], img, IMAGE_WINDOW, title)
            self._show(axes[1][k], img - ref, RESIDUAL_WINDOW, "− self-test")
        fig.suptitle(f"{tgt:g} µm test slice {e['id']}: images [{IMAGE_WINDOW[0]}, {IMAGE_WINDOW[1]}] cm⁻¹, "
                     f"residuals [{RESIDUAL_WINDOW[0]}, {RESIDUAL_WINDOW[1]}] cm⁻¹", fontsize=9)
        out.append(self._save(fig, "retrain_images.png"))
        return out

    # ---- noise texture --------------------------------------------------------------------------
    def stage_noise(self) -> None:
        c = self.cfg
        upstream = {f"data_{res_tag(r)}": self.data_marker(r)["digest"] for r in c.resolutions}
        settings = {"roi": c.nps_roi, "grid": c.nps_grid, "split": c.nps_split, "max_images": c.nps_max_images, "version": 2}
        self._unit("noise", "tables", settings, upstream, lambda uid: self._noise_tables())

    def _noise_tables(self) -> tuple[dict, str]:
        from ldct_sim.noise_power import extract_rois, radial_nps

        c = self.cfg
        results, summary, curves, examples, sd_maps = {}, [], [], {}, {}
        for r in c.resolutions:
            splits = ("training", "validation", "test") if c.nps_split == "all" else (c.nps_split,)
            items = sorted((e for s in splits for e in self.items(r, s)), key=lambda e: e["id"])[: c.nps_max_images]
            if not items:
                raise StudyError(f"noise: no {c.nps_split} images at {r:g} µm.")
            rois, power, body = [], 0.0, 0.0
            for e in items:
                noise = self._load(e["noise"])
                rois.append(extract_rois(noise, c.nps_roi, grid=c.nps_grid))
                power = power + noise**2  # the noise is zero-mean: the ensemble mean of n² is the per-pixel variance
                body = body + (self._load(e["label"]) > 0.5 * MU_WATER)
            examples[r] = self._load(next(e for e in self.items(r, "test") or items)["noise"])
            res = radial_nps(np.concatenate(rois), r / 1000.0)
            results[r] = res
            sd_maps[r], outer_ratio = self._noise_sd_map(power / len(items), body / len(items))
            dx = r / 1000.0
            summary.append({
                "resolution_um": r, "pixel_mm": dx, "n_images": len(items), "n_rois": res.n_rois, "roi_px": c.nps_roi,
                "noise_std_cm": math.sqrt(res.variance), "noise_std_hu": 1000.0 * math.sqrt(res.variance) / MU_WATER,
                "nps_integral_cm2": res.integral, "mean_frequency_mm": res.mean_frequency_mm,
                "mean_frequency_cycles_per_pixel": res.mean_frequency_mm * dx, "peak_frequency_mm": res.peak_frequency_mm,
                "peak_frequency_cycles_per_pixel": res.peak_frequency_mm * dx, "nyquist_mm": res.nyquist_mm,
                "sd_outer_over_centre": outer_ratio,
            })
            curves += [{"resolution_um": r, "frequency_mm": float(f), "frequency_cycles_per_pixel": float(f * dx),
                        "nps_cm2_mm2": float(v), "nps_normalised": float(v / res.integral * (1 / dx) ** 2)}
                       for f, v in zip(res.frequency_mm, res.nps)]
        cols = list(summary[0])
        md = ("Noise-only images (input − noiseless reconstruction, μ in cm⁻¹), central ROIs "
              f"({c.nps_grid}×{c.nps_grid} ROIs of {c.nps_roi}² px per image over the central half). NPS = Δx·Δy/(Nx·Ny)·"
              "⟨|DFT(ROI − mean)|²⟩ in (cm⁻¹)²·mm², radially averaged; its integral equals the noise variance. The mean "
              "frequency is the NPS-weighted mean radial frequency (higher: finer noise grain); in cycles per pixel it "
              "compares textures across pixel sizes. The last column measures where the noise is: the per-pixel noise SD "
              "(over all images) in the outer band of the body (the outer 1/16 of the image side inside the region that is "
              "body in every image) over that in its centre; streaks at the edge raise it.\n\n"
              + markdown_table(["resolution", "pixel (mm)", "images", "ROIs", "noise SD (cm⁻¹)", "noise SD (HU)",
                                "mean f (mm⁻¹)", "mean f (cycles/px)", "peak f (cycles/px)", "Nyquist (mm⁻¹)",
                                "SD outer / centre"],
                               [[f"{s['resolution_um']:g} µm", f"{s['pixel_mm']:g}", s["n_images"], s["n_rois"],
                                 f"{s['noise_std_cm']:.4g}", f"{s['noise_std_hu']:.1f}", f"{s['mean_frequency_mm']:.3g}",
                                 f"{s['mean_frequency_cycles_per_pixel']:.3f}", f"{s['peak_frequency_cycles_per_pixel']:.3f}",
                                 f"{s['nyquist_mm']:.3g}", f"{s['sd_outer_over_centre']:.2f}"] for s in summary]))
        files = list(write_table(self.tables / "nps_summary", summary, cols, md, "Noise texture"))
        files += write_table(self.tables / "nps_curves", curves, list(curves[0]))
        write_json(self.tables / "nps_summary.json", {"rows": summary})
        files += self._noise_figures(results, examples, sd_maps)
        return {"files": [str(f) for f in files], "summary": str(self.tables / "nps_summary.json")}, f"{len(summary)} resolutions"

    def _noise_sd_map(self, variance: np.ndarray, body_share: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-pixel noise SD normalised to the body centre's, and the outer-band / centre ratio (see the table text)."""
        from scipy.ndimage import binary_erosion

        n = variance.shape[0]
        sd = np.sqrt(variance)
        body = body_share >= 0.999  # body in every image
        centre = np.zeros_like(body)
        centre[n // 4: n - n // 4, n // 4: n - n // 4] = True
        centre &= body
        outer = body & ~binary_erosion(body, iterations=max(1, n // 16))
        if not centre.any() or not outer.any():
            return sd / max(float(sd.mean()), 1e-30), math.nan
        ref = float(sd[centre].mean())
        return sd / ref, float(sd[outer].mean()) / ref

    def _noise_figures(self, results, examples, sd_maps) -> list[Path]:
        plt = self._plt()
        res = list(results)
        out = []
        ncol = min(6, len(res))
        nrow = math.ceil(len(res) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.7 * nrow), squeeze=False)
        for ax, r in zip(axes.flat, res):
            self._show(ax, examples[r], NOISE_WINDOW, f"{r:g} µm noise only")
        for ax in list(axes.flat)[len(res):]:
            ax.axis("off")
        fig.suptitle(f"Noise-only images (input − noiseless), window [{NOISE_WINDOW[0]}, {NOISE_WINDOW[1]}] cm⁻¹ (the seed's Figure 12)",
                     fontsize=9)
        out.append(self._save(fig, "noise_images.png"))
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
        for k, r in enumerate(res):
            nps = results[r]
            dx = r / 1000.0
            axes[0].loglog(nps.frequency_mm, nps.nps, "-", color=f"C{k}", label=f"{r:g} µm (Δx {dx:g} mm)")
            axes[0].axvline(nps.nyquist_mm, color=f"C{k}", ls=":", lw=0.8)
            axes[1].plot(nps.frequency_mm * dx, nps.nps / nps.integral / dx**2, "-", color=f"C{k}", label=f"{r:g} µm")
        from matplotlib.ticker import NullFormatter

        axes[0].xaxis.set_minor_formatter(NullFormatter())
        axes[0].yaxis.set_minor_formatter(NullFormatter())
        axes[0].set_xlabel("spatial frequency (mm⁻¹); dotted: Nyquist")
        axes[0].set_ylabel("NPS ((cm⁻¹)²·mm²)")
        axes[0].set_title("Radially averaged NPS", fontsize=9)
        axes[1].set_xlabel("spatial frequency (cycles per pixel)")
        axes[1].set_ylabel("NPS / (variance · Δx²)")
        axes[1].set_title("Noise texture: NPS normalised to unit variance", fontsize=9)
        for ax in axes:
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        out.append(self._save(fig, "nps.png"))
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.7 * nrow), squeeze=False)
        for ax, r in zip(axes.flat, res):
            nps = results[r]
            dx = r / 1000.0
            ext = [nps.fx[0] * dx, nps.fx[-1] * dx, nps.fy[-1] * dx, nps.fy[0] * dx]
            ax.imshow(np.log10(np.maximum(nps.nps_2d / nps.integral / dx**2, 1e-6)), extent=ext, cmap="magma")
            ax.set_title(f"{r:g} µm 2-D NPS (log10)", fontsize=8)
            ax.set_xlabel("fx (cycles/px)", fontsize=7)
        for ax in list(axes.flat)[len(res):]:
            ax.axis("off")
        out.append(self._save(fig, "nps_2d.png"))
        fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.9 * nrow), squeeze=False, layout="constrained")
        for ax, r in zip(axes.flat, res):
            im = ax.imshow(sd_maps[r], cmap="inferno", vmin=0.0, vmax=2.5)
            ax.set_title(f"{r:g} µm noise SD / centre", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in list(axes.flat)[len(res):]:
            ax.axis("off")
        fig.colorbar(im, ax=list(axes.flat), shrink=0.8)
        fig.suptitle("Per-pixel noise SD over all noise-only images, relative to the body centre (where the noise is)", fontsize=9)
        out.append(self._save(fig, "noise_sd_maps.png"))
        return out

    # ---- report ---------------------------------------------------------------------------------
    def stage_report(self) -> None:
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
                    "version": 1}
        self._unit("report", "report", settings, upstream, lambda uid: self._write_report(), "report")

    def _md_body(self, name: str) -> str:
        """A table's Markdown file without its heading, or a note that the stage has not run."""
        path = self.tables / f"{name}.md"
        if not path.is_file():
            return "_not produced yet._\n"
        lines = path.read_text().splitlines()
        return "\n".join(lines[2:] if lines and lines[0].startswith("## ") else lines) + "\n"

    def _markers(self, stage: str) -> dict[str, dict]:
        out = {}
        for p in sorted((self.state_dir / stage).glob("*.json")):
            m = read_json(p)
            if isinstance(m, dict) and "digest" in m:
                out[p.stem] = m
        return out

    def _write_report(self) -> tuple[dict, str]:
        c = self.cfg
        prov = study_provenance()
        git = prov["git"]
        figs = sorted(p.name for p in self.figures.glob("*.png")) if self.figures.is_dir() else []
        used: set[str] = set()

        def fig(name: str, caption: str) -> str:
            if name not in figs:
                return ""
            used.add(name)
            return f"![{caption}](figures/{name})\n\n*{caption}*\n\n"

        data = self._markers("data")
        counts = next(iter(data.values()))["outputs"]["counts"] if data else {}
        L = [f"# Resolution-transfer study: `{c.preset}` run\n",
             "Reproduces the study of Zhang et al., \"Transferring U-Net between low-dose CT denoising tasks: a validation "
             "study with varied spatial resolutions\", Quant Imaging Med Surg 2024;14(1):640-652 (the *seed*), with this "
             "repository's simulation chain (`ldct_sim`) and U-Net bundle (`bundles/unet_ldct`).\n",
             f"Written {prov['timestamp']} by `scripts/resolution_transfer.py` at commit `{git.get('commit')}`"
             + (" (with uncommitted changes)" if git.get("dirty") else "") + ".\n",
             "## Settings\n",
             markdown_table(["", "this run", "seed"], [
                 ["data", f"{c.phantoms} generated abdominal phantoms" if c.phantoms else f"CT from `{c.source}`",
                  "TCIA abdominal CT (pancreas-CT)"],
                 ["systems", ", ".join(f"{r:g}" for r in c.resolutions) + " µm (Table 1 geometry and doses)",
                  "62.5, 125, 250, 375, 500, 625 µm"],
                 ["images", f"{c.n_pixels}² px, {c.n_views} views, strip forward model, ram-lak FBP, μ at 60 keV", "512², FBP, μ at 60 keV"],
                 ["train / validation / test", "/".join(str(counts.get(s, "?")) for s in ("training", "validation", "test"))
                  + " slices per resolution", "2,400 / 300 / 300"],
                 ["training", f"{c.iterations} iterations, batch {c.batch_size} × {c.patch_size}² crops, Adam {c.learning_rate:g}, "
                  f"×0.5 every {c.lr_decay_steps}, validation every {c.val_interval}, "
                  + (f"early stopping after {c.early_stop_patience} validations without improvement"
                     if c.early_stop_patience else "no early stopping") + ", best val_loss kept (batch, optimiser, "
                  "schedule, early stopping and best-model selection are this project's choices)", "50,000 steps, MSE loss"],
                 ["retraining", f"{c.retrain_source:g} µm model on {', '.join(_pct(f) for f in c.fractions)} % of the "
                  f"{c.retrain_target:g} µm training set, ≤ {c.finetune_iterations} iterations, validation every "
                  f"{c.finetune_val_interval}, early stopping after {c.finetune_patience}", "5–30 %, 3,000–7,000 steps, early stopping"],
                 ["seed", f"{c.seed}: phantoms, noise and splits (ldct_sim `derive_seed`), retraining subsets (`subset_seed`), "
                  "`monai.utils.set_determinism`", "—"],
             ], "lll"),
             "Versions: " + ", ".join(f"{k} {v}" for k, v in prov["packages"].items() if v) + f"; Python {prov['python']}; "
             f"{prov['platform']}.\n",
             f"This report was written by `{' '.join(prov['argv'])}`; the full settings are in `config.json`, the log of "
             "every run in `logs/study.log` and that of every unit in `logs/<stage>/`.\n"]
        # --- cross-test
        L += ["## 1. Cross-test: every model on every test set\n",
              "Metrics in cm⁻¹ from the bundle's `scripts/metrics.py`: PSNR = 10·log10(MAX²/MSE) against the normal-dose label "
              f"with MAX = 2·μ_water = {self.metrics.DEFAULT_PEAK_CM:.4f} cm⁻¹ (+1000 HU), fixed for every image (the seed says "
              "only \"the maximum intensity value\"; the maximum of a noisy label would grow with its noise) (equation 4); "
              "SSIM uses the same L; NRMSE = 100·RMSE/mean(cross-test output) (equation 5) and SSIM "
              "(equation 6, 11×11 Gaussian window) and the residual variance against the *self-test* output, i.e. the output "
              "of the model trained at the test resolution, as in the seed's Figures 5 and 8.\n",
              self._md_body("crosstest_psnr"), "### The seed's Table 3 beside this run\n", self._md_body("seed_table3_comparison"),
              fig("crosstest_heatmap.png", "The full matrix: PSNR against the labels and NRMSE against the self-test output."),
              fig("metrics_vs_training_resolution.png", "Metrics of the reported test sets against the training resolution "
                  "(the seed's Figures 5 and 8; its Table 3 in grey on the right axis)."),
              self._md_body("crosstest_vs_selftest")]
        for t in c.report_rows:
            L.append(fig(f"crosstest_{_file_tag(t)}.png", f"{t:g} µm test slice denoised by every model, and the residuals "
                         "against the self-test output (the seed's Figures 4 and 7)."))
        L.append(fig("examples.png", "One test slice per resolution: input, label and self-test output (the seed's Figures 3 and 6)."))
        L += self._crosstest_observations()
        # --- retraining
        L += ["## 2. Retraining on a fraction of the target resolution\n", self._md_body("retrain")]
        L += self._retrain_observations()
        L.append(fig("retrain_curve.png", "Retraining (the seed's Figure 11): this run against the share of the target training "
                     "set; the dashed line is the model before retraining; grey stars: the seed's abstract (its data, right axis)."))
        L.append(fig("retrain_images.png", "A target test slice: self-test, before and after retraining, residuals against the "
                     "self-test (the seed's Figure 10)."))
        # --- noise
        L += ["## 3. Noise texture\n", self._md_body("nps_summary"),
              fig("noise_images.png", "Noise-only images (the seed's Figure 12)."),
              fig("nps.png", "Radially averaged noise power spectra: absolute (left, mm⁻¹, with each system's Nyquist "
                  "frequency) and normalised to unit variance against cycles per pixel (right): the texture."),
              fig("nps_2d.png", "2-D NPS (normalised, log scale): streaks show up as anisotropy."),
              fig("noise_sd_maps.png", "Per-pixel noise SD relative to the body centre: streaks and photon starvation "
                  "at the edge of the body show up as bright bands.")]
        L += self._noise_observations()
        # --- timing and files
        rows = []
        for stage in ("data", "train", "crosstest", "retrain", "noise"):
            for name, m in self._markers(stage).items():
                rows.append([f"{stage}/{name}", format_seconds(m.get("seconds")), m.get("finished", "")])
        L += ["## Time per unit\n",
              f"Seed: {SEED['train_time']}.\n\n" + (markdown_table(["unit", "time", "finished"], rows) if rows else "_none yet._\n")]
        missing = [f for f in figs if f not in used]
        if missing:
            L.append("## Other figures\n\n" + "".join(f"![{f}](figures/{f})\n\n" for f in missing))
        L.append("## Files\n\n`tables/*.csv` (full precision) and `tables/*.md`; `figures/*.png`; per-image metrics in "
                 "`crosstest/per_image.csv`; predictions in `crosstest/pred/` and `retrain/pred/`; models in `models/` and "
                 "`retrain/`; the dataset in `data/` (`manifest.json` holds geometry, doses and per-slice seeds); "
                 "resumability markers in `state/`.\n")
        path = write_text(self.root / "report.md", "\n".join(x for x in L if x))
        return {"files": [str(path)], "figures": sorted(used | set(missing))}, f"{len(figs)} figures"

    # ---- observations written into the report (computed, so they stay true for any run) -----------
    def _crosstest_observations(self) -> list[str]:
        s = read_json(self.tables / "crosstest_summary.json")
        if not isinstance(s, dict):
            return []
        cells = s["cells"]
        res = [float(r) for r in s["resolutions"]]
        out = []
        for t in [float(r) for r in s["report_rows"]]:
            row = {m: self._cell(cells, t, m) for m in res}
            best = max(res, key=lambda m: row[m]["psnr_db_mean"])
            spread = max(v["psnr_db_mean"] for v in row.values()) - min(v["psnr_db_mean"] for v in row.values())
            gain = row[t]["psnr_db_mean"] - row[t]["psnr_input_db_mean"]
            line = (f"* {t:g} µm test set: the self-test model changes PSNR by {gain:+.2f} dB from the LDCT input's; the best "
                    f"model is the {best:g} µm one{' (the self-test)' if math.isclose(best, t) else ''}; the models span "
                    f"{spread:.2f} dB")
            seed_row = SEED["table3"].get(t)
            if seed_row:
                seed_spread = max(v for v, _ in seed_row) - min(v for v, _ in seed_row)
                seed_best = ALL_RESOLUTIONS[int(np.argmax([v for v, _ in seed_row]))]
                line += f" (seed: best {seed_best:g} µm, span {seed_spread:.2f} dB)"
            others = [m for m in res if not math.isclose(m, t)]
            if len(others) >= 3:
                gap = [abs(math.log(m / t)) for m in others]
                rv = [row[m]["residual_variance_mean"] for m in others]
                line += (f"; residual variance against the self-test vs the resolution gap |log(model/test)|: "
                         f"Spearman ρ = {_spearman(gap, rv):+.2f} (the seed: it grows with the gap)")
            out.append(line + ".")
        return ["**Reading (computed from this run):**\n", "\n".join(out) + "\n"] if out else []

    def _retrain_observations(self) -> list[str]:
        s = read_json(self.tables / "retrain_summary.json")
        if not isinstance(s, dict) or len(s.get("rows", [])) < 2:
            return []
        before, after = s["rows"][0], s["rows"][1:]
        seed_f = SEED["retrain"]["fraction"]
        near = min(after, key=lambda r: abs(r["fraction"] - seed_f))
        best = min(after, key=lambda r: r["nrmse_percent_mean"])
        sn, ss = SEED["retrain"]["nrmse"], SEED["retrain"]["ssim"]

        def rel(a, b):
            return 100.0 * (b - a) / a if a else math.nan

        lines = [
            f"* NRMSE against the self-test: {before['nrmse_percent_mean']:.3g} % before → {near['nrmse_percent_mean']:.3g} % "
            f"after retraining on {_pct(near['fraction'])} % ({rel(before['nrmse_percent_mean'], near['nrmse_percent_mean']):+.0f} %); "
            f"seed's abstract: {sn[0]} → {sn[1]} ({rel(*sn):+.0f} %).",
            f"* SSIM against the self-test: {before['ssim_mean']:.4f} → {near['ssim_mean']:.4f} "
            f"({rel(before['ssim_mean'], near['ssim_mean']):+.1f} %); seed: {ss[0]} → {ss[1]} ({rel(*ss):+.1f} %).",
            f"* Lowest NRMSE at {_pct(best['fraction'])} % of the target training set ({best['n_images']} images).",
            "* The seed's NRMSE is printed as a fraction (0.1898) although its equation 5 multiplies by 100; this run "
            "reports percent, so compare relative changes.",
        ]
        return ["**Reading (computed from this run):**\n", "\n".join(lines) + "\n"]

    def _noise_observations(self) -> list[str]:
        s = read_json(self.tables / "nps_summary.json")
        if not isinstance(s, dict) or not s.get("rows"):
            return []
        rows = s["rows"]
        freqs = [r["mean_frequency_cycles_per_pixel"] for r in rows]
        spread = 100.0 * (max(freqs) / min(freqs) - 1.0)
        sds = ", ".join(f"{r['resolution_um']:g} µm {r['noise_std_hu']:.0f} HU" for r in rows)
        ratios = ", ".join(f"{r['resolution_um']:g} µm {r['sd_outer_over_centre']:.2f}" for r in rows)
        lines = [f"* Noise SD in the central ROIs: {sds} (the seed chose its Table 1 doses for comparable SNRs at 512²; "
                 f"at {self.cfg.n_pixels}² the objects are smaller in millimetres and the levels may drift apart).",
                 f"* NPS-weighted mean frequency in cycles per pixel: {', '.join(f'{r:.3f}' for r in freqs)}: the noise "
                 f"texture on the pixel grid differs by {spread:.1f} % between the systems."]
        if spread < 5.0:
            lines.append("* Table 1 scales the source and detector distances and the detector pitch with Δx, so in pixel "
                         "units the systems are one scanner and the central noise texture is the same; what a model trained at "
                         "one resolution meets at another is a different noise *level* and a different *distribution* of "
                         "noise over the object (the seed's edge streaks), rather than a different grain.")
        lines.append(f"* Noise SD in the outer band of the body over the centre: {ratios} (above 1: more noise at the edge).")
        return ["**Reading (computed from this run):**\n", "\n".join(lines) + "\n"]


def _spearman(x, y) -> float:
    """Spearman rank correlation (ties get their mean rank); NaN for fewer than 3 points."""
    from scipy.stats import spearmanr

    if len(x) < 3:
        return math.nan
    return float(spearmanr(x, y).statistic)


def main(argv: list[str] | None = None) -> int:
    """Run the study; returns 0 on success, 1 when a unit failed, 2 on bad options, 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = resolve_config(args)
    except ValueError as err:
        parser.error(str(err))
    study = ResolutionTransferStudy(config)
    import signal

    def _terminate(signum, frame):  # `kill PID`: stop the running bundle command too, then exit
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        study.run()
    except StudyError as err:
        log.error("study stopped: %s", err)
        log.error("fix the cause and run the same command again: finished units are kept.")
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; run the same command again to continue.")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
