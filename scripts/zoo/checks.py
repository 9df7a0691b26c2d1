"""The model zoo's checks of one bundle (``ldct_scripts.zoo.verify_bundles`` runs them and prints the table).

Each ``check_<name>(bundle, **options)`` returns a detail line when it passes and raises :class:`CheckFailed`
(a problem, with how to fix it) or :class:`Skipped` (the check does not apply). They call MONAI's own functions
(``verify_metadata``, ``verify_net_in_out``, ``ckpt_export``, ``ConfigWorkflow.check_properties``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from ldct_sim import mu_water

SCHEMA_NAME = "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"  # the copy in ../shared (see ../shared/README.md)
LARGE_FILE_MB = 25.0  # the model zoo's limit for files committed in a bundle
#: (config name, ConfigWorkflow type) of the workflows whose properties are checked, when present.
WORKFLOWS = (("inference", "infer"), ("train", "train"), ("evaluate", "eval"), ("finetune", "train"))
#: Tolerances of the TorchScript-versus-checkpoint comparison.
TS_RTOL, TS_ATOL = 1e-5, 1e-5

logger = logging.getLogger("verify_bundles")


class CheckFailed(Exception):
    """A check found a problem; the message says what and how to fix it."""


class Skipped(Exception):
    """A check could not apply (for example no ``models/model.pt``); the message says why."""


def file_md5(path: Path) -> str:
    """Hex MD5 of a file's bytes (the zoo's ``hash_type: md5``).

    Args:
        path: the file.
    """
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _metadata(bundle: Path) -> dict:
    path = bundle / "configs" / "metadata.json"
    if not path.is_file():
        raise CheckFailed(f"no configs/metadata.json in {bundle}")
    return json.loads(path.read_text(encoding="utf-8"))


def _spatial_shape(meta: dict, n: int) -> tuple[int, ...]:
    """The input's spatial shape from ``network_data_format`` with ``n`` (and ``p``) set, ``*`` as ``16·n``."""
    # MONAI's own parser of "16*n", "2**p", "*" (the one verify_net_in_out uses); private, hence this wrapper.
    from monai.bundle.scripts import _get_fake_spatial_shape

    shape = meta["network_data_format"]["inputs"]["image"]["spatial_shape"]
    return tuple(int(s) for s in _get_fake_spatial_shape(shape, p=n + 3, n=n, any=16 * n))


def _value_range(meta: dict) -> tuple[float, float]:
    vr = meta["network_data_format"]["inputs"]["image"].get("value_range") or [0.0, 1.0]
    return float(vr[0]), float(vr[1])


