# Generated from bundles/common/input_checks.py by `python bundles/common/sync.py`: edit it there, not here.
"""Checks of inference inputs and weights, run before anything is written. Needs numpy, torch and MONAI only.

* :func:`check_images` reads every non-DICOM input of a datalist up front and refuses, naming the file,
  an image that is not a 2-D slice or a 3-D volume of slices of one channel, one with NaN or infinite
  pixels, or one whose values do not look like the declared unit. DICOM inputs are left to
  ``dicom_series.check_inputs`` (headers only): they are read in HU and converted, so their unit is known.
* :class:`CheckIntensityUnitd` is the same value check as a transform, for the preprocessing of every
  door that runs the config's transforms (MONAI Label, MONAI Deploy) and for training data.
* :func:`load_weights` / :func:`check_weights` read a weights file with ``torch.load(weights_only=True)``
  and refuse, naming the file and what it should hold, one that is not a state dict of tensors or does
  not fit the network.

Units: attenuation ``mu`` in cm⁻¹ (air 0, water ``helpers.MU_WATER_60KEV`` at 60 keV, dense bone below 1), Hounsfield units
(HU: air -1000, water 0). The unit guess uses the 1st and 99th percentiles of the pixel values, so a few
metal or padding pixels do not decide it:

* attenuation: percentiles within [-2, 10] cm⁻¹;
* HU: percentiles within [-10,000, 100,000] HU and not within the attenuation range;
* anything else, or any value beyond ±1e6 in either unit, is implausible for both.

An image entirely within [-2, 10] (a uniform water phantom in HU, say) is ambiguous and read as
attenuation; ``check_unit=False`` (``--check_unit false``) skips the unit check for such inputs.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform

from .dicom_series import DICOM_FILES_KEY, SOURCE_UNIT_KEY, is_dicom_input
from .helpers import as_bool

__all__ = ["MU_RANGE", "HU_RANGE", "ABS_LIMIT", "guess_unit", "check_shape", "check_values", "check_images",
           "CheckIntensityUnitd", "load_weights", "check_weights"]

#: Range (cm⁻¹) of the 1st and 99th percentiles of an attenuation image.
MU_RANGE = (-2.0, 10.0)
#: Range (HU) of the 1st and 99th percentiles of an HU image (scanner padding -3024, metal up to ~30,000).
HU_RANGE = (-10_000.0, 100_000.0)
#: No pixel of a CT image exceeds this magnitude in either unit.
ABS_LIMIT = 1e6
_UNITS = ("mu", "hu")
_UNIT_NAMES = {"mu": "attenuation in cm^-1", "hu": "Hounsfield units"}
#: At most this many values enter the percentiles (an even subsample of larger images).
_SAMPLE = 1_000_000


def _unit(unit: str) -> str:
    u = str(unit).strip().lower()
    if u not in _UNITS:
        raise ValueError(f"`unit` must be one of {_UNITS}, got {unit!r}.")
    return u


def _name(img, default) -> str:
    meta = getattr(img, "meta", None) or {}
    name = meta.get("filename_or_obj", default)
    return str(name[0] if isinstance(name, (list, tuple)) and name else name)


def _flat(img) -> np.ndarray:
    """The values of an array, tensor or MetaTensor as a flat NumPy array (a view where possible).

    NumPy rather than torch: torch lacks min/max for some stored dtypes (uint16, uint32)."""
    if isinstance(img, MetaTensor):
        img = img.as_tensor()
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu()
        return (img.float() if img.dtype == torch.bfloat16 else img).numpy().reshape(-1)  # bfloat16: no NumPy twin
    return np.asarray(img).reshape(-1)


def guess_unit(img) -> tuple[str | None, float, float, float]:
    """Which unit an image's values look like.

    Args:
        img: an array or tensor of finite values (any shape).

    Returns:
        ``(unit, p1, p99, max_abs)``: ``"mu"``, ``"hu"`` or ``None`` (implausible for both; see the module
        docstring for the ranges), the 1st and 99th percentiles and the largest magnitude.
    """
    x = _flat(img)
    if x.size == 0:
        return "mu", 0.0, 0.0, 0.0
    max_abs = max(float(x.max()), -float(x.min()))  # no full-size temporary for a large volume
    p1, p99 = (float(v) for v in np.percentile(x[:: x.size // _SAMPLE + 1].astype(np.float64), [1.0, 99.0]))
    if max_abs > ABS_LIMIT:
        return None, p1, p99, max_abs
    if MU_RANGE[0] <= p1 and p99 <= MU_RANGE[1]:
        return "mu", p1, p99, max_abs
    if HU_RANGE[0] <= p1 and p99 <= HU_RANGE[1]:
        return "hu", p1, p99, max_abs
    return None, p1, p99, max_abs


def check_shape(shape: Sequence[int], name: str) -> None:
    """Refuse an image that is not one channel of 2-D slices.

    Accepted (as read, before a channel axis is added): ``(H, W)``, a volume of slices ``(H, W, D)``, and
    either with a trailing axis of size 1 (``(H, W, D, 1)``: one channel or one time point, as NIfTI
    stores it). Anything else (several channels or time points, 1-D or 5-D data) raises ``ValueError``
    naming ``name`` and the shape.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) in (2, 3) or (len(shape) == 4 and shape[-1] == 1):
        return
    raise ValueError(
        f"{name}: an image of shape {shape} ({len(shape)}-D), but the bundle denoises one channel of 2-D "
        "slices: it takes a 2-D image (H, W) or a 3-D volume of slices (H, W, slices), optionally with a "
        "trailing axis of size 1. Save each channel or time point as a file of its own."
    )


