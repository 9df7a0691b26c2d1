"""Inference of a 2-D denoiser on 2-D images or, slice by slice, on volumes.

Needs only torch and MONAI.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer

__all__ = ["SlicewiseInferer", "pad_margin"]


def pad_margin(x: torch.Tensor, margin: int) -> torch.Tensor:
    """``x`` (``(..., H, W)``) padded by ``margin`` pixels on each side: reflected, or replicated where a side
    is too short to reflect (``margin >= H`` or ``W``)."""
    if margin == 0:
        return x
    mode = "reflect" if margin < min(x.shape[-2], x.shape[-1]) else "replicate"
    return F.pad(x, [margin] * 4, mode=mode)


class SlicewiseInferer(Inferer):
    """Run a 2-D network on ``(B, C, H, W)`` batches directly, and on volumes ``(B, C, H, W, D)`` one axial
    slice (last axis) at a time, ``slice_batch`` slices per forward pass.

    Edges. CPCE-2D's four valid 3×3 convolutions trim 4 pixels per side and its transposed convolutions add
    them back from partial sums, so the outer pixels of its output see less of the image than the inner
    ones: a uniform water slice (0 HU) comes out with border pixels down to -887 HU. The inferer
    therefore reflects each slice by ``margin`` pixels on every side (replicates, for slices too small to
    reflect), runs the network and crops the output back. 8 pixels (``configs/inference.json``) is the
    network's receptive radius (eight 3×3 layers), so every output pixel sees a full neighbourhood: the
    same slice then stays within 1 HU of 0.

    Args:
        slice_batch: slices per forward pass for volumes. Default 8.
        margin: pixels of reflected border added on each side of a slice before the network and cropped
            after, >= 0. Default 0: the network runs on the slice as it is (as in training); the
            inference config sets 8.
    """

    def __init__(self, slice_batch: int = 8, margin: int = 0):
        super().__init__()
        if isinstance(slice_batch, bool) or not isinstance(slice_batch, int) or slice_batch < 1:
            raise ValueError(f"SlicewiseInferer: `slice_batch` must be a positive integer, got {slice_batch!r}.")
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise ValueError(f"SlicewiseInferer: `margin` must be a non-negative integer (pixels), got {margin!r}.")
        self.slice_batch = slice_batch
        self.margin = margin

    def _run(self, x: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        h, w, m = x.shape[-2], x.shape[-1], self.margin
        return network(pad_margin(x, m), *args, **kwargs)[..., m : m + h, m : m + w]

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        if inputs.ndim not in (4, 5):
            raise ValueError(
                f"SlicewiseInferer: expected (B, C, H, W) or (B, C, H, W, D) inputs, got shape {tuple(inputs.shape)}."
            )
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        if inputs.ndim == 4:
            out = self._run(plain, network, *args, **kwargs).contiguous()
        else:
            b, c, h, w, d = inputs.shape
            slices = plain.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w)
            out = torch.cat(
                [
                    self._run(slices[i : i + self.slice_batch], network, *args, **kwargs)
                    for i in range(0, b * d, self.slice_batch)
                ]
            )
            out = out.reshape(b, d, -1, h, w).permute(0, 2, 3, 4, 1).contiguous()
        if isinstance(inputs, MetaTensor):  # keep the image's metadata (file name, affine) for saving
            out = MetaTensor(out, meta=inputs.meta, applied_operations=inputs.applied_operations)
            out.is_batch = inputs.is_batch
        return out
