"""Datalists of simulated datasets (inference inputs are found by ``helpers.list_images``).

The training configs read the MONAI datalist that ``python -m ldct_sim simulate`` writes:
``{"training": [{"image": ..., "label": ..., "id": ...}], "validation": [...], "test": [...]}`` with
paths relative to the datalist file; images are float32 NIfTI slices of attenuation in cm⁻¹.
"""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
from monai.data import load_decathlon_datalist

__all__ = ["DATALIST_NAME", "find_datalist", "load_split"]

#: File name the configs look for first.
DATALIST_NAME = "datalist.json"


def _numbers(name: str) -> list[float]:
    return [float(x.replace("p", ".")) for x in re.findall(r"\d+(?:[.p]\d+)?", name)]


def find_datalist(dataset_dir: str, resolution: str | float | None = None, filename: str = DATALIST_NAME) -> str:
    """Locate the datalist JSON of a simulated dataset.

    Args:
        dataset_dir: a datalist file, or the folder that holds it, or the ``--out`` folder of
            ``ldct_sim simulate`` whose per-resolution subfolders each hold one.
        resolution: subfolder to use inside ``dataset_dir``: its exact name (``"625um"``) or the pixel
            size in µm (``625``, ``62.5``), matched against the numbers in the subfolder names.
            ``None`` (default) uses ``dataset_dir`` itself.
        filename: datalist file name looked for first. Default ``"datalist.json"``; otherwise the only
            ``*.json`` file of the folder with a ``"training"`` key is used.

    Returns:
        The datalist's path.

    Raises:
        FileNotFoundError: nothing matches; the message lists what the folder holds.
        ValueError: several candidates match.
    """
    if os.path.isfile(dataset_dir):
        return dataset_dir
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"find_datalist: `dataset_dir` {dataset_dir!r} does not exist; pass --dataset_dir DIR.")
    root = dataset_dir
    if resolution not in (None, ""):
        subdirs = sorted(d for d in os.listdir(dataset_dir) if os.path.isdir(os.path.join(dataset_dir, d)))
        if str(resolution) in subdirs:
            root = os.path.join(dataset_dir, str(resolution))
        else:
            try:
                value = float(str(resolution).lower().replace("um", "").replace("p", "."))
            except ValueError:
                value = None
            hits = [d for d in subdirs if value is not None and any(np.isclose(v, value) for v in _numbers(d))]
            if len(hits) != 1:
                raise (ValueError if hits else FileNotFoundError)(
                    f"find_datalist: `resolution` {resolution!r} matches {len(hits)} subfolders of {dataset_dir!r} "
                    f"(it holds {subdirs}); pass the subfolder's exact name."
                )
            root = os.path.join(dataset_dir, hits[0])
    path = os.path.join(root, filename)
    if os.path.isfile(path):
        return path
    candidates = []
    for p in sorted(glob.glob(os.path.join(glob.escape(root), "*.json"))):
        try:
            with open(p) as f:
                if "training" in json.load(f):
                    candidates.append(p)
        except (OSError, ValueError, TypeError):
            continue
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FileNotFoundError(
            f"find_datalist: no {filename!r} (or other datalist JSON with a 'training' key) in {root!r}; "
            f"it holds {sorted(os.listdir(root))}. Pass --dataset_dir to the folder written by "
            "`python -m ldct_sim simulate`, and --resolution to pick a per-resolution subfolder."
        )
    raise ValueError(f"find_datalist: several datalists in {root!r}: {candidates}; pass one with --dataset_dir FILE.")


def load_split(datalist: str, split: str = "training", fraction: float = 1.0, seed: int = 0) -> list[dict]:
    """Items of one split of a datalist, with absolute paths, optionally a seeded random subset.

    Args:
        datalist: path of the datalist JSON; relative paths inside are relative to its folder.
        split: ``"training"``, ``"validation"``, ``"test"`` or any other key of the file.
        fraction: share of the split to keep, in (0, 1]. Default 1. The study retrained on 5 to 30 %
            of its 2,400 training images. ``round(fraction * n)`` items are kept (at least one).
        seed: seed of the subset draw; the same seed and fraction give the same items.

    Returns:
        A list of dicts (``image``, ``label`` and any other keys), in the file's order.

    Raises:
        ValueError: a missing or empty split, or ``fraction`` outside (0, 1].
    """
    if not (isinstance(fraction, (int, float)) and 0.0 < float(fraction) <= 1.0):
        raise ValueError(f"load_split: `fraction` must be in (0, 1], got {fraction!r}.")
    with open(datalist) as f:
        content = json.load(f)
    if split not in content:
        raise ValueError(f"load_split: split {split!r} is not in {datalist!r}; it has {list(content)}.")
    if not content[split]:
        raise ValueError(f"load_split: split {split!r} of {datalist!r} is empty.")
    items = load_decathlon_datalist(datalist, is_segmentation=True, data_list_key=split)
    if float(fraction) < 1.0:
        n_keep = max(1, int(round(float(fraction) * len(items))))
        keep = np.sort(np.random.default_rng(seed).choice(len(items), size=n_keep, replace=False))
        items = [items[i] for i in keep]
    return items
