"""Benchmark the low-dose chain (projection, noise, FBP) per backend against raw ASTRA FP + BP.

For each backend it times :meth:`ldct_sim.LowDoseSimulator.run` on a batch of abdominal-phantom slices
(forward projection with the chain's forward model, Poisson noise at one I0, fan-beam FBP) and reports
slices per second. In the same run it times raw ASTRA (``astra.create_sino`` + ``astra.create_backprojection``
with a projector made once) for the ``strip`` and ``line`` models, and prints each chain's time per
slice over raw ASTRA FP + BP of the same projector model. With ASTRA's CUDA build and a GPU it also
times raw ASTRA CUDA FP + BP (``FP_CUDA``/``BP_CUDA``), the reference of chains that run on the GPU.

For torch backends it also reports the sparse operators (:mod:`ldct_sim.projectors.sparse`): the
projector's and the FBP backprojection's build time (computed afresh, not read from the cache), their
entries and memory, the time to read them back from the disk cache, raw torch FP + BP (``A`` then
``A.T``) of the batch, and the chain at batch 1 as well as at ``--batch``.

``--builder N`` instead times the dataset builder end to end (``build_dataset`` on N procedural phantoms
into a temporary folder, NIfTI writing included) twice in one process: as before issue 11 (the astra
backend, and the FBP backprojection on the fly, i.e. no operator matrices) and with ``--builder-backend``
(default torch) starting from an empty operator cache, so that building the operators is counted. It
prints the speed-up.

Targets (issue 11): on 2 CPU cores at 512², 720 views, strip, the torch chain's seconds per slice at most
1/10 of raw ASTRA FP + BP (strip); the dataset builder at least 5× faster; on a GPU (``--backends
torch:cuda --batch 32``) 300 or more 512² slices per second on an H100-class GPU.

Timings on a shared machine: torch's parallel loops slow down by 10× or more when other processes hold
the cores (each loop waits for a descheduled thread), while ASTRA's single long loops barely notice.
The header prints the load average (1, 5, 15 min), which the JSON records too.

Usage:
    python -m ldct_scripts.bench.bench_sim                                   # 512², 720 views, every available backend
    python -m ldct_scripts.bench.bench_sim --backends astra torch --threads 2 --batch 8 --output bench.json
    python -m ldct_scripts.bench.bench_sim --backends torch:cuda --batch 32 --output bench_gpu.json
    python -m ldct_scripts.bench.bench_sim --builder 100 --threads 2 --output builder.json
    python -m ldct_scripts.bench.bench_sim --size 128 --n-views 180
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ldct_sim.projectors.torch_backend  # noqa: F401 - imported now: a long run must not pick up later edits
from ldct_sim import LowDoseSimulator, available_backends, get_preset, hu_to_mu
from ldct_sim.phantoms import abdominal_phantom
from ldct_sim.projectors import PROJECTOR_MODELS

__all__ = [
    "main",
    "parse_args",
    "machine_info",
    "default_backends",
    "chain_device",
    "time_chain",
    "time_raw_astra",
    "time_raw_astra_cuda",
    "time_raw_torch",
    "operator_stats",
    "bench_builder",
]


def default_backends() -> list[str]:
    """Every backend that can run here: astra, torch (CPU), torch:cuda with a GPU, tomosipo if importable."""
    out = [b for b in available_backends() if b != "tomosipo"]
    if torch.cuda.is_available():
        out.append("torch:cuda")
    if "tomosipo" in available_backends() and torch.cuda.is_available():
        out.append("tomosipo")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
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
    p.add_argument("--raw-repeats", type=int, default=None, help="timed runs of raw ASTRA (default: --repeats)")
    p.add_argument("--no-operators", dest="operators", action="store_false",
                   help="skip the torch operators' build-time and memory report")
    p.add_argument("--builder", type=int, default=None, metavar="N",
                   help="time the dataset builder on N phantoms instead (before issue 11 vs --builder-backend)")
    p.add_argument("--builder-backend", default="torch", help="backend of the builder's new run (default torch)")
    p.add_argument("--builder-resolutions", type=float, nargs="+", default=[625.0], metavar="UM",
                   help="preset resolutions the builder simulates (default 625)")
    args = p.parse_args(argv)
    if args.raw_repeats is None:
        args.raw_repeats = args.repeats
    for name in ("size", "n_views", "repeats", "batch", "raw_repeats") + tuple(
        n for n in ("threads", "builder") if getattr(args, n) is not None
    ):
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
        "load_avg_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
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

    Args:
        backend: ``astra``, ``torch``, ``torch:cuda``, ...
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
    """Median seconds of one ``LowDoseSimulator.run`` on the batch ``mu`` (B, n, n), noise included.

    Args:
        backend: a ``--backends`` entry.
        geometry: the fan-beam geometry.
        mu: the batch (cm⁻¹).
        i0: unattenuated photons per detector bin.
        forward_model: the projector model.
        repeats: timed runs.
        warmup: untimed runs first.
    """
    name, device = chain_device(backend)
    sim = LowDoseSimulator(geometry, backend=name, forward_model=forward_model, device=device)
    x = torch.from_numpy(mu).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    return _median_seconds(lambda: sim.run(x, [i0], noiseless=False, seed=0), repeats, warmup, sync)


def time_raw_astra(geometry, mu: np.ndarray, model: str, repeats: int, warmup: int) -> float:
    """Median seconds of raw ASTRA forward + back projection of every slice of ``mu`` (CPU projector made once).

    Always on the CPU (``line_fanflat``/``strip_fanflat``), so the ratio column is left empty for chains
    that run on a GPU.

    Args:
        geometry: the fan-beam geometry.
        mu: the batch (cm⁻¹).
        model: the projector model.
        repeats: timed runs.
        warmup: untimed runs first.
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


