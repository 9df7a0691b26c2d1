"""Benchmark the ``unet_ldct`` bundle's U-Net: training images/s (plain loop and Ignite), inference s/slice.

Training: times the step ``SupervisedTrainer`` runs (forward, MSE loss, backward, Adam update) on
random ``(batch, 1, size, size)`` inputs, after warm-up iterations, on the CPU or a GPU, with or without
AMP, and estimates the wall time of the study's 50,000-step training. In the same process it times
the same iterations through MONAI's ``SupervisedTrainer`` (pytorch-ignite) and through a plain PyTorch
loop, from the same initial weights on the same list of batches, in alternating rounds (best round of
each), and reports the workflow's overhead.

Inference: seconds per ``infer_size``² slice (batch 1) for plain float32 eager inference (the
reference) and for faster variants: ``torch.inference_mode``, the bundle's ``SliceInferer2D``
(channels-last, in-place activations), TorchScript freezing, ``torch.compile`` (``--compile``) and
reduced precision (bfloat16 autocast; float16 too on a GPU). Each variant's speed-up over the reference and
its relative difference ``||a - b|| / ||b||`` from the reference output are tabulated.

Precision (``--precision``, on by default): training images/s of both bundles' networks (the U-Net and
CPCE-2D) on ``--patch-size``² patches in batches of ``--patch-batch`` (the real-data recipe's settings,
``scripts/train_real_recipe.py``), float32 against bfloat16 autocast (``torch.autocast(device, bfloat16)``,
loss and Adam in float32), in alternating rounds from the same weights and data, best round of each, and
the speed-up. bfloat16 pays where the CPU has AVX-512 BF16 or AMX units (or on a GPU).

Writes ``<out>/bench_train.json`` with the settings, the timings and provenance (git commit, package
versions).

Usage:
    python -m ldct_scripts.bench.bench_train --out bench
    python -m ldct_scripts.bench.bench_train --size 128 --batch 8 --iters 10 --compile --out bench
    python -m ldct_scripts.bench.bench_train --size 512 --batch 4 --iters 50 --device cuda --amp --out bench
    python -m ldct_scripts.bench.bench_train --no-workflow --no-inference --iters 1 --warmup 1 --out bench  # mostly bf16 vs fp32
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from ldct_scripts import BUNDLES_DIR
from ldct_scripts.bundle_import import load_bundle_module
from ldct_sim.provenance import provenance

logger = logging.getLogger("bench_train")

BUNDLE = BUNDLES_DIR / "unet_ldct"


def load_network_class():
    """The ``unet_ldct`` bundle's ``LDCTUNet``."""
    return load_bundle_module(BUNDLE, "networks").LDCTUNet


def load_cpce_class():
    """The ``cpce_rfm_da`` bundle's ``CPCE2D``."""
    return load_bundle_module(BUNDLES_DIR / "cpce_rfm_da", "networks").CPCE2D


