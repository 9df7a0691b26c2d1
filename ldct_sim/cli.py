"""Command line of ldct_sim: ``python -m ldct_sim <command>``, a thin layer over the library.

Commands:

``simulate``
    Build a dataset (:func:`ldct_sim.dataset.build_dataset`)::

        # a DICOM series folder, a NIfTI volume, or a folder of them, at two of the study's resolutions
        python -m ldct_sim simulate --input /data/ct --resolutions 62.5 625 --out /data/ldct --seed 0
        # 30 procedural phantom slices at every preset, noiseless labels
        python -m ldct_sim simulate --phantoms 30 --out /data/phantoms --noiseless-label
        # a tiny smoke run
        python -m ldct_sim simulate --phantoms 3 --out /tmp/tiny --resolutions 625 --n-pixels 32 --n-views 48 --phantom-size 64
        # split the work over 4 processes or machines sharing /data/ldct, then write the final datalists
        for i in 0 1 2 3; do python -m ldct_sim simulate --input /data/ct --out /data/ldct --shard $i/4 & done; wait
        python -m ldct_sim datalist /data/ldct

    A re-run skips finished slices and repairs partial ones. Unreadable files are logged, skipped and
    summarised; the exit status is 1 only when nothing succeeded.

``presets``
    Print Table 1 of Zhang et al. (QIMS 2024) with the derived detector pitch, detector count and field of
    view: ``python -m ldct_sim presets``.

``datalist``
    Rewrite the datalists and manifest of a dataset folder from what is on disk:
    ``python -m ldct_sim datalist /data/ldct``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .geometry import PAPER_PRESETS

__all__ = ["main", "build_parser", "presets_table"]


def presets_table() -> str:
    """Table 1 of the resolution-transfer study plus derived geometry, as aligned text."""
    head = ("res (um)", "pixel (mm)", "SDD (mm)", "SOD (mm)", "input I0", "label I0", "det pixel (mm)", "n_det", "FOV (mm)")
    rows = []
    for res, p in sorted(PAPER_PRESETS.items()):
        g = p.geometry()
        rows.append((
            f"{res:g}", f"{p.pixel_size_mm:g}", f"{p.sdd_mm:g}", f"{p.sod_mm:g}", f"{p.input_i0:.3g}",
            f"{p.label_i0:.3g}", f"{g.det_pixel_mm:g}", f"{g.n_det}", f"{g.fov_mm:g}",
        ))
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    lines.append(f"Images are {next(iter(PAPER_PRESETS.values())).n_pixels}x{next(iter(PAPER_PRESETS.values())).n_pixels}; "
                 "det pixel = SDD/SOD x pixel; n_det covers the image circle; FOV = n_pixels x pixel.")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ldct_sim", description="Low-dose CT simulation for denoising research.")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="simulate a low-dose dataset (NIfTI + MONAI datalists + manifest)",
                         description="Simulate low-dose/label/noise NIfTI slices at preset resolutions.")
    src = sim.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="PATH", help="DICOM series folder, DICOM or NIfTI file, or a folder of them (HU)")
    src.add_argument("--phantoms", type=int, metavar="N", help="generate N procedural phantom slices instead")
    sim.add_argument("--out", required=True, metavar="DIR", help="output folder (re-runs resume)")
    sim.add_argument("--resolutions", nargs="+", type=float, metavar="UM", default=sorted(PAPER_PRESETS),
                     help="preset resolutions in um (default: all six)")
    sim.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    sim.add_argument("--shard", default="0/1", metavar="I/N", help="process shard I of N (default 0/1)")
    sim.add_argument("--split", nargs=3, type=float, default=[80, 10, 10], metavar=("TRAIN", "VAL", "TEST"),
                     help="split proportions (default 80 10 10)")
    sim.add_argument("--mode", choices=("rescale", "physical"), default="rescale",
                     help="rescale: whole slice resized to n x n (the study's); physical: true spacing, crop/pad")
    sim.add_argument("--n-pixels", type=int, help="image side in pixels (default: the preset's 512)")
    sim.add_argument("--n-views", type=int, help="views over 360 degrees (default: the geometry's)")
    sim.add_argument("--input-i0", type=float, help="input dose in photons for all resolutions (default: preset)")
    sim.add_argument("--input-i0-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                     help="draw each slice's input dose log-uniformly in [LOW, HIGH] photons (train over doses)")
    sim.add_argument("--label-i0", type=float, help="label dose in photons for all resolutions (default: preset)")
    sim.add_argument("--noiseless-label", action="store_true", help="labels are noiseless reconstructions")
    sim.add_argument("--backend", default="torch", help="projector backend: torch, astra or tomosipo (default torch)")
    sim.add_argument("--forward-model", default="strip", help="strip (default) or line")
    sim.add_argument("--filter", default="ram-lak", help="FBP filter (default ram-lak)")
    sim.add_argument("--electronic-noise", type=float, default=0.0, metavar="PHOTONS", help="electronic noise std (default 0)")
    sim.add_argument("--energy-kev", type=float, default=60.0, help="energy for HU to mu in keV (default 60)")
    sim.add_argument("--phantom-size", type=int, default=512, help="phantom side in pixels before resampling (default 512)")
    sim.add_argument("--threads", type=int, metavar="N",
                     help="torch CPU threads per process (default: torch's); lower it when shards share a machine")
    sim.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show a progress bar (default: only on a terminal)")

    sub.add_parser("presets", help="print Table 1 with derived detector pixel, detector count and FOV")

    dl = sub.add_parser("datalist", help="rewrite datalists and manifest of a dataset folder (after sharded runs)")
    dl.add_argument("out", metavar="DIR", help="dataset folder")
    return parser


def _simulate(args, parser) -> int:
    from .dataset import DatasetConfig, build_dataset, parse_shard

    try:
        shard = parse_shard(args.shard)
        config = DatasetConfig(
            resolutions=tuple(args.resolutions), seed=args.seed, split=tuple(args.split), mode=args.mode,
            n_pixels=args.n_pixels, n_views=args.n_views, input_i0=args.input_i0, label_i0=args.label_i0,
            input_i0_range=None if args.input_i0_range is None else tuple(args.input_i0_range),
            noiseless_label=args.noiseless_label, backend=args.backend, forward_model=args.forward_model,
            filter=args.filter, electronic_noise_std=args.electronic_noise, energy_kev=args.energy_kev,
            phantom_size=args.phantom_size,
        )
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    from tqdm.contrib.logging import logging_redirect_tqdm

    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"`--threads` must be a positive integer, got {args.threads!r}.")
        import torch

        torch.set_num_threads(args.threads)

    try:
        with logging_redirect_tqdm():
            summary = build_dataset(args.out, config, input_path=args.input, phantoms=args.phantoms, shard=shard,
                                    progress=args.progress)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.report())
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 nothing succeeded, 2 usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "presets":
        print(presets_table())
        return 0
    if args.command == "datalist":
        from .dataset import write_index

        try:
            manifest = write_index(args.out)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        c = manifest["counts"]
        print(f"{args.out}: {c['done']} of {c['expected']} slice-resolutions done, {c['failed']} failed; "
              f"datalists: {', '.join(v['datalist'] for v in manifest['resolutions'].values())}")
        return 0
    return _simulate(args, parser)
