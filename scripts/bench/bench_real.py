"""Benchmark denoisers on real low-dose / full-dose CT pairs: the bundles, a Gaussian blur at its best σ, the input.

Anyone with real pairs (the same scans at two doses, aligned pixel for pixel, such as the AAPM–Mayo
quarter-dose / full-dose data) can measure how much each bundle brings on their own images::

    python -m ldct_scripts.bench.bench_real --low-dose /data/LD --full-dose /data/FD --out /tmp/bench_real
    python -m ldct_scripts.bench.bench_real --low-dose ld.nii.gz --full-dose fd.nii.gz --kernel B30f \\
        --bundles unet_ldct --ckpt unet_ldct=runs/unet/model.pt --out /tmp/bench_mine
    python -m ldct_scripts.bench.bench_real --from-npz ../shared/real_ldct/dev_pairs.npz --out /tmp/bench_real

Inputs. ``--low-dose`` and ``--full-dose`` are matching DICOM series folders, DICOM files or NIfTI
files (or folders of them), read in HU with :mod:`ldct_sim.io`. DICOM slices are paired by patient,
reconstruction kernel, slice thickness and slice position along the normal; NIfTI volumes by sorted
file name, then slice by slice. Every slice must find its partner and have its shape: anything else is
refused, naming the files, before any output is written. ``--from-npz`` reads an ``.npz`` holding
``quarter_dose_hu`` and ``full_dose_hu`` (``(N, H, W)`` HU) and ``id``, with a ``.json`` of per-pair
records beside it (``kernel``, ``pixel_spacing_mm``) as in ``../shared/real_ldct``; the pairs are written
to a temporary NIfTI folder (one 2-D file per pair, with a sidecar JSON naming the kernel) that is
removed at the end, so the run reads them exactly as a user's NIfTI pairs. Their voxels are stored
columns first, as a DICOM slice reaches the bundles (``--npz-layout dicom``), or rows first as the
simulator writes training data (``--npz-layout ldct_sim``): the networks are not transpose-equivariant,
and the two layouts give different numbers (see :func:`npz_to_nifti`).

Kernel. Results are grouped by reconstruction kernel, which sets the noise texture: the DICOM
``ConvolutionKernel`` when present; else a JSON sidecar beside a NIfTI file (``<name>.json`` with
``"ConvolutionKernel"``, as ``dcm2niix`` writes); else ``--kernel``; else ``unknown``.

Methods.

* ``low-dose input``: the image itself, the baseline.
* ``Gaussian blur, best σ (oracle)``: ``scipy.ndimage.gaussian_filter`` with, per kernel, the σ (pixels)
  that minimises the mean body RMSE against full dose *on the same pairs*: an oracle choice, the best
  any single blur can do here, and the floor a learned denoiser must clear. A grid (0.1 to 3 px) then a
  bounded Brent search around its best point.
* each bundle of ``--bundles`` (names under ``bundles/`` or paths to bundle folders), run as a user runs
  it: ``python -m monai.bundle run --config_file configs/inference.json`` in the bundle's folder, in a
  subprocess, on the low-dose files (NIfTI in and out with ``--input_unit hu``; DICOM series in and
  derived DICOM series out with ``--output_format dicom``). ``--ckpt NAME=PATH`` picks weights (default:
  the bundle's ``models/model.pt``); ``--override NAME:KEY=VALUE`` passes any other config override.

Metrics (per pair, then mean ± SD over the pairs of a kernel), all in HU against the full-dose image:

* body: pixels where the full-dose image exceeds −500 HU (no clipping). RMSE; PSNR with a fixed peak of
  4096 HU (the [−1024, 3072] HU range); SSIM on the images mapped to [0, 1] over [−1024, 3072] HU
  (data range 1, i.e. 4096 HU), its map averaged over the body pixels.
* window: both images clipped to [−160, 240] HU, whole image (as RED-CNN and CTformer report). RMSE;
  PSNR with the window width (400 HU) as peak; SSIM on the clipped images mapped to [0, 1] (data range
  1, i.e. 400 HU), its map averaged over the image.

RMSE and PSNR are MONAI's ``RMSEMetric`` and ``PSNRMetric`` (the body's pixels passed as a 1-D image);
SSIM is MONAI's windowed SSIM (``compute_ssim_and_cs``: 11 × 11 Gaussian window, σ 1.5, K1 0.01, K2 0.03,
valid region). "RMSE cut" is ``1 − mean RMSE(method) / mean RMSE(input)`` in percent: positive is better.
The full-dose image is not noise-free, so no method reaches 0 (a perfect denoiser of a quarter-dose
scan cuts about 55 %: the full-dose image keeps about half the quarter-dose noise).

Outputs in ``--out`` (a new or empty folder; default a new temporary one), none of which may go into a
repository when the images are not yours to share: ``results.csv`` / ``results.md`` (per kernel and
method), ``per_pair.csv``, ``crops.png`` (per kernel, a crop of the pair of median input RMSE: input,
each method, full dose, in the [−160, 240] HU window), ``denoised/<bundle>/`` (the bundles' outputs),
``logs/`` (one log per bundle run and ``bench_real.log``) and ``provenance.json`` (code version, command,
bundle versions, checkpoints with their SHA-256 (16 hex digits), bundle commands, kernels and where each came from, σ per
kernel, conventions).

Not included: ldct-benchmark's RED-CNN. Its architecture installs from the registry, but its weights
download from the internet, so it cannot run offline.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ldct_scripts import REPO
# The pieces live in sibling modules by job; their public names are re-exported here (see ``__all__``).
from ldct_scripts.bench.real_figures import _crop_box, crops_figure
from ldct_scripts.bench.real_metrics import (
    BODY_RANGE_HU,
    BODY_THRESHOLD_HU,
    GAUSSIAN,
    INPUT,
    METRICS,
    SIGMA_GRID,
    SSIM_SIGMA,
    SSIM_WIN,
    WINDOW_HU,
    _rmse,
    best_sigma,
    body_mask,
    format_markdown,
    gaussian_blur,
    pair_metrics,
    summarize,
)
from ldct_scripts.bench.real_pairs import NPZ_LAYOUTS, BenchError, CTPair, PairError, load_pairs, npz_to_nifti
from ldct_sim.pairs import _dicom_key
from ldct_scripts.studies.engine import (
    StudyError,
    bundle_command,
    file_digest,
    run_logged,
    setup_logging,
    study_provenance,
    write_json,
    write_table,
)

__all__ = [
    "BenchError",
    "PairError",
    "CTPair",
    "BODY_THRESHOLD_HU",
    "BODY_RANGE_HU",
    "WINDOW_HU",
    "SIGMA_GRID",
    "load_pairs",
    "body_mask",
    "pair_metrics",
    "gaussian_blur",
    "best_sigma",
    "npz_to_nifti",
    "summarize",
    "format_markdown",
    "build_parser",
    "main",
]

logger = logging.getLogger("study")

DEFAULT_BUNDLES = ("unet_ldct", "cpce_rfm_da")


# ---------------------------------------------------------------------------------------------------------
# bundles
# ---------------------------------------------------------------------------------------------------------
def _resolve_bundle(spec: str) -> Path:
    path = Path(spec)
    if not (path / "configs" / "inference.json").is_file():
        path = REPO / "bundles" / spec
    if not (path / "configs" / "inference.json").is_file():
        raise BenchError(f"--bundles: {spec!r} is neither a bundle folder nor a bundle under {REPO / 'bundles'} (no configs/inference.json).")
    return path.resolve()


def _stage_inputs(pairs: Sequence[CTPair], stage: Path) -> dict[int, Path]:
    """Link each low-dose volume into ``stage`` as one bundle input (NIfTI file, or DICOM series folder).

    Returns:
        ``{id(source): staged path}``.
    """
    staged: dict[int, Path] = {}
    for pair in pairs:
        src = pair.source
        if id(src) in staged:
            continue
        k = len(staged)
        if src.kind == "nifti":
            name = os.path.basename(src.paths[0])
            target = stage / f"v{k:04d}_{name}"
            _link(src.paths[0], target)
        else:
            target = stage / f"v{k:04d}"
            target.mkdir(parents=True)
            for j, p in enumerate(src.paths):
                _link(p, target / f"{j:05d}.dcm")
        staged[id(src)] = target
    return staged


def _link(src: str, dst: Path) -> None:
    try:
        os.symlink(os.path.abspath(src), dst)
    except OSError:  # no symlinks here (some file systems): copy instead
        shutil.copy2(src, dst)


def _bundle_outputs(pairs: Sequence[CTPair], staged: dict[int, Path], out_dir: Path, bundle: str) -> list[np.ndarray]:
    """The bundle's output slice for each pair, HU, read back with :mod:`ldct_sim.io`."""
    from ldct_sim.io import find_ct

    by_source: dict[int, dict] = {}
    results = []
    for pair in pairs:
        src = pair.source
        if id(src) not in by_source:
            target = staged[id(src)]
            if src.kind == "nifti":
                stem = target.name[: -len(".nii.gz")] if target.name.lower().endswith(".nii.gz") else target.name.rsplit(".", 1)[0]
                found = sorted(out_dir.glob(f"{stem}_denoised.nii*"))
            else:
                found = [out_dir / f"{target.name}_denoised"] if (out_dir / f"{target.name}_denoised").is_dir() else []
            if not found:
                raise StudyError(f"{bundle}: no output for {target.name} in {out_dir}; see logs/{bundle}.log.")
            inv = find_ct(found[0])
            if inv.failures or len(inv.sources) != 1:
                raise StudyError(f"{bundle}: cannot read its output {found[0]} as one CT volume ({inv.failures[:1]}).")
            out_src = inv.sources[0]
            if src.kind == "nifti":
                index = {i: i for i in range(out_src.n_slices)}
            else:
                import pydicom

                index = {}
                for i, p in enumerate(out_src.paths):
                    key = _dicom_key(pydicom.dcmread(p, stop_before_pixels=True), i, False)
                    index[key[3:]] = i
            by_source[id(src)] = {"src": out_src, "index": index}
        entry = by_source[id(src)]
        where = pair.index if src.kind == "nifti" else pair.key[3:]
        if where not in entry["index"]:
            raise StudyError(f"{bundle}: its output has no slice for {pair.name} ({where!r}).")
        img = entry["src"].read_slice(entry["index"][where]).hu
        if img.shape != pair.low_dose_hu.shape:
            raise StudyError(f"{bundle}: output for {pair.name} is {img.shape}, its input {pair.low_dose_hu.shape}.")
        results.append(img)
    return results