def load_inferer_class():
    """The ``unet_ldct`` bundle's ``SliceInferer2D``."""
    return load_bundle_module(BUNDLE, "inferers").SliceInferer2D


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
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
    p.add_argument("--workflow", action=argparse.BooleanOptionalAction, default=True,
                   help="also time SupervisedTrainer against the plain loop (default on)")
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating rounds of plain loop and trainer; the best of each counts (default 2)")
    p.add_argument("--inference", action=argparse.BooleanOptionalAction, default=True,
                   help="time inference variants (default on)")
    p.add_argument("--infer-size", type=int, default=512, help="inference slice side in pixels (default 512)")
    p.add_argument("--infer-iters", type=int, default=3,
                   help="timed inference passes per variant after one warm-up; the best counts (default 3)")
    p.add_argument("--precision", action=argparse.BooleanOptionalAction, default=True,
                   help="time float32 against bfloat16 autocast training for both bundles' networks (default on)")
    p.add_argument("--patch-size", type=int, default=64, help="patch side for --precision (default 64)")
    p.add_argument("--patch-batch", type=int, default=16, help="batch size for --precision (default 16)")
    p.add_argument("--precision-iters", type=int, default=5, help="timed iterations per round for --precision (default 5)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="include torch.compile variants (slow to compile; default off)")
    args = p.parse_args(argv)
    for name in ("size", "batch", "iters", "steps", "rounds", "infer_size", "infer_iters", "patch_size", "patch_batch",
                 "precision_iters"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.size % 16:
        p.error(f"--size must be a multiple of 16, got {args.size}")
    return args


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float32."""
    return float((a.float() - b.float()).norm() / b.float().norm())


def _random_batches(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """``args.iters`` seeded ``{"image", "label"}`` batches: uniform images and labels 0.05 of noise away."""
    gen = torch.Generator().manual_seed(args.seed + 1)
    batches = []
    for _ in range(args.iters):
        x = torch.rand(args.batch, 1, args.size, args.size, generator=gen)
        batches.append({"image": x.to(device), "label": (x + 0.05 * torch.randn(x.shape, generator=gen)).to(device)})
    return batches


def time_training(args: argparse.Namespace, device: torch.device, amp: bool) -> dict:
    """Images/s of the plain PyTorch loop and of ``SupervisedTrainer`` on the same model init and data.

    Args:
        args: the command line (sizes, iterations, rounds, seed).
        device: where the network trains.
        amp: mixed precision (GPU).
    """
    from monai.engines import SupervisedTrainer

    logging.getLogger("ignite").setLevel(logging.WARNING)  # no per-run "Engine run resuming" lines
    net_class = load_network_class()
    torch.manual_seed(args.seed)
    init = net_class().state_dict()
    batches = _random_batches(args, device)

    def fresh():
        net = net_class().to(device).train()
        net.load_state_dict(init)
        return net, torch.optim.Adam(net.parameters(), lr=1e-4)

    loss_fn = torch.nn.MSELoss()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # plain PyTorch loop
    net, opt = fresh()
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def step(batch):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            loss = loss_fn(net(batch["image"]), batch["label"])
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    def plain_epoch():
        for batch in batches:
            step(batch)

    # the same through MONAI's SupervisedTrainer (pytorch-ignite): no handlers, as the loop has none
    tnet, topt = fresh()

    def make_trainer(data):
        return SupervisedTrainer(
            device=device, max_epochs=1, train_data_loader=data, epoch_length=len(data), network=tnet,
            optimizer=topt, loss_function=loss_fn, amp=amp, optim_set_to_none=True,
        )

    warm = [batches[i % len(batches)] for i in range(args.warmup)]
    for batch in warm:
        step(batch)
    if warm:
        make_trainer(warm).run()
    trainers = iter([make_trainer(batches) for _ in range(args.rounds)])  # built outside the timed region

    def trainer_epoch():
        next(trainers).run()

    plain, ignite = [], []
    for _ in range(args.rounds):
        for fn, out in ((plain_epoch, plain), (trainer_epoch, ignite)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            out.append((time.perf_counter() - t0) / args.iters)
    p_s, i_s = min(plain), min(ignite)
    return {"iterations": args.iters, "rounds": args.rounds, "plain_seconds_per_iteration_rounds": plain,
            "trainer_seconds_per_iteration_rounds": ignite, "plain_images_per_second": args.batch / p_s,
            "trainer_images_per_second": args.batch / i_s, "trainer_overhead": i_s / p_s - 1.0}


def time_precision(args: argparse.Namespace, device: torch.device) -> dict:
    """Training images/s in float32 and under bfloat16 autocast, for the U-Net and CPCE-2D, and the speed-ups.

    One step is what ``scripts/train_real_recipe.py train`` runs: forward (autocast or not), MSE in
    float32, backward, Adam. Both precisions start from the same weights and see the same batches; the
    rounds alternate (fp32, bf16, fp32, ...) so that load from other processes hits both alike, and each
    precision's best round counts.

    Args:
        args: the command line (``patch_size``, ``patch_batch``, ``precision_iters``, seed).
        device: where the networks train.
    """
    gen = torch.Generator().manual_seed(args.seed + 2)
    n, b = args.patch_size, args.patch_batch
    batches = [(torch.rand(b, 1, n, n, generator=gen).to(device), torch.rand(b, 1, n, n, generator=gen).to(device))
               for _ in range(args.precision_iters)]
    out = {"patch_size": n, "batch": b, "iterations": args.precision_iters, "rounds": args.rounds, "device": str(device)}
    for name, make in (("unet_ldct", load_network_class()), ("cpce_rfm_da", load_cpce_class())):
        torch.manual_seed(args.seed)
        init = make().state_dict()
        best = {}
        for _round in range(args.rounds):
            for label, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
                net = make().to(device).train()
                net.load_state_dict(init)
                opt = torch.optim.Adam(net.parameters(), lr=1e-4)

                def step(x, y):
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                        pred = net(x)
                    loss = torch.nn.functional.mse_loss(pred.float(), y)
                    loss.backward()
                    opt.step()

                for _ in range(args.warmup):
                    step(*batches[0])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                for x, y in batches:
                    step(x, y)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                ips = b * len(batches) / (time.perf_counter() - t0)
                best[label] = max(best.get(label, 0.0), ips)
        out[name] = {"float32_images_per_second": best["float32"], "bfloat16_images_per_second": best["bfloat16"],
                     "bf16_speedup": best["bfloat16"] / best["float32"]}
        logger.info("%s training, batch %d of %d²: float32 %.1f images/s, bfloat16 autocast %.1f images/s (%.2fx)",
                    name, b, n, best["float32"], best["bfloat16"], best["bfloat16"] / best["float32"])
    return out


def _best_of(fn, iters: int, device: torch.device):
    """Least seconds of ``iters`` timed calls after one warm-up (oneDNN primitives, compilation), and the output."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    times, y = [], None
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        y = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), y


def _inference_variants(net, x, device: torch.device, inferer_class, compile_: bool) -> list[tuple[str, object]]:
    """``(name, make)`` of each inference variant; ``make()`` returns the function that runs one pass."""
    def no_grad_eager():
        def fn():
            with torch.no_grad():
                return net(x)
        return fn

    def inference_mode():
        def fn():
            with torch.inference_mode():
                return net(x)
        return fn

    def bundle_inferer(dtype, channels_last=True):
        def make():
            inferer = inferer_class(dtype=dtype, channels_last=channels_last)

            def fn():
                with torch.inference_mode():
                    return inferer(x, net)
            return fn
        return make

    def autocast_eager(dtype):
        def make():
            def fn():
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
                    return net(x).float()
            return fn
        return make

    def jit_frozen():
        with torch.no_grad():
            scripted = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(copy.deepcopy(net).eval())))

        def fn():
            with torch.inference_mode():
                return scripted(x)
        return fn

    def compiled(channels_last, dtype=None):
        def make():
            m = copy.deepcopy(net)
            if channels_last:
                m = m.to(memory_format=torch.channels_last)
            if dtype is not None and device.type == "cpu":
                m = m.to(dtype)
            c = torch.compile(m)
            xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x

            def fn():
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                            enabled=dtype is not None):
                    return c(xin).float()
            return fn
        return make

    out = [("fp32 eager (no_grad) [reference]", no_grad_eager), ("fp32 inference_mode", inference_mode),
           ("fp32 SliceInferer2D, contiguous", bundle_inferer("float32", channels_last=False)),
           ("fp32 SliceInferer2D (channels-last, in-place) [bundle default]", bundle_inferer("float32")),
           ("fp32 TorchScript freeze + optimize_for_inference", jit_frozen)]
    if compile_:
        out += [("fp32 torch.compile", compiled(False)), ("fp32 torch.compile, channels-last", compiled(True))]
    out += [("bf16 autocast eager", autocast_eager(torch.bfloat16)),
            ("bf16 SliceInferer2D --inference_dtype bfloat16 [bundle override]", bundle_inferer("bfloat16"))]
    if compile_:
        out.append(("bf16 torch.compile, channels-last, bf16 weights", compiled(True, torch.bfloat16)))
    if device.type == "cuda":
        out += [("fp16 autocast eager", autocast_eager(torch.float16)),
                ("fp16 SliceInferer2D --inference_dtype float16", bundle_inferer("float16"))]
    return out


