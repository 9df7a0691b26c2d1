"""The U-Net bundle's configs run end to end: train (with resume after a kill), finetune, evaluate,
inference (NIfTI, HU, DICOM), TorchScript export and two-process DDP on gloo, on tiny data on CPU.

Each workflow runs in a subprocess, as users run it (``python -m monai.bundle ...``), so that the
bundle's ``scripts`` package never meets another bundle's in one interpreter.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle_loading import bundle_scripts

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "unet_ldct"
CONFIGS = BUNDLE / "configs"
SCHEMA = REPO.parent / "shared" / "monai" / "meta_schema_20240725.json"
MU_W = 0.2059
N = 32  # image side of the tiny dataset



def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)  # the bundle needs neither ldct_sim nor the repository's scripts/
    return env


def _check(r, what):
    assert r.returncode == 0, f"{what} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout + r.stderr


def bundle_cli(*args, cwd=REPO, what="monai.bundle", timeout=400):
    """``python -m monai.bundle <args>``, as users run it."""
    r = subprocess.run([sys.executable, "-m", "monai.bundle", *map(str, args)], cwd=cwd, env=_env(),
                       capture_output=True, text=True, timeout=timeout)
    return _check(r, what)


def bundle_run(config_files, expect_rc=0, timeout=400, **overrides):
    """``monai.bundle.run(config_file=..., bundle_root=..., **overrides)`` in a fresh interpreter.

    The Python API takes overrides whose values are lists or JSON (``initialize``) without shell quoting.
    """
    kwargs = {"config_file": [str(CONFIGS / c) for c in config_files], "bundle_root": str(BUNDLE), **overrides}
    code = "import json, sys; from monai.bundle import run; run(**json.loads(sys.argv[1]))"
    r = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=timeout)
    if expect_rc == 0:
        return _check(r, f"run {config_files}")
    assert r.returncode == expect_rc, f"expected exit {expect_rc}, got {r.returncode}:\n{r.stderr[-4000:]}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny simulated-looking dataset (32², cm⁻¹, 4/2/2 slices) and an fp16 random-weight checkpoint."""
    root = tmp_path_factory.mktemp("unet_tiny")
    rng = np.random.default_rng(0)
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    lists = {}
    for split, n in (("training", 4), ("validation", 2), ("test", 2)):
        lists[split] = []
        for i in range(n):
            label = np.zeros((N, N), np.float32)
            yy, xx = np.mgrid[:N, :N]
            label[(yy - 16) ** 2 / 14**2 + (xx - 16) ** 2 / 12**2 <= 1] = MU_W
            label[(yy - 14 - i) ** 2 + (xx - 18) ** 2 <= 9] = 0.25
            image = label + rng.normal(0, 0.01, label.shape).astype(np.float32)
            for role, img in (("input", image), ("label", label)):
                (root / "res700um" / role).mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(img, affine), root / "res700um" / role / f"{split}{i}.nii.gz")
            lists[split].append({"image": f"input/{split}{i}.nii.gz", "label": f"label/{split}{i}.nii.gz",
                                 "id": f"{split}{i}"})
    (root / "res700um" / "datalist.json").write_text(json.dumps(lists))
    torch.manual_seed(0)
    net = bundle_scripts("unet_ldct").networks.LDCTUNet()
    torch.save({"model": net.state_dict()}, root / "full.pt")
    bundle_scripts("unet_ldct").utils.export_state_dict(str(root / "full.pt"), str(root / "model.pt"))  # fp16, as shipped
    return root


def _train_overrides(tiny, out, **extra):
    return {"dataset_dir": str(tiny), "resolution": "700", "output_dir": str(out), "batch_size": 2,
            "patch_size": N, "num_workers": 0, **extra}


def _fp16_net(path):
    net = bundle_scripts("unet_ldct").networks.LDCTUNet(pad_mode="reflect", residual=True).eval()
    net.load_state_dict(torch.load(path, weights_only=True))
    return net


def _infer(net, x, margin=8):
    """What inference.json computes: the slice reflected by the inferer's margin, the network, cropped back."""
    h, w = x.shape[-2:]
    return net(torch.nn.functional.pad(x, [margin] * 4, mode="reflect"))[..., margin : margin + h, margin : margin + w]


