"""Inputs of :mod:`ldct_sim.calibrate`: real low-dose / full-dose pairs (:mod:`ldct_sim.pairs`) with the checks the
noise fit adds: square pixels and at least 64 × 64 of them. :mod:`ldct_sim.calibrate` re-exports :func:`load_pairs`.
"""

from __future__ import annotations

import math

from .pairs import CTPair, PairError
from .pairs import load_pairs as read_pairs

__all__ = ["CTPair", "load_pairs"]


def load_pairs(low_dose, full_dose, *, max_pairs: int | None = None) -> list[CTPair]:
    """Read and pair low-dose and full-dose CT slices for calibration (:func:`ldct_sim.pairs.load_pairs`).

    Full-dose DICOM slices without a low-dose partner are left out (a longer full-dose series).

    Args:
        low_dose, full_dose: a DICOM file or series folder, a NIfTI file, or a folder of them (HU).
        max_pairs: use only the first ``max_pairs`` pairs (in order). Default all.

    Returns:
        The pairs, in order.

    Raises:
        PairError: see :func:`ldct_sim.pairs.load_pairs`; also non-square pixels or a slice under 64 × 64 pixels.
    """
    pairs = read_pairs(low_dose, full_dose, extra_full_dose="ignore")
    if max_pairs is not None:
        pairs = pairs[: int(max_pairs)]
    for p in pairs:
        if not math.isclose(p.spacing_mm[0], p.spacing_mm[1], rel_tol=1e-3):
            raise PairError(f"calibrate: {p.full_dose_path!r} has non-square pixels {p.spacing_mm} mm; resample it first.")
        if min(p.full_dose_hu.shape) < 64:
            raise PairError(f"calibrate: {p.full_dose_path!r} is {p.full_dose_hu.shape}; at least 64 x 64 pixels are needed.")
    if not pairs:
        raise PairError("calibrate: no low-dose / full-dose pairs found.")
    return pairs
