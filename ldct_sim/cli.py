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

        # with a scanner profile (from `calibrate`, or a shipped one): each slice keeps its own pixel size
        python -m ldct_sim simulate --input /data/my_ndct --profile my_scanner.json --out /data/ldct
        python -m ldct_sim simulate --input /data/my_ndct --profile definition_as_b30f --out /data/ldct

    A re-run skips finished slices and repairs partial ones. Unreadable files are logged, skipped and
    summarised; the exit status is 1 only when nothing succeeded. NIfTI inputs are read as HU
    (``--input-unit mu`` for linear attenuation in cm⁻¹); a NIfTI file whose values look like the other
    unit, or like neither, is refused before anything is written (``--force-unit`` reads it anyway).

``calibrate``
    Fit a scanner profile (kernel and dose) to real low-dose / full-dose pairs
    (:func:`ldct_sim.calibrate.calibrate`); writes the profile JSON and a figure beside it::

        python -m ldct_sim calibrate --low-dose /data/qd --full-dose /data/fd --out my_scanner.json --dose-ratio 4

``presets``
    Print Table 1 of Zhang et al. (QIMS 2024) with the derived detector pitch, detector count and field of
    view, then the clinical presets and shipped scanner profiles: ``python -m ldct_sim presets``.

``datalist``
    Rewrite the datalists and manifest of a dataset folder from what is on disk:
    ``python -m ldct_sim datalist /data/ldct``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .geometry import CLINICAL_PRESETS, PAPER_PRESETS

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
    lines.append("")
    lines.append("Clinical presets (any image grid; used by scanner profiles, `calibrate` and `simulate --profile`):")
    for name, c in sorted(CLINICAL_PRESETS.items()):
        lines.append(f"  {name}: SOD {c.sod_mm:g} mm, SDD {c.sdd_mm:g} mm, det pixel {c.det_pixel_mm:g} mm, "
                     f"{c.n_views} views, {c.kvp:g} kVp (mu at {c.energy_kev:g} keV)")
    from .profile import shipped_profiles

    lines.append(f"Shipped scanner profiles: {', '.join(shipped_profiles()) or 'none'}")
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
    sim.add_argument("--resolutions", nargs="+", type=float, metavar="UM", default=None,
                     help="preset resolutions in um (default: all six; not with --profile)")
    sim.add_argument("--profile", metavar="PROFILE",
                     help="scanner profile JSON (from `calibrate`) or a shipped profile's name: simulate with its "
                     "geometry, kernel and doses, each slice at its own pixel size, instead of the presets")
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
    sim.add_argument("--noise-insertion", action="store_true",
                     help="the label is the input slice itself and the input is it plus the simulated noise "
                          "(as Mayo made its quarter-dose scans): for real normal-dose CT, whose kernel blur a "
                          "reconstruction would apply twice")
    sim.add_argument("--backend", default="torch", help="projector backend: torch, astra or tomosipo (default torch)")
    sim.add_argument("--forward-model", default="strip", help="strip (default) or line")
    sim.add_argument("--filter", default=None, help="FBP filter (default ram-lak; with --profile, the profile's kernel)")
    sim.add_argument("--electronic-noise", type=float, default=None, metavar="PHOTONS",
                     help="electronic noise std (default 0; with --profile, the profile's)")
    sim.add_argument("--energy-kev", type=float, default=None,
                     help="energy for HU to mu in keV (default 60; with --profile, the profile's)")
    sim.add_argument("--phantom-size", type=int, default=512, help="phantom side in pixels before resampling (default 512)")
    sim.add_argument("--input-unit", choices=("hu", "mu"), default="hu",
                     help="unit of NIfTI inputs: hu (default) or mu, linear attenuation in cm^-1 at the simulated energy "
                     "(DICOM is always HU); a file whose values look like another unit is refused")
    sim.add_argument("--force-unit", action="store_true",
                     help="read NIfTI inputs in --input-unit even when their values look like another unit")
    sim.add_argument("--threads", type=int, metavar="N",
                     help="torch CPU threads per process (default: torch's); lower it when shards share a machine")
    sim.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show a progress bar (default: only on a terminal)")

    sub.add_parser("presets", help="print Table 1 with derived detector pixel, detector count and FOV")

    cal = sub.add_parser(
        "calibrate", help="fit a scanner profile (kernel, dose) to real low-dose / full-dose pairs",
        description="Fit the FBP kernel and photon counts of a scanner profile so that noise simulated on the "
        "full-dose images matches the real low-dose minus full-dose noise (NPS shape and level, soft tissue). "
        "Writes PROFILE.json and PROFILE.png (real vs simulated radial NPS and noise images).")
    cal.add_argument("--low-dose", required=True, metavar="LD", help="low-dose DICOM series folder, DICOM or NIfTI file(s), HU")
    cal.add_argument("--full-dose", required=True, metavar="FD", help="the matching full-dose series or files, HU")
    cal.add_argument("--out", required=True, metavar="PROFILE.json", help="profile file to write (the figure goes beside it)")
    cal.add_argument("--dose-ratio", type=float, default=4.0, help="full-dose over low-dose exposure (default 4: quarter dose)")
    cal.add_argument("--preset", default="definition_as", help="clinical preset whose geometry to keep (default definition_as)")
    cal.add_argument("--name", help="profile name (default: the output file's stem)")
    cal.add_argument("--pairing", choices=("auto", "inserted", "independent"), default="auto",
                     help="how LD relates to FD: noise inserted into FD's projections (Mayo), two independent scans, "
                     "or auto-detect from the data (default)")
    cal.add_argument("--max-pairs", type=int, metavar="N", help="use at most N pairs (default all)")
    cal.add_argument("--recon-px", type=int, metavar="N", help="reconstruct only the central N x N pixels (faster; same pixel size)")
    cal.add_argument("--roi-px", type=int, default=64, help="NPS ROI side in pixels (default 64)")
    cal.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    cal.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    cal.add_argument("--overwrite", action="store_true", help="replace an existing profile file")

    dl = sub.add_parser("datalist", help="rewrite datalists and manifest of a dataset folder (after sharded runs)")
    dl.add_argument("out", metavar="DIR", help="dataset folder")
    return parser


