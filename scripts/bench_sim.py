"""Benchmark the low-dose chain (projection, noise, FBP) per backend against raw ASTRA FP + BP.

For each backend it times :meth:`ldct_sim.LowDoseSimulator.run` on a batch of abdominal-phantom slices
(forward projection with the chain's forward model, Poisson noise at one I0, fan-beam FBP) and reports
slices per second. In the same run it times raw ASTRA (``astra.create_sino`` + ``astra.create_backprojection``
with a projector made once) for the ``strip`` and ``line`` models, and prints each chain's time per
slice over raw ASTRA FP + BP of the same projector model: the chain's overhead, or its gain where our
FBP backprojects faster than ASTRA's BP.

Targets (from the simulation issue): the astra-backend chain within 1.3× of raw ASTRA FP + BP on the
CPU; the torch backend at 300 or more 512² slices per second on a GPU, batched (``--batch 32``).

Backends: ``astra``, ``torch`` (CPU), ``torch:cuda`` (when CUDA is available) and ``tomosipo`` (when
importable). The torch projector is ray-driven on ``grid_sample`` and slow on a CPU (about a minute for
one 512² slice with the strip model on two cores): pass ``--warmup 0 --repeats 1`` to time it once.

Timings on a shared machine: the FBP runs hundreds of short torch parallel loops, which slow down by
10× or more when other processes hold the cores (each loop waits for a descheduled thread), while
ASTRA's single long loops barely notice. The header prints the load average; on a busy machine
compare with ``--threads 1``.

Usage:
    python scripts/bench_sim.py                                   # 512², 720 views, every available backend
    python scripts/bench_sim.py --backends astra --repeats 5
    python scripts/bench_sim.py --backends torch --warmup 0 --repeats 1
    python scripts/bench_sim.py --backends torch:cuda --batch 32 --output bench.json
    python scripts/bench_sim.py --size 128 --n-views 180
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ldct_sim import LowDoseSimulator, available_backends, get_preset, hu_to_mu
from ldct_sim.phantoms import abdominal_phantom
from ldct_sim.projectors import PROJECTOR_MODELS

__all__ = ["main", "parse_args", "machine_info", "default_backends", "chain_device", "time_chain", "time_raw_astra"]


def default_backends() -> list[str]:
    """Every backend that can run here: astra, torch (CPU), torch:cuda with a GPU, tomosipo if importable."""
    out = [b for b in available_backends() if b != "tomosipo"]
    if torch.cuda.is_available():
        out.append("torch:cuda")
    if "tomosipo" in available_backends() and torch.cuda.is_available():
        out.append("tomosipo")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--n-views", type=int, default=720, help="views over 360° (default 720)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per backend; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--batch", type=int, default=1, help="slices per call (default 1)")
    p.add_argument(
        "--backends",
        nargs="+",
        default=None,
        help="astra, torch, torch:cuda, tomosipo (default: every one available here)",
    )
    p.add_argument("--forward-model", choices=PROJECTOR_MODELS, default="strip", help="chain's forward model (default strip)")
    p.add_argument("--preset", type=float, default=625.0, help="Table 1 system in µm; the FOV is kept at other sizes")
    p.add_argument("--i0", type=float, default=None, help="photons per detector element per view (default: preset's input I0)")
    p.add_argument("--no-raw-astra", dest="raw_astra", action="store_false", help="skip the raw ASTRA FP + BP timing")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--output", type=Path, default=None, help="also write the results as JSON, with provenance")
    args = p.parse_args(argv)
    for name in ("size", "n_views", "repeats", "batch") + (("threads",) if args.threads is not None else ()):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    known = ("astra", "torch", "torch:cuda", "tomosipo")
    for b in args.backends or []:
        if b not in known:
            p.error(f"unknown backend {b!r}; expected some of {known}")
    return args


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Host, CPU model and cores, torch threads, versions and GPU (if any)."""
    info = {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # other work on the machine slows torch's many short parallel loops (the FBP) far more than ASTRA
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import astra

        info["astra"] = astra.__version__
        info["astra_cuda"] = bool(astra.use_cuda())
    except Exception:  # noqa: BLE001 - ASTRA missing or without a driver: report and go on
        info["astra"] = None
    return info


def _median_seconds(fn, repeats: int, warmup: int, sync=None) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def chain_device(backend: str) -> tuple[str, str]:
    """``(backend name, device)`` of a ``--backends`` entry: ``torch:cuda`` → ``("torch", "cuda")``.

    The ASTRA chain runs where ASTRA runs (its CUDA build with a GPU, else the CPU); tomosipo needs CUDA.
    """
    name, _, device = backend.partition(":")
    if device:
        return name, device
    if name == "tomosipo":
        return name, "cuda"
    if name == "astra":
        from ldct_sim.projectors.astra_backend import astra_uses_cuda

        return name, "cuda" if astra_uses_cuda() and torch.cuda.is_available() else "cpu"
    return name, "cpu"


def time_chain(backend: str, geometry, mu: np.ndarray, i0: float, forward_model: str, repeats: int, warmup: int) -> float:
    """Median seconds of one ``LowDoseSimulator.run`` on the batch ``mu`` (B, n, n), noise included."""
    name, device = chain_device(backend)
    sim = LowDoseSimulator(geometry, backend=name, forward_model=forward_model, device=device)
    x = torch.from_numpy(mu).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    return _median_seconds(lambda: sim.run(x, [i0], noiseless=False, seed=0), repeats, warmup, sync)


def time_raw_astra(geometry, mu: np.ndarray, model: str, repeats: int, warmup: int) -> float:
    """Median seconds of raw ASTRA forward + back projection of every slice of ``mu`` (CPU projector made once).

    Always on the CPU (``line_fanflat``/``strip_fanflat``), so the ratio column is left empty for chains
    that run on a GPU.
    """
    import astra

    from ldct_sim.projectors.astra_backend import astra_geometries

    vol_geom, proj_geom = astra_geometries(geometry)  # the same geometry the chain uses, in pixel units
    proj_id = astra.create_projector(f"{model}_fanflat", proj_geom, vol_geom)

    def fp_bp():
        for s in mu:
            sino_id, sino = astra.create_sino(s, proj_id)
            bp_id, _ = astra.create_backprojection(sino, proj_id)
            astra.data2d.delete([sino_id, bp_id])

    try:
        return _median_seconds(fp_bp, repeats, warmup)
    finally:
        astra.projector.delete(proj_id)


def _table(rows: list[dict]) -> str:
    head = ("what", "device", "model", "batch", "s/call", "slices/s", "× raw ASTRA FP+BP")
    lines = [head]
    for r in rows:
        ratio = "" if r.get("ratio_to_raw_astra") is None else f"{r['ratio_to_raw_astra']:.2f}"
        lines.append(
            (r["what"], r["device"], r["model"], str(r["batch"]), f"{r['seconds']:.3f}", f"{r['slices_per_s']:.3g}", ratio)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = lambda line: "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(lines[0]), sep, *map(fmt, lines[1:])])


def main(argv=None) -> list[dict]:
    """Run the benchmark, print a table, and return its rows (one dict per timed configuration)."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    g = preset.geometry(
        n_pixels=args.size, pixel_size_mm=preset.pixel_size_mm * preset.n_pixels / args.size, n_views=args.n_views
    )
    i0 = args.i0 if args.i0 is not None else preset.input_i0
    mu = np.stack([hu_to_mu(abdominal_phantom(args.size, seed=k)).astype(np.float32) for k in range(args.batch)])
    backends = args.backends or default_backends()
    info = machine_info()

    rows = []
    raw = {}
    if args.raw_astra and "astra" in available_backends():
        models = [args.forward_model] + [m for m in PROJECTOR_MODELS if m != args.forward_model]
        for model in models:
            sec = time_raw_astra(g, mu, model, args.repeats, args.warmup)
            raw[model] = sec / args.batch
            rows.append(
                dict(what="raw ASTRA FP+BP", device="cpu", model=model, batch=args.batch, seconds=sec,
                     slices_per_s=args.batch / sec, ratio_to_raw_astra=None)
            )
    for backend in backends:
        name, device = chain_device(backend)
        sec = time_chain(backend, g, mu, i0, args.forward_model, args.repeats, args.warmup)
        per_slice = sec / args.batch
        comparable = args.forward_model in raw and device == "cpu"  # raw ASTRA is timed on the CPU
        rows.append(
            dict(
                what=f"chain ({name})",
                device=device,
                model=args.forward_model,
                batch=args.batch,
                seconds=sec,
                slices_per_s=1.0 / per_slice,
                ratio_to_raw_astra=per_slice / raw[args.forward_model] if comparable else None,
            )
        )

    print(
        f"bench_sim: {args.size}² image, {g.n_views} views, {g.n_det} detector elements "
        f"(preset {preset.resolution_um:g} µm FOV), I0 {i0:g}, median of {args.repeats} after {args.warmup} warm-up"
    )
    print(
        f"machine: {info['host']} | {info['cpu']} | {info['cpu_count']} CPUs | torch {info['torch']} "
        f"with {info['torch_threads']} threads | GPU: {info['gpu'] or 'none'} | ASTRA {info.get('astra')} "
        f"| load average {info['load_avg_1min']:.2f}"
    )
    print(_table(rows))
    if args.output is not None:
        record = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "geometry": g.to_dict(), "i0": i0, "machine": info, "rows": rows}
        try:
            from ldct_sim.provenance import provenance

            record["provenance"] = provenance()
        except ImportError:
            pass
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=2, default=str))
    return rows


if __name__ == "__main__":
    main()