# ---------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not SCHEMA.is_file(), reason="model-zoo schema not beside the clone (../shared)")
def test_metadata_passes_the_model_zoo_schema():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA),
                    hash_val="06954cad2cc5d3784e72077ac76f0fc8")
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    assert set(meta["network_data_format"]["inputs"]) == {"image"} and set(meta["network_data_format"]["outputs"]) == {"pred"}
    assert (BUNDLE / "LICENSE").read_text().count("Apache License") >= 1


def test_shared_settings_agree_between_train_and_inference():
    train, infer = (json.loads((CONFIGS / f).read_text()) for f in ("train.json", "inference.json"))
    for key in ("mu_water", "input_unit", "unit_range"):
        assert train[key] == infer[key], key
    nd = {k: v for k, v in train["network_def"].items()}
    assert nd == infer["network_def"]


def test_workflow_properties_are_complete(tiny):
    code = f"""
import json
from monai.bundle import ConfigWorkflow
c, b = {str(CONFIGS)!r}, {str(BUNDLE)!r}
out = {{}}
for name, files, kind, kw in [
    ("train", [c + "/train.json"], "train", dict(dataset_dir={str(tiny)!r}, resolution="700", num_workers=0)),
    ("finetune", [c + "/train.json", c + "/finetune.json"], "train",
     dict(dataset_dir={str(tiny)!r}, resolution="700", num_workers=0, pretrained_ckpt={str(tiny / 'model.pt')!r})),
    ("inference", c + "/inference.json", "infer", dict(ckpt_path={str(tiny / 'model.pt')!r})),
]:
    w = ConfigWorkflow(config_file=files, workflow_type=kind, bundle_root=b, output_dir={str(tiny / 'props')!r}, **kw)
    w.initialize()
    out[name] = w.check_properties()
print("PROPS" + json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    out = _check(r, "check_properties")
    props = json.loads(out.split("PROPS", 1)[1].splitlines()[0])
    assert props == {"train": [], "finetune": [], "inference": []}


def test_train_resumes_after_a_kill_without_losing_saved_progress(tiny, tmp_path):
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    kw = _train_overrides(tiny, out, num_iterations=6, val_interval=3, save_interval=2)
    init = json.loads((CONFIGS / "train.json").read_text())["initialize"]
    kill = "$@train#trainer.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED(once=5), lambda e: os._exit(17))"
    bundle_run(["train.json"], expect_rc=17, initialize=init + [kill], **kw)  # dies hard after iteration 5
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint_iteration=4.pt", "model.pt"]
    log = bundle_run(["train.json"], **kw)
    assert "resumed from" in log and "checkpoint_iteration=4.pt at iteration 4" in log
    assert "Iter: 1/3" not in log  # epoch 2 starts at its second iteration: nothing before 4 is redone
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint_iteration=6.pt", "model.pt"]
    last = torch.load(ckpts / "checkpoint_iteration=6.pt", weights_only=True)
    assert last["trainer"]["iteration"] == 6 and last["lr_scheduler"]["last_epoch"] == 6
    assert set(last) == {"model", "optimizer", "lr_scheduler", "trainer", "validation"}
    assert last["validation"]["best_metric_epoch"] in (1, 2)
    best = torch.load(ckpts / "model.pt", weights_only=True)  # best val_loss: weights only
    assert set(best) == set(last["model"])
    assert any((out / "tensorboard").iterdir())


def test_finetune_starts_from_the_pretrained_weights_on_a_subset(tiny, tmp_path):
    log = bundle_run(["train.json", "finetune.json"], **_train_overrides(
        tiny, tmp_path, num_iterations=2, val_interval=2, save_interval=2, pretrained_ckpt=str(tiny / "model.pt"),
        train_fraction=0.5, subset_seed=3))
    assert f"TrainingCheckpoint: nothing to resume, started from {tiny / 'model.pt'}." in log
    assert "Loading dataset: 100%|██████████| 2/2" in log  # 50 % of the 4 training slices
    assert (tmp_path / "checkpoints" / "model.pt").is_file()


def test_evaluate_writes_per_image_metrics_and_a_summary(tiny, tmp_path):
    common = {"dataset_dir": str(tiny), "resolution": "700", "ckpt_path": str(tiny / "model.pt"), "num_workers": 0}
    bundle_run(["train.json", "evaluate.json"], output_dir=str(tmp_path / "labels"), **common)
    rows = (tmp_path / "labels" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "id,psnr_db,nrmse_percent,ssim,ssim_global,residual_variance,rmse,data_range"
    assert [r.split(",")[0] for r in rows[1:]] == ["test0", "test1"]
    # the numbers are the metric functions applied to the network's output in cm^-1
    M = bundle_scripts("unet_ldct").metrics
    net = _fp16_net(tiny / "model.pt")
    first = dict(zip(rows[0].split(","), rows[1].split(",")))
    img = nib.load(tiny / "res700um" / "input" / "test0.nii.gz").get_fdata().astype(np.float32)
    lab = nib.load(tiny / "res700um" / "label" / "test0.nii.gz").get_fdata()
    with torch.no_grad():
        pred = net(torch.from_numpy(img / MU_W)[None, None])[0, 0].double().numpy() * MU_W
    expected = M.image_metrics(pred, lab)
    for k in ("psnr_db", "nrmse_percent", "ssim", "residual_variance"):
        assert float(first[k]) == pytest.approx(expected[k], rel=1e-3), k
    summary = json.loads((tmp_path / "labels" / "summary.json").read_text())
    assert summary["reference"] == "label" and summary["metrics"]["psnr_db"]["n"] == 2
    assert (tmp_path / "labels" / "summary.csv").read_text().startswith("metric,mean,std,n")
    # MONAI's MetricsSaver reports of the same metric details (4 decimals), one pair of files per metric
    raw = (tmp_path / "labels" / "psnr_db_raw.csv").read_text().splitlines()
    assert raw[0] == "filename,class0,mean" and [r.split(",")[0] for r in raw[1:]] == ["test0", "test1"]
    assert float(raw[1].split(",")[1]) == pytest.approx(float(first["psnr_db"]), abs=1e-4)
    assert (tmp_path / "labels" / "residual_variance_summary.csv").read_text().startswith("class,mean,median")
    assert float(first["data_range"]) == pytest.approx(2 * MU_W)  # the fixed peak: +1000 HU in cm^-1
    # self-test: NRMSE, SSIM and residual variance against a model's output (the same model scores perfectly),
    # PSNR still against the label (the seed's equations 4-6)
    bundle_run(["train.json", "evaluate.json"], output_dir=str(tmp_path / "self"),
               reference_ckpt=str(tiny / "model.pt"), **common)
    self_summary = json.loads((tmp_path / "self" / "summary.json").read_text())
    s = self_summary["metrics"]
    assert s["nrmse_percent"]["mean"] == 0.0 and s["residual_variance"]["mean"] == 0.0
    assert s["ssim"]["mean"] == pytest.approx(1.0)
    assert s["psnr_db"]["mean"] == pytest.approx(summary["metrics"]["psnr_db"]["mean"], rel=1e-6)  # not inf
    assert s["rmse"]["mean"] == pytest.approx(summary["metrics"]["rmse"]["mean"], rel=1e-6)
    assert (self_summary["reference"], self_summary["psnr_reference"]) == ("reference", "label")


def test_inference_command_denoises_the_sample_data(tiny, tmp_path):
    """The issue's command, run from the bundle folder; the weights come from --ckpt_path here."""
    log = bundle_cli("run", "--config_file", "configs/inference.json", "--ckpt_path", tiny / "model.pt",
                     "--output_dir", tmp_path, cwd=BUNDLE, what="inference")
    # MONAI's LoadImage warns twice per construction about the absent GPU decoder nvImageCodec; the
    # bundle reads DICOM with PydicomReader and silences exactly those lines (scripts/dicom_series.py).
    assert "nvImageCodec" not in log
    src = nib.load(BUNDLE / "sample_data" / "input" / "abdomen_625um.nii.gz")
    out = nib.load(tmp_path / "abdomen_625um_denoised.nii.gz")
    assert out.shape == src.shape and out.get_data_dtype() == np.float32
    np.testing.assert_allclose(out.affine, src.affine, atol=1e-6)  # the input's geometry
    net = _fp16_net(tiny / "model.pt")
    with torch.no_grad():
        x = torch.from_numpy(src.get_fdata().astype(np.float32) / MU_W)[None, None]
        expected = _infer(net, x)[0, 0].numpy() * MU_W
    np.testing.assert_allclose(out.get_fdata(), expected, atol=1e-5)  # cm^-1 in, cm^-1 out