def time_inference(args: argparse.Namespace, device: torch.device) -> dict:
    """Seconds per slice of inference variants against plain float32 eager, and their output differences.

    Args:
        args: the command line (``infer_size``, ``infer_iters``, ``seed``, ``compile``).
        device: where the network runs.
    """
    net_class, inferer_class = load_network_class(), load_inferer_class()
    torch.manual_seed(args.seed)
    net = net_class(pad_mode="reflect").to(device).eval()
    x = torch.rand(1, 1, args.infer_size, args.infer_size, generator=torch.Generator().manual_seed(args.seed + 2))
    x = x.to(device)
    variants = {}
    for name, make in _inference_variants(net, x, device, inferer_class, args.compile):
        try:
            variants[name] = _best_of(make(), args.infer_iters, device)
        except Exception as err:  # a variant that cannot run here (no compiler, no bf16 kernels) is reported
            logger.warning("inference variant %s failed: %s", name, str(err).splitlines()[0] if str(err) else repr(err))
            variants[name] = (None, repr(err)[:300])
    ref_s, ref_y = variants["fp32 eager (no_grad) [reference]"]
    rows = []
    for name, (seconds, y) in variants.items():
        if seconds is None:
            rows.append({"variant": name, "error": y})
            continue
        rows.append({
            "variant": name,
            "seconds_per_slice": seconds,
            "speedup_vs_fp32_eager": ref_s / seconds if ref_s else None,
            "relative_difference_vs_fp32_eager": _rel_diff(y, ref_y),
        })
    return {"slice_size": args.infer_size, "timed_passes": args.infer_iters, "variants": rows}