def time_raw_astra_cuda(geometry, mu: np.ndarray, model: str, repeats: int, warmup: int) -> float:
    """Median seconds of ASTRA's CUDA FP + BP (``FP_CUDA``/``BP_CUDA``, the strip model by detector
    supersampling) of every slice of ``mu``, through :class:`~ldct_sim.projectors.astra_backend.AstraProjector`.

    Args:
        geometry: the fan-beam geometry.
        mu: the batch (cm⁻¹).
        model: the projector model.
        repeats: timed runs.
        warmup: untimed runs first.
    """
    from ldct_sim.projectors.astra_backend import AstraProjector

    a = AstraProjector(geometry, model, use_cuda=True)
    x = torch.from_numpy(mu)
    return _median_seconds(lambda: a.T(a(x)), repeats, warmup)


def time_raw_torch(geometry, mu: np.ndarray, model: str, device: str, repeats: int, warmup: int) -> float:
    """Median seconds of the torch projector's ``A`` then ``A.T`` on the batch ``mu`` (operators ready).

    Args:
        geometry: the fan-beam geometry.
        mu: the batch (cm⁻¹).
        model: the projector model.
        device: the torch device.
        repeats: timed runs.
        warmup: untimed runs first.
    """
    from ldct_sim import get_projector

    a = get_projector(geometry, "torch", model)
    x = torch.from_numpy(mu).to(device)
    a.T(a(x))  # build or load the operators outside the timing
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    return _median_seconds(lambda: a.T(a(x)), repeats, warmup, sync)