def _simulate(args, parser) -> int:
    from .dataset import DatasetConfig, build_dataset, parse_shard

    if args.profile is not None:
        clash = [flag for flag, v in (("--resolutions", args.resolutions), ("--filter", args.filter),
                                      ("--energy-kev", args.energy_kev), ("--electronic-noise", args.electronic_noise),
                                      ("--n-pixels", args.n_pixels)) if v is not None]
        if clash:
            parser.error(f"{', '.join(clash)} cannot be combined with --profile: the profile fixes the kernel, energy and "
                         "noise, and each slice keeps its own grid.")
    try:
        shard = parse_shard(args.shard)
        config = DatasetConfig(
            input_unit=args.input_unit,
            resolutions=tuple(args.resolutions) if args.resolutions is not None else (() if args.profile else tuple(PAPER_PRESETS)),
            seed=args.seed, split=tuple(args.split), mode=args.mode,
            n_pixels=args.n_pixels, n_views=args.n_views, input_i0=args.input_i0, label_i0=args.label_i0,
            input_i0_range=None if args.input_i0_range is None else tuple(args.input_i0_range),
            noiseless_label=args.noiseless_label, noise_insertion=args.noise_insertion,
            backend=args.backend, forward_model=args.forward_model,
            filter=args.filter or "ram-lak",
            electronic_noise_std=0.0 if args.electronic_noise is None else args.electronic_noise,
            energy_kev=60.0 if args.energy_kev is None else args.energy_kev,
            phantom_size=args.phantom_size, profile=args.profile,
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
                                    progress=args.progress, check_unit=not args.force_unit)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.report())
    return summary.exit_code


def _calibrate(args, parser) -> int:
    from pathlib import Path

    from .calibrate import calibrate, save_figure

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        parser.error(f"--out must name a .json file, got {args.out!r}.")
    figure = out.with_suffix(".png")
    if not args.overwrite:
        existing = [str(p) for p in (out, figure) if p.exists()]
        if existing:
            print(f"error: {', '.join(existing)} already exist(s); choose another --out or pass --overwrite.", file=sys.stderr)
            return 2
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"`--threads` must be a positive integer, got {args.threads!r}.")
        import torch

        torch.set_num_threads(args.threads)
    try:
        result = calibrate(
            args.low_dose, args.full_dose, dose_ratio=args.dose_ratio, preset=args.preset, name=args.name or out.stem,
            pairing=args.pairing, max_pairs=args.max_pairs, recon_px=args.recon_px, roi_px=args.roi_px, seed=args.seed,
        )
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result.profile.save(out)
    save_figure(result, figure)
    p, fit = result.profile, result.profile.fit
    print(f"{out}: {p.name} on {fit['n_pairs']} pair(s); kernel {p.kernel}; low-dose I0 {p.i0:.4g}, full-dose I0 "
          f"{p.full_dose_i0:.4g} photons/element/view ({fit['pairing']} noise, kappa {fit['pairing_statistic_kappa']:.2f})")
    print(f"  noise SD in soft tissue: real {result.real.sd_hu:.1f} HU, simulated {result.simulated.sd_hu:.1f} HU "
          f"({100 * result.sd_error:+.1f}%); mean NPS frequency: real {result.real.mean_frequency:.3f}, simulated "
          f"{result.simulated.mean_frequency:.3f} cycles/pixel ({100 * result.mean_frequency_error:+.1f}%)")
    print(f"  figure: {figure}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 nothing succeeded, 2 usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "calibrate":
        return _calibrate(args, parser)
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
