"""Data helpers of the bundle: cross-domain pairing, 2-D slicing, datalists.

Needs only torch, numpy and MONAI (inference imports this module; it never imports ``ldct_sim``).

Units: images are linear attenuation in cm⁻¹ unless ``input_unit="hu"``; the network sees them
scaled linearly so that the bundle's ``hu_window`` (default [-1024, 3072] HU) maps to [0, 1]:
``mu = (HU / 1000 + 1) · mu_water`` (``mu_water``: ``helpers.MU_WATER_60KEV`` cm⁻¹ at 60 keV).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import CacheDataset, Dataset
from monai.transforms import MapTransform, Randomizable

from .helpers import IMAGE_SUFFIXES, as_bool, intensity_range, list_images, require_file  # noqa: F401 (old names)
from .input_checks import CheckIntensityUnitd  # noqa: F401 (scripts.data.CheckIntensityUnitd, the old name)

__all__ = ["CrossDomainDataset", "SelectSliced", "load_datalist"]


def load_datalist(
    path: str | os.PathLike, key: str, base_dir: str | os.PathLike | None = None, required: bool = True
) -> list[dict]:
    """The items under ``key`` of a datalist JSON, with relative paths joined to ``base_dir``.

    Args:
        path: the datalist file (``{"source": [...], "target": [...], "validation": [...], "test": [...]}``).
        key: which list.
        base_dir: folder that relative paths start from; default the datalist's folder.
        required: raise when ``key`` is absent; otherwise return ``[]``.

    Raises:
        FileNotFoundError: no datalist at ``path``.
        ValueError: ``key`` is required and absent.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"load_datalist: no datalist at {path!r}; make one with `python -m scripts.domains --output_dir <dir>` "
            "or pass `--datalist /path/to/datalist.json`."
        )
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    if key not in content:
        if required:
            raise ValueError(f"load_datalist: {path!r} has no {key!r} list; it has {sorted(content)}.")
        return []
    base = os.path.dirname(os.path.abspath(path)) if base_dir is None else os.fspath(base_dir)
    items = []
    for item in content[key]:
        if not isinstance(item, dict):
            raise ValueError(f"load_datalist: every item of {key!r} in {path!r} must be a dict, got {item!r}.")
        items.append(
            {k: os.path.join(base, v) if isinstance(v, str) and not os.path.isabs(v) else v for k, v in item.items()}
        )
    return items


class SelectSliced(Randomizable, MapTransform):
    """Make channel-first images 2-D: ``(C, H, W)`` passes, ``(C, H, W, 1)`` is squeezed and a volume
    ``(C, H, W, D)`` gives one axial slice (the same index for every key).

    Args:
        keys: keys of the images.
        index: ``"random"`` (default; a fresh slice per call, for training), ``"middle"`` or an integer.
        allow_missing_keys: skip missing keys.
    """

    def __init__(self, keys: KeysCollection, index: str | int = "random", allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not (index in ("random", "middle") or (isinstance(index, int) and not isinstance(index, bool))):
            raise ValueError(f"SelectSliced: `index` must be 'random', 'middle' or an integer, got {index!r}.")
        self.index = index
        self._draw = 0.0

    def randomize(self, data=None) -> None:
        self._draw = self.R.random_sample()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            img = d[key]
            if img.ndim == 3:
                continue
            if img.ndim != 4:
                raise ValueError(
                    f"SelectSliced: expected a channel-first (C, H, W[, D]) image under {key!r}, "
                    f"got shape {tuple(img.shape)}."
                )
            depth = img.shape[-1]
            if self.index == "random":
                k = min(int(self._draw * depth), depth - 1)
            elif self.index == "middle":
                k = depth // 2
            else:
                k = self.index
                if not -depth <= k < depth:
                    raise ValueError(f"SelectSliced: slice {k} is out of range for depth {depth} under {key!r}.")
            d[key] = img[..., k]
        return d


class CrossDomainDataset(torch.utils.data.Dataset):
    """Source pairs, each served with a randomly drawn target-domain image.

    Item ``i`` is the transformed source item ``data[i]`` (``image``, ``label``) plus ``target_key``: the
    ``image`` of a target item drawn uniformly at random (torch's generator: seeded by
    ``monai.utils.set_determinism`` and per DataLoader worker). Without target items (the baseline), the
    items are the source items alone.

    Args:
        data: source items ``[{"image": ..., "label": ...}, ...]``.
        target_data: target items ``[{"image": ...}, ...]`` (labels are not needed); may be empty.
        transform: transform of source items.
        target_transform: transform of target items (keys ``image`` only); default ``transform``.
        target_key: key of the target image in the output. Default ``"target"``.
        cache_rate: fraction of items whose deterministic transforms are cached (``CacheDataset``).
            Default 0 (no cache).
        num_workers: workers that fill the cache.

    Raises:
        ValueError: empty ``data``.
    """

    def __init__(
        self,
        data: Sequence[dict],
        target_data: Sequence[dict] | None,
        transform=None,
        target_transform=None,
        target_key: str = "target",
        cache_rate: float = 0.0,
        num_workers: int | None = 0,
    ):
        if not data:
            raise ValueError("CrossDomainDataset: `data` (the source pairs) must not be empty.")
        self.data = list(data)
        self.target_data = list(target_data or [])
        self.target_key = target_key
        target_transform = transform if target_transform is None else target_transform

        def make(items, tf):
            if cache_rate > 0:
                return CacheDataset(items, tf, cache_rate=cache_rate, num_workers=num_workers, progress=False)
            return Dataset(items, tf)

        self.source = make(self.data, transform)
        self.target = make(self.target_data, target_transform) if self.target_data else None

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.source[index])
        if self.target is not None:
            j = int(torch.randint(len(self.target), (1,)).item())
            item[self.target_key] = self.target[j]["image"]
        return item
