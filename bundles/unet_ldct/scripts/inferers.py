"""Whole-slice inference for the 2-D U-Net on 2-D slices and on volumes, slice by slice."""

from __future__ import annotations

import contextlib
import copy
import weakref
from typing import Any, Callable

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer

__all__ = ["SliceInferer2D", "INFERENCE_DTYPES", "pad_margin"]

#: ``dtype`` values of :class:`SliceInferer2D`: the precision the convolutions run in.
INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in INFERENCE_DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.replace("torch.", "") in INFERENCE_DTYPES:
        return INFERENCE_DTYPES[dtype.replace("torch.", "")]
    raise ValueError(
        f"SliceInferer2D: unknown inference `dtype` {dtype!r}; expected one of {tuple(INFERENCE_DTYPES)}."
    )


def pad_margin(x: torch.Tensor, margin: int) -> torch.Tensor:
    """``x`` (``(..., H, W)``) padded by ``margin`` pixels on each side: reflected, or replicated where a side
    is too short to reflect (``margin >= H`` or ``W``)."""
    if margin == 0:
        return x
    mode = "reflect" if margin < min(x.shape[-2], x.shape[-1]) else "replicate"
    return F.pad(x, [margin] * 4, mode=mode)


class SliceInferer2D(Inferer):
    """Run a 2-D network on whole slices.

    A ``(B, C, H, W)`` batch goes through the network as it is. A ``(B, C, H, W, D)`` batch (a volume, as
    ``LoadImaged`` gives for a 3-D NIfTI or a DICOM series) is cut into its ``D`` slices along the
    last spatial axis, which run in chunks of ``sw_batch_size`` and are stacked back. Metadata of a
    ``MetaTensor`` input (affine, file name) is carried over to the output, so ``SaveImaged`` writes the
    input's geometry. Sides that are not multiples of 16 are handled by the network's ``pad_mode``.

    Edges. The U-Net's 3×3 convolutions pad with zeros, i.e. with air in its intensity scale, so without
    help a slice's border reads as the edge of an object: a uniform water slice (0 HU) of 96 × 96 pixels
    comes out with corners down to -126 HU. The inferer therefore reflects each slice by ``margin`` pixels
    on every side (replicates, for slices too small to reflect), runs the network and crops the output
    back: with 8 pixels (``configs/inference.json``) the same slice stays within 6 HU of 0 everywhere.

    Speed. When gradients are off (as in ``SupervisedEvaluator``) and the network is an ``nn.Module``
    (not TorchScript), the inferer runs a private copy of it prepared for inference: weights and
    activations in channels-last memory format (oneDNN's fast layout on CPU; tensor cores on GPU) and
    in-place Leaky ReLUs. In float32 this gives the same results to about 1e-7 relative and, on CPU,
    about 1.35x the speed of plain eager inference (docs/README.md, "Benchmarks"). The copy is made once and made again when the
    network's weights change (``load_state_dict``, an optimizer step); the network itself is not touched.
    With ``dtype="bfloat16"`` or ``"float16"`` the network runs under ``torch.autocast`` in that
    precision, with its weights cast once in the copy on CPU; outputs are returned as float32.
    bfloat16 uses the CPU's AMX/AVX-512-BF16 units where present (about 5x float32 eager on a Xeon with
    AMX; without them it may be slower than float32) and differs from float32 by about 0.2 % relative
    (||a - b|| / ||b||) on the U-Net. float16 is meant for GPUs.

    Args:
        sw_batch_size: slices per forward pass for volumes, >= 1. Default 8.
        dtype: precision of the forward pass, ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``
            (a ``torch.dtype`` is accepted too).
        channels_last: run the prepared copy in channels-last memory format. Default ``True``.
        margin: pixels of reflected border added on each side of a slice before the network and cropped
            after, >= 0. Default 0: the network runs on the slice as it is (as in training and in
            the benchmarks); the inference config sets 8.

    Raises:
        ValueError: ``sw_batch_size`` < 1, an unknown ``dtype``, a negative ``margin``, or an input that is
            neither 4-D nor 5-D.
    """

    def __init__(
        self, sw_batch_size: int = 8, dtype: str | torch.dtype = "float32", channels_last: bool = True, margin: int = 0
    ) -> None:
        if not isinstance(sw_batch_size, int) or isinstance(sw_batch_size, bool) or sw_batch_size < 1:
            raise ValueError(f"SliceInferer2D: `sw_batch_size` must be a positive integer, got {sw_batch_size!r}.")
        if not isinstance(channels_last, bool):
            raise ValueError(f"SliceInferer2D: `channels_last` must be true or false, got {channels_last!r}.")
        if not isinstance(margin, int) or isinstance(margin, bool) or margin < 0:
            raise ValueError(f"SliceInferer2D: `margin` must be a non-negative integer (pixels), got {margin!r}.")
        super().__init__()
        self.margin = margin
        self.sw_batch_size = sw_batch_size
        self.dtype = _as_dtype(dtype)
        self.channels_last = channels_last
        self._source: weakref.ref | None = None
        self._key: tuple | None = None
        self._prepared: torch.nn.Module | None = None

    def _weights_key(self, network: torch.nn.Module) -> tuple:
        def version(t: torch.Tensor) -> int:
            try:
                return t._version
            except RuntimeError:  # an inference tensor has no version counter (and cannot be changed in place)
                return -1

        tensors = list(network.parameters()) + list(network.buffers())
        return tuple((t.data_ptr(), version(t), t.dtype, t.device) for t in tensors) + (network.training,)

    def prepare(self, network: Callable[..., torch.Tensor], device: torch.device) -> Callable[..., torch.Tensor]:
        """The network to run: a cached copy prepared for inference, or ``network`` itself when none applies."""
        if (
            not isinstance(network, torch.nn.Module)
            or isinstance(network, torch.jit.ScriptModule)
            or torch.is_grad_enabled()
            or not (self.channels_last or (device.type == "cpu" and self.dtype != torch.float32))
        ):
            return network
        key = self._weights_key(network)
        if self._prepared is None or self._source is None or self._source() is not network or self._key != key:
            net = copy.deepcopy(network)
            for module in net.modules():
                if isinstance(module, (torch.nn.LeakyReLU, torch.nn.ReLU)):
                    module.inplace = True  # the copy never needs the pre-activation for a backward pass
            if self.channels_last:
                net = net.to(memory_format=torch.channels_last)
            if device.type == "cpu" and self.dtype != torch.float32:
                net = net.to(self.dtype)  # autocast would cast every weight again on every call
            self._prepared, self._source, self._key = net, weakref.ref(network), key
        return self._prepared

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        if x.dim() not in (4, 5):
            raise ValueError(
                "SliceInferer2D: expected a (B, C, H, W) slice batch or a (B, C, H, W, D) volume batch, "
                f"got shape {tuple(x.shape)}."
            )
        net = self.prepare(network, x.device)
        reduced = self.dtype != torch.float32
        autocast = torch.autocast(x.device.type, dtype=self.dtype) if reduced else contextlib.nullcontext()

        def forward(batch: torch.Tensor) -> torch.Tensor:
            h, w, m = batch.shape[-2], batch.shape[-1], self.margin
            batch = pad_margin(batch, m)
            if net is not network and self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast:
                y = net(batch, *args, **kwargs)
            if reduced and y.is_floating_point():
                y = y.to(x.dtype if x.is_floating_point() else torch.float32)
            return y[..., m : m + h, m : m + w].contiguous()

        if x.dim() == 4:
            out = forward(x)
        else:
            b, c, h, w, d = x.shape
            slices = x.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w)
            out = torch.cat([forward(slices[i : i + self.sw_batch_size]) for i in range(0, b * d, self.sw_batch_size)])
            out = out.reshape(b, d, out.shape[1], h, w).permute(0, 2, 3, 4, 1).contiguous()
        if isinstance(inputs, MetaTensor):
            out = MetaTensor(out)
            out.copy_meta_from(inputs)
        return out
