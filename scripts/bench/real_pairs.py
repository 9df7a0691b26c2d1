"""Real low-dose / full-dose CT pairs for :mod:`ldct_scripts.bench.bench_real`: pairing (:mod:`ldct_sim.pairs`, the
one reader that ``calibrate`` uses too) and :func:`npz_to_nifti`, which writes the pairs of an ``.npz`` (as in
``../shared/real_ldct``) as NIfTI files a user could have given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ldct_sim.pairs import CTPair, PairError, _kernel_name, load_pairs

__all__ = ["BenchError", "PairError", "CTPair", "NPZ_LAYOUTS", "load_pairs", "npz_to_nifti"]

NPZ_LAYOUTS = ("dicom", "ldct_sim")


class BenchError(PairError):
    """Bad input or options of the benchmark; the message names the file or option. Pairing refusals are
    :class:`ldct_sim.pairs.PairError`, its parent."""


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
    if layout not in NPZ_LAYOUTS:
        raise BenchError(f"npz_to_nifti: `layout` must be one of {NPZ_LAYOUTS}, got {layout!r}.")
    npz_path = Path(npz_path)
    ld, fd, names = _read_npz(npz_path)
    json_path = Path(json_path) if json_path is not None else npz_path.with_suffix(".json")
    records = _read_records(json_path, names)
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
        _write_npz_pair(folders, names[k], (ld[k], fd[k]), spacing, _npz_sidecar(rec, names[k], spacing, npz_path), layout)
    return folders


def _read_npz(npz_path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(quarter_dose_hu, full_dose_hu, pair ids)`` of an ``.npz``, checked: both ``(N, H, W)`` of one shape."""
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
    return ld, fd, names


def _read_records(json_path: Path, names: Sequence[str]) -> list[dict]:
    """The per-pair records of ``json_path`` (one per pair, ids matching ``names``); empty ones when it does not exist."""
    records = [{} for _ in names]
    if json_path.is_file():
        records = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(records, list) or len(records) != len(names):
            raise BenchError(f"--from-npz: {json_path} must be a list of {len(names)} records, one per pair.")
        for k, (rec, name) in enumerate(zip(records, names)):
            if "id" in rec and str(rec["id"]) != name:
                raise BenchError(f"--from-npz: record {k} of {json_path} is {rec['id']!r} but the npz's pair {k} is {name!r}.")
    return records


def _npz_sidecar(rec: dict, name: str, spacing: float, npz_path: Path) -> dict:
    """The sidecar JSON of one npz pair: id, pixel spacing (mm; flagged when assumed), kernel and thickness if known."""
    sidecar = {"id": name, "PixelSpacing_mm": spacing, "source": str(npz_path.name)}
    if not rec.get("pixel_spacing_mm"):
        sidecar["PixelSpacingAssumed"] = True
    kernel = _kernel_name(rec.get("kernel"))
    if kernel:
        sidecar["ConvolutionKernel"] = kernel
    if rec.get("slice_thickness_mm"):
        sidecar["SliceThickness"] = float(rec["slice_thickness_mm"])
    return sidecar


def _write_npz_pair(folders: Sequence[Path], name: str, images: Sequence[np.ndarray], spacing: float, sidecar: dict,
                    layout: str) -> None:
    """Write one pair's low-dose and full-dose images as ``<folder>/<name>.nii.gz`` with ``<name>.json`` (``sidecar``)."""
    import nibabel as nib

    from ldct_sim.io import slice_affine

    affine = slice_affine(spacing, images[0].shape)
    columns_first = layout == "dicom"
    if columns_first:
        affine = affine[:, [1, 0, 2, 3]]  # voxel axes swapped: the first runs along the columns
    sidecar["VoxelLayout"] = "columns first (as DICOM)" if columns_first else "rows first (ldct_sim)"
    for folder, arr in zip(folders, images):
        arr = np.ascontiguousarray(np.asarray(arr).T) if columns_first else np.asarray(arr)
        img = nib.Nifti1Image(arr, affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, str(folder / f"{name}.nii.gz"))
        (folder / f"{name}.json").write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