def check_values(img, unit: str = "mu", check_unit: bool = True, name: str = "image", unit_flag: str = "input_unit") -> None:
    """Refuse NaN or infinite pixels, and (with ``check_unit``) values that do not look like ``unit``.

    Args:
        img: the image (array or tensor).
        unit: the declared unit, ``"mu"`` (cm⁻¹) or ``"hu"``.
        check_unit: also check the unit (see :func:`guess_unit`). Default true.
        name: the file name for messages.
        unit_flag: the override that sets the unit, for messages. Default ``"input_unit"``.

    Raises:
        ValueError: naming ``name``, the problem and the override that fixes it.
    """
    unit = _unit(unit)
    x = _flat(img)
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise ValueError(
            f"{name}: {n_nan} NaN and {n_inf} infinite pixel values (of {x.size}); the bundle needs "
            "finite intensities. Replace them (with air, say: 0 cm^-1 or -1000 HU) and run again."
        )
    if not check_unit:
        return
    guess, p1, p99, max_abs = guess_unit(x)
    if guess == unit:
        return
    other = "hu" if unit == "mu" else "mu"
    force = "or --check_unit false to run with the values as they are"
    if guess is None:
        raise ValueError(
            f"{name}: values from {p1:.4g} to {p99:.4g} (1st to 99th percentile; largest magnitude {max_abs:.4g}) "
            f"are implausible for either unit: attenuation in cm^-1 lies within {list(MU_RANGE)}, HU within "
            f"{[int(v) for v in HU_RANGE]}, and no CT value exceeds {ABS_LIMIT:.0e}. Check the file "
            f"({force})."
        )
    raise ValueError(
        f"{name}: values from {p1:.4g} to {p99:.4g} (1st to 99th percentile) look like {_UNIT_NAMES[guess]}, "
        f"but the input unit is {unit!r} ({_UNIT_NAMES[unit]}); pass --{unit_flag} {other} ({force})."
    )


def check_images(
    items: Sequence[dict], unit: str = "mu", check_unit: bool | str = True, key: str = "image"
) -> list[dict]:
    """Check every non-DICOM input of a datalist before inference writes anything.

    Each image is read whole with MONAI's ``LoadImage`` (in its stored dtype) and passed through
    :func:`check_shape` and :func:`check_values`. DICOM inputs (files, series folders, lists of files) are
    skipped here: ``dicom_series.check_inputs`` validates their headers, and they are read in HU and
    converted to ``unit``, so their unit is known.

    Args:
        items: datalist items ``[{key: path}, ...]``.
        unit: the config's ``input_unit``, ``"mu"`` or ``"hu"``.
        check_unit: the config's ``check_unit`` (bool or "true"/"false"); false skips the unit check only.
        key: the image key.

    Returns:
        ``items`` as a list, unchanged.

    Raises:
        ValueError: the first bad input, named, with the problem and the fix.
    """
    unit = _unit(unit)
    check_unit = as_bool(check_unit, "check_unit")
    loader = LoadImage(image_only=True, dtype=None)
    for item in items:
        path = item[key]
        if is_dicom_input(path):
            continue
        img = loader(path)
        check_shape(img.shape, str(path))
        check_values(img, unit, check_unit, str(path))
    return list(items)


