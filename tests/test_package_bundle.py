"""``ldct_scripts.zoo.package_bundle`` (scripts/zoo/package_bundle.py): the zip the model zoo distributes, unpacked in a fresh folder and run.

The cross-domain bundle's zip is unpacked and its inference run on a small water disc in cm⁻¹; the
output must be the shipped network applied through the bundle's intensity window (a hand computation).
The U-Net bundle's zip runs its sample data, and the shipped weights must lower the RMSE against the
label. Files over the size limit go to ``large_files.yml`` with their md5, and MONAI's own
``download_large_files`` restores them from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle_loading import bundle_scripts

REPO = Path(__file__).resolve().parents[1]
MU_W = 0.2059  # cm⁻¹, water at 60 keV


def _package_module():
    import ldct_scripts.zoo.package_bundle as module

    return module


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)  # the unpacked bundle needs neither ldct_sim nor this repository
    return env


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _version(bundle: str) -> str:
    return json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())["version"]


def _unpack(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
    (root,) = list(dest.iterdir())
    return root


@pytest.fixture(scope="module")
def cpce_weights(tmp_path_factory):
    """The bundle's ``models/model.pt``; a seeded stand-in when the weights are not shipped yet."""
    path = REPO / "bundles" / "cpce_rfm_da" / "models" / "model.pt"
    if path.is_file():
        return None
    torch.manual_seed(0)
    stand_in = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(bundle_scripts("cpce_rfm_da").networks.CPCE2D(channels=32).state_dict(), stand_in)
    return stand_in


@pytest.fixture(scope="module")
def cpce_source(tmp_path_factory, cpce_weights):
    """The bundle folder to package: the real one, or a copy holding the stand-in weights."""
    src = REPO / "bundles" / "cpce_rfm_da"
    if cpce_weights is None:
        return src
    dst = tmp_path_factory.mktemp("src") / "cpce_rfm_da"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "data", "runs", "logs", "eval"))
    (dst / "models").mkdir(exist_ok=True)
    shutil.copy(cpce_weights, dst / "models" / "model.pt")
    return dst


def _water_disc(path: Path, n: int = 64, seed: int = 0) -> np.ndarray:
    """A 64 × 64 float32 slice in cm⁻¹: water disc (0.2059) in air, Gaussian noise of 0.01 cm⁻¹ (~50 HU)."""
    yy, xx = np.mgrid[:n, :n]
    img = np.where((yy - n / 2) ** 2 + (xx - n / 2) ** 2 <= (0.4 * n) ** 2, MU_W, 0.0)
    img = (img + np.random.default_rng(seed).normal(0, 0.01, img.shape)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(img, np.diag([0.7, 0.7, 1.0, 1.0])), path)
    return img


def test_zip_is_named_by_version_with_the_bundle_folder_on_top_and_no_run_outputs(tmp_path, cpce_source):
    pb = _package_module()
    src = tmp_path / "cpce_rfm_da"
    shutil.copytree(cpce_source, src, ignore=shutil.ignore_patterns("__pycache__"))
    junk = ["runs/s2r/model.pt", "eval/metrics.csv", "logs/events.out", "data/cross_domain/a.nii.gz",
            "scripts/__pycache__/networks.cpython-311.pyc", "models/checkpoint_3.pt", "models/model_final.pt",
            "models/model.ts", "models/vgg19_imagenet.pth", "models/model.onnx", ".ipynb_checkpoints/x.json"]
    for j in junk:
        (src / j).parent.mkdir(parents=True, exist_ok=True)
        (src / j).write_bytes(b"x")
    pkg = pb.package_bundle(src, tmp_path / "dist")
    assert pkg.zip_path.name == f"cpce_rfm_da_v{_version('cpce_rfm_da')}.zip"
    names = zipfile.ZipFile(pkg.zip_path).namelist()
    assert all(n.startswith("cpce_rfm_da/") for n in names)
    rel = {n.split("/", 1)[1] for n in names}
    assert {"LICENSE", "configs/metadata.json", "configs/inference.json", "models/model.pt",
            "scripts/__init__.py", "scripts/networks.py", "docs/README.md"} <= rel
    assert not rel & set(junk) and set(junk) <= set(pkg.excluded)
    assert pkg.large_files == [] and "large_files.yml" not in rel  # 0.25 MB of weights: under 25 MB
    again = pb.package_bundle(src, tmp_path / "dist2")
    assert _md5(again.zip_path) == _md5(pkg.zip_path)  # same bundle, same bytes


def test_unpacked_cpce_zip_runs_its_inference_as_the_network_computes(tmp_path, cpce_source):
    pkg = _package_module().package_bundle(cpce_source, tmp_path / "dist")
    root = _unpack(pkg.zip_path, tmp_path / "fresh")
    assert root.name == "cpce_rfm_da" and (root / "models" / "model.pt").is_file()
    img = _water_disc(tmp_path / "in" / "disc.nii.gz")
    r = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                        "--dataset_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out")],
                       cwd=root, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    (out_path,) = list((tmp_path / "out").rglob("*.nii.gz"))
    out = np.squeeze(nib.load(out_path).get_fdata(dtype=np.float32))
    assert out.shape == img.shape and np.isfinite(out).all()
    # by hand: [-1024, 3072] HU in cm⁻¹ -> [0, 1], reflected by the config's margin, the shipped network,
    # cropped back, and back to cm⁻¹
    lo, hi = (-1024 / 1000 + 1) * MU_W, (3072 / 1000 + 1) * MU_W
    m = json.loads((root / "configs" / "inference.json").read_text())["inferer"]["margin"]
    net = bundle_scripts("cpce_rfm_da").networks.CPCE2D(channels=32, residual=True).eval()  # inference.json's default
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    with torch.no_grad():
        x = torch.nn.functional.pad(torch.from_numpy((img - lo) / (hi - lo))[None, None], [m] * 4, mode="reflect")
        expected = net(x)[0, 0, m:x.shape[-2] - m, m:x.shape[-1] - m].numpy() * (hi - lo) + lo
    np.testing.assert_allclose(out, expected, atol=2e-5)  # cm⁻¹ (0.1 HU)


