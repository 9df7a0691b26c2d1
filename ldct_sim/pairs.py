"""Real low-dose / full-dose CT slice pairs in HU: reading and pairing, for ``calibrate`` and the real-data benchmark.

DICOM slices pair by patient, reconstruction kernel, slice thickness and position along the slice normal
(to 0.01 mm); NIfTI volumes by sorted file name, then slice by slice (:func:`load_pairs`). Every refusal is a
:class:`PairError` naming the file and the fix. Units: HU, mm.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from .io import CTReadError, find_ct

__all__ = ["PairError", "CTPair", "load_pairs"]

logger = logging.getLogger(__name__)


class PairError(ValueError):
    """Bad pair input: missing or unreadable files, unpaired or mismatched slices, images that are not HU."""


@dataclass
class _Slice:
    source: object  # ldct_sim.io.CTSource
    index: int
    key: tuple
    name: str
    kernel: str | None
    kernel_from: str
    path: str


@dataclass(eq=False)
class CTPair:
    """One low-dose / full-dose slice pair in HU.

    Attributes:
        low_dose_hu, full_dose_hu: ``(H, W)`` float32 HU images.
        spacing_mm: ``(row, column)`` pixel spacing in mm of the low-dose image.
        low_dose_path, full_dose_path: the files they were read from.
        name: a readable id (file name, slice).
        kernel: reconstruction kernel, or ``"unknown"``.
        kernel_from: where the kernel came from (``"DICOM header"``, ``"sidecar JSON"``, ``"--kernel"``, ``"none"``).
        source, index: the low-dose volume (:class:`~ldct_sim.io.CTSource`) and slice index, to find the
            slice again (in a denoiser's output, say).
        key: the pairing key of the low-dose slice (DICOM: patient, kernel, thickness, position).
    """

    low_dose_hu: np.ndarray
    full_dose_hu: np.ndarray
    spacing_mm: tuple[float, float]
    low_dose_path: str
    full_dose_path: str
    name: str = ""
    kernel: str = "unknown"
    kernel_from: str = "none"
    source: object = field(repr=False, default=None)
    index: int = 0
    key: tuple = ()

    def describe(self) -> dict:
        """The pair's files, slice, spacing, shape and kernel (for records)."""
        return {"low_dose": self.low_dose_path, "full_dose": self.full_dose_path, "index": self.index,
                "pixel_spacing_mm": list(self.spacing_mm), "shape": list(self.full_dose_hu.shape), "kernel": self.kernel}


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
        raise PairError(f"{sidecar}: cannot read the JSON sidecar ({err}).") from err
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
    try:
        inv = find_ct(path)
    except (FileNotFoundError, ValueError) as err:
        raise PairError(f"{role}: {err}") from err
    if inv.failures:
        f = inv.failures[0]
        more = f" (and {len(inv.failures) - 1} more)" if len(inv.failures) > 1 else ""
        raise PairError(f"{role}: {f.path}: {f.reason}{more}")
    if not inv.sources:
        raise PairError(f"{role}: no CT image (DICOM or NIfTI) found at {str(path)!r}.")
    kinds = {s.kind for s in inv.sources}
    if len(kinds) > 1:
        raise PairError(f"{role}: {str(path)!r} mixes DICOM and NIfTI; give one kind, so that slices pair unambiguously.")
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
                    raise PairError(f"{role}: {p}: cannot read the DICOM header ({type(err).__name__}: {err}).") from err
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
        raise PairError(
            f"{path}: slice {index} spans only {lo:.4g} to {hi:.4g}; it does not look like CT in HU "
            "(attenuation in cm⁻¹ or images scaled to [0, 1] must be converted to HU first)."
        )


def _check_counts_and_keys(kind: str, ld: list[_Slice], fd: list[_Slice]) -> None:
    """NIfTI: the same number of files and of slices per file pair; either kind: no two slices with one key."""
    if kind == "nifti":
        n_ld, n_fd = len({s.path for s in ld}), len({s.path for s in fd})
        if n_ld != n_fd:
            raise PairError(
                f"--low-dose holds {n_ld} NIfTI file(s) and --full-dose {n_fd}; NIfTI pairs by sorted name, "
                "so both sides need the same number of files."
            )
        for a, b in zip(sorted({s.path for s in ld}), sorted({s.path for s in fd})):
            na, nb = sum(s.path == a for s in ld), sum(s.path == b for s in fd)
            if na != nb:
                raise PairError(f"{a} holds {na} slice(s) but its full-dose partner {b} holds {nb}.")
    for role, items in (("--low-dose", ld), ("--full-dose", fd)):
        seen: dict[tuple, str] = {}
        for s in items:
            if s.key in seen:
                raise PairError(
                    f"{role}: {seen[s.key]} and {s.path} have the same patient, kernel, slice thickness and position "
                    f"{s.key!r}; put the series in separate runs."
                )
            seen[s.key] = s.path


def load_pairs(low_dose, full_dose, kernel: str | None = None, extra_full_dose: str = "error") -> list[CTPair]:
    """Read and pair low-dose and full-dose CT slices (HU).

    DICOM slices pair by (PatientID, ConvolutionKernel, SliceThickness, position along the slice normal
    to 0.01 mm); NIfTI volumes by sorted file name, then slice index. Both sides must be of one kind.

    Args:
        low_dose, full_dose: a DICOM file or series folder, a NIfTI file, or a folder of them.
        kernel: kernel name for slices whose files do not name one (DICOM header, NIfTI sidecar JSON).
        extra_full_dose: DICOM full-dose slices without a low-dose partner: ``"error"`` (default) refuses them,
            ``"ignore"`` leaves them out with a warning (a longer full-dose series).

    Returns:
        The pairs, in the low-dose side's order.

    Raises:
        PairError: missing or unreadable files, DICOM on one side and NIfTI on the other, slices without
            a partner (or two with the same key), different counts or shapes, images that are not HU.
    """
    if extra_full_dose not in ("error", "ignore"):
        raise ValueError(f"load_pairs: `extra_full_dose` must be 'error' or 'ignore', got {extra_full_dose!r}.")
    ld_kind, ld = _slices(low_dose, "--low-dose")
    fd_kind, fd = _slices(full_dose, "--full-dose")
    if ld_kind != fd_kind:
        raise PairError(f"--low-dose holds {ld_kind.upper()} and --full-dose {fd_kind.upper()}; give the same kind on both sides.")
    _check_counts_and_keys(ld_kind, ld, fd)
    fd_by_key = {s.key: s for s in fd}
    unmatched = [s for s in ld if s.key not in fd_by_key]
    extra = sorted(set(fd_by_key) - {s.key for s in ld}, key=repr)
    if extra and extra_full_dose == "ignore":
        logger.warning("%d full-dose slice(s) without a low-dose partner left out (first: %s)", len(extra),
                       fd_by_key[extra[0]].path)
        extra = []
    if unmatched or extra:
        parts = []
        if unmatched:
            parts.append(f"{len(unmatched)} low-dose slice(s) have no full-dose partner (first: {unmatched[0].path}, key {unmatched[0].key!r})")
        if extra:
            parts.append(f"{len(extra)} full-dose slice(s) have no low-dose partner (first: {fd_by_key[extra[0]].path}, key {extra[0]!r})")
        raise PairError("; ".join(parts) + ". DICOM pairs by patient, kernel, slice thickness and slice position.")
    pairs = []
    for s in ld:
        t = fd_by_key[s.key]
        try:
            a, b = s.source.read_slice(s.index), t.source.read_slice(t.index)
        except CTReadError as err:
            raise PairError(str(err)) from err
        if a.hu.shape != b.hu.shape:
            raise PairError(f"{s.path} (slice {s.index}) is {a.hu.shape} but its full-dose partner {t.path} is {b.hu.shape}; "
                            "the pairs must be aligned pixel for pixel.")
        if not np.allclose(a.spacing_mm, b.spacing_mm, rtol=1e-3):
            raise PairError(f"{s.path}: pixel spacing {tuple(a.spacing_mm)} mm differs from {tuple(b.spacing_mm)} mm of its "
                            f"full-dose partner {t.path}; the pairs must be aligned pixel for pixel.")
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
        pairs.append(CTPair(a.hu, b.hu, tuple(a.spacing_mm), s.path, t.path, s.name, name, origin, s.source, s.index, s.key))
    return pairs