def operator_stats(geometry, model: str) -> dict:
    """Build the torch backend's sparse operators afresh and time it; then cache them and time a read.

    Returns seconds, entries and bytes of the projector matrix ``A`` (stored views only), its transpose
    (for ``A.T``), the FBP backprojection matrix, and the time to read ``A`` and the backprojection back
    from the disk cache into an empty registry (memory-mapped, so the pages load on first use).

    Args:
        geometry: the fan-beam geometry.
        model: the projector model.
    """
    from ldct_sim.fbp import _BP_KIND, backprojection_matrix
    from ldct_sim.projectors import sparse
    from ldct_sim.projectors.torch_backend import TorchProjector

    proj = TorchProjector(geometry, model)
    with sparse.build_threads():  # as cached_matrix builds them
        t0 = time.perf_counter()
        a = proj._build()
        t1 = time.perf_counter()
        at = a.transpose()
        t2 = time.perf_counter()
        bp = backprojection_matrix(geometry)
        t3 = time.perf_counter()
    bp_key = sparse.operator_key(_BP_KIND, geometry, turns=proj.turns)
    # hand them to the registry and the disk cache, so that the chains below do not build them again
    sparse.cached_matrix("fan-joseph", proj._key, lambda: a, 0, repr(proj), with_transpose=True)
    sparse.cached_matrix(_BP_KIND, bp_key, lambda: bp, 0, "fbp backprojection")
    sparse.clear_operator_registry()
    t4 = time.perf_counter()
    proj.operator(adjoint=True)
    sparse.cached_matrix(_BP_KIND, bp_key, lambda: backprojection_matrix(geometry), 0, "fbp backprojection")
    t5 = time.perf_counter()
    cache = sparse.operator_cache_dir()
    return {
        "model": model,
        "stored_views": proj.stored_views,
        "quarter_turn_symmetry": proj.turns == 4,
        "projector": {"build_s": t1 - t0, "nnz": a.nnz, "bytes": a.nbytes},
        "projector_transpose": {"build_s": t2 - t1, "nnz": at.nnz, "bytes": at.nbytes},
        "fbp_backprojection": {"build_s": t3 - t2, "nnz": bp.nnz, "bytes": bp.nbytes},
        "total_build_s": t3 - t0,
        "total_bytes": a.nbytes + at.nbytes + bp.nbytes,
        "disk_cache": None if cache is None else str(cache),
        "read_from_cache_s": t5 - t4 if cache is not None and a.nnz >= sparse.DISK_CACHE_MIN_NNZ else None,
        "memory_limit_bytes": sparse.operator_memory_limit(),
        "build_threads": "1 (machine oversubscribed)" if os.getloadavg()[0] > (os.cpu_count() or 1) else torch.get_num_threads(),
    }


def bench_builder(args) -> dict:
    """Time ``build_dataset`` on ``args.builder`` phantoms: before issue 11 (astra backend, FBP on the fly)
    and with ``args.builder_backend`` from an empty operator cache, in one process; return both and the ratio.

    Args:
        args: the command line (``builder``, ``builder_backend``, sizes).
    """
    from ldct_sim.dataset import DatasetConfig, build_dataset
    from ldct_sim.projectors import sparse

    common = dict(resolutions=tuple(args.builder_resolutions), n_pixels=args.size, n_views=args.n_views,
                  forward_model=args.forward_model, phantom_size=args.size, seed=0)
    runs = {}
    tmp = Path(tempfile.mkdtemp(prefix="ldct_bench_builder_"))
    old_cache = os.environ.get("LDCT_SIM_CACHE")
    try:
        plan = [("before issue 11 (astra, FBP on the fly)", "astra", 0), (f"{args.builder_backend} (operators built)", args.builder_backend, None)]
        for label, backend, memory in plan:
            sparse.clear_operator_registry()
            sparse.set_operator_memory_limit(memory)  # 0: no matrices at all, as before issue 11
            os.environ["LDCT_SIM_CACHE"] = str(tmp / f"cache-{backend}")  # empty: the build is counted
            t0 = time.perf_counter()
            summary = build_dataset(tmp / f"out-{backend}", DatasetConfig(backend=backend, **common), phantoms=args.builder,
                                    progress=False)
            sec = time.perf_counter() - t0
            runs[label] = {"backend": backend, "seconds": sec, "written": summary.written, "failed": len(summary.failures),
                           "seconds_per_slice": sec / max(1, summary.written)}
            print(f"builder: {label}: {sec:.1f} s for {summary.written} slice-resolutions ({sec / max(1, summary.written):.2f} s each)",
                  flush=True)
    finally:
        sparse.set_operator_memory_limit(None)
        sparse.clear_operator_registry()
        if old_cache is None:
            os.environ.pop("LDCT_SIM_CACHE", None)
        else:
            os.environ["LDCT_SIM_CACHE"] = old_cache
        shutil.rmtree(tmp, ignore_errors=True)
    (ref, new) = runs.values()
    return {"runs": runs, "speedup": ref["seconds"] / new["seconds"], "target_speedup": 5.0,
            "phantoms": args.builder, "resolutions": args.builder_resolutions}


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