def test_unpacked_unet_zip_denoises_its_sample_data(tmp_path):
    if not (REPO / "bundles" / "unet_ldct" / "models" / "model.pt").is_file():
        pytest.skip("bundles/unet_ldct/models/model.pt is absent")
    pkg = _package_module().package_bundle(REPO / "bundles" / "unet_ldct", tmp_path / "dist")
    assert pkg.large_files == [], "the shipped fp16 weights should stay under the zoo's 25 MB"
    root = _unpack(pkg.zip_path, tmp_path / "fresh")
    r = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                        "--output_dir", str(tmp_path / "out")],
                       cwd=root, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    (out_path,) = list((tmp_path / "out").rglob("*.nii.gz"))
    out = np.squeeze(nib.load(out_path).get_fdata(dtype=np.float32))
    image = np.squeeze(nib.load(root / "sample_data" / "input" / "abdomen_625um.nii.gz").get_fdata(dtype=np.float32))
    label = np.squeeze(nib.load(root / "sample_data" / "label" / "abdomen_625um.nii.gz").get_fdata(dtype=np.float32))
    assert out.shape == image.shape and np.isfinite(out).all()

    def rmse_hu(x):
        return float(np.sqrt(np.mean((x - label) ** 2))) / MU_W * 1000

    assert rmse_hu(out) < 0.95 * rmse_hu(image), (rmse_hu(out), rmse_hu(image))  # model card: 20.0 -> 16.6 HU


def test_files_over_the_limit_go_to_large_files_yml_and_monai_fetches_them_back(tmp_path, cpce_source):
    from monai.bundle import ConfigParser
    from monai.bundle.scripts import download_large_files

    pb = _package_module()
    store = tmp_path / "store"  # where the large files would be uploaded; file:// URLs here
    pkg = pb.package_bundle(cpce_source, tmp_path / "dist", max_size_mb=0.1, url_base=store.as_uri())
    paths = [e["path"] for e in pkg.large_files]
    assert "models/model.pt" in paths  # 0.25 MB of weights, over 0.1 MB
    assert all((cpce_source / p).stat().st_size > 0.1e6 for p in paths)
    small = set(pkg.files) - {"large_files.yml"}
    assert all((cpce_source / p).stat().st_size <= 0.1e6 for p in small)
    for p in paths:  # "upload" them
        (store / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cpce_source / p, store / p)
    root = _unpack(pkg.zip_path, tmp_path / "fresh")
    assert not any((root / p).exists() for p in paths)
    listed = ConfigParser.load_config_file(str(root / "large_files.yml"))["large_files"]
    assert listed == [{"path": p, "url": (store / p).as_uri(), "hash_val": _md5(cpce_source / p), "hash_type": "md5"}
                      for p in paths]
    download_large_files(bundle_path=str(root))  # MONAI's own fetcher, md5 checked
    assert all(_md5(root / p) == _md5(cpce_source / p) for p in paths)
    # without --url-base the URL is a placeholder that says what to do
    text = pb._large_files_yaml([{"path": "models/model.pt", "url": pb.URL_PLACEHOLDER, "hash_val": "0" * 32,
                                  "hash_type": "md5"}])
    assert 'url: "TODO: upload this file' in text and 'hash_type: "md5"' in text


@pytest.mark.parametrize("remove,message", [("LICENSE", "missing LICENSE"),
                                            ("configs/metadata.json", "missing configs/metadata.json")])
def test_refuses_a_folder_without_metadata_or_licence(tmp_path, capsys, remove, message):
    pb = _package_module()
    src = tmp_path / "b"
    shutil.copytree(REPO / "bundles" / "cpce_rfm_da" / "configs", src / "configs")
    (src / "LICENSE").write_text("Apache License 2.0")
    (src / remove).unlink()
    with pytest.raises(pb.BundleRefused, match=message):
        pb.package_bundle(src, tmp_path / "dist")
    assert pb.main([str(src), "--output-dir", str(tmp_path / "dist")]) == 1
    assert "the model zoo requires configs/metadata.json and LICENSE" in capsys.readouterr().err
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_refuses_a_version_without_changelog_entry(tmp_path):
    pb = _package_module()
    src = tmp_path / "b"
    shutil.copytree(REPO / "bundles" / "cpce_rfm_da" / "configs", src / "configs")
    (src / "LICENSE").write_text("Apache License 2.0")
    meta = json.loads((src / "configs" / "metadata.json").read_text())
    meta["version"] = "0.9.0"
    (src / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(pb.BundleRefused, match="version '0.9.0' is missing in the `changelog`"):
        pb.package_bundle(src, tmp_path / "dist")