def format_inference_table(inference: dict) -> str:
    """The inference variants as a plain-text table (seconds per slice, speed-up, relative difference).

    Args:
        inference: what :func:`time_inference` returned.
    """
    n = inference["slice_size"]
    lines = [f"{'inference variant (batch 1, ' + str(n) + '²)':<68} {'s/slice':>8} {'speed-up':>8} {'rel. diff':>10}"]
    for r in inference["variants"]:
        if "error" in r:
            lines.append(f"{r['variant']:<68} {'failed':>8}  {r['error'][:60]}")
        else:
            lines.append(f"{r['variant']:<68} {r['seconds_per_slice']:8.3f} {r['speedup_vs_fp32_eager']:7.2f}x "
                         f"{r['relative_difference_vs_fp32_eager']:10.2e}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """Run the timings the command line asks for, print them and write ``<out>/bench_train.json``; returns the record.

    Args:
        args: what :func:`parse_args` returned.
    """
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
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del net, opt
    record = {
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "device": str(device), "amp": amp},
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in load_network_class()().parameters()),
        "seconds_per_iteration": seconds,
        "iterations_per_second": 1.0 / seconds,
        "images_per_second": args.batch / seconds,
        "peak_gpu_memory_gib": peak,
        "estimated_hours_for_steps": seconds * args.steps / 3600.0,
        **provenance(),
    }
    logger.info(
        "%s, batch %d of %d²%s: %.3f s/iteration, %.1f images/s, %d steps ≈ %.1f h",
        record["device_name"], args.batch, args.size, " (AMP)" if amp else "", seconds, record["images_per_second"],
        args.steps, record["estimated_hours_for_steps"],
    )
    if args.workflow:
        w = record["workflow"] = time_training(args, device, amp)
        logger.info(
            "training, %d iterations x %d rounds: plain loop %.2f images/s, SupervisedTrainer %.2f images/s, "
            "overhead %+.1f%%", w["iterations"], w["rounds"], w["plain_images_per_second"],
            w["trainer_images_per_second"], 100 * w["trainer_overhead"],
        )
    if args.precision:
        record["precision"] = time_precision(args, device)
    if args.inference:
        record["inference"] = time_inference(args, device)
        logger.info("%s", format_inference_table(record["inference"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_train.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    """Run the benchmark; exit status 0.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
