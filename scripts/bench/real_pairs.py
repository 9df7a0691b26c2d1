"""Real low-dose / full-dose CT pairs for :mod:`ldct_scripts.bench.bench_real`: reading, pairing, npz to NIfTI.

DICOM slices pair by patient, reconstruction kernel, slice thickness and position along the slice normal;
NIfTI volumes by sorted file name, then slice by slice (see :func:`load_pairs`). :func:`npz_to_nifti`
writes the pairs of an ``.npz`` (as in ``../shared/real_ldct``) as NIfTI files a user could have given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["BenchError", "CTPair", "NPZ_LAYOUTS", "load_pairs", "npz_to_nifti"]

NPZ_LAYOUTS = ("dicom", "ldct_sim")


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
