# Generated from bundles/common/helpers.py by `python bundles/common/sync.py`: edit it there, not here.
"""Small helpers the configs of both bundles call: switches, units, input discovery, checkpoints.

Needs only numpy and the standard library (and ``dicom_checks`` for DICOM series folders).

Units: attenuation ``mu`` in cm⁻¹ with ``mu = (HU / 1000 + 1) · mu_water``; Hounsfield units (HU).
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Sequence

import numpy as np

from .dicom_checks import list_inputs

__all__ = ["MU_WATER_60KEV", "UNITS", "IMAGE_SUFFIXES", "as_bool", "intensity_range", "require_file", "list_images",
           "latest_checkpoint"]

#: Water's linear attenuation in cm⁻¹ at 60 keV (NIST; ``ldct_sim.mu_water()``), the bundles' default
#: ``mu_water``: the one place its value is written in the bundles' code (bundles do not import ``ldct_sim``).
MU_WATER_60KEV = 0.2059
#: Accepted image units: linear attenuation in cm⁻¹, or Hounsfield units.
UNITS = ("mu", "hu")
#: File endings read as images (NIfTI, DICOM, MetaImage, NRRD); folders of DICOM files are series.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".dcm", ".ima", ".mha", ".mhd", ".nrrd")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_CKPT_RE = re.compile(r"_(?:epoch|iteration)=(\d+)\.pt$")


def as_bool(value, name: str = "value") -> bool:
    """A config switch as a bool: ``monai.bundle``'s parser passes ``--amp true`` as the string ``"true"``.

    Accepts bools, 0/1 and the strings true/false, yes/no, on/off, 1/0 (any case).

    Raises:
        ValueError: anything else (``"flase"`` must not silently read as true), naming ``name``.
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"`{name}` must be true or false, got {value!r}.")


def intensity_range(hu_window: Sequence[float] = (-1000.0, 0.0), input_unit: str = "mu",
                    mu_water: float = MU_WATER_60KEV) -> list[float]:
    """``hu_window`` expressed in the input's unit: HU as given, or cm⁻¹ by ``mu = (HU/1000 + 1)·mu_water``.

    The default window, air and water, is the pair the U-Net's intensity scale maps to 0 and 1.

    Args:
        hu_window: ``[low, high]`` in HU, increasing. Default ``(-1000, 0)`` (air, water).
        input_unit: ``"mu"`` (cm⁻¹; default) or ``"hu"``, any case.
        mu_water: water's linear attenuation in cm⁻¹, > 0. Default :data:`MU_WATER_60KEV` (60 keV).

    Raises:
        ValueError: an unknown unit, a window that is not increasing, or a non-positive ``mu_water``.
    """
    lo, hi = (float(v) for v in hu_window)
    if not hi > lo:
        raise ValueError(f"intensity_range: `hu_window` must be increasing [low, high], got {list(hu_window)!r}.")
    unit = input_unit.lower() if isinstance(input_unit, str) else input_unit
    if unit not in UNITS:
        raise ValueError(f"intensity_range: `input_unit` must be one of {UNITS}, got {input_unit!r}.")
    mu_water = float(mu_water)
    if not (math.isfinite(mu_water) and mu_water > 0):
        raise ValueError(f"intensity_range: `mu_water` must be a positive attenuation in cm^-1, got {mu_water!r}.")
    return [lo, hi] if unit == "hu" else [(lo / 1000.0 + 1.0) * mu_water, (hi / 1000.0 + 1.0) * mu_water]


def require_file(path: str | os.PathLike, what: str = "file", hint: str = "") -> str:
    """``path`` as a string if it is an existing file, else a ``FileNotFoundError`` naming ``what`` and ``hint``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: {path!r} does not exist. {hint}".strip())
    return path


def list_images(path: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES, key: str = "image",
                group_dicom_series: bool = False, recursive: bool = True) -> list[dict]:
    """``[{key: path}, ...]`` for the images under ``path``, sorted by path.

    Args:
        path: an image file, or a folder.
        suffixes: file endings read as images.
        key: the item key.
        group_dicom_series: make each folder of DICOM files one item (a series, read as a volume), as
            inference does (``dicom_series.list_inputs``); else every image file is an item.
        recursive: search subfolders at any depth (else, with ``group_dicom_series``, one level down).

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no image.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return [{key: path}]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"list_images: {path!r} does not exist.")
    if group_dicom_series:
        found = list_inputs(path, suffixes, recursive=recursive)
    else:
        pattern = os.path.join(glob.escape(path), "**", "*") if recursive else os.path.join(glob.escape(path), "*")
        ends = tuple(s.lower() for s in suffixes)
        found = sorted(p for p in glob.glob(pattern, recursive=recursive) if os.path.isfile(p) and p.lower().endswith(ends))
    if not found:
        raise FileNotFoundError(f"list_images: no image ({', '.join(suffixes)} files or DICOM series) in {path!r}.")
    return [{key: p} for p in found]


def latest_checkpoint(ckpt_dir: str | os.PathLike | None, prefix: str = "checkpoint") -> str | None:
    """The newest ``<prefix>_epoch=N.pt`` or ``<prefix>_iteration=N.pt`` in ``ckpt_dir`` (largest ``N``), or ``None``."""
    if not ckpt_dir or not os.path.isdir(ckpt_dir):
        return None
    best, best_n = None, -1
    for path in glob.glob(os.path.join(glob.escape(os.fspath(ckpt_dir)), f"{glob.escape(prefix)}_*.pt")):
        m = _CKPT_RE.search(os.path.basename(path))
        if m and int(m.group(1)) > best_n:
            best, best_n = path, int(m.group(1))
    return best
