"""``bundles/cpce_rfm_da/configs/adapt.json`` (layered on ``train.json``) and ``scripts/adapt.py``.

Tiny data: three 48-pixel phantoms through ``python -m ldct_sim simulate --profile`` (the labelled source,
at 90 views) and three noisy phantoms in HU without labels (the target).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle_loading import bundle_scripts as _bundle_scripts

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "cpce_rfm_da"
LAYERED = "['configs/train.json','configs/adapt.json']"
TINY = ["--patch_size", "[32,32]", "--batch_size", "2", "--patches_per_epoch", "4", "--mask_report_images", "3",
        "--align_discriminator#channels", "[8,16]", "--align_discriminator#strides", "[1,2]",
        "--align_discriminator#hidden", "16", "--image_discriminator#channels", "[8,16]",
        "--image_discriminator#strides", "[1,2]", "--image_discriminator#hidden", "16"]


def bundle_scripts(bundle):
    """The bundle's ``scripts`` package with the submodules these tests use imported."""
    S = _bundle_scripts(bundle)
    for name in ("adapt", "frequency", "networks"):
        importlib.import_module(f"{S.__name__}.{name}")
    return S


def _nifti(path: Path, hu: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(hu.astype(np.float32)[:, :, None], np.diag([1.5, 1.5, 1.0, 1.0])), str(path))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from ldct_sim.phantoms import abdominal_phantom

    root = tmp_path_factory.mktemp("adapt")
    (root / "nd").mkdir()
    (root / "tgt").mkdir()
    rng = np.random.default_rng(0)
    for s in range(3):
        hu = abdominal_phantom(48, seed=s)
        _nifti(root / "nd" / f"p{s}.nii.gz", hu)
        _nifti(root / "tgt" / f"t{s}.nii.gz", hu + rng.normal(0.0, 40.0, hu.shape))
    cmd = [sys.executable, "-m", "ldct_sim", "simulate", "--input", str(root / "nd"), "--profile", "definition_as_b30f",
           "--n-views", "90", "--split", "34", "33", "33", "--out", str(root / "src"), "--no-progress"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return root


def _adapt(folders, run: Path, *extra, check=True):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", LAYERED, "--source_dir", str(folders / "src"),
           "--target_dir", str(folders / "tgt"), "--run_dir", str(run), "--max_epochs", "1", *TINY, *extra]
    proc = subprocess.run(cmd, cwd=BUNDLE, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_adapt_writes_weights_log_and_mask_report_selected_on_source_pairs(folders, tmp_path):
    run = tmp_path / "run"
    _adapt(folders, run)
    assert (run / "model.pt").is_file() and (run / "adapt.log").is_file()
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    shipped = torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state.keys() == shipped.keys()
    assert any(not torch.equal(state[k], shipped[k]) for k in state)  # it trained, from the shipped weights
    log = (run / "adapt.log").read_text()
    assert "starting from" in log and "models/model.pt" in log
    report = json.loads((run / "mask_report.json").read_text())
    for when in ("before", "after"):
        for domain in ("source", "target"):
            probs = report[when][domain]["mean"]
            assert len(probs) == len(report["bin_centres_normalised_radius"]) == 16
            assert all(0.0 <= p <= 1.0 for p in probs)
        assert isinstance(report[when]["adaptive_mask"], bool)
    # the selection rule: the validation items are the source's validation pairs, never target images
    S = bundle_scripts("cpce_rfm_da")
    val = S.adapt.source_items(folders / "src", "validation")
    assert val and all("/src/" in it["image"] and "label" in it for it in val)


def test_source_items_repeat_and_refuse_bad_folders(folders, tmp_path):
    S = bundle_scripts("cpce_rfm_da")
    once = S.adapt.source_items(folders / "src", "training")
    assert len(once) == 1
    assert len(S.adapt.source_items(folders / "src", "training", at_least=5)) == 5
    assert S.adapt.source_items(folders / "src" / "definition_as_b30f") == once  # the unit folder itself
    with pytest.raises(FileNotFoundError, match="ldct_sim simulate"):
        S.adapt.source_items(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no simulated datasets"):
        S.adapt.source_items(tmp_path)
    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "datalist.json").write_text(json.dumps({"training": once, "validation": []}))
    with pytest.raises(ValueError, match="validation"):
        S.adapt.source_items(unit, "validation")


def test_target_is_required_unless_unused(tmp_path):
    S = bundle_scripts("cpce_rfm_da")
    with pytest.raises(ValueError, match="--target_dir"):
        S.adapt.target_items("")
    assert S.adapt.target_items("", needed=False) == []
    with pytest.raises(FileNotFoundError):
        S.adapt.target_items(tmp_path / "nothing")


def test_initial_weights_are_loaded_and_a_missing_file_is_named(tmp_path):
    S = bundle_scripts("cpce_rfm_da")
    net = S.networks.CPCE2D()
    S.adapt.load_initial_weights(net, str(BUNDLE / "models" / "model.pt"))
    shipped = torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(net.state_dict()[k], shipped[k].float()) for k in shipped)
    with pytest.raises(FileNotFoundError, match="no_weights.pt"):
        S.adapt.load_initial_weights(net, str(tmp_path / "no_weights.pt"))


def test_mask_report_measures_an_image_dependent_mask():
    """An encoder whose keep-logits follow the image's mean gives a domain gap; a constant one gives none."""
    S = bundle_scripts("cpce_rfm_da")

    class MeanEncoder(torch.nn.Module):
        def forward(self, x):
            logits = (x.mean(dim=(1, 2, 3))[:, None] * 4.0).expand(-1, 4)
            return logits, torch.zeros(len(x), 2), torch.zeros(len(x), 2)

    class Items(list):
        pass

    data = Items({"image": torch.zeros(1, 8, 8), "target": torch.ones(1, 8, 8)} for _ in range(3))
    rfm = S.frequency.AdaptiveRFM(MeanEncoder(), keep_radius=0.1)
    report = S.adapt.MaskReport(rfm, data, out_dir="unused", n_images=3)
    report._write = lambda: None
    report._measure(None, "after")
    entry = report.report["after"]
    assert entry["source"]["mean"] == pytest.approx([0.5] * 4)
    assert entry["target"]["mean"] == pytest.approx([float(torch.sigmoid(torch.tensor(4.0)))] * 4)
    assert entry["max_domain_gap"] == pytest.approx(float(torch.sigmoid(torch.tensor(4.0))) - 0.5)
    assert entry["adaptive_mask"] is True

    class NoTarget(list):  # a baseline run's dataset: source pairs only
        target_data = []

    baseline = S.adapt.MaskReport(rfm, NoTarget(data), out_dir="unused", n_images=3)
    baseline._write = lambda: None
    baseline._measure(None, "before")
    assert baseline.report["adaptive_mask"] is False and "baseline" in baseline.report["note"]
