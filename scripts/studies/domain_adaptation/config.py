"""Configuration of the cross-domain study: presets (``presets.json``), the seed's Table 1 (``seed.json``), the
directions and methods, the command line and the checked :class:`Config` of one run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ldct_scripts import BUNDLES_DIR, REPO
from ldct_scripts.studies.engine import output_folder

__all__ = ["STAGES", "REAL_STAGES", "DIRECTIONS", "METHODS", "REAL_METHODS", "UNET_COLUMN", "HU_WINDOW", "DISPLAY_HU",
           "PRESETS", "SEED", "PROFILE", "SELECTION_RULE", "R2S_PATIENT", "CPCE_BUNDLE", "UNET_BUNDLE", "Config", "build_parser",
           "resolve_config", "check_real", "option"]

_HERE = Path(__file__).resolve().parent
CPCE_BUNDLE = BUNDLES_DIR / "cpce_rfm_da"
UNET_BUNDLE = BUNDLES_DIR / "unet_ldct"
SHARED_REAL = REPO.parent / "shared" / "real_ldct"
STAGES = ("data", "train", "evaluate", "figures", "report")
#: The stages of ``--preset real`` (no figures).
REAL_STAGES = ("data", "train", "evaluate", "report")
DIRECTIONS = {"s2r": "S→R", "r2s": "R→S"}
#: method key -> (Table 1 column, the cross-domain bundle's train.json overrides)
METHODS = {
    "baseline": ("CPCE", {"baseline": True}),
    "fixed": ("CPCE + fixed RFM alignment (ablation)", {"rfm_mode": "fixed"}),
    "adaptive": ("CPCE + adaptive RFM alignment", {"rfm_mode": "adaptive"}),
}
UNET_COLUMN = "U-Net (extra)"
#: ``--preset real``: method key -> (table row, adapt.json overrides); ``shipped`` is the bundle's weights, untrained further.
REAL_METHODS = {
    "shipped": ("CPCE, shipped weights (no adaptation)", None),
    "baseline": ("CPCE (source pairs only)", {"baseline": True}),
    "fixed": ("CPCE + fixed RFM alignment", {"rfm_mode": "fixed"}),
    "adaptive": ("CPCE + adaptive RFM alignment", {"rfm_mode": "adaptive"}),
    "unet": ("U-Net (source pairs only)", None),
}
#: The real target's simulated source: the shipped Siemens Definition AS B30f profile of ``ldct_sim``.
PROFILE = "definition_as_b30f"
SELECTION_RULE = ("the checkpoint with the best PSNR on the source validation pairs (simulated for S→R, real for "
                  "R→S); the same for every method; no target label is read before the test")
#: R→S (``--preset real``): the patient whose real smooth-kernel pairs are the labelled source; the test is the
#: simulated pairs of the other patients (``normal_dose.npz``), so train and test share no patient.
R2S_PATIENT = "L506"
HU_WINDOW = (-1024.0, 3072.0)  # the cross-domain bundle's network scale (HU)
DISPLAY_HU = (40.0, 400.0)  # the seed's Figures 2 and 3 (HU)

#: Sizes of the presets (``presets.json``); every key is also a command-line option.
PRESETS = {k: v for k, v in json.loads((_HERE / "presets.json").read_text(encoding="utf-8")).items() if not k.startswith("_")}
#: The seed's numbers (``seed.json``): ``table1`` (cells as printed) and ``s2r_gain_db``.
SEED = {k: v for k, v in json.loads((_HERE / "seed.json").read_text(encoding="utf-8")).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Config:
    """Resolved settings of one study run (preset + overrides). Sizes in pixels, budgets in epochs or iterations."""

    results_dir: str
    preset: str
    stages: tuple[str, ...]
    directions: tuple[str, ...]
    methods: tuple[str, ...]
    unet: bool
    vgg_weights: str | None
    lambda_adv: float
    lambda_align: float
    val_interval: int
    seed: int
    device: str
    n_pixels: int
    n_views: int | None
    n_train: int
    n_validation: int
    n_test: int
    max_epochs: int
    batch_size: int
    patch_size: int
    unet_iterations: int
    unet_patch_size: int
    unet_batch_size: int
    real_dir: str
    patches_per_epoch: int

    @property
    def real(self) -> bool:
        """Whether this is the real-target study (``--preset real``)."""
        return self.preset == "real"

    def to_dict(self) -> dict:
        """The settings as a plain dict (``config.json``, the report)."""
        return dataclasses.asdict(self)


def option(name: str) -> str:
    """The command-line spelling of a setting (``n_train`` → ``--n-train``).

    Args:
        name: the setting's name.
    """
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--kebab-case``; :func:`ldct_scripts.cli.parse_kebab` also reads the old ``--snake_case``)."""
    from . import __doc__ as package_doc

    p = argparse.ArgumentParser(prog="python -m ldct_scripts.studies.domain_adaptation", description=package_doc.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", required=True, type=output_folder,
                   help="folder for everything this study writes (re-runs resume)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--directions", default="s2r,r2s", help="s2r, r2s or both")
    p.add_argument("--methods", default=None,
                   help="comma-separated: baseline, fixed, adaptive (default baseline,adaptive); with --preset real "
                   "also shipped and unet (default all five)")
    p.add_argument("--real-dir", default=str(SHARED_REAL),
                   help="with --preset real: the shared real pairs (dev_pairs.npz, normal_dose.npz)")
    p.add_argument("--patches-per-epoch", type=int, default=384, help="with --preset real: source patches per epoch")
    p.add_argument("--no-unet", dest="unet", action="store_false", help="leave out the U-Net column")
    p.add_argument("--vgg-weights", default=None, help="local VGG-19 ImageNet state dict; without it L_per is off")
    p.add_argument("--lambda-adv", type=float, default=1.0, help="weight of the realness loss (seed: 1)")
    p.add_argument("--lambda-align", type=float, default=1.0, help="weight of the alignment loss (ours: 1)")
    p.add_argument("--val-interval", type=int, default=None, help="epochs between validations (default max_epochs/10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda:0")
    for key, value in PRESETS["small"].items():
        p.add_argument(option(key), type=int, default=None, help=f"preset size (small: {value})")
    return p