def _example_input(meta: dict, batch: int, n: int, seed: int = 0):
    """A seeded uniform batch inside the metadata's ``value_range``, shape ``(batch, C, *spatial)``."""
    import torch

    image = meta["network_data_format"]["inputs"]["image"]
    lo, hi = _value_range(meta)
    g = torch.Generator().manual_seed(seed)
    shape = (batch, int(image["num_channels"]), *_spatial_shape(meta, n))
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def make_tiny_dataset(root: str | os.PathLike, n_pixels: int = 32, n_items: int = 4, seed: int = 0) -> Path:
    """Write a tiny paired dataset in the layouts this repository's bundles read.

    ``root/{input,label}/case<i>.nii.gz``: float32 2-D slices in cm⁻¹ (a water ellipse at μ_water = 0.2059 cm⁻¹, ``ldct_sim.mu_water()``,
    in air, with Gaussian noise of 0.004 cm⁻¹, about 20 HU, on the input), 0.7 mm pixels; datalists
    ``datalist.json``, ``datalist_s2r.json`` and ``datalist_r2s.json``, each with ``training``,
    ``validation``, ``test`` (image + label), ``source`` (image + label) and ``target`` (image) lists.

    Args:
        root: the dataset folder (created).
        n_pixels: the slices' side.
        n_items: how many pairs (at least 3: training, validation, test).
        seed: the noise's seed.

    Returns:
        ``root`` as a ``Path``.
    """
    import nibabel as nib
    import numpy as np

    if n_items < 3:
        raise ValueError(f"make_tiny_dataset: `n_items` must be at least 3, got {n_items!r}.")
    root = Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n_pixels, :n_pixels]
    c = (n_pixels - 1) / 2
    body = (yy - c) ** 2 / (0.42 * n_pixels) ** 2 + (xx - c) ** 2 / (0.36 * n_pixels) ** 2 <= 1
    items = []
    for i in range(n_items):
        label = np.where(body, mu_water(), 0.0).astype(np.float32)
        image = (label + rng.normal(0.0, 0.004, label.shape)).astype(np.float32)
        for role, arr in (("input", image), ("label", label)):
            (root / role).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(arr, np.diag([0.7, 0.7, 1.0, 1.0])), root / role / f"case{i}.nii.gz")
        items.append({"image": f"input/case{i}.nii.gz", "label": f"label/case{i}.nii.gz", "id": f"case{i}"})
    n_train = n_items - 2
    lists = {
        "training": items[:n_train],
        "validation": items[n_train : n_train + 1],
        "test": items[n_train + 1 :],
        "source": items[:n_train],
        "target": [{"image": it["image"], "id": it["id"]} for it in items[:n_train]],
    }
    for name in ("datalist.json", "datalist_s2r.json", "datalist_r2s.json"):
        (root / name).write_text(json.dumps(lists, indent=1), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------- checks
def check_files(bundle: Path, **_) -> str:
    """``configs/metadata.json`` and ``LICENSE`` exist; the preferred files are reported when missing.

    Args:
        bundle: the bundle folder.
    """
    missing = [f for f in ("configs/metadata.json", "LICENSE") if not (bundle / f).is_file()]
    if missing:
        raise CheckFailed(f"missing required file(s): {', '.join(missing)}")
    preferred = [f for f in ("models/model.pt", "configs/inference.json", "docs/README.md") if not (bundle / f).is_file()]
    large = [p.name for p in bundle.glob("large_files.*") if p.suffix in (".yml", ".yaml", ".json")]
    return (
        "required files present"
        + (f"; preferred but missing: {', '.join(preferred)}" if preferred else "")
        + (f"; {large[0]} lists files to fetch first (python -m monai.bundle download_large_files)" if large else "")
    )


def check_version(bundle: Path, **_) -> str:
    """The metadata has a ``version`` and a ``changelog`` entry for it.

    Args:
        bundle: the bundle folder.
    """
    meta = _metadata(bundle)
    if "version" not in meta:
        raise CheckFailed("'version' is missing in configs/metadata.json")
    if not isinstance(meta.get("changelog"), dict) or not meta["changelog"]:
        raise CheckFailed("'changelog' is missing (or empty) in configs/metadata.json")
    if meta["version"] not in meta["changelog"]:
        raise CheckFailed(f"version {meta['version']!r} is missing in the 'changelog' of configs/metadata.json")
    return f"version {meta['version']}, {len(meta['changelog'])} changelog entr{'y' if len(meta['changelog']) == 1 else 'ies'}"


def check_metadata(bundle: Path, schema: Path | None, workdir: Path, **_) -> str:
    """``monai.bundle.verify_metadata`` against the schema.

    Args:
        bundle: the bundle folder.
        schema: the schema file; ``None`` lets MONAI download the URL the metadata names.
        workdir: where the check may write (a downloaded schema).
    """
    from monai.bundle import verify_metadata

    meta = _metadata(bundle)
    url = str(meta.get("schema", ""))
    meta_file = str(bundle / "configs" / "metadata.json")
    if schema is None:  # --download-schema: verify_metadata downloads the URL the metadata names
        target = workdir / "schema" / (url.rsplit("/", 1)[-1] or "schema.json")
        verify_metadata(meta_file=meta_file, filepath=str(target))
        return f"valid against {url} (downloaded)"
    if url.rsplit("/", 1)[-1] != schema.name:
        raise CheckFailed(f"the metadata names the schema {url!r}, but --schema is {schema.name!r}")
    hash_val = SCHEMA_MD5 if schema.name == SCHEMA_NAME else None
    try:
        verify_metadata(meta_file=meta_file, filepath=str(schema), hash_val=hash_val)
    except ValueError as e:
        raise CheckFailed(str(e)) from e
    return f"valid against {schema.name}" + (" (md5 checked)" if hash_val else "")


def _parser(bundle: Path, config: str = "inference.json"):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / config))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    return parser


