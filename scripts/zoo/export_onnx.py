"""Export a bundle's network to ONNX with dynamic batch and spatial axes, then check it with onnxruntime.

The export is MONAI's own ``monai.bundle.onnx_export`` (network ``network_def`` of
``configs/inference.json``, weights ``models/model.pt`` loaded as ``ckpt_export`` loads them), given
``converter_kwargs`` that name the input ``image`` and the output ``pred`` (as the metadata does) and
mark the batch and every spatial axis dynamic; PyTorch 2.13 exports through ``torch.export``
(dynamo). The bundle's name, version and ``network_data_format`` go into the ONNX model's
``metadata_props``.

The check runs the ONNX file in onnxruntime (CPU) on inputs whose batch *and* spatial sizes differ from
the export's (so a graph with a frozen axis fails) and compares with the PyTorch network:
``max |onnx - torch| / max |torch| <= rtol`` (default 1e-4).

Shapes follow ``network_data_format.inputs.image`` (``"16*n"`` sides). A network whose ``forward``
branches on the input size is exported along the branch of the example (``torch.export`` keeps one
path), so by default the example is 8 pixels off the pattern (batch 2, 40 × 56) whenever the PyTorch
network accepts such sizes: the U-Net's padding of sides that are not multiples of 16 then stays in
the graph, and the ONNX model takes any size, as the PyTorch one does. A network that refuses such
sizes is exported on its pattern (32 × 48). The default check runs batch 3 at 64 × 32 and, when
off-pattern sizes are accepted, batch 1 at 33 × 47. ``--input-shape`` and ``--check-shape`` override.

Usage::

    python -m ldct_scripts.zoo.export_onnx bundles/cpce_rfm_da --filepath cpce_rfm_da.onnx
    python -m ldct_scripts.zoo.export_onnx bundles/unet_ldct --filepath unet_ldct.onnx
    python -m ldct_scripts.zoo.export_onnx bundles/unet_ldct --filepath unet_ldct.onnx --check-shape 1 1 512 512 --check-shape 2 1 100 140

Exit status 0 when the export loads in onnxruntime and matches PyTorch on every check shape, else 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ldct_scripts.bundle_import import bundle_scripts_on_path  # both bundles name their package `scripts`
from ldct_scripts.cli import parse_kebab

RTOL = 1e-4

__all__ = ["export_onnx", "check_onnx", "dynamic_axes", "main"]


def dynamic_axes(n_spatial: int) -> dict[str, dict[int, str]]:
    """``dynamic_axes`` for ``torch.onnx.export``: batch and every spatial axis of ``image`` and ``pred``.

    Args:
        n_spatial: the number of spatial axes (2 for slices).
    """
    names = ["height", "width"] if n_spatial == 2 else [f"spatial{i}" for i in range(n_spatial)]
    axes = {0: "batch", **{2 + i: name for i, name in enumerate(names)}}
    return {"image": dict(axes), "pred": dict(axes)}


def _metadata(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))


def _shape_from_metadata(meta: dict, batch: int, ns: Sequence[int]) -> list[int]:
    """``(batch, C, *spatial)`` with axis ``i``'s pattern evaluated at ``n = ns[i]`` (``*`` as 16·n)."""
    # MONAI's parser of "16*n", "2**p", "*" (the one verify_net_in_out uses); private, hence this wrapper.
    from monai.bundle.scripts import _get_fake_spatial_shape

    image = meta["network_data_format"]["inputs"]["image"]
    spatial = [int(_get_fake_spatial_shape([s], p=n + 3, n=n, any=16 * n)[0]) for s, n in zip(image["spatial_shape"], ns)]
    return [batch, int(image["num_channels"]), *spatial]


def default_shapes(meta: dict, net=None) -> tuple[list[int], list[list[int]]]:
    """The export example's shape and the check shapes, every axis differing between export and check.

    On the metadata's pattern (``"16*n"``): export at n = 2, 3 (+ 8 pixels per side when ``net`` accepts
    sizes off the pattern, so that a size-dependent path such as padding stays in the graph), check at
    n = 4, 2 and, when ``net`` accepts them, at sizes off the pattern too (n = 2, 3, then +1, -1 pixel).

    Args:
        meta: the bundle's ``metadata.json``.
        net: the PyTorch network, tried on off-pattern sizes; ``None``: the pattern only.
    """
    import torch

    k = len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"])
    on_pattern = _shape_from_metadata(meta, 2, [2 + i for i in range(k)])
    checks = [_shape_from_metadata(meta, 3, [4 - (i % 2) * 2 for i in range(k)])]
    off_pattern = on_pattern[:2] + [s + 8 for s in on_pattern[2:]]
    odd = [1, on_pattern[1]] + [s + (1 if i % 2 == 0 else -1) for i, s in enumerate(on_pattern[2:])]
    if net is None:
        return on_pattern, checks
    try:
        with torch.no_grad():
            for shape in (off_pattern, odd):
                net(torch.rand(shape))
    except Exception:  # the network keeps to its pattern: export and check on it only
        return on_pattern, checks
    return off_pattern, checks + [odd]