def _g(args):
    preset = get_preset(args.preset)
    g = preset.geometry(
        n_pixels=args.size, pixel_size_mm=preset.pixel_size_mm * preset.n_pixels / args.size, n_views=args.n_views
    )
    return preset, g


def _write(args, record: dict) -> None:
    if args.output is None:
        return
    try:
        from ldct_sim.provenance import provenance

        record["provenance"] = provenance()
    except ImportError:
        pass
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2, default=str))


def _header(args, g, preset, i0, info) -> None:
    print(
        f"bench_sim: {args.size}² image, {g.n_views} views, {g.n_det} detector elements "
        f"(preset {preset.resolution_um:g} µm FOV), I0 {i0:g}, median of {args.repeats} after {args.warmup} warm-up"
    )
    load = info.get("load_avg_1_5_15min") or [float("nan")] * 3
    print(
        f"machine: {info['host']} | {info['cpu']} | {info['cpu_count']} CPUs | {info['memory_gib']} GiB | torch {info['torch']} "
        f"with {info['torch_threads']} threads | GPU: {info['gpu'] or 'none'} | ASTRA {info.get('astra')} "
        f"| load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def _run_builder(args, g, preset, i0) -> list[dict]:
    """``--builder``: time the torch operator builder alone, print and write the record."""
    info = machine_info()
    _header(args, g, preset, i0, info)
    result = bench_builder(args)
    print(f"builder speed-up: {result['speedup']:.2f}× (target ≥ {result['target_speedup']:g}×)")
    info_end = machine_info()
    _write(args, {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "geometry": g.to_dict(), "machine": info, "load_avg_at_end": info_end["load_avg_1_5_15min"],
                  "builder": result})
    return [dict(what=f"builder: {k}", **v) for k, v in result["runs"].items()]


def _time_raw_references(args, g, mu, backends) -> tuple[list[dict], list[dict], dict]:
    """Raw ASTRA FP+BP per projector model on the CPU (and ASTRA CUDA for GPU chains): the references.

    Returns:
        Table rows, extra rows, and ``{(device, model): seconds per slice}``.
    """
    rows, extra, raw = [], [], {}
    if not (args.raw_astra and "astra" in available_backends()):
        return rows, extra, raw
    models = [args.forward_model] + [m for m in PROJECTOR_MODELS if m != args.forward_model]
    if not any(chain_device(b)[1] == "cpu" for b in backends):
        models = []  # only GPU chains: their reference is ASTRA's CUDA FP+BP below, not minutes of CPU ASTRA
    for model in models:
        sec = time_raw_astra(g, mu, model, args.raw_repeats, 0)  # nothing to warm up in ASTRA's CPU loops
        raw[("cpu", model)] = sec / args.batch
        rows.append(dict(what="raw ASTRA FP+BP", device="cpu", model=model, batch=args.batch, seconds=sec,
                         slices_per_s=args.batch / sec, ratio_to_raw_astra=None))
    from ldct_sim.projectors.astra_backend import astra_uses_cuda

    if astra_uses_cuda() and any(chain_device(b)[1].startswith("cuda") for b in backends):
        sec = time_raw_astra_cuda(g, mu, args.forward_model, args.raw_repeats, args.warmup)
        raw[("cuda", args.forward_model)] = sec / args.batch
        extra.append(dict(what="raw ASTRA CUDA FP+BP", device="cuda", model=args.forward_model, batch=args.batch,
                          seconds=sec, slices_per_s=args.batch / sec, ratio_to_raw_astra=None))
    return rows, extra, raw


def _time_chains(args, g, mu, i0, backends, raw, rows, extra) -> None:
    """The chain per backend (and batch 1 for torch), and raw torch FP+BP; rows appended."""
    for backend in backends:
        name, device = chain_device(backend)
        ref = raw.get(("cuda" if device.startswith("cuda") else "cpu", args.forward_model))
        batches = [args.batch] + ([1] if name == "torch" and args.batch > 1 else [])
        for batch in batches:
            sec = time_chain(backend, g, mu[:batch], i0, args.forward_model, args.repeats, args.warmup)
            per_slice = sec / batch
            row = dict(what=f"chain ({name})", device=device, model=args.forward_model, batch=batch, seconds=sec,
                       slices_per_s=1.0 / per_slice, ratio_to_raw_astra=per_slice / ref if ref is not None else None)
            (rows if batch == args.batch else extra).append(row)
        if name == "torch":
            sec = time_raw_torch(g, mu, args.forward_model, device, args.repeats, args.warmup)
            extra.append(dict(what="raw torch FP+BP", device=device, model=args.forward_model, batch=args.batch, seconds=sec,
                              slices_per_s=args.batch / sec,
                              ratio_to_raw_astra=sec / args.batch / ref if ref is not None else None))


def _print_operators(operators: dict) -> None:
    for model, op in operators.items():
        mib = lambda b: b / 2**20  # noqa: E731
        print(
            f"torch operators ({model}, {op['stored_views']} stored views{', quarter-turn symmetry' if op['quarter_turn_symmetry'] else ''}): "
            f"projector {op['projector']['build_s']:.1f} s, {op['projector']['nnz']:.3g} entries, {mib(op['projector']['bytes']):.0f} MiB; "
            f"transpose {op['projector_transpose']['build_s']:.1f} s, {mib(op['projector_transpose']['bytes']):.0f} MiB; "
            f"FBP backprojection {op['fbp_backprojection']['build_s']:.1f} s, {mib(op['fbp_backprojection']['bytes']):.0f} MiB; "
            f"total {op['total_build_s']:.1f} s, {mib(op['total_bytes']):.0f} MiB"
            + ("" if op["read_from_cache_s"] is None else f"; read back from the disk cache in {op['read_from_cache_s']:.2f} s")
        )


def _torch_vs_astra(rows: list[dict], raw: dict, model: str) -> dict | None:
    """The torch CPU chain's seconds per slice over raw ASTRA FP+BP's (target ≤ 0.1), printed."""
    torch_row = next((r for r in rows if r["what"] == "chain (torch)" and r["device"] == "cpu"), None)
    if torch_row is None or ("cpu", model) not in raw:
        return None
    ratio = torch_row["seconds"] / torch_row["batch"] / raw[("cpu", model)]
    print(f"torch chain / raw ASTRA FP+BP ({model}), per slice: {ratio:.4f} (target ≤ 0.1)")
    return {"torch_chain_s_per_slice": torch_row["seconds"] / torch_row["batch"], "raw_astra_fp_bp_s_per_slice": raw[("cpu", model)],
            "model": model, "ratio": ratio, "target_ratio": 0.1, "met": ratio <= 0.1}


def main(argv=None) -> list[dict]:
    """Run the benchmark, print a table, and return its rows (one dict per timed configuration).

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    preset, g = _g(args)
    i0 = args.i0 if args.i0 is not None else preset.input_i0
    if args.builder is not None:
        return _run_builder(args, g, preset, i0)
    mu = np.stack([hu_to_mu(abdominal_phantom(args.size, seed=k)).astype(np.float32) for k in range(args.batch)])
    backends = args.backends or default_backends()
    info = machine_info()
    operators = {}
    for backend in backends:
        if chain_device(backend)[0] == "torch" and args.operators and args.forward_model not in operators:
            operators[args.forward_model] = operator_stats(g, args.forward_model)
    rows, extra, raw = _time_raw_references(args, g, mu, backends)
    _time_chains(args, g, mu, i0, backends, raw, rows, extra)
    _header(args, g, preset, i0, info)
    print(_table(rows + extra))
    _print_operators(operators)
    summary = _torch_vs_astra(rows, raw, args.forward_model)
    info_end = machine_info()
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in info_end['load_avg_1_5_15min'] or [])}")
    _write(args, {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "geometry": g.to_dict(), "i0": i0, "machine": info, "load_avg_at_end": info_end["load_avg_1_5_15min"],
                  "rows": rows, "extra_rows": extra, "operators": operators, "torch_vs_raw_astra": summary})
    return rows

if __name__ == "__main__":
    main()
