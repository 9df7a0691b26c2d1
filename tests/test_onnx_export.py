"""``ldct_scripts.zoo.export_onnx`` (scripts/zoo/export_onnx.py): ONNX export with dynamic batch and spatial axes, checked by onnxruntime.

Each bundle's network is exported once (through ``monai.bundle.onnx_export``); onnxruntime must agree
with PyTorch within 1e-4 relative (max |onnx - torch| / max |torch|) on batch and spatial sizes that
differ from the export's, the graph's batch, height and width must be named (dynamic) dimensions, and
the bundle's version rides in the ONNX metadata. The U-Net is exported along its padding path, so that
its ONNX graph takes any size as the PyTorch network does; a graph frozen to one size fails the check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle_loading import bundle_scripts
from session_cache import once_per_session

REPO = Path(__file__).resolve().parents[1]
RTOL = 1e-4


def _export_module():
    import ldct_scripts.zoo.export_onnx as module

    return module


def _weights(bundle: str) -> Path:
    path = REPO / "bundles" / bundle / "models" / "model.pt"
    if not path.is_file():
        pytest.skip(f"bundles/{bundle}/models/model.pt is absent (weights not shipped yet)")
    return path


def _torch_net(bundle: str):
    """The bundle's network built here from its ``network_def`` and the shipped state dict."""
    nd = dict(json.loads((REPO / "bundles" / bundle / "configs" / "inference.json").read_text())["network_def"])
    cls = getattr(bundle_scripts(bundle).networks, nd.pop("_target_").rsplit(".", 1)[1])
    net = cls(**nd).eval()
    net.load_state_dict(torch.load(_weights(bundle), weights_only=True))
    return net


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``bundle -> (report, onnx path)``: each bundle exported once per session (and once across workers)."""

    def make(bundle, folder):
        report = _export_module().export_onnx(REPO / "bundles" / bundle, folder / f"{bundle}.onnx")
        (folder / "report.json").write_text(json.dumps(report))

    def get(bundle):
        _weights(bundle)
        folder = once_per_session(tmp_path_factory, f"onnx_{bundle}", lambda f: make(bundle, f))
        return json.loads((folder / "report.json").read_text()), folder / f"{bundle}.onnx"

    return get


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x})[0]


@pytest.mark.parametrize("bundle", ["cpce_rfm_da", "unet_ldct"])
def test_onnx_graph_has_dynamic_batch_and_spatial_axes_and_matches_pytorch(exported, bundle):
    import onnx

    report, path = exported(bundle)
    assert report["ok"] and report["dynamic"]
    assert report["inputs"] == {"image": ["batch", 1, "height", "width"]}
    assert list(report["outputs"]) == ["pred"] and report["outputs"]["pred"][:2] == ["batch", 1]
    # the check ran on other batch and spatial sizes than the export's, within 1e-4 relative
    for c in report["checks"]:
        assert all(a != b for a, b in zip(np.delete(c["shape"], 1), np.delete(report["input_shape"], 1)))
        assert c["output_shape"] == c["shape"] and c["rel_diff"] <= RTOL
    # and again here, independently, on one more size (odd sides, batch 2) against the bundle's own class
    x = torch.rand(2, 1, 50, 70, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = _torch_net(bundle)(x).numpy()
    out = _ort(path, x.numpy())
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() / np.abs(ref).max() <= RTOL
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    card = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
    assert meta["monai_bundle_name"] == bundle and meta["monai_bundle_version"] == card["version"]
    assert json.loads(meta["network_data_format"]) == card["network_data_format"]


def test_unet_export_keeps_its_padding_for_sides_off_the_16_pattern(exported):
    report, path = exported("unet_ldct")
    assert report["input_shape"][2] % 16 and report["input_shape"][3] % 16  # exported along the padding path
    shapes = [c["shape"] for c in report["checks"]]
    assert any(s[2] % 16 == 0 and s[3] % 16 == 0 for s in shapes)  # a 16-multiple still works (pad by 0)
    assert any(s[2] % 16 and s[3] % 16 for s in shapes)


def test_a_graph_frozen_to_one_size_fails_the_check_with_the_runtime_error(tmp_path):
    """A static graph (no dynamic axes) takes its export size only: the check reports the others as failed."""
    net = torch.nn.Conv2d(1, 1, 3, padding=1).eval()
    torch.onnx.export(net, (torch.rand(1, 1, 16, 16),), str(tmp_path / "static.onnx"), input_names=["image"],
                      output_names=["pred"], dynamo=False)
    rows = _export_module().check_onnx(tmp_path / "static.onnx", net, [[1, 1, 16, 16], [2, 1, 24, 16]])
    assert rows[0]["ok"] and rows[0]["rel_diff"] <= RTOL
    assert not rows[1]["ok"] and rows[1]["output_shape"] is None and "ONNXRuntimeError" in rows[1]["error"]


def test_dynamic_axes_name_batch_and_every_spatial_axis():
    eo = _export_module()
    assert eo.dynamic_axes(2) == {"image": {0: "batch", 2: "height", 3: "width"},
                                  "pred": {0: "batch", 2: "height", 3: "width"}}
    assert eo.dynamic_axes(3)["image"] == {0: "batch", 2: "spatial0", 3: "spatial1", 4: "spatial2"}


def test_bad_shapes_and_missing_weights_are_refused(tmp_path, capsys):
    eo = _export_module()
    argv = [str(REPO / "bundles" / "cpce_rfm_da"), "--filepath", str(tmp_path / "x.onnx"), "--check-shape", "1", "32", "32"]
    assert eo.main(argv) == 1
    assert "shapes must have 4 entries (batch, channel, spatial), got [1, 32, 32]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="shapes must have 4 entries"):
        eo.export_onnx(REPO / "bundles" / "cpce_rfm_da", tmp_path / "x.onnx", input_shape=[1, 32, 32])
    with pytest.raises(FileNotFoundError, match="checkpoint .* does not exist"):
        eo.export_onnx(REPO / "bundles" / "cpce_rfm_da", tmp_path / "x.onnx", ckpt_file=tmp_path / "none.pt")
