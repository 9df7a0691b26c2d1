"""Configuration of the resolution-transfer study: presets (``presets.json``), the seed's numbers (``seed.json``),
the command line and the checked :class:`Config` of one run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ldct_scripts import BUNDLES_DIR
from ldct_scripts.studies.engine import output_folder

__all__ = ["STAGES", "ALL_RESOLUTIONS", "PRESETS", "SEED", "Config", "build_parser", "resolve_config", "stable_split",
           "res_tag", "file_tag", "pct"]

_HERE = Path(__file__).resolve().parent
DEFAULT_BUNDLE = BUNDLES_DIR / "unet_ldct"
STAGES = ("data", "train", "crosstest", "retrain", "noise", "report")


def _load_presets() -> dict[str, dict]:
    """``presets.json``, lists as tuples (``resolutions``, ``fractions``)."""
    raw = json.loads((_HERE / "presets.json").read_text(encoding="utf-8"))
    return {name: {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
            for name, p in raw.items() if not name.startswith("_")}


def _load_seed() -> dict:
    """``seed.json`` with float keys: ``table3`` (per test resolution, ``(mean, SD)`` per model), ``retrain``,
    ``retrain_steps``, ``train_time``, ``sizes``."""
    raw = json.loads((_HERE / "seed.json").read_text(encoding="utf-8"))
    return {
        "table3": {float(t): [tuple(p) for p in rows] for t, rows in raw["table3"].items()},
        "retrain": {k: tuple(v) if isinstance(v, list) else v for k, v in raw["retrain"].items()},
        "retrain_steps": {float(f): n for f, n in raw["retrain_steps"].items()},
        "train_time": raw["train_time"],
        "sizes": raw["sizes"],
        "all_resolutions_um": tuple(float(r) for r in raw["all_resolutions_um"]),
    }


#: The seed's reference numbers (Zhang et al., QIMS 2024), from ``seed.json``.
SEED = _load_seed()
#: The six Table 1 systems (µm).
ALL_RESOLUTIONS = SEED["all_resolutions_um"]
#: Sizes of the presets (``presets.json``); every key is also a command-line option.
PRESETS = _load_presets()


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
        """The settings as a plain dict (``config.json``, unit settings)."""
        return dataclasses.asdict(self)


def res_tag(res: float) -> str:
    """``res62.5um``: the dataset builder's folder name of a resolution.

    Args:
        res: the resolution in µm.
    """
    return f"res{float(res):g}um"


def file_tag(res: float) -> str:
    """``res62p5um``: a resolution tag without dots, for file names.

    Args:
        res: the resolution in µm.
    """
    return res_tag(res).replace(".", "p")


def pct(f: float) -> str:
    """A fraction as a percentage without trailing zeros (``0.05`` → ``"5"``).

    Args:
        f: the fraction.
    """
    return f"{100 * f:g}"


def option(name: str) -> str:
    """The command-line spelling of a setting (``n_train`` → ``--n-train``).

    Args:
        name: the setting's name.
    """
    return "--" + name.replace("_", "-")


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"`{option(name)}` must be comma-separated numbers, got {text!r}.") from None
    if not values:
        raise ValueError(f"`{option(name)}` must name at least one value, got {text!r}.")
    return values


def stable_split(shares) -> tuple[float, float, float]:
    """Training/validation/test proportions, summing to one, that ``ldct_sim`` normalises to themselves.

    ``ldct_sim``'s ``DatasetConfig`` divides the split by its sum when it is made and again when the
    datalists are rewritten, and fingerprints the result; proportions such as 8:2:2 (sum
    0.9999999999999999 after one division) change in the last bit on the second division and the
    finished slices no longer match. Among a few float representations of the same proportions this
    returns one that is a fixed point of that normalisation.

    Args:
        shares: three non-negative counts or proportions.

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


