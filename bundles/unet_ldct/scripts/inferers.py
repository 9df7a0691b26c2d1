"""Whole-slice inference for the 2-D U-Net on 2-D slices and on volumes, slice by slice."""

from __future__ import annotations

from typing import Any, Callable

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

__all__ = ["SliceInferer2D"]


class SliceInferer2D(Inferer):
    """Run a 2-D network on whole slices.

    A ``(B, C, H, W)`` batch goes through the network as it is. A ``(B, C, H, W, D)`` batch (a volume, as
    ``LoadImaged`` gives for a 3-D NIfTI or a DICOM series) is cut into its ``D`` slices along the
    last spatial axis, which run in chunks of ``sw_batch_size`` and are stacked back. Metadata of a
    ``MetaTensor`` input (affine, file name) is carried over to the output, so ``SaveImaged`` writes the
    input's geometry. Sides that are not multiples of 16 are handled by the network's ``pad_mode``.

    Args:
        sw_batch_size: slices per forward pass for volumes, >= 1. Default 8.

    Raises:
        ValueError: ``sw_batch_size`` < 1, or an input that is neither 4-D nor 5-D.
    """

    def __init__(self, sw_batch_size: int = 8) -> None:
        if not isinstance(sw_batch_size, int) or isinstance(sw_batch_size, bool) or sw_batch_size < 1:
            raise ValueError(f"SliceInferer2D: `sw_batch_size` must be a positive integer, got {sw_batch_size!r}.")
        super().__init__()
        self.sw_batch_size = sw_batch_size

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        if x.dim() == 4:
            out = network(x, *args, **kwargs)
        elif x.dim() == 5:
            b, c, h, w, d = x.shape
            slices = x.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w)
            out = torch.cat(
                [network(slices[i : i + self.sw_batch_size], *args, **kwargs) for i in range(0, b * d, self.sw_batch_size)]
            )
            out = out.reshape(b, d, out.shape[1], h, w).permute(0, 2, 3, 4, 1).contiguous()
        else:
            raise ValueError(
                "SliceInferer2D: expected a (B, C, H, W) slice batch or a (B, C, H, W, D) volume batch, "
                f"got shape {tuple(x.shape)}."
            )
        if isinstance(inputs, MetaTensor):
            out = MetaTensor(out)
            out.copy_meta_from(inputs)
        return out
