"""Inputs of :mod:`ldct_sim.calibrate`: reading low-dose / full-dose CT and pairing the slices.

Split out of ``calibrate.py`` (issue 14); :mod:`ldct_sim.calibrate` re-exports :class:`CTPair` and
:func:`load_pairs`. Pairing is by slice position when both sides are DICOM with positions, else by
sorted name and slice index.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .io import CTReadError, find_ct

__all__ = ["CTPair", "load_pairs"]

# the messages keep the logger of the module they came from
logger = logging.getLogger("ldct_sim.calibrate")


@dataclass(eq=False)
class CTPair:
    """One aligned low-dose / full-dose slice pair in HU.

    Attributes:
        low_dose_hu, full_dose_hu: ``(H, W)`` float32 images in HU.
        spacing_mm: ``(row, column)`` pixel spacing in mm.
        low_dose_path, full_dose_path: the files they came from; ``index``: slice index in the volume.
        kernel: the DICOM ``ConvolutionKernel`` of the full dose when known.
    """

    low_dose_hu: np.ndarray
    full_dose_hu: np.ndarray
    spacing_mm: tuple[float, float]
    low_dose_path: str
    full_dose_path: str
    index: int = 0
    kernel: str | None = None

    def describe(self) -> dict:
        return {"low_dose": self.low_dose_path, "full_dose": self.full_dose_path, "index": self.index,
                "pixel_spacing_mm": list(self.spacing_mm), "shape": list(self.full_dose_hu.shape), "kernel": self.kernel}


def _dicom_position_and_kernel(path: str) -> tuple[float | None, str | None]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - find_ct already read it; any failure here just means "no position"
        return None, None
    kernel = ds.get("ConvolutionKernel")
    kernel = None if kernel is None else (str(kernel[0]) if not isinstance(kernel, str) and len(kernel) else str(kernel))
    pos, ori = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if pos is None or ori is None or len(pos) != 3 or len(ori) != 6:
        return None, kernel
    normal = np.cross(np.asarray(ori[:3], float), np.asarray(ori[3:], float))
    return float(np.dot(normal, np.asarray(pos, float))), kernel


def _slices(path, role: str) -> list[dict]:
    """Every slice at ``path``: source, index, path, DICOM position and kernel. Refuses unreadable files."""
    try:
        inv = find_ct(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"calibrate: the {role} input does not exist: {str(path)!r}.") from err
    if inv.failures:
        f = inv.failures[0]
        more = f" (and {len(inv.failures) - 1} more)" if len(inv.failures) > 1 else ""
        raise ValueError(f"calibrate: cannot use the {role} input {f.path!r}: {f.reason}{more}")
    if not inv.sources:
        raise ValueError(f"calibrate: no DICOM or NIfTI CT found in the {role} input {str(path)!r}.")
    out = []
    for src, i in inv:
        file = src.paths[0] if src.kind == "nifti" or len(src.paths) == 1 else src.paths[i]
        pos, kernel = (None, None)
        if src.kind == "dicom" and not src._multiframe:
            pos, kernel = _dicom_position_and_kernel(file)
        out.append({"source": src, "index": i, "path": file, "kind": src.kind, "position": pos, "kernel": kernel})
    return out


def load_pairs(low_dose, full_dose, *, max_pairs: int | None = None) -> list[CTPair]:
    """Read and pair low-dose and full-dose CT slices.

    Both sides DICOM with ``ImagePositionPatient``: paired by slice position along the normal (to
    0.01 mm). Otherwise (NIfTI, or DICOM without positions) by sorted name: the k-th slice of the sorted
    low-dose files with the k-th of the full-dose files.

    Args:
        low_dose, full_dose: a DICOM file or series folder, a NIfTI file, or a folder of them (HU).
        max_pairs: use only the first ``max_pairs`` pairs (in order). Default all.

    Returns:
        The pairs, in order.

    Raises:
        FileNotFoundError: a missing input.
        ValueError: unreadable or non-CT files, different slice counts, unmatched positions, different
            image shapes or pixel spacings within a pair (the messages name the files).
    """
    lds, fds = _slices(low_dose, "low-dose"), _slices(full_dose, "full-dose")
    by_position = all(s["position"] is not None for s in lds + fds)
    if by_position:
        fd_at = {}
        for s in fds:
            fd_at.setdefault(round(s["position"], 2), s)
        matched = []
        for s in lds:
            other = fd_at.get(round(s["position"], 2))
            if other is None:
                raise ValueError(
                    f"calibrate: no full-dose slice at the position of the low-dose slice {s['path']!r} "
                    f"({s['position']:.2f} mm along the slice normal); give matching series."
                )
            matched.append((s, other))
        if len(lds) != len(fds):
            logger.warning("calibrate: %d low-dose and %d full-dose slices; using the %d at common positions",
                           len(lds), len(fds), len(matched))
    else:
        if len(lds) != len(fds):
            raise ValueError(
                f"calibrate: the low-dose input {str(low_dose)!r} holds {len(lds)} slices and the full-dose input "
                f"{str(full_dose)!r} {len(fds)}; pairs are matched by sorted name and slice index, so the counts must agree."
            )
        matched = list(zip(lds, fds))
    if max_pairs is not None:
        matched = matched[: int(max_pairs)]
    pairs = []
    for a, b in matched:
        try:
            la = a["source"].read_slice(a["index"])
            fb = b["source"].read_slice(b["index"])
        except CTReadError as err:
            raise ValueError(f"calibrate: cannot read {err.path!r}: {err.reason}") from err
        if la.hu.shape != fb.hu.shape:
            raise ValueError(
                f"calibrate: the low-dose slice {a['path']!r} is {la.hu.shape} and its full-dose pair {b['path']!r} "
                f"{fb.hu.shape}; the pairs must be aligned pixel for pixel."
            )
        if not np.allclose(la.spacing_mm, fb.spacing_mm, rtol=1e-3):
            raise ValueError(
                f"calibrate: pixel spacing {la.spacing_mm} mm of {a['path']!r} differs from {fb.spacing_mm} mm of "
                f"{b['path']!r}; the pairs must be aligned pixel for pixel."
            )
        if not math.isclose(fb.spacing_mm[0], fb.spacing_mm[1], rel_tol=1e-3):
            raise ValueError(f"calibrate: {b['path']!r} has non-square pixels {fb.spacing_mm} mm; resample it first.")
        if min(fb.hu.shape) < 64:
            raise ValueError(f"calibrate: {b['path']!r} is {fb.hu.shape}; at least 64 x 64 pixels are needed.")
        pairs.append(CTPair(la.hu, fb.hu, fb.spacing_mm, a["path"], b["path"], b["index"], b["kernel"] or a["kernel"]))
    if not pairs:
        raise ValueError("calibrate: no low-dose / full-dose pairs found.")
    return pairs