def check_net_in_out(bundle: Path, device: str | None = None, **_) -> str:
    """``monai.bundle.verify_net_in_out``, then: ``pred`` keeps the input's batch and spatial size.

    Args:
        bundle: the bundle folder.
        device: the torch device; default ``cuda:0`` when available.
    """
    import torch
    from monai.bundle import verify_net_in_out

    meta = _metadata(bundle)
    fmt = meta.get("network_data_format", {})
    if "image" not in fmt.get("inputs", {}) or "pred" not in fmt.get("outputs", {}):
        raise CheckFailed(
            "network_data_format must name its input 'image' and its output 'pred' (MONAI's verify_net_in_out, "
            f"ckpt_export and onnx_export read those), got inputs {sorted(fmt.get('inputs', {}))} and "
            f"outputs {sorted(fmt.get('outputs', {}))}"
        )
    if not (bundle / "configs" / "inference.json").is_file():
        raise Skipped("no configs/inference.json")
    kwargs = {"device": device} if device else {}
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        **kwargs,
    )
    # verify_net_in_out checks channels and dtype; a denoiser must also keep batch and spatial size.
    net = _parser(bundle).get_parsed_content("network_def").eval()
    x = _example_input(meta, batch=2, n=2)
    with torch.no_grad():
        y = net(x)
    want = (x.shape[0], int(fmt["outputs"]["pred"]["num_channels"]), *x.shape[2:])
    if tuple(y.shape) != want:
        raise CheckFailed(f"network output shape {tuple(y.shape)} for input {tuple(x.shape)}; expected {want}")
    return f"image {tuple(x.shape)} -> pred {tuple(y.shape)}, {y.dtype}"


def _load_checkpoint(path: Path):
    import torch

    try:
        return torch.load(str(path), weights_only=True)
    except RuntimeError as e:
        if "cuda" in str(e).lower():
            raise CheckFailed(
                f"{path.name} holds CUDA tensors and does not load on this machine: save CPU tensors "
                "(`{k: v.cpu() for k, v in state.items()}`)"
            ) from e
        raise


def check_checkpoint(bundle: Path, **_) -> str:
    """``models/model.pt`` loads with ``weights_only=True``, holds CPU tensors only, and is under the zoo's limit.

    Args:
        bundle: the bundle folder.
    """
    import torch

    path = bundle / "models" / "model.pt"
    if not path.is_file():
        raise Skipped("no models/model.pt")
    size_mb = path.stat().st_size / 1e6
    state = _load_checkpoint(path)
    tensors = {}

    def walk(obj, prefix=""):
        if torch.is_tensor(obj):
            tensors[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))

    walk(state)
    if not tensors:
        raise CheckFailed(f"models/model.pt holds no tensors (a {type(state).__name__})")
    on_gpu = sorted(k for k, t in tensors.items() if t.device.type != "cpu")
    if on_gpu:
        raise CheckFailed(f"models/model.pt holds {len(on_gpu)} non-CPU tensor(s) (e.g. {on_gpu[0]}): save CPU tensors")
    if size_mb > LARGE_FILE_MB:
        raise CheckFailed(
            f"models/model.pt is {size_mb:.1f} MB, over the zoo's {LARGE_FILE_MB:.0f} MB limit for committed files: "
            "store it in fp16, or leave it out and list it in large_files.yml (ldct_scripts.zoo.package_bundle does that)"
        )
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in tensors.values()})
    n = sum(t.numel() for t in tensors.values() if t.is_floating_point())
    return f"{size_mb:.2f} MB, {len(tensors)} CPU tensors ({', '.join(dtypes)}), {n:,} values"


