"""Training recipe for real use: real normal-dose anatomy through the simulator, then a bundle fine-tuned on it.

Both bundles' shipped weights are made with it, and users run it on their own normal-dose CT. Four stages,
each a subcommand; all randomness is seeded; every stage can be re-run and resumes where it stopped.

1. ``simulate``: normal-dose slices (``--input`` DICOM/NIfTI files or folders in HU, read by
   :mod:`ldct_sim.io`; or ``--npz FILE`` arrays in HU with a JSON sidecar of per-slice records) go
   through a fan-beam scan of a clinical scanner (default: the Siemens SOMATOM Definition AS geometry,
   SOD 595 mm, SDD 1085.6 mm). For each slice and each of ``--realisations`` draws: a pixel size jittered
   around the slice's own (scale jitter, ``--scale-jitter``), one projection, Poisson noise at a
   reference dose ``--i0-ref``, and for one kernel of each ``--kernel-groups`` group (e.g. one smooth,
   one sharp, drawn per slice) the noise-only image ``FBP_k(noisy sinogram) − FBP_k(noiseless sinogram)``
   (one FBP of the sinogram difference: the FBP is linear). The slice itself is the label: the
   training pair is ``(slice + noise, slice)``, the way Mayo made the real quarter-dose images (noise
   inserted in the projections of the normal-dose scan, reconstructed with the same kernel), so input
   and label share the kernel's resolution and differ only by the inserted noise. Writes one
   ``.npz`` per draw (``image_hu`` float32, ``noise_hu`` float16 ``(K, H, W)`` at ``i0_ref``, ``kernels``,
   ``pixel_mm``) and ``manifest.json``. These files hold pixel data of the input: keep them outside any
   repository when the images are not yours to share.
2. ``train``: fine-tunes (``--init``) or trains a bundle's network on random patches of these draws:
   dose drawn log-uniform in ``--i0-range`` (the noise image is scaled by ``sqrt(i0_ref / I0)``, the
   Poisson noise's dose law away from photon starvation), random sign of the noise, flips and 90°
   rotations, intensity jitter of the anatomy (``--intensity-jitter``, a gain on HU + 1000), patches
   drawn where the body is. MSE loss in the bundle's own intensity scale, Adam, bf16 autocast
   (``--amp bf16``, on the CPU or on a GPU with ``--device cuda``; the patches are drawn on the CPU while
   the GPU works), a wall-clock budget (``--minutes``), a checkpoint every ``--save-every`` seconds that a
   re-run resumes from.
3. ``evaluate``: body RMSE (full dose > −500 HU) on real pairs (``--pairs`` npz as in
   ``../shared/real_ldct``), per kernel, vs the input and vs the best Gaussian blur: an in-process quick
   look; ``scripts/bench/bench_real.py`` is the benchmark of record (it runs the bundles as users run them).
4. ``export``: writes a checkpoint's network weights in the bundle's ``models/model.pt`` format (CPU
   tensors; the U-Net in float16, as shipped).

Usage::

    python -m ldct_scripts.recipe.train_real_recipe simulate --input /data/normal_dose --out /data/sim
    python -m ldct_scripts.recipe.train_real_recipe train --bundle unet_ldct --data /data/sim --out /data/run_unet \\
        --init bundles/unet_ldct/models/model.pt --minutes 60
    python -m ldct_scripts.recipe.train_real_recipe evaluate --bundle unet_ldct --ckpt /data/run_unet/model.pt \\
        --pairs ../shared/real_ldct/dev_pairs.npz
    python -m ldct_scripts.recipe.train_real_recipe export --bundle unet_ldct --ckpt /data/run_unet/model.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ldct_scripts import REPO as ROOT
from ldct_scripts.bundle_import import activate_bundle_scripts
from ldct_scripts.files import atomic_path
from ldct_scripts.recipe.sampler import PatchSampler, _guess_kernel  # noqa: F401 - re-exported (issue 14)
logger = logging.getLogger("train_real_recipe")

#: Siemens SOMATOM Definition AS (the AAPM–Mayo scanner), from the DICOM headers: SOD and SDD in mm.
DEFINITION_AS = {"sod_mm": 595.0, "sdd_mm": 1085.6}
#: Views per rotation the dose ``I0`` refers to (the Definition AS's 1152); a scan simulated with fewer
#: views gets ``I0 · 1152 / n_views`` photons per view, so that the dose per rotation, and the noise, match.
REFERENCE_VIEWS = 1152
BUNDLES = {"unet_ldct": ROOT / "bundles" / "unet_ldct", "cpce_rfm_da": ROOT / "bundles" / "cpce_rfm_da"}


# ------------------------------------------------------------------------------------------------ sources
def _npz_slices(path: str, key: str | None, indices: list[int] | None, spacing: float | None):
    """``(hu, spacing_mm, id, patient)`` for slices of an ``.npz`` of HU arrays ``(N, H, W)``.

    The pixel spacing and ids come from a JSON sidecar (``<name>.json``: a list of records with
    ``pixel_spacing_mm``, ``id``, ``patient``) when present, else ``--spacing``.
    """
    with np.load(path) as d:
        if key is None:
            key = next((k for k in ("hu", "full_dose_hu") if k in d.files), None)
        if key is None or key not in d.files:
            raise SystemExit(f"simulate: {path} holds no array {key!r} (it holds {d.files}); pass --npz-key.")
        arr = d[key]
    sidecar = Path(path).with_suffix(".json")
    records = json.loads(sidecar.read_text()) if sidecar.is_file() else [{} for _ in range(len(arr))]
    if isinstance(records, dict):
        records = records.get("pairs", records.get("slices", []))
    if arr.ndim != 3 or len(records) != len(arr):
        raise SystemExit(f"simulate: {path}:{key} must be (N, H, W) with one sidecar record per slice.")
    for i in indices if indices is not None else range(len(arr)):
        rec = records[i]
        sp = rec.get("pixel_spacing_mm") or spacing
        if sp is None:
            sp = 0.74
            logger.warning("%s[%d]: no pixel spacing known; assuming %.2f mm (pass --spacing)", path, i, sp)
        yield (arr[i].astype(np.float32), float(sp), str(rec.get("id", f"{Path(path).stem}_{i}")), str(rec.get("patient", "")),
               _guess_kernel(str(rec.get("kernel", ""))))


def _input_slices(path: str):
    from ldct_sim.io import iter_ct_slices

    for s in iter_ct_slices(path):
        yield s.hu.astype(np.float32), float(np.mean(s.spacing_mm)), s.slice_id, s.group_id, ""  # kernel: not read


def _square(hu: np.ndarray) -> np.ndarray:
    """Pad (with air) a non-square slice to a square, as the scan geometry is square."""
    h, w = hu.shape
    n = max(h, w)
    if h == w:
        return hu
    out = np.full((n, n), -1000.0, np.float32)
    out[(n - h) // 2:(n - h) // 2 + h, (n - w) // 2:(n - w) // 2 + w] = hu
    return out


def _phantom_slices(n: int, detail: str, seed: int) -> list:
    """``n`` procedural phantoms (:func:`ldct_sim.phantoms.abdominal_phantom`, 512² at the dataset builder's
    360 mm field of view, seeds ``[seed, k]``) as slices after the real ones, patient ``"phantom"``."""
    if n < 0:
        raise SystemExit(f"simulate: --phantoms must be >= 0, got {n}.")
    if not n:
        return []
    from ldct_sim.dataset import PHANTOM_FOV_MM
    from ldct_sim.phantoms import abdominal_phantom

    out = []
    for k in range(n):
        try:
            hu = abdominal_phantom(512, seed=[seed, k], detail=detail)
        except ValueError as e:
            raise SystemExit(f"simulate: --phantom-detail {detail!r}: {e}") from None
        out.append((hu, PHANTOM_FOV_MM / 512, f"phantom_{detail.replace(',', '+')}_{k:04d}", "phantom", ""))
    return out


def parse_kernel(spec: str):
    """An FBP filter from its name (``"cosine"``) or ``"apod:S:Q"``, ldct_sim's ``ApodizedRamp(s_mm2=S, q_mm4=Q)``
    (the ramp times ``exp(S f² − Q f⁴)``, ``f`` in cycles/mm at the rotation axis: smooth for S < 0, edge-
    enhancing for S > 0)."""
    if spec.startswith("apod:"):
        from ldct_sim import ApodizedRamp

        s, q = (float(v) for v in spec.split(":")[1:3])
        return ApodizedRamp(s_mm2=s, q_mm4=q)
    return spec


# ------------------------------------------------------------------------------------------------ simulate
def cmd_simulate(args) -> None:
    from ldct_sim import FanBeamGeometry
    from ldct_sim.attenuation import hu_to_mu, mu_water
    from ldct_sim.fbp import fbp
    from ldct_sim.noise import make_generator, transmission_noise
    from ldct_sim.simulate import forward_project

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    groups = [g.split(",") for g in args.kernel_groups.split(";") if g]
    scan = dict(DEFINITION_AS)
    if args.profiles:
        # scanner profiles (``python -m ldct_sim calibrate`` output, or a shipped name): their hardware, and
        # one group per profile holding its fitted kernel
        from ldct_sim import load_profile

        profiles = [load_profile(name) for name in args.profiles.split(",")]
        scan = {"sod_mm": profiles[0].sod_mm, "sdd_mm": profiles[0].sdd_mm, "det_pixel_mm": profiles[0].det_pixel_mm}
        groups = [[f"apod:{p.kernel.s_mm2:.4g}:{p.kernel.q_mm4:.4g}"] for p in profiles]
    slices = []
    for path in args.input or []:
        slices += list(_input_slices(path))
    for spec in args.npz or []:
        path, _, idx = spec.partition(":")
        indices = [int(i) for i in idx.split(",")] if idx else None
        slices += list(_npz_slices(path, args.npz_key, indices, args.spacing))
    slices += _phantom_slices(args.phantoms, args.phantom_detail, args.seed)
    if not slices:
        raise SystemExit("simulate: no input slices; pass --input, --npz and/or --phantoms.")
    out.mkdir(parents=True, exist_ok=True)
    mw = mu_water(60.0)
    manifest = []
    n_views = args.views
    i0_view = args.i0_ref * REFERENCE_VIEWS / n_views
    # every slice's first draw, then every slice's second...: a run stopped early still covers all slices
    for r, (si, (hu, spacing, sid, patient, source_kernel)) in ((r, x) for r in range(args.realisations) for x in enumerate(slices)):
        hu = _square(np.clip(hu, -1024.0, 3071.0))
        if True:
            name = f"{si:03d}_{r}.npz"
            rng = np.random.default_rng([args.seed, si, r])
            pixel = spacing * float(rng.uniform(1 - args.scale_jitter, 1 + args.scale_jitter))
            kernels = [str(rng.choice(g)) for g in groups]
            rec = {"file": name, "source": sid, "patient": patient, "pixel_mm": pixel, "source_pixel_mm": spacing,
                   "kernels": kernels, "i0_ref": args.i0_ref, "n_views": n_views, "seed": [args.seed, si, r]}
            manifest.append(rec)
            if (out / name).is_file():  # made by an earlier run: record what it holds
                with np.load(out / name) as done:
                    rec["kernels"], rec["pixel_mm"] = [str(k) for k in done["kernels"]], float(done["pixel_mm"])
                continue
            t0 = time.time()
            g = FanBeamGeometry(pixel_size_mm=pixel, n_pixels=hu.shape[0], n_views=n_views, **scan)
            sino = forward_project(torch.as_tensor(hu_to_mu(hu)), g, "astra", model="line")
            gen = make_generator(int(rng.integers(2**31)))
            diff = torch.stack([transmission_noise(sino, i0_view, generator=gen) - sino for _ in kernels])
            noise = torch.stack([fbp(diff[k], g, parse_kernel(kern), "astra") for k, kern in enumerate(kernels)])  # one-off geometry: no stored matrix
            noise_hu = (noise / mw * 1000.0).numpy().astype(np.float16)
            # a hidden temporary name: `train --rescan-every` globs [0-9]*_[0-9]*.npz while this is written
            with atomic_path(out / name) as tmp, open(tmp, "wb") as f:
                np.savez(f, image_hu=hu, noise_hu=noise_hu, kernels=np.array(kernels), pixel_mm=pixel,
                         i0_ref=args.i0_ref, source=sid, patient=patient, source_kernel=source_kernel)
            body = hu > -500
            logger.info("%s %s (%s) %.3f mm: noise SD in body %s HU at I0 %.3g, %.0f s", name, sid, patient, pixel,
                        [round(float(n[body].std()), 1) for n in noise_hu.astype(np.float32)], args.i0_ref,
                        time.time() - t0)
    (out / "manifest.json").write_text(json.dumps({
        "geometry": {**scan, "n_views": n_views, "reference_views": REFERENCE_VIEWS},
        "kernel_groups": groups, "i0_ref": args.i0_ref, "scale_jitter": args.scale_jitter, "seed": args.seed,
        "draws": manifest}, indent=1))
    logger.info("wrote %d draws to %s", len(manifest), out)


# ------------------------------------------------------------------------------------------------ bundles
#: The network's input scale per bundle: ``x = (HU - offset) / width`` (the bundles' inference configs:
#: the U-Net maps air/water to 0/1, the CPCE maps [−1024, 3072] HU to [0, 1]).
HU_SCALE = {"unet_ldct": (-1000.0, 1000.0), "cpce_rfm_da": (-1024.0, 4096.0)}
#: dtype of the shipped ``models/model.pt`` tensors (the U-Net in float16 to stay under 25 MB).
EXPORT_DTYPE = {"unet_ldct": torch.float16, "cpce_rfm_da": torch.float32}


def load_network(bundle: str, ckpt: str | None = None, residual: str | None = None) -> torch.nn.Module:
    """The bundle's network as its ``inference.json`` defines it, with weights from ``ckpt`` if given.

    ``ckpt`` is a state dict (``models/model.pt``) or a checkpoint of ``train`` (``{"model": ...}``).
    ``residual`` (``"true"``/``"false"``) overrides the config's ``residual`` key; ``None``
    keeps it (the shipped weights' ``true``). The bundle's ``scripts`` package becomes the one imported
    as ``scripts`` (its config names ``scripts.networks``), so one process loads one bundle.
    """
    from monai.bundle import ConfigParser

    root = BUNDLES[bundle]
    activate_bundle_scripts(root)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    if residual is not None:
        parser["residual"] = residual
    net = parser.get_parsed_content("network_def")
    if ckpt:
        state = _load_weights(ckpt)
        net.load_state_dict({k: v.float() for k, v in state.items()})
    return net


def _load_weights(path: str) -> dict:
    """The network state dict of a ``models/model.pt`` or of a ``train`` checkpoint (``{"model": ...}``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a train checkpoint of an older version of this script pickled its arguments; ours, trusted
        state = torch.load(path, map_location="cpu", weights_only=False)
    return state.get("model", state)


def zero_last_layer(net: torch.nn.Module) -> torch.nn.Module:
    """Zero the weights and bias of ``net``'s last convolution (in module order), in place; returns ``net``.

    A residual network (output = input + last layer) then starts as the identity: the way to carry weights
    trained without the residual connection (the U-Net's ``residual: false``) over to it, keeping every
    learned feature and only relearning the output layer.
    """
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    if not convs:
        raise ValueError("zero_last_layer: the network has no convolution.")
    with torch.no_grad():
        convs[-1].weight.zero_()
        if convs[-1].bias is not None:
            convs[-1].bias.zero_()
    return net


def to_net(hu: torch.Tensor, bundle: str) -> torch.Tensor:
    off, width = HU_SCALE[bundle]
    return (hu - off) / width


def from_net(x: torch.Tensor, bundle: str) -> torch.Tensor:
    off, width = HU_SCALE[bundle]
    return x * width + off


# ------------------------------------------------------------------------------------------------ train
def _plain(args) -> dict:
    """The command-line arguments as plain values (no functions), for checkpoints and JSON."""
    return {k: v for k, v in vars(args).items() if k != "func"}


def _atomic_save(obj, path: Path) -> None:
    """``torch.save`` that never leaves a partial file at ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _cpu_state(net: torch.nn.Module) -> dict:
    """``net``'s state dict as CPU tensors (the model zoo's rule for ``models/model.pt``; loads anywhere)."""
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def cmd_train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"train: --device {args.device} asked for, but torch {torch.__version__} sees no CUDA GPU.")
    if args.amp == "fp16" and device.type != "cuda":
        raise SystemExit("train: --amp fp16 needs --device cuda (on the CPU use bf16 or none).")
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed patch size: let cuDNN pick its fastest kernels
    (out := Path(args.out)).mkdir(parents=True, exist_ok=True)
    net = load_network(args.bundle, args.init, args.residual)
    if args.zero_last_layer:  # weights trained without the residual connection: the residual net starts as the identity
        zero_last_layer(net)
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    # float16 gradients underflow without loss scaling; bf16 has float32's range and needs none
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    sampler = PatchSampler(args.data, args.patch, (args.i0_min, args.i0_max), args.intensity_jitter,
                           kernels=args.kernels.split(",") if args.kernels else None, seed=args.seed,
                           exclude_patients=set(args.exclude_patients.split(",")) if args.exclude_patients else (),
                           presmooth={"sharp": args.presmooth_sharp, "smooth": args.presmooth_smooth,
                                      "": args.presmooth_smooth})
    ckpt_path = out / "checkpoint.pt"
    it, elapsed, losses = 0, 0.0, []
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])  # moves the state to the parameters' device
        it, elapsed, losses = ck["iteration"], ck["elapsed_s"], ck["losses"]
        sampler.gen.set_state(ck["sampler_rng"])
        if "scaler" in ck:
            scaler.load_state_dict(ck["scaler"])
        logger.info("resumed from %s at iteration %d (%.1f min)", ckpt_path, it, elapsed / 60)
    logger.info("%s: %d draws, patch %d, batch %d, amp %s, %s, %.0f min budget", args.bundle, len(sampler.images),
                args.patch, args.batch, args.amp, device, args.minutes)

    def save_checkpoint() -> None:
        _atomic_save({"model": _cpu_state(net), "optimizer": opt.state_dict(), "iteration": it,
                      "elapsed_s": time.time() - t_start, "losses": losses, "sampler_rng": sampler.gen.get_state(),
                      "scaler": scaler.state_dict(),
                      "args": _plain(args)}, ckpt_path)

    budget = args.minutes * 60.0
    amp = args.amp != "none"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": torch.float32}[args.amp]
    net.train()
    t_start, t_save, t_scan, window = time.time() - elapsed, time.time(), time.time(), []
    while True:
        elapsed = time.time() - t_start
        progress = min(1.0, max(elapsed / budget, it / args.max_iters if args.max_iters else 0.0))
        if progress >= 1.0:
            break
        lr = args.lr * (args.lr_final + (1 - args.lr_final) * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = sampler.sample(args.batch)
        x, y = to_net(x, args.bundle).to(device, non_blocking=True), to_net(y, args.bundle).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            pred = net(x)
        if args.loss_weighting == "noise":
            # each patch's squared error relative to its own noise variance (plus a floor): without it the
            # noisiest patches (sharp kernel, lowest dose: 10x the noise of a smooth quarter-dose patch) own
            # the loss, and the network learns to blur what a low-noise smooth image needs kept
            per = ((pred.float() - y) ** 2).mean(dim=(1, 2, 3))
            var = (sampler.last_noise_sd.to(per) / HU_SCALE[args.bundle][1]) ** 2
            floor = (args.noise_floor_hu / HU_SCALE[args.bundle][1]) ** 2
            ref = (30.0 / HU_SCALE[args.bundle][1]) ** 2  # keeps the loss on the scale of a 30 HU patch's MSE
            loss = (per * ref / (var + floor)).mean()
        else:
            loss = torch.nn.functional.mse_loss(pred.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # scale, step and update are plain backward/step when not fp16
        scaler.step(opt)
        scaler.update()
        it += 1
        # logged as plain RMSE; kept as tensors (no GPU sync per step) and read at the log line
        window.append(torch.nn.functional.mse_loss(pred.detach().float(), y))
        if it % args.log_every == 0:
            rmse = math.sqrt(torch.stack(window).mean().item()) * HU_SCALE[args.bundle][1]
            losses.append((it, elapsed, rmse))
            logger.info("it %d  %.1f min  lr %.2e  patch RMSE %.1f HU", it, elapsed / 60, lr, rmse)
            window = []
        if args.rescan_every and time.time() - t_scan > args.rescan_every:
            t_scan = time.time()
            added = sampler.rescan()
            if added:
                logger.info("added %d new simulated images (%d in all)", added, len(sampler.images))
        if time.time() - t_save > args.save_every:
            save_checkpoint()
            t_save = time.time()
    save_checkpoint()
    _atomic_save(_cpu_state(net), out / "model.pt")
    (out / "train.json").write_text(json.dumps({"args": _plain(args), "iterations": it, "minutes": elapsed / 60,
                                                 "losses": losses}, indent=1, default=str))
    logger.info("done: %d iterations, %.1f min; weights in %s", it, elapsed / 60, out / "model.pt")


def _add_residual_arg(parser) -> None:
    """``--residual``, shared by ``train`` and ``evaluate``: which network the weights are (or become)."""
    parser.add_argument("--residual", choices=("true", "false"), default=None,
                        help="the residual network (true: inference.json's default and the shipped weights') or the "
                             "seed's (false); weights of one kind give wrong images as the other")


def _add_train_args(sub) -> None:
    t = sub.add_parser("train", help="train a bundle's network on the simulated draws")
    t.add_argument("--bundle", choices=sorted(BUNDLES), required=True)
    t.add_argument("--data", required=True, help="simulate's output folder (several joined with os.pathsep)")
    t.add_argument("--out", required=True, help="run folder: checkpoint.pt (resumed from), model.pt, train.json")
    t.add_argument("--init", default=None, help="initial weights (e.g. the bundle's models/model.pt)")
    _add_residual_arg(t)
    t.add_argument("--zero-last-layer", action="store_true",
                   help="zero the last convolution of --init's network first: a residual network then starts as the "
                        "identity (carries residual=false weights over to residual=true)")
    t.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget, resumes included")
    t.add_argument("--max-iters", type=int, default=0, help="stop after this many iterations too (0: no limit)")
    t.add_argument("--patch", type=int, default=64)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--lr-final", type=float, default=0.1, help="final learning rate as a fraction of --lr (cosine)")
    t.add_argument("--i0-min", type=float, default=1e4, help="lowest dose, photons/element/view at 1152 views")
    t.add_argument("--i0-max", type=float, default=3e5, help="highest dose")
    t.add_argument("--intensity-jitter", type=float, default=0.05)
    t.add_argument("--kernels", default="", help="comma-separated filters to keep (default: all drawn)")
    t.add_argument("--presmooth-sharp", type=float, default=0.0,
                   help="Gaussian σ (pixels) applied to anatomy from sharp-kernel slices (their own noise) before use")
    t.add_argument("--presmooth-smooth", type=float, default=0.0,
                   help="the same for smooth-kernel slices and slices of unknown kernel")
    t.add_argument("--exclude-patients", default="", help="comma-separated patient ids to leave out")
    t.add_argument("--loss-weighting", choices=("noise", "none"), default="noise",
                   help="noise: each patch's MSE divided by its noise variance (+ --noise-floor-hu²); none: plain MSE")
    t.add_argument("--noise-floor-hu", type=float, default=10.0)
    t.add_argument("--amp", choices=("bf16", "fp16", "none"), default="bf16")
    t.add_argument("--device", default="cpu", help="where the network trains: cpu, cuda or cuda:N (patches are drawn on the CPU)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--save-every", type=float, default=120.0, help="seconds between checkpoints")
    t.add_argument("--rescan-every", type=float, default=0.0,
                   help="seconds between looks for new simulated draws (0: never), to train while simulate runs")
    t.set_defaults(func=cmd_train)


# ------------------------------------------------------------------------------------------------ evaluate
def body_rmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """RMSE in HU over the body (``ref > −500`` HU), as ``scripts/bench/bench_real.py`` measures it."""
    body = ref > -500
    return float(np.sqrt(np.mean((pred[body] - ref[body]) ** 2)))


def kernel_group(record: dict) -> str:
    k = str(record.get("kernel", "unknown"))
    return "B30f" if k.startswith("B30f") else "D45f" if k.startswith("D45f") else "unknown"


def cmd_evaluate(args) -> None:
    from scipy.ndimage import gaussian_filter

    torch.set_num_threads(args.threads)
    with np.load(args.pairs) as d:
        qd, fd = d["quarter_dose_hu"].astype(np.float32), d["full_dose_hu"].astype(np.float32)
    records = json.loads(Path(args.pairs).with_suffix(".json").read_text())
    groups = [kernel_group(r) for r in records]
    net = load_network(args.bundle, args.ckpt or str(BUNDLES[args.bundle] / "models" / "model.pt"), args.residual).eval()
    preds = []
    with torch.inference_mode():
        for q in qd:
            x = to_net(torch.from_numpy(q)[None, None], args.bundle)
            preds.append(from_net(net(x).float(), args.bundle)[0, 0].numpy())
    rows = {}
    for g in sorted(set(groups)):
        idx = [i for i, gg in enumerate(groups) if gg == g]
        inp = np.mean([body_rmse(qd[i], fd[i]) for i in idx])
        net_r = np.mean([body_rmse(preds[i], fd[i]) for i in idx])
        sig = min(np.arange(0.3, 3.01, 0.1), key=lambda s: np.mean([body_rmse(gaussian_filter(qd[i], s), fd[i]) for i in idx]))
        gau = np.mean([body_rmse(gaussian_filter(qd[i], sig), fd[i]) for i in idx])
        rows[g] = {"n": len(idx), "input": inp, "net": net_r, "net_cut_%": 100 * (1 - net_r / inp),
                   "gauss_sigma": float(sig), "gauss_cut_%": 100 * (1 - gau / inp)}
        print(f"{g:8s} n={len(idx):2d}  input {inp:6.1f}  net {net_r:6.1f} ({rows[g]['net_cut_%']:+.1f}%)  "
              f"gauss σ={sig:.1f} ({rows[g]['gauss_cut_%']:+.1f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _add_evaluate_args(sub) -> None:
    e = sub.add_parser("evaluate", help="quick body-RMSE check on real pairs (bench_real.py is the benchmark of record)")
    e.add_argument("--bundle", choices=sorted(BUNDLES), required=True)
    e.add_argument("--ckpt", default=None, help="weights (default: the bundle's models/model.pt)")
    e.add_argument("--pairs", default=str(ROOT.parent / "shared" / "real_ldct" / "dev_pairs.npz"))
    e.add_argument("--json", default=None, help="also write the table here")
    _add_residual_arg(e)
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(func=cmd_evaluate)


# ------------------------------------------------------------------------------------------------ export
def cmd_export(args) -> None:
    state = _load_weights(args.ckpt)
    load_network(args.bundle).load_state_dict({k: v.float() for k, v in state.items()})  # refuses a mismatch
    dest = Path(args.dest) if args.dest else BUNDLES[args.bundle] / "models" / "model.pt"
    _atomic_save({k: v.detach().cpu().to(EXPORT_DTYPE[args.bundle]).contiguous() for k, v in state.items()}, dest)
    logger.info("wrote %s (%.1f MB)", dest, dest.stat().st_size / 1e6)


def _add_export_args(sub) -> None:
    x = sub.add_parser("export", help="write a checkpoint's weights as the bundle's models/model.pt")
    x.add_argument("--bundle", choices=sorted(BUNDLES), required=True)
    x.add_argument("--ckpt", required=True)
    x.add_argument("--dest", default=None, help="default: bundles/<bundle>/models/model.pt")
    x.set_defaults(func=cmd_export)


# ------------------------------------------------------------------------------------------------ main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("simulate", help="simulated noise for normal-dose slices")
    s.add_argument("--input", nargs="*", help="normal-dose CT in HU: DICOM/NIfTI files or folders")
    s.add_argument("--npz", nargs="*", help="FILE[:i,j,...]: HU arrays (N, H, W) with a JSON sidecar, optional indices")
    s.add_argument("--npz-key", default=None, help="array name in the npz files (default: hu, else full_dose_hu)")
    s.add_argument("--phantoms", type=int, default=0,
                   help="also simulate this many procedural phantoms (512² at 0.70 mm, seeds [--seed, k]) after the real slices")
    s.add_argument("--phantom-detail", default="rich",
                   help="their detail: 'plain' (ellipses), 'rich' (vessels, bowel gas and contrast, fat stranding, "
                        "trabecular bone) or comma-separated names of ldct_sim.phantoms.RICH_FEATURES")
    s.add_argument("--spacing", type=float, default=None, help="pixel spacing in mm where none is recorded")
    s.add_argument("--out", required=True, help="output folder (keep it outside any repository)")
    s.add_argument("--realisations", type=int, default=2, help="draws per slice (pixel size, kernels, noise)")
    s.add_argument("--kernel-groups", default="hann,cosine,apod:-2.8:4.5;shepp-logan,ram-lak,apod:0.9:0.45",
                   help="';'-separated groups of FBP filters (names, or apod:S:Q for ldct_sim's ApodizedRamp); "
                        "one filter of each group is drawn per draw. Default: a smooth group (the last near the "
                        "Definition AS's B30f) and a sharp one (the last near its D45f)")
    s.add_argument("--profiles", default="",
                   help="comma-separated scanner profiles (JSON files of `python -m ldct_sim calibrate`, or shipped names "
                        "such as definition_as_b30f): their geometry, and their kernels as the groups (overrides --kernel-groups)")
    s.add_argument("--i0-ref", type=float, default=1e5, help="reference dose, photons per element per view at 1152 views")
    s.add_argument("--views", type=int, default=576, help="views per rotation simulated (I0 per view is rescaled)")
    s.add_argument("--scale-jitter", type=float, default=0.1, help="pixel size drawn in spacing*(1±j)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_simulate)

    for name, fn in (("train", "cmd_train"), ("evaluate", "cmd_evaluate"), ("export", "cmd_export")):
        if fn in globals():
            globals()[f"_add_{name}_args"](sub)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.func(args)


if __name__ == "__main__":
    main()