def _names(text: str, allowed, what: str) -> tuple[str, ...]:
    """Comma-separated names, each one of ``allowed``, in the order given."""
    names = tuple(v.strip() for v in str(text).split(",") if v.strip())
    bad = [v for v in names if v not in allowed]
    if bad:
        raise ValueError(f"domain_adaptation: unknown {what} {bad}; choose from {list(allowed)}.")
    return names


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO.resolve())
        return True
    except ValueError:
        return False


def check_real(real_dir, results_dir) -> None:
    """Refuse a real folder without the shared pairs, or a results folder inside the repository.

    Args:
        real_dir: the shared real pairs' folder (``dev_pairs.npz``, ``normal_dose.npz``).
        results_dir: the results folder, which will hold copies of the real images.

    Raises:
        ValueError: naming the folder and the problem.
    """
    real = Path(real_dir)
    if not (real / "dev_pairs.npz").is_file() or not (real / "normal_dose.npz").is_file():
        raise ValueError(f"domain_adaptation: --real-dir {str(real)!r} lacks dev_pairs.npz / normal_dose.npz "
                         "(the shared AAPM–Mayo pairs, ../shared/real_ldct).")
    if _inside_repo(Path(results_dir)):
        raise ValueError("domain_adaptation: with the real target, --results-dir must lie outside the repository "
                         "(it holds copies of the real images, which are never committed).")


def resolve_config(args: argparse.Namespace) -> Config:
    """The preset with the command-line overrides applied, checked; nothing is written.

    Args:
        args: what :func:`build_parser` parsed.

    Raises:
        ValueError: an unknown stage, direction or method, a missing ``--vgg-weights`` file, or (``--preset
            real``) a missing real folder or a results folder inside the repository; the message names it.
    """
    sizes = {k: (v if getattr(args, k, None) is None else getattr(args, k)) for k, v in PRESETS[args.preset].items()}
    real = args.preset == "real"
    methods = REAL_METHODS if real else METHODS
    stages = _names(args.stages, STAGES, "stage")
    config = Config(
        results_dir=str(Path(args.results_dir).resolve()), preset=args.preset,
        stages=tuple(s for s in (REAL_STAGES if real else STAGES) if s in stages),
        directions=_names(args.directions, DIRECTIONS, "direction"),
        methods=_names(args.methods or ",".join(REAL_METHODS if real else ("baseline", "adaptive")), methods,
                       "method for --preset real" if real else "method"),
        unet=bool(args.unet) and not real, vgg_weights=None if args.vgg_weights is None else str(Path(args.vgg_weights).resolve()),
        lambda_adv=float(args.lambda_adv), lambda_align=float(args.lambda_align),
        val_interval=int(args.val_interval or max(1, sizes["max_epochs"] // 10)), seed=int(args.seed), device=args.device,
        real_dir=str(Path(args.real_dir).resolve()), patches_per_epoch=int(args.patches_per_epoch), **sizes)
    if config.vgg_weights and not os.path.isfile(config.vgg_weights):
        raise ValueError(f"domain_adaptation: --vgg-weights {args.vgg_weights!r} is not a file.")
    if real:
        check_real(config.real_dir, config.results_dir)
    return config
