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
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldct_scripts import REPO
from ldct_scripts.studies.engine import (
    StudyError,
    bundle_command,
    file_digest,
    markdown_table,
    mean_std,
    run_logged,
    setup_logging,
    study_provenance,
    write_json,
    write_table,
)

__all__ = [
    "BenchError",
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

#: Body mask: full-dose pixels above this (HU), as in ``../shared/real_ldct/README.md``.
BODY_THRESHOLD_HU = -500.0
#: Range whose width (4096 HU) is the body PSNR peak, and over which images map to [0, 1] for the body SSIM.
BODY_RANGE_HU = (-1024.0, 3072.0)
#: Display window of the windowed metrics (HU); its width (400 HU) is their PSNR peak and SSIM data range.
WINDOW_HU = (-160.0, 240.0)
#: SSIM: Gaussian window side (pixels) and σ (pixels), Wang et al. (2004), as MONAI's SSIMMetric.
SSIM_WIN, SSIM_SIGMA = 11, 1.5
#: Gaussian σ (pixels) tried before the bounded refinement around the best one.
SIGMA_GRID = tuple(round(0.1 * k, 1) for k in range(1, 31))
INPUT, GAUSSIAN = "low-dose input", "Gaussian blur, best σ (oracle)"
DEFAULT_BUNDLES = ("unet_ldct", "cpce_rfm_da")
NPZ_LAYOUTS = ("dicom", "ldct_sim")
METRICS = ("rmse_body", "psnr_body", "ssim_body", "rmse_window", "psnr_window", "ssim_window")


class BenchError(ValueError):
    """Bad input: unpaired or mismatched slices, unreadable files, bad options. The message names the file."""


# ---------------------------------------------------------------------------------------------------------
# reading and pairing
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Slice:
    source: object  # ldct_sim.io.CTSource
    index: int
    key: tuple
    name: str
    kernel: str | None
    kernel_from: str
    path: str


@dataclass
class CTPair:
    """One low-dose / full-dose slice pair in HU.

    Attributes:
        name: a readable id (file name, slice).
        kernel: reconstruction kernel, or ``"unknown"``.
        kernel_from: where the kernel came from (``"DICOM header"``, ``"sidecar JSON"``, ``"--kernel"``, ``"none"``).
        low_dose, full_dose: ``(H, W)`` float32 HU images.
        spacing_mm: ``(row, column)`` pixel spacing in mm of the low-dose image.
        ld_path, fd_path: the files they were read from.
        ld_source, ld_index: the low-dose volume (``ldct_sim.io.CTSource``) and slice index, to find the
            slice again in a bundle's output.
        ld_key: the pairing key of the low-dose slice (DICOM: patient, kernel, thickness, position).
    """

    name: str
    kernel: str
    kernel_from: str
    low_dose: np.ndarray
    full_dose: np.ndarray
    spacing_mm: tuple[float, float]
    ld_path: str
    fd_path: str
    ld_source: object = field(repr=False, default=None)
    ld_index: int = 0
    ld_key: tuple = ()


def _kernel_name(value) -> str | None:
    """The first value of a DICOM ``ConvolutionKernel`` (e.g. ``['Br40d', '3']`` -> ``'Br40d'``), or ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        try:
            value = next(iter(value), None)
        except TypeError:
            pass
    text = str(value or "").strip()
    if not text or text.lower() == "unknown":
        return None
    return text.split()[0]


def _sidecar_kernel(nifti_path: str) -> str | None:
    """``ConvolutionKernel`` of the JSON sidecar of a NIfTI file (``x.nii.gz`` -> ``x.json``), if any."""
    stem = nifti_path[: -len(".nii.gz")] if nifti_path.lower().endswith(".nii.gz") else os.path.splitext(nifti_path)[0]
    sidecar = stem + ".json"
    if not os.path.isfile(sidecar):
        return None
    try:
        with open(sidecar, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise BenchError(f"{sidecar}: cannot read the JSON sidecar ({err}).") from err
    return _kernel_name(meta.get("ConvolutionKernel")) if isinstance(meta, dict) else None


def _dicom_key(ds, index: int, multiframe: bool) -> tuple:
    """Pairing key of one DICOM slice: patient, kernel, thickness, position along the normal (0.01 mm)."""
    patient = str(ds.get("PatientID", "") or "")
    kernel = _kernel_name(ds.get("ConvolutionKernel")) or ""
    thickness = ds.get("SliceThickness")
    thickness = round(float(thickness), 3) if thickness not in (None, "") else None
    pos, ori = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if multiframe:
        where = ("frame", index)
    elif pos is not None and ori is not None and len(pos) == 3 and len(ori) == 6:
        normal = np.cross(np.asarray(ori[:3], float), np.asarray(ori[3:], float))
        where = ("position_mm", round(float(np.dot(normal, np.asarray(pos, float))), 2))
    elif ds.get("SliceLocation") is not None:
        where = ("position_mm", round(float(ds.SliceLocation), 2))
    elif ds.get("InstanceNumber") is not None:
        where = ("instance", int(ds.InstanceNumber))
    else:
        where = ("index", index)
    return (patient, kernel, thickness, *where)


def _slices(path, role: str) -> tuple[str, list[_Slice]]:
    """Every axial slice under ``path`` with its pairing key, and the kind (``"dicom"`` or ``"nifti"``)."""
    from ldct_sim.io import find_ct

    try:
        inv = find_ct(path)
    except (FileNotFoundError, ValueError) as err:
        raise BenchError(f"{role}: {err}") from err
    if inv.failures:
        f = inv.failures[0]
        more = f" (and {len(inv.failures) - 1} more)" if len(inv.failures) > 1 else ""
        raise BenchError(f"{role}: {f.path}: {f.reason}{more}")
    if not inv.sources:
        raise BenchError(f"{role}: no CT image (DICOM or NIfTI) found at {str(path)!r}.")
    kinds = {s.kind for s in inv.sources}
    if len(kinds) > 1:
        raise BenchError(f"{role}: {str(path)!r} mixes DICOM and NIfTI; give one kind, so that slices pair unambiguously.")
    kind = kinds.pop()
    out: list[_Slice] = []
    if kind == "dicom":
        import pydicom

        for src in inv.sources:
            multiframe = len(src.paths) == 1 and src.n_slices > 1
            for i in range(src.n_slices):
                p = src.paths[0] if multiframe else src.paths[i]
                try:
                    ds = pydicom.dcmread(p, stop_before_pixels=True)
                except Exception as err:  # noqa: BLE001 - find_ct read it a moment ago; report whatever happened
                    raise BenchError(f"{role}: {p}: cannot read the DICOM header ({type(err).__name__}: {err}).") from err
                kernel = _kernel_name(ds.get("ConvolutionKernel"))
                name = os.path.basename(p) + (f"[{i}]" if multiframe else "")
                out.append(_Slice(src, i, _dicom_key(ds, i, multiframe), name, kernel,
                                  "DICOM header" if kernel else "none", p))
    else:
        for k, src in enumerate(inv.sources):
            p = src.paths[0]
            kernel = _sidecar_kernel(p)
            base = os.path.basename(p)
            for i in range(src.n_slices):
                name = base if src.n_slices == 1 else f"{base}[{i}]"
                out.append(_Slice(src, i, (k, i), name, kernel, "sidecar JSON" if kernel else "none", p))
    return kind, out


def _check_hu(img: np.ndarray, path: str, index: int) -> None:
    lo, hi = float(img.min()), float(img.max())
    if hi - lo < 10.0:
        raise BenchError(
            f"{path}: slice {index} spans only {lo:.4g} to {hi:.4g}; it does not look like CT in HU "
            "(attenuation in cm⁻¹ or images scaled to [0, 1] must be converted to HU first)."
        )


def load_pairs(low_dose, full_dose, kernel: str | None = None) -> list[CTPair]:
    """Read and pair low-dose and full-dose CT slices (HU).

    DICOM slices pair by (PatientID, ConvolutionKernel, SliceThickness, position along the slice normal
    to 0.01 mm); NIfTI volumes by sorted file name, then slice index. Both sides must be of one kind.

    Args:
        low_dose, full_dose: a DICOM file or series folder, a NIfTI file, or a folder of them.
        kernel: kernel name for slices whose files do not name one (DICOM header, NIfTI sidecar JSON).

    Returns:
        The pairs, in the low-dose side's order.

    Raises:
        BenchError: missing or unreadable files, DICOM on one side and NIfTI on the other, slices without
            a partner (or two with the same key), different counts or shapes, images that are not HU.
    """
    ld_kind, ld = _slices(low_dose, "--low-dose")
    fd_kind, fd = _slices(full_dose, "--full-dose")
    if ld_kind != fd_kind:
        raise BenchError(f"--low-dose holds {ld_kind.upper()} and --full-dose {fd_kind.upper()}; give the same kind on both sides.")
    if ld_kind == "nifti":
        n_ld, n_fd = len({s.path for s in ld}), len({s.path for s in fd})
        if n_ld != n_fd:
            raise BenchError(
                f"--low-dose holds {n_ld} NIfTI file(s) and --full-dose {n_fd}; NIfTI pairs by sorted name, "
                "so both sides need the same number of files."
            )
        for a, b in zip(sorted({s.path for s in ld}), sorted({s.path for s in fd})):
            na, nb = sum(s.path == a for s in ld), sum(s.path == b for s in fd)
            if na != nb:
                raise BenchError(f"{a} holds {na} slice(s) but its full-dose partner {b} holds {nb}.")
    for role, items in (("--low-dose", ld), ("--full-dose", fd)):
        seen: dict[tuple, str] = {}
        for s in items:
            if s.key in seen:
                raise BenchError(
                    f"{role}: {seen[s.key]} and {s.path} have the same patient, kernel, slice thickness and position "
                    f"{s.key!r}; put the series in separate runs."
                )
            seen[s.key] = s.path
    fd_by_key = {s.key: s for s in fd}
    unmatched = [s for s in ld if s.key not in fd_by_key]
    extra = sorted(set(fd_by_key) - {s.key for s in ld}, key=repr)
    if unmatched or extra:
        parts = []
        if unmatched:
            parts.append(f"{len(unmatched)} low-dose slice(s) have no full-dose partner (first: {unmatched[0].path}, key {unmatched[0].key!r})")
        if extra:
            parts.append(f"{len(extra)} full-dose slice(s) have no low-dose partner (first: {fd_by_key[extra[0]].path}, key {extra[0]!r})")
        raise BenchError("; ".join(parts) + ". DICOM pairs by patient, kernel, slice thickness and slice position.")
    pairs = []
    from ldct_sim.io import CTReadError

    for s in ld:
        t = fd_by_key[s.key]
        try:
            a, b = s.source.read_slice(s.index), t.source.read_slice(t.index)
        except CTReadError as err:
            raise BenchError(str(err)) from err
        if a.hu.shape != b.hu.shape:
            raise BenchError(f"{s.path} (slice {s.index}) is {a.hu.shape} but its full-dose partner {t.path} is {b.hu.shape}.")
        _check_hu(a.hu, s.path, s.index)
        _check_hu(b.hu, t.path, t.index)
        k_ld, k_fd = s.kernel, t.kernel
        if k_ld and k_fd and k_ld != k_fd:
            name, origin = f"{k_ld}/{k_fd}", s.kernel_from
        elif k_ld or k_fd:
            name, origin = k_ld or k_fd, s.kernel_from if k_ld else t.kernel_from
        elif kernel:
            name, origin = str(kernel), "--kernel"
        else:
            name, origin = "unknown", "none"
        pairs.append(CTPair(s.name, name, origin, a.hu, b.hu, tuple(a.spacing_mm), s.path, t.path, s.source, s.index, s.key))
    return pairs


# ---------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------
def body_mask(full_dose_hu: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Boolean mask of the body: full-dose pixels above ``threshold_hu`` (HU, default −500)."""
    return np.asarray(full_dose_hu) > threshold_hu


def _as_image(x) -> "torch.Tensor":  # noqa: F821 - torch imported lazily
    import torch

    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    return t.reshape(1, 1, *t.shape)


def _rmse(pred, ref) -> float:
    from monai.metrics import RMSEMetric

    return float(RMSEMetric()(_as_image(pred), _as_image(ref)).item())


def _psnr(pred, ref, peak: float) -> float:
    from monai.metrics import PSNRMetric

    return float(PSNRMetric(max_val=peak)(_as_image(pred), _as_image(ref)).item())


def _ssim_map(pred01: np.ndarray, ref01: np.ndarray) -> np.ndarray:
    """MONAI's SSIM map (valid region, ``(H - 10, W - 10)``) of two 2-D images scaled to [0, 1], data range 1."""
    from monai.metrics.regression import compute_ssim_and_cs

    if min(pred01.shape) < SSIM_WIN:
        raise BenchError(f"SSIM needs images of at least {SSIM_WIN} × {SSIM_WIN} pixels, got {pred01.shape}.")
    ssim, _ = compute_ssim_and_cs(_as_image(pred01), _as_image(ref01), spatial_dims=2, kernel_size=[SSIM_WIN] * 2,
                                  kernel_sigma=[SSIM_SIGMA] * 2, data_range=1.0)
    return ssim[0, 0].double().numpy()


def pair_metrics(pred_hu: np.ndarray, ref_hu: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """RMSE (HU), PSNR (dB) and SSIM of one image against its full-dose reference, over the body and in the window.

    Args:
        pred_hu: ``(H, W)`` image under test, HU.
        ref_hu: ``(H, W)`` full-dose reference, HU.
        mask: body mask; default :func:`body_mask` of ``ref_hu``.

    Returns:
        ``rmse_body``, ``psnr_body`` (peak 4096 HU), ``ssim_body`` (on [−1024, 3072] HU mapped to [0, 1],
        averaged over the body), ``rmse_window``, ``psnr_window`` (peak 400 HU), ``ssim_window`` (on
        [−160, 240] HU mapped to [0, 1], averaged over the image). See the module docstring.

    Raises:
        BenchError: shapes differ, or the mask holds no pixel.
    """
    p, r = np.asarray(pred_hu, dtype=np.float64), np.asarray(ref_hu, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 2:
        raise BenchError(f"pair_metrics: expected two (H, W) images of one shape, got {p.shape} and {r.shape}.")
    m = body_mask(r) if mask is None else np.asarray(mask, dtype=bool)
    if not m.any():
        raise BenchError(f"pair_metrics: the body mask is empty (no full-dose pixel above {BODY_THRESHOLD_HU:g} HU).")
    out = {"rmse_body": _rmse(p[m], r[m]), "psnr_body": _psnr(p[m], r[m], BODY_RANGE_HU[1] - BODY_RANGE_HU[0])}
    blo, bhi = BODY_RANGE_HU
    smap = _ssim_map((p - blo) / (bhi - blo), (r - blo) / (bhi - blo))
    c = SSIM_WIN // 2
    m_valid = m[c : m.shape[0] - c, c : m.shape[1] - c]
    out["ssim_body"] = float(smap[m_valid].mean()) if m_valid.any() else float(smap.mean())
    lo, hi = WINDOW_HU
    pw, rw = np.clip(p, lo, hi), np.clip(r, lo, hi)
    out["rmse_window"] = _rmse(pw, rw)
    out["psnr_window"] = _psnr(pw, rw, hi - lo)
    out["ssim_window"] = float(_ssim_map((pw - lo) / (hi - lo), (rw - lo) / (hi - lo)).mean())
    return out


# ---------------------------------------------------------------------------------------------------------
# Gaussian blur
# ---------------------------------------------------------------------------------------------------------
def gaussian_blur(image_hu: np.ndarray, sigma_px: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter`` of an ``(H, W)`` HU image, σ in pixels (0: the image itself), mirrored edges."""
    from scipy.ndimage import gaussian_filter

    if sigma_px <= 0:
        return np.asarray(image_hu, dtype=np.float32)
    return gaussian_filter(np.asarray(image_hu, dtype=np.float32), float(sigma_px), mode="reflect")


def best_sigma(low_dose: Sequence[np.ndarray], full_dose: Sequence[np.ndarray], grid: Sequence[float] = SIGMA_GRID,
               masks: Sequence[np.ndarray] | None = None) -> tuple[float, float]:
    """The Gaussian σ (pixels) that minimises the mean body RMSE (HU) of blurred low-dose images against full dose.

    Evaluates ``grid``, then refines with SciPy's bounded Brent search between the best grid point's
    neighbours (down to σ = 0, the input itself).

    Returns:
        ``(sigma_px, mean body RMSE in HU)``.
    """
    from scipy.optimize import minimize_scalar

    if not low_dose or len(low_dose) != len(full_dose):
        raise BenchError(f"best_sigma: need as many low-dose as full-dose images (at least one), got {len(low_dose)} and {len(full_dose)}.")
    masks = [body_mask(f) for f in full_dose] if masks is None else list(masks)

    def cost(s: float) -> float:
        return float(np.mean([_rmse(gaussian_blur(ld, s)[m], fd[m]) for ld, fd, m in zip(low_dose, full_dose, masks)]))

    grid = sorted(float(s) for s in grid)
    costs = [cost(s) for s in grid]
    k = int(np.argmin(costs))
    lo = grid[k - 1] if k > 0 else 0.0
    hi = grid[k + 1] if k + 1 < len(grid) else grid[k]
    best, best_cost = grid[k], costs[k]
    if hi > lo:
        res = minimize_scalar(cost, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
        if res.fun < best_cost:
            best, best_cost = float(res.x), float(res.fun)
    return best, best_cost


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
        src = pair.ld_source
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
        src = pair.ld_source
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
        where = pair.ld_index if src.kind == "nifti" else pair.ld_key[3:]
        if where not in entry["index"]:
            raise StudyError(f"{bundle}: its output has no slice for {pair.name} ({where!r}).")
        img = entry["src"].read_slice(entry["index"][where]).hu
        if img.shape != pair.low_dose.shape:
            raise StudyError(f"{bundle}: output for {pair.name} is {img.shape}, its input {pair.low_dose.shape}.")
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
    kind = pairs[0].ld_source.kind
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
# npz helper
# ---------------------------------------------------------------------------------------------------------
def npz_to_nifti(npz_path, out_dir, json_path=None, ids: Sequence[str] | None = None, layout: str = "dicom") -> tuple[Path, Path]:
    """Write the pairs of an ``.npz`` (``quarter_dose_hu``, ``full_dose_hu``: ``(N, H, W)`` HU; ``id``) as NIfTI.

    Each pair becomes ``<out_dir>/low_dose/<id>.nii.gz`` and ``<out_dir>/full_dose/<id>.nii.gz`` (2-D, dtype
    as stored, pixel spacing of the JSON record), each with a sidecar ``<id>.json`` holding
    ``ConvolutionKernel`` when the record names one. Records without a pixel spacing get the median of the
    others (1 mm when none has one), noted in the sidecar.

    ``layout="dicom"`` (default) stores the voxel array columns first, as ``dcm2niix`` stores a DICOM
    slice and as MONAI's ``PydicomReader`` presents one, with the affine that says so: a bundle sees the
    array exactly as it sees the original DICOM file. ``layout="ldct_sim"`` stores it rows first with
    :func:`ldct_sim.io.slice_affine`, the layout of the simulator's NIfTI (the bundles' training data), so
    a bundle sees the transpose. :mod:`ldct_sim.io` reads back the npz's ``(H, W)`` image either way. The
    networks are not transpose-equivariant: their outputs differ by 10–25 HU RMS between the two layouts.

    Args:
        npz_path: the ``.npz`` file.
        out_dir: folder to write into (created).
        json_path: per-pair records (a list, same order, with ``id``, ``kernel``, ``pixel_spacing_mm``);
            default the ``.json`` beside the ``.npz``; no kernels or spacings when it does not exist.
        ids: only these pair ids (default all).
        layout: ``"dicom"`` (columns first) or ``"ldct_sim"`` (rows first); see above.

    Returns:
        ``(low-dose folder, full-dose folder)``.

    Raises:
        BenchError: missing keys, shapes that differ, unknown ids, records that do not match.
    """
    import nibabel as nib

    from ldct_sim.io import slice_affine

    if layout not in NPZ_LAYOUTS:
        raise BenchError(f"npz_to_nifti: `layout` must be one of {NPZ_LAYOUTS}, got {layout!r}.")
    npz_path = Path(npz_path)
    try:
        data = np.load(npz_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise BenchError(f"--from-npz: cannot read {npz_path} ({err}).") from err
    missing = [k for k in ("quarter_dose_hu", "full_dose_hu") if k not in data.files]
    if missing:
        raise BenchError(f"--from-npz: {npz_path} lacks {missing}; expected quarter_dose_hu and full_dose_hu (N, H, W) in HU.")
    ld, fd = data["quarter_dose_hu"], data["full_dose_hu"]
    if ld.shape != fd.shape or ld.ndim != 3:
        raise BenchError(f"--from-npz: {npz_path}: quarter_dose_hu {ld.shape} and full_dose_hu {fd.shape} must be one (N, H, W) shape.")
    names = [str(i) for i in data["id"]] if "id" in data.files else [f"pair_{k:04d}" for k in range(len(ld))]
    json_path = Path(json_path) if json_path is not None else npz_path.with_suffix(".json")
    records = [{} for _ in names]
    if json_path.is_file():
        records = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(records, list) or len(records) != len(names):
            raise BenchError(f"--from-npz: {json_path} must be a list of {len(names)} records, one per pair.")
        for k, (rec, name) in enumerate(zip(records, names)):
            if "id" in rec and str(rec["id"]) != name:
                raise BenchError(f"--from-npz: record {k} of {json_path} is {rec['id']!r} but the npz's pair {k} is {name!r}.")
    known = [float(r["pixel_spacing_mm"]) for r in records if r.get("pixel_spacing_mm")]
    fallback = float(np.median(known)) if known else 1.0
    chosen = list(range(len(names)))
    if ids is not None:
        unknown = sorted(set(ids) - set(names))
        if unknown:
            raise BenchError(f"--from-npz: unknown pair id(s) {unknown}; the npz holds {names}.")
        chosen = [k for k in chosen if names[k] in set(ids)]
    out_dir = Path(out_dir)
    folders = (out_dir / "low_dose", out_dir / "full_dose")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for k in chosen:
        rec = records[k]
        spacing = float(rec["pixel_spacing_mm"]) if rec.get("pixel_spacing_mm") else fallback
        sidecar = {"id": names[k], "PixelSpacing_mm": spacing, "source": str(npz_path.name)}
        if not rec.get("pixel_spacing_mm"):
            sidecar["PixelSpacingAssumed"] = True
        kernel = _kernel_name(rec.get("kernel"))
        if kernel:
            sidecar["ConvolutionKernel"] = kernel
        if rec.get("slice_thickness_mm"):
            sidecar["SliceThickness"] = float(rec["slice_thickness_mm"])
        affine = slice_affine(spacing, ld[k].shape)
        columns_first = layout == "dicom"
        if columns_first:
            affine = affine[:, [1, 0, 2, 3]]  # voxel axes swapped: the first runs along the columns
        sidecar["VoxelLayout"] = "columns first (as DICOM)" if columns_first else "rows first (ldct_sim)"
        for folder, arr in zip(folders, (ld[k], fd[k])):
            arr = np.ascontiguousarray(np.asarray(arr).T) if columns_first else np.asarray(arr)
            img = nib.Nifti1Image(arr, affine)
            img.header.set_xyzt_units("mm")
            nib.save(img, str(folder / f"{names[k]}.nii.gz"))
            (folder / f"{names[k]}.json").write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    return folders


# ---------------------------------------------------------------------------------------------------------
# tables and figure
# ---------------------------------------------------------------------------------------------------------
def summarize(rows: Sequence[dict], methods: Sequence[str]) -> list[dict]:
    """Per kernel and method: mean and SD (over pairs, ``ddof=1``) of every metric, and the RMSE cuts vs the input.

    ``rows`` are per-pair dicts with ``kernel``, ``method`` and the :data:`METRICS`. The cut is
    ``100 (1 − mean RMSE(method) / mean RMSE(input))``.
    """
    out = []
    kernels = sorted({r["kernel"] for r in rows}, key=lambda k: (k == "unknown", k))
    for kernel in kernels:
        base = {}
        for method in methods:
            sel = [r for r in rows if r["kernel"] == kernel and r["method"] == method]
            if not sel:
                continue
            row = {"kernel": kernel, "n_pairs": len(sel), "method": method, "sigma_px": sel[0].get("sigma_px")}
            for m in METRICS:
                v = np.array([r[m] for r in sel], dtype=float)
                row[f"{m}_mean"] = float(v.mean())
                row[f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
            if method == INPUT:
                base = {m: row[f"{m}_mean"] for m in ("rmse_body", "rmse_window")}
            for m in ("rmse_body", "rmse_window"):
                row[f"{m}_cut_pct"] = (100.0 * (1.0 - row[f"{m}_mean"] / base[m])) if base.get(m) else float("nan")
            out.append(row)
    return out


def _cut(v: float, method: str) -> str:
    if method == INPUT or v is None or not math.isfinite(v):
        return ""
    return f"{v:+.0f} %".replace("-", "−") + (" (worse)" if v < -0.5 else "")


def format_markdown(summary: Sequence[dict], title: str | None = None) -> str:
    """The results table in Markdown, with the metric conventions stated under it."""
    header = ["Kernel", "Pairs", "Method", "RMSE body (HU)", "cut", "PSNR body (dB)", "SSIM body",
              "RMSE window (HU)", "cut", "PSNR window (dB)", "SSIM window"]
    body = []
    for r in summary:
        method = r["method"]
        if r.get("sigma_px") is not None and math.isfinite(r["sigma_px"]):
            method += f", σ = {r['sigma_px']:.2f} px"
        body.append([r["kernel"], r["n_pairs"], method,
                     mean_std(r["rmse_body_mean"], r["rmse_body_sd"], 1), _cut(r["rmse_body_cut_pct"], r["method"]),
                     mean_std(r["psnr_body_mean"], r["psnr_body_sd"], 2), mean_std(r["ssim_body_mean"], r["ssim_body_sd"], 4),
                     mean_std(r["rmse_window_mean"], r["rmse_window_sd"], 1), _cut(r["rmse_window_cut_pct"], r["method"]),
                     mean_std(r["psnr_window_mean"], r["psnr_window_sd"], 2), mean_std(r["ssim_window_mean"], r["ssim_window_sd"], 4)])
    text = (f"## {title}\n\n" if title else "") + markdown_table(header, body, "lrl" + "r" * 8)
    text += (
        "\nMean ± SD over the pairs of each kernel, against the full-dose image. Body: full-dose > −500 HU, no clipping; "
        "PSNR peak 4096 HU; SSIM on [−1024, 3072] HU mapped to [0, 1], averaged over the body. Window: both images "
        "clipped to [−160, 240] HU, whole image; PSNR peak 400 HU; SSIM on the window mapped to [0, 1]. SSIM: "
        "11 × 11 Gaussian window, σ 1.5 px (MONAI). cut: 1 − mean RMSE / mean RMSE of the input (positive is better). "
        "The Gaussian's σ is chosen per kernel on these same pairs (oracle).\n"
    )
    return text


def _crop_box(mask: np.ndarray) -> tuple[slice, slice]:
    h, w = mask.shape
    side = max(min(h, w) // 3, min(h, w, 32))
    ys, xs = np.nonzero(mask)
    cy, cx = (int(ys.mean()), int(xs.mean())) if len(ys) else (h // 2, w // 2)
    y0 = min(max(cy - side // 2, 0), h - side)
    x0 = min(max(cx - side // 2, 0), w - side)
    return slice(y0, y0 + side), slice(x0, x0 + side)


def crops_figure(path: Path, crops: dict[str, dict]) -> Path:
    """One row per kernel: the crop of each method and of the full dose, [−160, 240] HU, with its body RMSE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernels = list(crops)
    cols = list(next(iter(crops.values()))["images"])
    fig, axes = plt.subplots(len(kernels), len(cols), figsize=(2.4 * len(cols), 2.8 * len(kernels) + 0.3), squeeze=False)
    for i, kernel in enumerate(kernels):
        c = crops[kernel]
        for j, col in enumerate(cols):
            ax = axes[i][j]
            ax.imshow(c["images"][col], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            label = col if col in (INPUT, "full dose") else col.replace(", best σ (oracle)", f" σ {c.get('sigma', 0):.2f}")
            rmse = c["rmse"].get(col)
            ax.set_title(label + (f"\n{rmse:.1f} HU" if rmse is not None else "\nreference"), fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{kernel}\n{c['name']}", fontsize=8)
    fig.suptitle("Crops, [−160, 240] HU; body RMSE vs full dose", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    except BenchError as err:
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

    masks = [body_mask(p.full_dose) for p in pairs]
    methods = [INPUT, GAUSSIAN] + [b.name for b in bundles]
    rows: list[dict] = []
    per_kernel_pick = {}
    for k in kernels:  # the figure's pair per kernel: median input body RMSE
        idx = [i for i, p in enumerate(pairs) if p.kernel == k]
        r = [_rmse(pairs[i].low_dose[masks[i]], pairs[i].full_dose[masks[i]]) for i in idx]
        per_kernel_pick[k] = idx[int(np.argsort(r)[len(r) // 2])]
    crops = {k: {"name": pairs[i].name, "images": {}, "rmse": {}} for k, i in per_kernel_pick.items()}
    boxes = {k: _crop_box(masks[i]) for k, i in per_kernel_pick.items()}
    sigmas: dict[str, float] = {}
    prov_bundles = {}
    bar = tqdm(total=len(methods) * len(pairs), desc="bench_real", unit="image", disable=True if args.no_progress else None)

    def score(method: str, images: Sequence[np.ndarray], extra: dict | None = None) -> None:
        bar.set_description(f"metrics: {method}")
        for i, (pair, img) in enumerate(zip(pairs, images)):
            m = pair_metrics(img, pair.full_dose, masks[i])
            rows.append({"kernel": pair.kernel, "pair": pair.name, "method": method, **(extra or {}).get(pair.kernel, {}), **m})
            if per_kernel_pick.get(pair.kernel) == i:
                ys, xs = boxes[pair.kernel]
                crops[pair.kernel]["images"][method] = np.asarray(img)[ys, xs]
                crops[pair.kernel]["rmse"][method] = m["rmse_body"]
            bar.update(1)

    score(INPUT, [p.low_dose for p in pairs])
    for k in kernels:
        idx = [i for i, p in enumerate(pairs) if p.kernel == k]
        bar.set_description(f"best σ: {k}")
        sigmas[k], _ = best_sigma([pairs[i].low_dose for i in idx], [pairs[i].full_dose for i in idx], masks=[masks[i] for i in idx])
        crops[k]["sigma"] = sigmas[k]
        log.info(f"Gaussian blur, kernel {k}: best σ {sigmas[k]:.3f} px ({sigmas[k] * pairs[idx[0]].spacing_mm[1]:.3f} mm)")
    score(GAUSSIAN, [gaussian_blur(p.low_dose, sigmas[p.kernel]) for p in pairs], {k: {"sigma_px": s} for k, s in sigmas.items()})
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
        crops[k]["images"]["full dose"] = pairs[i].full_dose[ys, xs]

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
                   "kind": pairs[0].ld_source.kind, "n_pairs": len(pairs)},
        "pairs": [{"name": p.name, "kernel": p.kernel, "kernel_from": p.kernel_from, "spacing_mm": list(p.spacing_mm),
                   "low_dose": p.ld_path if not args.from_npz else os.path.basename(p.ld_path),
                   "full_dose": p.fd_path if not args.from_npz else os.path.basename(p.fd_path)} for p in pairs],
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