def _add_data_options(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--source", help="DICOM/NIfTI CT (a series folder, a volume, or a folder of them) in HU")
    src.add_argument("--phantoms", type=int, help="number of generated phantom slices (default: n_train + n_val + n_test)")
    g = p.add_argument_group("data sizes (default: the preset's)")
    g.add_argument("--n-train", type=int)
    g.add_argument("--n-val", type=int)
    g.add_argument("--n-test", type=int)
    g.add_argument("--split", help="training,validation,test proportions instead of counts, e.g. 0.8,0.1,0.1")
    g.add_argument("--resolutions", help="comma-separated Table 1 resolutions in µm (default: the preset's)")
    g.add_argument("--n-pixels", type=int, help="image side in pixels")
    g.add_argument("--phantom-size", type=int, help="phantom side in pixels before resampling")
    g.add_argument("--n-views", type=int, help="views over 360°")
    g.add_argument("--sim-backend", default="astra", help="ldct_sim projector backend: astra (default), torch or tomosipo")


def _add_training_options(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("training (default: the preset's)")
    t.add_argument("--iterations", type=int, help="training iterations per model")
    t.add_argument("--val-interval", type=int, help="iterations between validations (divides --iterations)")
    t.add_argument("--save-interval", type=int, help="iterations between resumable checkpoints")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--patch-size", type=int, help="random crop side in pixels (<= n_pixels)")
    t.add_argument("--learning-rate", type=float)
    t.add_argument("--lr-decay-steps", type=int, help="halve the learning rate every N iterations (default 0.4 x iterations)")
    t.add_argument("--early-stop-patience", type=int,
                   help="validations without improvement before training stops; 0: off, train all --iterations (paper)")
    t.add_argument("--finetune-iterations", type=int, help="most retraining iterations (early stopping may end sooner)")
    t.add_argument("--finetune-val-interval", type=int)
    t.add_argument("--finetune-patience", type=int)
    t.add_argument("--fractions", help="retraining fractions of the target training set, e.g. 0.05,0.1,0.15,0.2,0.25,0.3")
    t.add_argument("--retrain-source", type=float, default=625.0, help="resolution of the model to retrain (default 625)")
    t.add_argument("--retrain-target", type=float, default=62.5, help="resolution it is retrained for (default 62.5)")
    t.add_argument("--seed", type=int, default=0, help="seed of phantoms, noise, splits, subsets and training (default 0)")
    t.add_argument("--device", help="torch device for the bundle (default: the bundle's choice, the first GPU if any)")
    t.add_argument("--amp", action="store_true", help="mixed precision training (GPU)")
    t.add_argument("--num-workers", type=int, help="data-loader workers")
    t.add_argument("--threads", type=int,
                   help="CPU threads per subprocess (OMP_NUM_THREADS and ldct_sim --threads); smoke and small use 1, which "
                        "is up to 10x faster than 2 on CPU cores shared with other jobs; 0: torch's default (paper)")


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--kebab-case``; :func:`ldct_scripts.cli.parse_kebab` also reads the old ``--snake_case``)."""
    from . import __doc__ as package_doc

    p = argparse.ArgumentParser(prog="python -m ldct_scripts.studies.resolution_transfer", description=package_doc.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Presets: " + "; ".join(f"{k}: {v['n_pixels']}² px, {v['n_train']}/{v['n_val']}/{v['n_test']} "
                                                               f"slices, {v['iterations']} iterations" for k, v in PRESETS.items()))
    p.add_argument("--results-dir", required=True, type=output_folder,
                   help="folder for everything the study writes (re-runs resume)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="smoke", help="sizes (default smoke); every size is also an option")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)} (default all)")
    p.add_argument("--bundle-root", default=str(DEFAULT_BUNDLE), help="the U-Net bundle (default bundles/unet_ldct)")
    _add_data_options(p)
    _add_training_options(p)
    r = p.add_argument_group("report and noise")
    r.add_argument("--report-rows", help="test resolutions shown in detail (default 62.5,625: the seed's rows)")
    r.add_argument("--nps-roi", type=int, help="NPS ROI side in pixels (default n_pixels/4)")
    r.add_argument("--nps-grid", type=int, default=2, help="NPS ROIs per side tiled over the image centre (default 2)")
    r.add_argument("--nps-split", default="all", choices=("all", "training", "validation", "test"),
                   help="noise-only images used for the NPS (default all)")
    r.add_argument("--nps-max-images", type=int, default=300, help="at most this many noise images per resolution (default 300)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the resumable interval checkpoints (about 100 MB each) after a model is finished")
    return p


def _stages(text: str) -> tuple[str, ...]:
    stages = tuple(s for s in str(text).replace(" ", "").split(",") if s)
    if not stages or any(s not in STAGES for s in stages):
        raise ValueError(f"`--stages` must be a comma-separated subset of {','.join(STAGES)}, got {text!r}.")
    return tuple(s for s in STAGES if s in stages)


def _resolutions(text: str | None, default) -> tuple[float, ...]:
    resolutions = tuple(sorted(set(_floats(text, "resolutions")))) if text else tuple(default)
    for res in resolutions:
        if not any(math.isclose(res, a) for a in ALL_RESOLUTIONS):
            raise ValueError(f"`--resolutions`: {res:g} is not a Table 1 system; choose from {', '.join(f'{a:g}' for a in ALL_RESOLUTIONS)}.")
    return resolutions


def _split_and_phantoms(args: argparse.Namespace, counts: list) -> tuple[tuple[float, ...], int | None]:
    """The split (counts or ``--split``) and the number of phantoms (``None`` with ``--source``)."""
    if args.split:
        split = _floats(args.split, "split")
        if len(split) != 3 or any(s < 0 for s in split) or split[0] <= 0 or split[2] <= 0:
            raise ValueError(f"`--split` must be three proportions with positive training and test shares, got {args.split!r}.")
    else:
        if any(not isinstance(c, int) or c < 1 for c in counts):
            raise ValueError(f"`--n-train`, `--n-val` and `--n-test` must be positive integers, got {counts}.")
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
    return split, phantoms


_INTS = ("n_pixels", "phantom_size", "n_views", "iterations", "val_interval", "save_interval", "batch_size", "patch_size",
         "early_stop_patience", "finetune_iterations", "finetune_val_interval", "finetune_patience", "num_workers")


def _checked_ints(pick) -> dict[str, int]:
    """The integer settings, checked for range and for their constraints on each other."""
    ints = {k: pick(k) for k in _INTS}
    for k, v in ints.items():
        zero_ok = k in ("num_workers", "early_stop_patience")  # early_stop_patience 0: off
        if not isinstance(v, int) or v < (0 if zero_ok else 1):
            raise ValueError(f"`{option(k)}` must be a {'non-negative' if zero_ok else 'positive'} integer, got {v!r}.")
    for total, every in (("iterations", "val_interval"), ("finetune_iterations", "finetune_val_interval")):
        if ints[total] % ints[every]:
            raise ValueError(f"`{option(total)}` ({ints[total]}) must be a multiple of `{option(every)}` ({ints[every]}).")
    if ints["patch_size"] > ints["n_pixels"]:
        raise ValueError(f"`--patch-size` ({ints['patch_size']}) must not exceed `--n-pixels` ({ints['n_pixels']}).")
    return ints


def _training_extras(args: argparse.Namespace, ints: dict, pick, resolutions) -> dict:
    """Fractions, learning rate and its decay, report rows, NPS ROI and threads, checked."""
    fractions = tuple(sorted(set(_floats(args.fractions, "fractions")))) if args.fractions else tuple(pick("fractions"))
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"`--fractions` must lie in (0, 1], got {fractions}.")
    lr = float(pick("learning_rate"))
    if not lr > 0:
        raise ValueError(f"`--learning-rate` must be positive, got {lr!r}.")
    decay = args.lr_decay_steps if args.lr_decay_steps is not None else max(1, round(0.4 * ints["iterations"]))
    rows = _floats(args.report_rows, "report_rows") if args.report_rows else (62.5, 625.0)
    rows = tuple(r for r in resolutions if any(math.isclose(r, x) for x in rows)) or (resolutions[0], resolutions[-1])
    nps_roi = args.nps_roi if args.nps_roi is not None else max(8, ints["n_pixels"] // 4)
    if not 4 <= nps_roi <= ints["n_pixels"]:
        raise ValueError(f"`--nps-roi` must be in [4, n_pixels], got {nps_roi!r}.")
    threads = pick("threads")
    if threads is not None and threads < 0:
        raise ValueError(f"`--threads` must be a non-negative integer (0: torch's default), got {threads!r}.")
    return dict(fractions=fractions, learning_rate=lr, lr_decay_steps=int(decay), report_rows=rows, nps_roi=int(nps_roi),
                threads=threads or None)


def resolve_config(args: argparse.Namespace) -> Config:
    """The preset with the command-line overrides applied, checked.

    Args:
        args: what :func:`build_parser` parsed.

    Raises:
        ValueError: inconsistent or out-of-range settings, naming the option.
    """
    pre = dict(PRESETS[args.preset])

    def pick(name):
        v = getattr(args, name, None)
        return pre.get(name) if v is None else v

    stages = _stages(args.stages)
    resolutions = _resolutions(args.resolutions, pre["resolutions"])
    split, phantoms = _split_and_phantoms(args, [pick(k) for k in ("n_train", "n_val", "n_test")])
    ints = _checked_ints(pick)
    return Config(
        results_dir=str(Path(args.results_dir).resolve()), preset=args.preset, stages=stages,
        bundle_root=str(Path(args.bundle_root).resolve()), source=None if args.source is None else str(Path(args.source).resolve()),
        phantoms=phantoms, split=stable_split(split), resolutions=resolutions, sim_backend=args.sim_backend,
        seed=int(args.seed), retrain_source=float(args.retrain_source), retrain_target=float(args.retrain_target),
        nps_grid=int(args.nps_grid), nps_split=args.nps_split, nps_max_images=int(args.nps_max_images),
        device=args.device, amp=bool(args.amp), keep_checkpoints=bool(args.keep_checkpoints),
        **ints, **_training_extras(args, ints, pick, resolutions),
    )
