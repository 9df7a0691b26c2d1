"""Small helpers the bundle's configs call: intensity units, training length, checkpoints.

Units: attenuation ``mu`` in cm⁻¹, Hounsfield units (HU) dimensionless. The network sees
``x = mu / mu_water`` (air 0, water 1), i.e. ``x = HU / 1000 + 1``; see :func:`unit_range`.
"""

from __future__ import annotations

import glob
import math
import os
import re

import torch

__all__ = [
    "MU_WATER_60KEV",
    "UNITS",
    "unit_range",
    "epochs_for",
    "latest_checkpoint",
    "require_file",
    "to_bool",
    "export_state_dict",
]

#: Linear attenuation of water at 60 keV in cm⁻¹ (xraylib / NIST XCOM, 0.2059 cm²/g × 1 g/cm³).
MU_WATER_60KEV = 0.2059
#: Accepted image units: linear attenuation in cm⁻¹, or Hounsfield units.
UNITS = ("mu", "hu")

_ITERATION_RE = re.compile(r"iteration=(\d+)\.pt$")


def unit_range(unit: str = "mu", mu_water: float = MU_WATER_60KEV) -> tuple[float, float]:
    """Values of air and of water in ``unit``: the pair the network's intensity scale maps to 0 and 1.

    The network input is ``x = (v - air) / (water - air)`` for an image ``v`` in ``unit``, i.e.
    ``x = mu / mu_water = HU / 1000 + 1`` with the study's relation ``mu = (HU / 1000 + 1) * mu_water``.
    The configs feed this pair to one ``ScaleIntensityRanged`` on the way in and to its inverse on the
    way out, so the normalisation is declared once.

    Args:
        unit: ``"mu"`` (linear attenuation in cm⁻¹, as ``ldct_sim`` writes) or ``"hu"`` (Hounsfield
            units). Case-insensitive. Default ``"mu"``.
        mu_water: water's linear attenuation in cm⁻¹ at the simulated energy, > 0. Default 0.2059
            (60 keV).

    Returns:
        ``(air, water)``: ``(0.0, mu_water)`` for ``"mu"``, ``(-1000.0, 0.0)`` for ``"hu"``.

    Raises:
        ValueError: an unknown unit or a non-positive ``mu_water``.

    Example:
        >>> unit_range("hu")
        (-1000.0, 0.0)
    """
    if not isinstance(unit, str) or unit.lower() not in UNITS:
        raise ValueError(f"unit_range: `unit` must be one of {UNITS}, got {unit!r}.")
    mu_water = float(mu_water)
    if not math.isfinite(mu_water) or mu_water <= 0:
        raise ValueError(f"unit_range: `mu_water` must be a positive attenuation in cm^-1, got {mu_water!r}.")
    return (0.0, mu_water) if unit.lower() == "mu" else (-1000.0, 0.0)


def epochs_for(num_iterations: int, epoch_length: int) -> int:
    """Number of Ignite epochs of ``epoch_length`` iterations that make ``num_iterations``.

    Training is counted in iterations (the study trained 50,000 steps); an "epoch" of the trainer is
    one validation interval. The two must divide evenly so that the run stops exactly at
    ``num_iterations``.

    Raises:
        ValueError: non-positive values, or ``num_iterations`` not a multiple of ``epoch_length``.
    """
    for name, value in (("num_iterations", num_iterations), ("epoch_length", epoch_length)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"epochs_for: `{name}` must be a positive integer, got {value!r}.")
    if num_iterations % epoch_length:
        raise ValueError(
            f"epochs_for: `num_iterations` ({num_iterations}) must be a multiple of the validation interval "
            f"({epoch_length}); change --num_iterations or --val_interval."
        )
    return num_iterations // epoch_length


def latest_checkpoint(ckpt_dir: str, prefix: str = "checkpoint") -> str | None:
    """Path of the newest ``{prefix}_iteration=N.pt`` in ``ckpt_dir`` (largest ``N``), or ``None``."""
    best, best_it = None, -1
    for path in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{glob.escape(prefix)}_iteration=*.pt")):
        m = _ITERATION_RE.search(os.path.basename(path))
        if m and int(m.group(1)) > best_it:
            best, best_it = path, int(m.group(1))
    return best


def require_file(path: str, what: str = "checkpoint", hint: str = "") -> str:
    """Return ``path`` if it is a file, else raise ``FileNotFoundError`` naming ``what`` and a hint."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r}." + (f" {hint}" if hint else ""))
    return path


def to_bool(value, name: str = "value") -> bool:
    """A command-line flag as a bool: ``monai.bundle``'s parser (fire) passes ``--amp true`` as the string ``"true"``.

    Accepts bools, 0/1 and the strings true/false, yes/no, on/off, 1/0 (any case).

    Raises:
        ValueError: anything else, naming the flag.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ValueError(f"`{name}` must be true or false, got {value!r}.")


def export_state_dict(src: str, dst: str, key: str = "model", dtype: str | None = "float16") -> str:
    """Write the network weights of a training checkpoint as a plain state dict, for ``models/model.pt``.

    Args:
        src: checkpoint written by the bundle (a plain state dict, or a dict holding it under ``key``).
        dst: output path.
        key: the entry holding the network's state dict. Default ``"model"``.
        dtype: ``"float16"`` (default: the 8.6 M-parameter U-Net fits the model zoo's 25 MB limit at about
            17 MB; ``load_state_dict`` copies it into the float32 network) or ``None`` to keep float32.

    Returns:
        ``dst``.
    """
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    sd = ckpt[key] if key in ckpt and isinstance(ckpt[key], dict) else ckpt
    if dtype is not None:
        dt = getattr(torch, dtype)
        sd = {k: v.to(dt) if torch.is_floating_point(v) else v for k, v in sd.items()}
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in sd.items()}, dst)
    return dst
