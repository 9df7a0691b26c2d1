"""Export trained weights for shipping: a training run's ``model.pt`` → the bundle's ``models/model.pt``.

Training (``configs/train.json``) writes into a run folder (default ``runs/train``) and never touches
``models/``; shipping weights is this separate, explicit step::

    python -m scripts.export runs/train/model.pt models/model.pt

Needs only torch and this bundle's ``scripts.networks``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import zipfile

import torch

from .networks import CPCE2D

__all__ = ["export_weights", "main"]


def export_weights(src: str, dst: str, key: str = "model", channels: int = 32) -> str:
    """Write the CPCE-2D weights of a training output as a CPU float32 state dict (what inference loads).

    Args:
        src: ``model.pt`` or ``model_final.pt`` of a run (a state dict), or a resumable
            ``checkpoint_epoch=N.pt`` (a dict holding the state dict under ``key``).
        dst: output file, e.g. ``models/model.pt``; written under a temporary name, then renamed, so an
            existing file is replaced only by a complete one.
        key: entry holding the network's state dict in a full checkpoint. Default ``"model"``.
        channels: ``CPCE2D`` filters per layer the weights were trained with. Default 32.

    Returns:
        ``dst``.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: ``src`` is not a torch checkpoint of CPCE-2D weights (named in the message), or
            ``dst`` is a folder or ``src`` itself.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"export_weights: {src!r} not found; pass a run's model.pt (e.g. runs/train/model.pt).")
    if os.path.isdir(dst):
        raise ValueError(f"export_weights: {dst!r} is a folder; pass the file to write, e.g. models/model.pt.")
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError(f"export_weights: {src!r} and {dst!r} are the same file.")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"export_weights: {src!r} is not a readable torch checkpoint ({type(err).__name__}); it should hold "
            "CPCE-2D weights written by configs/train.json (model.pt, model_final.pt or checkpoint_epoch=N.pt)."
        ) from None
    sd = ckpt.get(key, ckpt) if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict) else ckpt
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"export_weights: {src!r} holds no state dict of tensors (nor one under {key!r}).")
    net = CPCE2D(channels=channels)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"export_weights: {src!r} does not hold CPCE-2D weights with {channels} channels: {first}") from None
    out = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(dst)}.{os.getpid()}.part")
    try:
        torch.save(out, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.export", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="a run's model.pt (e.g. runs/train/model.pt), model_final.pt or checkpoint_epoch=N.pt")
    p.add_argument("dst", help="file to write, e.g. models/model.pt (replaced if it exists)")
    p.add_argument("--channels", type=int, default=32, help="CPCE2D filters per layer of the run (default 32)")
    args = p.parse_args(argv)
    try:
        export_weights(args.src, args.dst, channels=args.channels)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst} (CPCE-2D weights, CPU float32, from {args.src})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
