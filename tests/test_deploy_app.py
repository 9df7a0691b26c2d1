"""The MONAI Deploy App SDK application (``scripts/deploy_app/app.py``) on a synthetic DICOM CT series.

The app runs as users run it, in a subprocess, on a temporary copy of the U-Net bundle (configs,
scripts, the shipped ``models/model.pt``); its first run exports ``models/model.ts`` with
``monai.bundle.ckpt_export`` (once per module).
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from test_dicom_series import read_hu, write_series

pytest.importorskip("monai.deploy")

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "unet_ldct"
APP = REPO / "scripts" / "deploy_app" / "app.py"


def _bundle_copy(dst: Path, weights: Path | None = BUNDLE / "models" / "model.pt", src: Path = BUNDLE) -> Path:
    """``configs/`` and ``scripts/`` of a bundle, and ``weights`` linked as ``models/model.pt``."""
    for part in ("configs", "scripts"):
        shutil.copytree(src / part, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "models").mkdir()
    if weights is not None:
        (dst / "models" / "model.pt").symlink_to(weights)
    return dst


def run_app(*args, timeout=400):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, str(APP), *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    bundle = _bundle_copy(root / "unet_ldct")
    hu, series_uid, study_uid = write_series(root / "in", n=5, seed=3)
    r = run_app("--bundle", bundle, "-i", root / "in", "-o", root / "out")  # no -m: exports models/model.ts first
    assert r.returncode == 0, f"app failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return dict(root=root, bundle=bundle, hu=hu, series_uid=series_uid, study_uid=study_uid, result=r)


def test_app_writes_a_denoised_derived_series(app_run):
    root, hu = app_run["root"], app_run["hu"]
    (out_dir,) = list((root / "out").iterdir())
    out, dss = read_hu(out_dir)
    src = sorted((pydicom.dcmread(p) for p in (root / "in").iterdir()), key=lambda d: int(d.InstanceNumber))
    assert out_dir.name == dss[0].SeriesInstanceUID != app_run["series_uid"]  # OUT/<new SeriesInstanceUID>/
    assert len({d.SOPInstanceUID for d in dss} | {d.SOPInstanceUID for d in src}) == 2 * len(src)
    for d, s in zip(dss, src):  # geometry identical, slice by slice
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows",
                   "Columns", "FrameOfReferenceUID", "PatientName", "PatientID", "PatientBirthDate",
                   "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription"):
            assert d[kw].value == s[kw].value, kw
        assert list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"] and d.Modality == "CT"
        assert d.SeriesDescription.startswith("Denoised by unet_ldct ") and "MONAI Deploy" in d.DerivationDescription
    assert dss[0].StudyInstanceUID == app_run["study_uid"]
    # HU kept through rescale slope/intercept: air and water where they belong, the 300 HU insert still there
    assert -1100 < out.min() and out.max() < 700
    assert abs(out[:, :4, :4].mean() + 1000) < 30 and abs(out[:, 24:40, 16:30].mean()) < 15
    assert out[:, 20, 40].mean() > 200
    disc = (slice(None), slice(24, 40), slice(16, 30))  # uniform water
    assert out[disc].std() < 0.5 * hu[disc].std(), (out[disc].std(), hu[disc].std())  # about 50 -> 14 HU


def test_app_output_reads_in_itk_with_the_input_geometry(app_run):
    itk = pytest.importorskip("itk")
    root = app_run["root"]
    (out_dir,) = list((root / "out").iterdir())
    a, b = itk.imread(str(root / "in")), itk.imread(str(out_dir))
    assert itk.array_from_image(b).shape == app_run["hu"].shape
    np.testing.assert_allclose(np.asarray(itk.spacing(b)), np.asarray(itk.spacing(a)))
    np.testing.assert_allclose(np.asarray(itk.origin(b)), np.asarray(itk.origin(a)))
    np.testing.assert_allclose(np.asarray(b.GetDirection()), np.asarray(a.GetDirection()))
    np.testing.assert_allclose(itk.array_from_image(b), read_hu(out_dir)[0], atol=1e-3)


def test_app_exported_the_bundle_torchscript_with_its_configs(app_run):
    ts = app_run["bundle"] / "models" / "model.ts"
    assert "Exporting" in app_run["result"].stderr
    names = zipfile.ZipFile(ts).namelist()
    assert any(n.endswith("extra/metadata.json") for n in names) and any(n.endswith("extra/inference.json") for n in names)


def test_app_runs_the_cross_domain_bundle_too(tmp_path):
    """CPCE's config adds the channel in its loader, which the SDK operator drops; random weights, HU checked
    against the network run by hand (HU -> cm^-1 -> [0, 1] over the HU window -> CPCE-2D -> HU)."""
    import torch

    from bundle_loading import bundle_scripts

    S = bundle_scripts("cpce_rfm_da")
    torch.manual_seed(0)
    net = S.networks.CPCE2D(in_channels=1, out_channels=1, channels=32).eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    bundle = _bundle_copy(tmp_path / "cpce_rfm_da", tmp_path / "model.pt", REPO / "bundles" / "cpce_rfm_da")
    hu, *_ = write_series(tmp_path / "in", n=3, seed=5)
    r = run_app("--bundle", bundle, "-i", tmp_path / "in", "-o", tmp_path / "out")  # exports models/model.ts
    assert r.returncode == 0, f"app failed:\n{r.stderr[-4000:]}"
    (out_dir,) = list((tmp_path / "out").iterdir())
    out, dss = read_hu(out_dir)
    lo, hi = S.data.intensity_range([-1024, 3072], "mu", 0.2059)
    with torch.no_grad():  # the bundle sees slices as (x, y) = (column, row) images, as MONAI lays them out
        x = ((hu / 1000 + 1) * 0.2059 - lo) / (hi - lo)
        y = net(torch.from_numpy(x.transpose(0, 2, 1).astype(np.float32))[:, None])[:, 0].numpy().transpose(0, 2, 1)
    np.testing.assert_allclose(out, ((y * (hi - lo) + lo) / 0.2059 - 1) * 1000, atol=float(dss[0].RescaleSlope) / 2 + 0.05)
    assert dss[0].SeriesDescription.startswith("Denoised by cpce_rfm_da ")


def test_app_refuses_a_folder_of_two_series_before_writing(app_run, tmp_path):
    write_series(tmp_path / "in", n=3)
    write_series(tmp_path / "in", n=3, seed=1, series_number=4, name="b")
    r = run_app("--bundle", app_run["bundle"], "-i", tmp_path / "in", "-o", tmp_path / "out",
                "-m", app_run["bundle"] / "models" / "model.ts")
    assert r.returncode != 0 and "DicomSeriesError" in r.stderr, r.stderr[-2000:]
    assert "holds 2 DICOM series; pass one series folder" in r.stderr and "SeriesNumber 4" in r.stderr
    assert not (tmp_path / "out").exists()  # validated before anything is created


def test_app_without_weights_says_how_to_export(tmp_path):
    spec = importlib.util.spec_from_file_location("ldct_deploy_app", APP)  # imports no SDK until the app is built
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    bundle = _bundle_copy(tmp_path / "bundle", weights=None)
    with pytest.raises(FileNotFoundError, match="neither models/model.ts nor models/model.pt") as e:
        app.ensure_torchscript(bundle, None)
    assert "python -m monai.bundle ckpt_export network_def --filepath models/model.ts" in str(e.value)
    with pytest.raises(FileNotFoundError, match="no such TorchScript file"):
        app.ensure_torchscript(bundle, tmp_path / "missing.ts")
    assert sorted(os.listdir(bundle / "models")) == []  # nothing exported, nothing written
