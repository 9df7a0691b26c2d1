"""Benchmark one training step of the ``unet_ldct`` bundle's U-Net: iterations/s, images/s, peak memory.

Times the same step ``SupervisedTrainer`` runs (forward, MSE loss, backward, Adam update) on random
``(batch, 1, size, size)`` inputs, after warm-up iterations, on the CPU or a GPU, with or without AMP,
and estimates the wall time of the study's 50,000-step training. Writes ``<out>/bench_train.json``
with the settings, the timings and provenance (git commit, package versions).

Usage:
    python scripts/bench_train.py --out bench
    python scripts/bench_train.py --size 512 --batch 4 --iters 50 --device cuda --amp --out bench
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

import torch

from ldct_sim.provenance import provenance

logger = logging.getLogger("bench_train")

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "unet_ldct"


def load_network_class():
    """The bundle's ``LDCTUNet``, imported from its file (the bundle's ``scripts`` is not this folder)."""
    spec = importlib.util.spec_from_file_location("unet_ldct_networks", BUNDLE / "scripts" / "networks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.LDCTUNet


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--size", type=int, default=512, help="image side in pixels, a multiple of 16 (default 512)")
    p.add_argument("--batch", type=int, default=4, help="batch size (default 4, as train.json)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up iterations (default 3)")
    p.add_argument("--device", default="auto", help="'auto' (first GPU, else CPU), 'cpu' or 'cuda[:i]'")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="mixed precision (GPU)")
    p.add_argument("--steps", type=int, default=50_000, help="training length to extrapolate to (default 50,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and data (default 0)")
    args = p.parse_args(argv)
    for name in ("size", "batch", "iters", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.size % 16:
        p.error(f"--size must be a multiple of 16, got {args.size}")
    return args


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else torch.device(args.device)
    amp = bool(args.amp and device.type == "cuda")
    torch.manual_seed(args.seed)
    net = load_network_class()().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = torch.nn.MSELoss()
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.rand(args.batch, 1, args.size, args.size, device=device)
    y = x + 0.05 * torch.randn_like(x)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            loss = loss_fn(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / args.iters
    record = {
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "device": str(device), "amp": amp},
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in net.parameters()),
        "seconds_per_iteration": seconds,
        "iterations_per_second": 1.0 / seconds,
        "images_per_second": args.batch / seconds,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "estimated_hours_for_steps": seconds * args.steps / 3600.0,
        **provenance(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train.json").write_text(json.dumps(record, indent=2) + "\n")
    logger.info(
        "%s, batch %d of %d²%s: %.3f s/iteration, %.1f images/s, %d steps ≈ %.1f h",
        record["device_name"], args.batch, args.size, " (AMP)" if amp else "", seconds, record["images_per_second"],
        args.steps, record["estimated_hours_for_steps"],
    )
    return record


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
