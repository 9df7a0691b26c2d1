"""Helpers of the U-Net bundle's configs: training length, weight export.

Helpers both bundles share (switches, units, input discovery, checkpoints) are in ``helpers.py``.
"""

from __future__ import annotations

import os

import torch

__all__ = ["epochs_for", "export_state_dict"]


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