class CheckIntensityUnitd(MapTransform):
    """Refuse images with NaN or infinite pixels, or whose values do not look like the declared unit.

    See :func:`check_values` and :func:`guess_unit` (attenuation: 1st and 99th percentiles within
    [-2, 10] cm⁻¹; HU: within [-10,000, 100,000] HU and outside the attenuation range). Images read from
    DICOM by ``dicom_series.LoadImageSeriesd`` (meta ``source_unit`` ``"hu"`` with ``dicom_files``) were
    converted from HU to ``unit`` on reading, so only their values' finiteness is checked. Data pass
    through unchanged.

    Args:
        keys: keys of the images to check.
        unit: the declared unit, ``"mu"`` or ``"hu"``.
        check_unit: false (``--check_unit false``) skips the unit check (finiteness is always checked).
        unit_flag: the override named in messages. Default ``"input_unit"``.
        allow_missing_keys: don't raise for missing keys.

    Raises:
        ValueError: an unknown unit; at call time, a bad image, named.
    """

    def __init__(
        self,
        keys: KeysCollection,
        unit: str = "mu",
        check_unit: bool | str = True,
        unit_flag: str = "input_unit",
        allow_missing_keys: bool = False,
    ) -> None:
        if not isinstance(unit, str) or unit.strip().lower() not in _UNITS:
            raise ValueError(f"CheckIntensityUnitd: `unit` must be one of {_UNITS}, got {unit!r}.")
        super().__init__(keys, allow_missing_keys)
        self.unit = unit.strip().lower()
        self.check_unit = as_bool(check_unit, "check_unit")
        self.unit_flag = unit_flag

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            meta = getattr(img, "meta", None) or {}
            from_dicom = str(meta.get(SOURCE_UNIT_KEY, "")).lower() == "hu" and bool(meta.get(DICOM_FILES_KEY))
            check_values(img, self.unit, self.check_unit and not from_dicom, _name(img, key), self.unit_flag)
        return d


def load_weights(
    path: str | os.PathLike,
    network: torch.nn.Module | None = None,
    what: str = "network weights",
    hint: str = "",
    key: str = "model",
    map_location: str | torch.device | None = "cpu",
) -> dict:
    """Read a weights file safely and check that it fits ``network``; returns the state dict.

    The file must hold a state dict (parameter name -> tensor), as ``torch.save(net.state_dict(), path)``
    writes, or a training checkpoint holding one under ``key`` (as MONAI's ``CheckpointLoader`` accepts).
    It is read with ``torch.load(weights_only=True)``: tensors only, no pickled code.

    Args:
        path: the file.
        network: the network it must fit (names and shapes of ``network.state_dict()``); ``None`` skips that.
        what: what the file is, for messages ("U-Net weights").
        hint: how to get a good file, appended to messages.
        key: entry of a training checkpoint that holds the state dict. Default ``"model"``.
        map_location: ``torch.load`` map location. Default ``"cpu"``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: naming the file, what is wrong and what it should hold.
    """
    path = os.fspath(path)
    net_name = type(network).__name__ if network is not None else "the bundle's network"
    should = (
        f"It should hold a state dict of {net_name} (parameter names -> tensors, saved on CPU with "
        "torch.save(network.state_dict(), path)) or a training checkpoint holding one under "
        f"{key!r}." + (f" {hint}" if hint else "")
    )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path!r}." + (f" {hint}" if hint else ""))
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means "not a weights file"; say so plainly
        # the first sentence of torch's reason ("failed finding central directory"), but never its advice to
        # turn weights_only off, i.e. to run whatever code the file holds
        first = str(e).strip().split(". ")[0].splitlines()[0] if str(e).strip() else ""
        detail = "" if (not first or "weights" in first.lower()) else f": {first}"
        raise ValueError(
            f"{path}: cannot read {what}: not a PyTorch file of tensors ({type(e).__name__}{detail}). {should}"
        ) from None
    state = obj.get(key) if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping) else obj
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path}: {what} hold a {type(obj).__name__}, not a state dict. {should}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: {what}: entries {bad[:5]} are not tensors: not a state dict. {should}")
    if network is not None:
        expected = network.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        wrong = [
            f"{k} {tuple(state[k].shape)} (network {tuple(v.shape)})"
            for k, v in expected.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)
        ]
        if missing or unexpected or wrong:
            parts = [
                f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                f"{len(wrong)} of the wrong shape (e.g. {wrong[:2]})" if wrong else "",
            ]
            raise ValueError(
                f"{path}: {what} do not fit {net_name}: of its {len(expected)} entries, "
                f"{', '.join(p for p in parts if p)}. {should}"
            )
    return dict(state)


def check_weights(
    path: str | os.PathLike,
    network: torch.nn.Module | None = None,
    what: str = "network weights",
    hint: str = "",
    key: str = "model",
) -> str:
    """``path`` after :func:`load_weights` has read and checked it (for a ``CheckpointLoader``'s ``load_path``).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_weights`.
    """
    load_weights(path, network, what, hint, key, map_location="cpu")
    return os.fspath(path)