def test_inference_bfloat16_override_agrees_with_float32(tiny, tmp_path):
    """``--inference_dtype bfloat16`` runs the whole-slice U-Net in bf16 and stays within 2 % of float32."""
    bundle_cli("run", "--config_file", "configs/inference.json", "--ckpt_path", tiny / "model.pt",
               "--output_dir", tmp_path, "--inference_dtype", "bfloat16", cwd=BUNDLE, what="bf16 inference")
    src = nib.load(BUNDLE / "sample_data" / "input" / "abdomen_625um.nii.gz")
    out = nib.load(tmp_path / "abdomen_625um_denoised.nii.gz")
    assert out.shape == src.shape and out.get_data_dtype() == np.float32
    net = _fp16_net(tiny / "model.pt")
    with torch.no_grad():
        x = torch.from_numpy(src.get_fdata().astype(np.float32) / MU_W)[None, None]
        expected = _infer(net, x)[0, 0].numpy() * MU_W
    assert np.linalg.norm(out.get_fdata() - expected) / np.linalg.norm(expected) < 0.02


def test_inference_in_hu_on_nifti_and_a_dicom_series(tiny, tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    src = nib.load(BUNDLE / "sample_data" / "input" / "abdomen_625um.nii.gz")
    mu = src.get_fdata().astype(np.float32)
    inputs = tmp_path / "in"
    (inputs / "series").mkdir(parents=True)
    nib.save(nib.Nifti1Image(((mu / MU_W - 1) * 1000).astype(np.float32), src.affine), inputs / "slice_hu.nii.gz")
    shutil.copy(pydicom_data.get_testdata_file("CT_small.dcm"), inputs / "series" / "CT_small.dcm")
    bundle_run(["inference.json"], dataset_dir=str(inputs), output_dir=str(tmp_path / "out"), input_unit="hu",
               ckpt_path=str(tiny / "model.pt"))
    net = _fp16_net(tiny / "model.pt")
    with torch.no_grad():
        expected_mu = _infer(net, torch.from_numpy(mu / MU_W)[None, None])[0, 0].numpy() * MU_W
    out_hu = nib.load(tmp_path / "out" / "slice_hu_denoised.nii.gz").get_fdata()
    np.testing.assert_allclose(out_hu, (expected_mu / MU_W - 1) * 1000, atol=0.05)  # written back in HU
    dcm = nib.load(tmp_path / "out" / "series_denoised.nii.gz")
    assert dcm.shape[:2] == (128, 128) and np.isfinite(dcm.get_fdata()).all()
    assert abs(dcm.affine[0, 0]) == pytest.approx(0.661, abs=1e-3)  # CT_small's 0.66 mm pixels


def test_ckpt_export_gives_the_checkpoints_output(tiny, tmp_path):
    ts_path = tmp_path / "model.ts"
    bundle_cli("ckpt_export", "network_def", "--filepath", ts_path, "--ckpt_file", tiny / "model.pt",
               "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json",
               cwd=BUNDLE, what="ckpt_export")
    scripted = torch.jit.load(str(ts_path))
    net = _fp16_net(tiny / "model.pt")
    x = torch.rand(1, 1, 48, 40)  # 48 x 40 also exercises the padding
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=0, atol=1e-6)


def test_multi_gpu_config_trains_with_two_gloo_processes(tiny, tmp_path):
    files = "['configs/train.json','configs/multi_gpu_train.json']"
    args = ["--nproc_per_node", "2", "--standalone", "-m", "monai.bundle", "run", "--config_file", files,
            "--dataset_dir", tiny, "--resolution", "700", "--output_dir", tmp_path, "--num_iterations", 2,
            "--val_interval", 2, "--save_interval", 2, "--batch_size", 1, "--patch_size", N, "--num_workers", 0,
            "--cache_rate", 0]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", *map(str, args)], cwd=BUNDLE, env=_env(),
                       capture_output=True, text=True, timeout=400)
    log = _check(r, "torchrun")
    assert "Epoch[1] Metrics -- val_loss" in log
    sd = torch.load(tmp_path / "checkpoints" / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in sd)  # saved unwrapped: loads without DDP
    assert math.isfinite(float(next(iter(sd.values())).float().sum()))
