"""Inference of a 2-D denoiser on 2-D images or, slice by slice, on volumes.

Needs only torch and MONAI.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

__all__ = ["SlicewiseInferer"]


class SlicewiseInferer(Inferer):
    """Run a 2-D network on ``(B, C, H, W)`` batches directly, and on volumes ``(B, C, H, W, D)`` one axial
    slice (last axis) at a time, ``slice_batch`` slices per forward pass.

    Args:
        slice_batch: slices per forward pass for volumes. Default 8.
    """

    def __init__(self, slice_batch: int = 8):
        super().__init__()
        if isinstance(slice_batch, bool) or not isinstance(slice_batch, int) or slice_batch < 1:
            raise ValueError(f"SlicewiseInferer: `slice_batch` must be a positive integer, got {slice_batch!r}.")
        self.slice_batch = slice_batch

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any) -> torch.Tensor:
        if inputs.ndim == 4:
            return network(inputs, *args, **kwargs)
        if inputs.ndim != 5:
            raise ValueError(
                f"SlicewiseInferer: expected (B, C, H, W) or (B, C, H, W, D) inputs, got shape {tuple(inputs.shape)}."
            )
        b, c, h, w, d = inputs.shape
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        slices = plain.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w)
        out = torch.cat(
            [network(slices[i : i + self.slice_batch], *args, **kwargs) for i in range(0, b * d, self.slice_batch)]
        )
        out = out.reshape(b, d, -1, h, w).permute(0, 2, 3, 4, 1).contiguous()
        if isinstance(inputs, MetaTensor):  # keep the volume's metadata (file name, affine) for saving
            out = MetaTensor(out, meta=inputs.meta, applied_operations=inputs.applied_operations)
            out.is_batch = inputs.is_batch
        return out
