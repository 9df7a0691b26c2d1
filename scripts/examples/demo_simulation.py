"""Main demo: simulate a phantom slice at two resolutions and draw NDCT / LDCT / noise-only images.

Runs the whole ``ldct_sim`` chain (HU → μ at 60 keV → fan-beam projection at a Table 1 preset →
Poisson noise at the preset's input I0 → FBP) on a generated abdominal phantom, and writes

* ``<out>/simulation.png``: one row per resolution, columns NDCT (noiseless reconstruction),
  LDCT (input dose) and the noise-only image, in the study's display windows
  ([0.17, 0.26] cm⁻¹ for images, [−0.007, 0.007] cm⁻¹ for noise);
* ``<out>/simulation.json``: geometry, doses, seed, measured noise and code version.

Usage:
    python -m ldct_scripts.examples.demo_simulation --out demo
    python -m ldct_scripts.examples.demo_simulation --resolutions 125 500 --n-pixels 256 --seed 3 --out demo
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ldct_sim import LowDoseSimulator, get_preset, hu_to_mu, mu_water  # noqa: E402
from ldct_sim.io import check_output_folder  # noqa: E402
from ldct_sim.phantoms import abdominal_phantom  # noqa: E402
from ldct_sim.provenance import provenance  # noqa: E402

logger = logging.getLogger("demo_simulation")

IMAGE_WINDOW_CM = (0.17, 0.26)
NOISE_WINDOW_CM = (-0.007, 0.007)


def _output_folder(text: str) -> Path:
    """``--out``: refuse a path that is a file or lies under one, before any work."""
    try:
        return check_output_folder(text)
    except NotADirectoryError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_args(argv=None) -> argparse.Namespace:
    """The command line.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=_output_folder, required=True, help="output folder")
    p.add_argument("--resolutions", type=float, nargs="+", default=[62.5, 625.0], help="Table 1 presets in µm")
    p.add_argument("--n-pixels", type=int, default=512, help="image side in pixels (default 512, as the study)")
    p.add_argument("--n-views", type=int, default=None, help="views over 360° (default: ldct_sim's default)")
    p.add_argument("--backend", default="astra", help="astra, torch or tomosipo")
    p.add_argument("--seed", type=int, default=0, help="seed of the phantom and of the noise")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Simulate the phantom at each resolution, draw ``simulation.png`` and write ``simulation.json``; returns the record.

    Args:
        args: what :func:`parse_args` returned.
    """
    hu = abdominal_phantom(args.n_pixels, seed=args.seed)
    mu = hu_to_mu(hu)
    body = hu > -500
    rows, record = [], {"seed": args.seed, "phantom": "abdominal_phantom", "results": [], **provenance()}
    for res in args.resolutions:
        preset = get_preset(res)
        changes = {"n_pixels": args.n_pixels}
        if args.n_views:
            changes["n_views"] = args.n_views
        geom = preset.geometry(**changes)
        sim = LowDoseSimulator(geom, backend=args.backend)
        out = sim.run(mu, [preset.input_i0], noiseless=True, seed=args.seed)
        clean, ldct, noise = out.noiseless.numpy(), out.low_dose[0].numpy(), out.noise[0].numpy()
        noise_hu = float(noise[body].std() * 1000.0 / mu_water())
        logger.info("%g µm: I0 %.3g photons, noise %.1f HU inside the body", res, preset.input_i0, noise_hu)
        rows.append((res, preset, clean, ldct, noise))
        record["results"].append(
            {"resolution_um": res, "input_i0": preset.input_i0, "noise_std_hu_in_body": noise_hu, **sim.config()}
        )
    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(rows), 3, figsize=(12, 4 * len(rows)), squeeze=False)
    for ax_row, (res, preset, clean, ldct, noise) in zip(axes, rows):
        panels = [
            (clean, IMAGE_WINDOW_CM, f"{res:g} µm: NDCT (noiseless FBP)"),
            (ldct, IMAGE_WINDOW_CM, f"LDCT, I0 = {preset.input_i0:.3g}"),
            (noise, NOISE_WINDOW_CM, "noise only (LDCT − NDCT)"),
        ]
        for ax, (img, (lo, hi), title) in zip(ax_row, panels):
            im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(title)
            ax.axis("off")
            fig.colorbar(im, ax=ax, fraction=0.046, label="cm⁻¹")
    fig.tight_layout()
    fig.savefig(args.out / "simulation.png", dpi=80)
    plt.close(fig)
    (args.out / "simulation.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv=None) -> int:
    """Run the demo; exit status 0.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    run(args)
    print(f"wrote {args.out / 'simulation.png'} and {args.out / 'simulation.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