def run_bundle(bundle_dir: Path, pairs: Sequence[CTPair], out_dir: Path, log_path: Path, ckpt: str | None = None,
               overrides: dict | None = None, workdir: Path | None = None) -> tuple[list[np.ndarray], list[str]]:
    """Denoise the pairs' low-dose images with ``python -m monai.bundle run --config_file configs/inference.json``.

    The low-dose volumes are linked into a staging folder (one input per volume), the bundle runs in its
    own folder in a subprocess (its output in ``log_path``), and its outputs are read back in HU.

    Returns:
        ``(one denoised (H, W) HU image per pair, the command line)``.

    Raises:
        StudyError: the bundle failed (the message quotes its log) or wrote no output for a pair.
    """
    kind = pairs[0].source.kind
    tmp = tempfile.mkdtemp(prefix="bench_real_stage_", dir=workdir)
    try:
        staged = _stage_inputs(pairs, Path(tmp))
        settings = {"bundle_root": str(bundle_dir), "dataset_dir": tmp, "output_dir": str(out_dir),
                    "input_unit": "hu", "output_format": "dicom" if kind == "dicom" else "nifti", "ckpt_path": ckpt}
        settings.update(overrides or {})
        argv = bundle_command(["configs/inference.json"], settings)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        run_logged(argv, log_path, cwd=str(bundle_dir), env=env)
        return _bundle_outputs(pairs, staged, out_dir, bundle_dir.name), argv
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ldct_scripts.bench.bench_real", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 1)[1])
    src = p.add_argument_group("pairs (either --low-dose and --full-dose, or --from-npz)")
    src.add_argument("--low-dose", help="low-dose DICOM series folder, DICOM file, NIfTI file or folder of them (HU)")
    src.add_argument("--full-dose", help="the matching full-dose images, same layout")
    src.add_argument("--from-npz", help="an .npz with quarter_dose_hu, full_dose_hu (N, H, W) HU and id; .json records beside it")
    src.add_argument("--npz-ids", nargs="+", help="with --from-npz: only these pair ids")
    src.add_argument("--npz-layout", choices=NPZ_LAYOUTS, default="dicom",
                     help="with --from-npz: NIfTI voxel order, 'dicom' (columns first: bundles see the pairs as they see "
                     "DICOM files; default) or 'ldct_sim' (rows first, as the simulator writes training data)")
    p.add_argument("--kernel", help="kernel name for pairs whose files do not name one (default: 'unknown')")
    p.add_argument("--out", help="a new or empty output folder (default: a new temporary folder)")
    p.add_argument("--bundles", nargs="*", default=list(DEFAULT_BUNDLES),
                   help=f"bundle names under bundles/ or bundle folders (default: {' '.join(DEFAULT_BUNDLES)}); none: input and Gaussian only")
    p.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH", help="weights for a bundle (repeatable); default its models/model.pt")
    p.add_argument("--override", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="another config override for a bundle's inference.json, e.g. unet_ldct:inference_dtype=bfloat16 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _parse_named(items: Sequence[str], sep: str, what: str, names: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, _, value = item.partition(sep)
        if not _ or not name or not value:
            raise BenchError(f"{what}: expected NAME{sep}VALUE, got {item!r}.")
        if name not in names:
            raise BenchError(f"{what}: {name!r} is not among --bundles {list(names)}.")
        out[name] = value
    return out


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"--out: {out} exists and is not an empty folder; give a new or empty one.")