def _torch_network(bundle: Path, config_file: Path, ckpt_file: Path, net_id: str):
    """The PyTorch network with the checkpoint loaded as MONAI's exporters load it (ignite, strict)."""
    import torch
    from ignite.handlers import Checkpoint
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser["bundle_root"] = str(bundle)
    net = parser.get_parsed_content(net_id)
    Checkpoint.load_objects(to_load={"model": net}, checkpoint=torch.load(str(ckpt_file), map_location="cpu", weights_only=True))
    return net.eval()


def check_onnx(onnx_path: str | Path, net, shapes: Sequence[Sequence[int]], rtol: float = RTOL, seed: int = 0,
               value_range: tuple[float, float] = (0.0, 1.0)) -> list[dict]:
    """Run ``onnx_path`` in onnxruntime (CPU) and ``net`` in PyTorch on seeded inputs of each shape.

    Args:
        onnx_path: the ONNX file.
        net: the PyTorch network (eval mode).
        shapes: ``(B, C, *spatial)`` of each check.
        rtol: tolerance of ``max |diff| / max |torch|``.
        seed: seed of the random inputs.
        value_range: the inputs' range (uniform).

    Returns:
        One dict per shape: ``shape``, ``output_shape``, ``max_abs_diff``, ``rel_diff`` (max |diff| over
        max |torch|), ``ok`` (``rel_diff <= rtol`` and equal output shapes).
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    lo, hi = value_range
    rows = []
    for i, shape in enumerate(shapes):
        g = torch.Generator().manual_seed(seed + i)
        x = lo + (hi - lo) * torch.rand(tuple(int(s) for s in shape), generator=g)
        with torch.no_grad():
            ref = net(x).numpy()
        try:
            out = sess.run(None, {in_name: x.numpy()})[0]
        except Exception as e:  # onnxruntime refuses the shape: a failed check, reported with its reason
            rows.append({"shape": list(x.shape), "output_shape": None, "max_abs_diff": float("inf"),
                         "rel_diff": float("inf"), "ok": False, "error": " ".join(str(e).split())[:300]})
            continue
        same = out.shape == ref.shape
        diff = float(np.abs(out - ref).max()) if same else float("inf")
        rel = diff / max(float(np.abs(ref).max()), 1e-12)
        rows.append({"shape": list(x.shape), "output_shape": list(out.shape), "max_abs_diff": diff, "rel_diff": rel,
                     "ok": bool(same and rel <= rtol)})
    return rows


def _stamp_metadata(filepath: Path, name: str, meta: dict):
    """Write the bundle's name, version and ``network_data_format`` into the ONNX file's metadata; returns the model."""
    import onnx

    model = onnx.load(str(filepath))
    props = {"monai_bundle_name": name, "monai_bundle_version": str(meta.get("version", "")),
             "network_data_format": json.dumps(meta.get("network_data_format", {}))}
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(filepath))
    return model


def export_onnx(
    bundle: str | Path,
    filepath: str | Path,
    input_shape: Sequence[int] | None = None,
    check_shapes: Sequence[Sequence[int]] | None = None,
    ckpt_file: str | Path | None = None,
    config_file: str | Path | None = None,
    net_id: str = "network_def",
    rtol: float = RTOL,
    opset_version: int | None = None,
) -> dict:
    """Export ``bundle``'s network to ``filepath`` (ONNX, dynamic batch and spatial axes) and check it.

    Args:
        bundle: the bundle folder.
        filepath: the ONNX file to write.
        input_shape: ``(B, C, *spatial)`` of the export example; default from the metadata (batch 2).
        check_shapes: shapes the onnxruntime check runs; default one that differs on every axis.
        ckpt_file: weights; default ``models/model.pt``.
        config_file: config holding ``net_id``; default ``configs/inference.json``.
        net_id: the network's config ID. Default ``"network_def"``.
        rtol: tolerance of ``max |onnx - torch| / max |torch|``. Default 1e-4.
        opset_version: ONNX opset; default the exporter's.

    Returns:
        ``{"filepath", "input_shape", "inputs", "outputs", "checks": [...], "ok"}``; ``inputs`` and
        ``outputs`` list the graph's dimension names (strings are dynamic).

    Raises:
        FileNotFoundError: no bundle, config or checkpoint.
        ValueError: shapes of the wrong rank.
    """
    from monai.bundle import onnx_export

    bundle = Path(bundle).resolve()
    config_file = Path(config_file) if config_file else bundle / "configs" / "inference.json"
    ckpt_file = Path(ckpt_file) if ckpt_file else bundle / "models" / "model.pt"
    for what, p in (("bundle", bundle), ("config_file", config_file)):
        if not p.exists():
            raise FileNotFoundError(f"export_onnx: {what} {str(p)!r} does not exist.")
    meta = _metadata(bundle)
    n_dims = 2 + len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"])
    for s in [input_shape or [0] * n_dims, *(check_shapes or [])]:
        if len(s) != n_dims:
            raise ValueError(f"export_onnx: shapes must have {n_dims} entries (batch, channel, spatial), got {list(s)}.")
    if not ckpt_file.is_file():
        raise FileNotFoundError(f"export_onnx: checkpoint {str(ckpt_file)!r} does not exist.")
    filepath = Path(filepath)
    filepath.parent.mkdir(parents=True, exist_ok=True)
    converter_kwargs = {"input_names": ["image"], "output_names": ["pred"], "dynamic_axes": dynamic_axes(n_dims - 2)}
    if opset_version:
        converter_kwargs["opset_version"] = int(opset_version)
    with bundle_scripts_on_path(bundle):
        net = _torch_network(bundle, config_file, ckpt_file, net_id)
        default_export, default_checks = default_shapes(meta, net)
        input_shape = [int(s) for s in (input_shape or default_export)]
        check_shapes = [[int(s) for s in c] for c in (check_shapes or default_checks)]
        onnx_export(
            net_id=net_id,
            filepath=str(filepath),
            ckpt_file=str(ckpt_file),
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=str(config_file),
            input_shape=input_shape,
            converter_kwargs=converter_kwargs,
            bundle_root=str(bundle),
        )
    model = _stamp_metadata(filepath, bundle.name, meta)

    def dims(values):
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    vr = meta["network_data_format"]["inputs"]["image"].get("value_range") or [0.0, 1.0]
    checks = check_onnx(filepath, net, check_shapes, rtol=rtol, value_range=(float(vr[0]), float(vr[1])))
    inputs, outputs = dims(model.graph.input), dims(model.graph.output)
    dynamic = all(isinstance(d, str) and d for i, d in enumerate(inputs.get("image", [])) if i != 1)
    return {"filepath": str(filepath), "input_shape": input_shape, "inputs": inputs, "outputs": outputs,
            "checks": checks, "ok": bool(dynamic and all(c["ok"] for c in checks)), "dynamic": dynamic}


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``--kebab-case``; the old ``--snake_case`` spellings are read too).

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="the bundle folder, e.g. bundles/cpce_rfm_da")
    p.add_argument("--filepath", required=True, help="the ONNX file to write")
    p.add_argument("--input-shape", dest="input_shape", type=int, nargs="+", default=None, help="export example shape B C H W")
    p.add_argument("--check-shape", dest="check_shape", type=int, nargs="+", action="append", default=None,
                   help="an onnxruntime check shape B C H W (repeatable)")
    p.add_argument("--ckpt-file", dest="ckpt_file", default=None, help="weights (default models/model.pt)")
    p.add_argument("--config-file", dest="config_file", default=None, help="config with the network (default configs/inference.json)")
    p.add_argument("--net-id", dest="net_id", default="network_def", help="the network's config ID (default network_def)")
    p.add_argument("--rtol", type=float, default=RTOL, help=f"max |onnx - torch| / max |torch| (default {RTOL:g})")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: the exporter's)")
    return parse_kebab(p, argv)


def main(argv=None) -> int:
    """Export and check; print the graph's axes and each check; exit status 0 when all passed.

    Args:
        argv: the arguments; default ``sys.argv[1:]``.
    """
    args = parse_args(argv)
    try:
        report = export_onnx(args.bundle, args.filepath, args.input_shape, args.check_shape, args.ckpt_file,
                             args.config_file, args.net_id, args.rtol, args.opset)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{report['filepath']}: exported at {report['input_shape']}; input {report['inputs']}, output {report['outputs']}")
    for c in report["checks"]:
        if c.get("error"):
            print(f"  onnxruntime {c['shape']}: FAIL, {c['error']}")
            continue
        print(f"  onnxruntime {c['shape']} -> {c['output_shape']}: max |diff| {c['max_abs_diff']:.2e}, "
              f"relative {c['rel_diff']:.2e} ({'ok' if c['ok'] else 'FAIL'}, rtol {args.rtol:g})")
    if not report["dynamic"]:
        print("  FAIL: the graph's batch or spatial axes are not dynamic")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