def check_torchscript(bundle: Path, workdir: Path, **_) -> str:
    """``ckpt_export`` to TorchScript, reloaded with its configs, gives the checkpoint's output.

    Args:
        bundle: the bundle folder.
        workdir: where the export goes.
    """
    import torch
    from ignite.handlers import Checkpoint
    from monai.bundle import ckpt_export
    from monai.data import load_net_with_metadata

    ckpt = bundle / "models" / "model.pt"
    if not ckpt.is_file():
        raise Skipped("no models/model.pt")
    if not (bundle / "configs" / "inference.json").is_file():
        raise Skipped("no configs/inference.json")
    ts_path = workdir / f"{bundle.name}_model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(ckpt),
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
    )
    scripted, meta_in_ts, extra = load_net_with_metadata(str(ts_path), more_extra_files=("inference.json",))
    meta = _metadata(bundle)
    if meta_in_ts.get("version") != meta.get("version") or not extra.get("inference.json"):
        raise CheckFailed("the TorchScript file lacks the bundle's metadata.json or inference.json")
    shipped = bundle / "models" / "model.ts"
    if shipped.is_file():  # the zoo also loads a shipped model.ts
        torch.jit.load(str(shipped))
    # The checkpoint's own network, loaded as ckpt_export loads it (ignite Checkpoint, strict).
    net = _parser(bundle).get_parsed_content("network_def")
    Checkpoint.load_objects(to_load={"model": net}, checkpoint=_load_checkpoint(ckpt))
    net.eval()
    x = _example_input(meta, batch=2, n=2, seed=1)
    with torch.no_grad():
        ref, out = net(x), scripted(x)
    diff = float((out - ref).abs().max())
    try:
        torch.testing.assert_close(out, ref, rtol=TS_RTOL, atol=TS_ATOL)
    except AssertionError as e:
        raise CheckFailed(f"TorchScript output differs from the checkpoint's network (max |diff| {diff:.3g}): {e}") from e
    return f"{ts_path.name} reloads; max |TorchScript - checkpoint| = {diff:.2g} on {tuple(x.shape)}"


def _workflow_files(bundle: Path, name: str) -> list[Path] | None:
    path = bundle / "configs" / f"{name}.json"
    if not path.is_file():
        return None
    content = json.loads(path.read_text(encoding="utf-8"))
    if "bundle_root" not in content and name != "train":  # an overlay, merged on train.json as the docs run it
        return [bundle / "configs" / "train.json", path]
    return [path]


def check_properties(bundle: Path, workflow: str, kind: str, workdir: Path, **_) -> str:
    """``ConfigWorkflow(...).initialize()`` on a tiny dataset, then ``check_properties() == []``.

    Args:
        bundle: the bundle folder.
        workflow: the config's name (``train``, ``inference``, ...).
        kind: the ``ConfigWorkflow`` type (``train``, ``infer``, ``eval``).
        workdir: where the tiny dataset and outputs go.
    """
    from monai.bundle import ConfigParser, ConfigWorkflow

    files = _workflow_files(bundle, workflow)
    if files is None:
        raise Skipped(f"no configs/{workflow}.json")
    data = workdir / "tiny_data"
    if not (data / "datalist.json").is_file():
        make_tiny_dataset(data)
    out = workdir / "properties" / workflow
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    wanted = {
        "dataset_dir": str(data / "input") if kind == "infer" and workflow == "inference" else str(data),
        "output_dir": str(out),
        "ckpt_dir": str(out / "checkpoints"),
        "num_workers": 0,
        "cache_rate": 0.0,
        "use_perceptual": False,  # VGG-19 weights are never downloaded
    }
    override = {k: v for k, v in wanted.items() if k in parser}
    note = ""
    weight_keys = [k for k in ("ckpt_path", "pretrained_ckpt") if k in parser]
    if weight_keys and not (bundle / "models" / "model.pt").is_file():
        # Properties belong to the config, not to the weights: without shipped weights, a random-init
        # state dict of network_def stands in (the zoo's unit tests disable the loader instead).
        import torch

        stand_in = workdir / "stand_in_model.pt"
        if not stand_in.is_file():
            torch.save(parser.get_parsed_content("network_def").state_dict(), stand_in)
        override.update({k: str(stand_in) for k in weight_keys})
        note = " (stand-in weights: no models/model.pt)"
    logging_file = bundle / "configs" / "logging.conf"
    wf = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(logging_file) if logging_file.is_file() else False,
        workflow_type=kind,
        bundle_root=str(bundle),
        **override,
    )
    wf.initialize()
    try:
        missing = wf.check_properties()
    except KeyError as e:  # MONAI 1.6.1 raises for an absent required ID instead of listing it
        raise CheckFailed(f"{'+'.join(f.name for f in files)} ({kind}): {e}") from e
    if missing:
        raise CheckFailed(f"{'+'.join(f.name for f in files)} ({kind}) lacks properties {missing}")
    return f"{'+'.join(f.name for f in files)} as {kind!r}: check_properties() == []{note}"


# ------------------------------------------------------------------------------------------- runner


#: The single checks by name (``properties`` runs :func:`check_properties` once per workflow).
CHECK_FUNCTIONS = {
    "files": check_files,
    "version": check_version,
    "metadata": check_metadata,
    "net_in_out": check_net_in_out,
    "checkpoint": check_checkpoint,
    "torchscript": check_torchscript,
}