def _inside_git(path: Path) -> bool:
    try:
        r = subprocess.run(["git", "-C", str(path), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and r.stdout.strip() == "true"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except PairError as err:  # BenchError too
        print(f"bench_real: {err}", file=sys.stderr)
        return 2
    except StudyError as err:
        print(f"bench_real: {err}", file=sys.stderr)
        return 1


def _main(args: argparse.Namespace) -> int:
    # ---- options, checked before anything is read or written
    if bool(args.from_npz) == bool(args.low_dose or args.full_dose):
        raise BenchError("give either --low-dose and --full-dose, or --from-npz.")
    if not args.from_npz and not (args.low_dose and args.full_dose):
        raise BenchError("--low-dose and --full-dose go together.")
    if args.npz_ids and not args.from_npz:
        raise BenchError("--npz-ids needs --from-npz.")
    bundles = [_resolve_bundle(b) for b in args.bundles]
    names = [b.name for b in bundles]
    if len(set(names)) != len(names):
        raise BenchError(f"--bundles: two bundles share a folder name: {names}.")
    ckpts = _parse_named(args.ckpt, "=", "--ckpt", names)
    for name, path in ckpts.items():
        if not os.path.isfile(path):
            raise BenchError(f"--ckpt: {name}'s weights {path!r} do not exist.")
        ckpts[name] = os.path.abspath(path)
    overrides: dict[str, dict] = {}
    for item in args.override:
        name, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        if not (name and key and _):
            raise BenchError(f"--override: expected NAME:KEY=VALUE, got {item!r}.")
        if name not in names:
            raise BenchError(f"--override: {name!r} is not among --bundles {names}.")
        overrides.setdefault(name, {})[key] = value
    out = Path(args.out) if args.out else None
    if out is not None:
        _check_out(out)

    with tempfile.TemporaryDirectory(prefix="bench_real_npz_") as npz_tmp:
        if args.from_npz:
            ld_path, fd_path = npz_to_nifti(args.from_npz, npz_tmp, ids=args.npz_ids, layout=args.npz_layout)
        else:
            ld_path, fd_path = args.low_dose, args.full_dose
        pairs = load_pairs(ld_path, fd_path, kernel=args.kernel)

        # ---- outputs from here on
        out = out or Path(tempfile.mkdtemp(prefix="bench_real_"))
        out.mkdir(parents=True, exist_ok=True)
        log = setup_logging(out / "logs" / "bench_real.log")
        if _inside_git(out):
            log.warning(f"{out} is inside a git work tree: do not commit real images or anything derived from their pixels.")
        kernels = sorted({p.kernel for p in pairs}, key=lambda k: (k == "unknown", k))
        log.info(f"{len(pairs)} pair(s); kernels: " + ", ".join(f"{k} ({sum(p.kernel == k for p in pairs)})" for k in kernels))
        return _run(args, pairs, kernels, bundles, ckpts, overrides, out, log, (str(ld_path), str(fd_path)))


def _run(args, pairs, kernels, bundles, ckpts, overrides, out, log, inputs) -> int:
    from tqdm.auto import tqdm

    masks = [body_mask(p.full_dose_hu) for p in pairs]
    methods = [INPUT, GAUSSIAN] + [b.name for b in bundles]
    rows: list[dict] = []
    per_kernel_pick = {}
    for k in kernels:  # the figure's pair per kernel: median input body RMSE
        idx = [i for i, p in enumerate(pairs) if p.kernel == k]
        r = [_rmse(pairs[i].low_dose_hu[masks[i]], pairs[i].full_dose_hu[masks[i]]) for i in idx]
        per_kernel_pick[k] = idx[int(np.argsort(r)[len(r) // 2])]
    crops = {k: {"name": pairs[i].name, "images": {}, "rmse": {}} for k, i in per_kernel_pick.items()}
    boxes = {k: _crop_box(masks[i]) for k, i in per_kernel_pick.items()}
    sigmas: dict[str, float] = {}
    prov_bundles = {}
    bar = tqdm(total=len(methods) * len(pairs), desc="bench_real", unit="image", disable=True if args.no_progress else None)

    def score(method: str, images: Sequence[np.ndarray], extra: dict | None = None) -> None:
        bar.set_description(f"metrics: {method}")
        for i, (pair, img) in enumerate(zip(pairs, images)):
            m = pair_metrics(img, pair.full_dose_hu, masks[i])
            rows.append({"kernel": pair.kernel, "pair": pair.name, "method": method, **(extra or {}).get(pair.kernel, {}), **m})
            if per_kernel_pick.get(pair.kernel) == i:
                ys, xs = boxes[pair.kernel]
                crops[pair.kernel]["images"][method] = np.asarray(img)[ys, xs]
                crops[pair.kernel]["rmse"][method] = m["rmse_body"]
            bar.update(1)

    score(INPUT, [p.low_dose_hu for p in pairs])
    for k in kernels:
        idx = [i for i, p in enumerate(pairs) if p.kernel == k]
        bar.set_description(f"best σ: {k}")
        sigmas[k], _ = best_sigma([pairs[i].low_dose_hu for i in idx], [pairs[i].full_dose_hu for i in idx], masks=[masks[i] for i in idx])
        crops[k]["sigma"] = sigmas[k]
        log.info(f"Gaussian blur, kernel {k}: best σ {sigmas[k]:.3f} px ({sigmas[k] * pairs[idx[0]].spacing_mm[1]:.3f} mm)")
    score(GAUSSIAN, [gaussian_blur(p.low_dose_hu, sigmas[p.kernel]) for p in pairs], {k: {"sigma_px": s} for k, s in sigmas.items()})
    for b in bundles:
        bar.set_description(f"running {b.name}")
        log.info(f"{b.name}: inference on {len(pairs)} slice(s) (log: {out / 'logs' / (b.name + '.log')})")
        images, argv = run_bundle(b, pairs, out / "denoised" / b.name, out / "logs" / f"{b.name}.log",
                                  ckpt=ckpts.get(b.name), overrides=overrides.get(b.name), workdir=None)
        ckpt = ckpts.get(b.name) or str(b / "models" / "model.pt")
        meta = json.loads((b / "configs" / "metadata.json").read_text()) if (b / "configs" / "metadata.json").is_file() else {}
        prov_bundles[b.name] = {"folder": str(b), "version": meta.get("version"), "checkpoint": ckpt,
                                "checkpoint_sha256_16": file_digest(ckpt) if os.path.isfile(ckpt) else None,
                                "command": argv, "cwd": str(b)}
        score(b.name, images)
    bar.close()
    for k, i in per_kernel_pick.items():
        ys, xs = boxes[k]
        crops[k]["images"]["full dose"] = pairs[i].full_dose_hu[ys, xs]

    columns = ["kernel", "n_pairs", "method", "sigma_px"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "sd")] \
        + ["rmse_body_cut_pct", "rmse_window_cut_pct"]
    summary = summarize(rows, methods)
    write_table(out / "results", summary, columns, markdown=format_markdown(summary, "Real-data benchmark"))
    write_table(out / "per_pair", rows, ["kernel", "pair", "method", "sigma_px", *METRICS])
    crops_figure(out / "crops.png", crops)
    prov = study_provenance()
    prov.update({
        "inputs": {"low_dose": os.path.abspath(args.low_dose) if args.low_dose else None,
                   "full_dose": os.path.abspath(args.full_dose) if args.full_dose else None,
                   "from_npz": os.path.abspath(args.from_npz) if args.from_npz else None, "npz_ids": args.npz_ids,
                   "npz_layout": args.npz_layout if args.from_npz else None,
                   "kind": pairs[0].source.kind, "n_pairs": len(pairs)},
        "pairs": [{"name": p.name, "kernel": p.kernel, "kernel_from": p.kernel_from, "spacing_mm": list(p.spacing_mm),
                   "low_dose": p.low_dose_path if not args.from_npz else os.path.basename(p.low_dose_path),
                   "full_dose": p.full_dose_path if not args.from_npz else os.path.basename(p.full_dose_path)} for p in pairs],
        "gaussian_sigma_px": sigmas,
        "bundles": prov_bundles,
        "conventions": {"body_threshold_hu": BODY_THRESHOLD_HU, "body_range_hu": list(BODY_RANGE_HU),
                        "body_psnr_peak_hu": BODY_RANGE_HU[1] - BODY_RANGE_HU[0], "window_hu": list(WINDOW_HU),
                        "window_psnr_peak_hu": WINDOW_HU[1] - WINDOW_HU[0], "ssim": {"window": SSIM_WIN, "sigma_px": SSIM_SIGMA,
                        "k1": 0.01, "k2": 0.03, "implementation": "monai.metrics.regression.compute_ssim_and_cs"},
                        "sd": "sample SD over pairs (ddof=1)", "gaussian": "scipy.ndimage.gaussian_filter, mode reflect, σ per kernel minimising mean body RMSE (oracle)"},
    })
    write_json(out / "provenance.json", prov)
    print(format_markdown(summary))
    log.info(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
