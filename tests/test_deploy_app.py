"""The MONAI Deploy App SDK application (``python -m ldct_scripts.deploy_app``, scripts/deploy_app/app.py) on synthetic DICOM CT series and, where
``../shared/real_ldct/dicom`` exists, on a real Siemens scanner's slice.

The app runs as users run it, in a subprocess, on a temporary copy of the U-Net bundle (configs, scripts,
the shipped ``models/model.pt``), with its TorchScript cache in a temporary folder: the first run exports
the TorchScript there (once per module) and the bundle folder's checksums do not change.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from test_dicom_series import read_hu, unet_by_hand, write_series

pytest.importorskip("monai.deploy")

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "unet_ldct"
REAL_QD = REPO.parent / "shared" / "real_ldct" / "dicom" / "L506_1mm_0087_QD.IMA"


def _bundle_copy(dst: Path, weights: Path | None = BUNDLE / "models" / "model.pt", src: Path = BUNDLE) -> Path:
    """``configs/`` and ``scripts/`` of a bundle, and ``weights`` linked as ``models/model.pt``."""
    for part in ("configs", "scripts"):
        shutil.copytree(src / part, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "models").mkdir()
    if weights is not None:
        (dst / "models" / "model.pt").symlink_to(weights)
    return dst


def checksums(folder: Path) -> dict:
    """{relative path: SHA-256} of every file under ``folder`` (links followed), cache folders left out."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def run_app(*args, timeout=400):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-m", "ldct_scripts.deploy_app", *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def bundle_run_dicom(bundle: Path, dataset_dir: Path, output_dir: Path):
    """``python -m monai.bundle run`` of ``bundle``'s inference.json with ``--output_format dicom``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                        "--dataset_dir", str(dataset_dir), "--output_dir", str(output_dir), "--output_format", "dicom"],
                       cwd=bundle, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, f"monai.bundle run failed:\n{r.stderr[-4000:]}"


def siemens_style_slice(folder: Path, seed: int = 7, series_number: int = 4, name: str = "IM0001"):
    """One CT slice with the traits of the real Siemens file: a one-slice series, private Siemens groups
    (CSA header, COAD), unsigned 12-bit stored values with intercept -1024 HU, a four-valued ImageType, two
    window presets, 1 mm SliceThickness and no SpacingBetweenSlices; the file has no ``.dcm`` ending.
    Returns its HU (1, Rows, Columns) as stored."""
    tmp = folder / ".make"
    hu, *_ = write_series(tmp, n=1, seed=seed, series_number=series_number, dz=1.0)
    ds = pydicom.dcmread(next(tmp.iterdir()))
    shutil.rmtree(tmp)
    stored = np.clip(np.round(hu[0]) + 1024, 0, 4095).astype(np.uint16)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SPI"]
    ds.Manufacturer, ds.ConvolutionKernel = "SIEMENS", "B30f"
    ds.WindowCenter, ds.WindowWidth = [55, -600], [440, 1500]
    ds.add_new(0x00190010, "LO", "SIEMENS CT VA0  COAD")
    ds.add_new(0x00191092, "DS", "0.9236")
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00291008, "CS", "SOM 5")
    ds.add_new(0x00291010, "OB", bytes(range(256)) * 8)
    assert "SpacingBetweenSlices" not in ds
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / name, enforce_file_format=True)
    return stored[None].astype(np.float64) - 1024


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    bundle = _bundle_copy(root / "unet_ldct")
    before = checksums(bundle)
    hu, series_uid, study_uid = write_series(root / "in", n=5, seed=3)
    r = run_app("--bundle", bundle, "-i", root / "in", "-o", root / "out", "--cache-dir", root / "cache")  # exports
    assert r.returncode == 0, f"app failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return dict(root=root, bundle=bundle, hu=hu, series_uid=series_uid, study_uid=study_uid, result=r,
                before=before, after=checksums(bundle), cache=root / "cache")


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
    assert hu.min() - 50 < out.min() and out.max() < 700  # the input's air, with σ 50 HU white noise, reaches −1200 HU
    # air stays air and water water; this air is unclamped white noise reaching -1200 HU, below the -1024 HU floor
    # that scanners store and that the training inputs had: the residual U-Net (0.7.0) takes it about 40 HU lower
    assert abs(out[:, :4, :4].mean() + 1000) < 60 and abs(out[:, 24:40, 16:30].mean()) < 15
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


def test_app_exports_the_torchscript_to_its_cache_and_leaves_the_bundle_unchanged(app_run):
    assert app_run["after"] == app_run["before"]  # the same files, the same bytes: no models/model.ts written
    assert "the bundle folder is not changed" in app_run["result"].stderr
    (ts,) = app_run["cache"].glob("unet_ldct-*.ts")  # named by a hash of the weights, configs and scripts
    names = zipfile.ZipFile(ts).namelist()
    assert any(n.endswith("extra/metadata.json") for n in names) and any(n.endswith("extra/inference.json") for n in names)
    assert [p.name for p in app_run["cache"].iterdir()] == [ts.name]  # no temporary file left


def test_app_runs_the_cross_domain_bundle_too(tmp_path):
    """CPCE's config adds the channel in its loader, which the SDK operator drops; random weights, HU checked
    against the network run by hand through the bundle's slice inferer (HU -> cm^-1 -> [0, 1] -> CPCE-2D -> HU)."""
    import torch

    from bundle_loading import bundle_scripts
    from test_dicom_series import cpce_by_hand

    S = bundle_scripts("cpce_rfm_da")
    torch.manual_seed(0)
    net = S.networks.CPCE2D(in_channels=1, out_channels=1, channels=32, residual=True).eval()  # as inference.json builds it
    torch.save(net.state_dict(), tmp_path / "model.pt")
    bundle = _bundle_copy(tmp_path / "cpce_rfm_da", tmp_path / "model.pt", REPO / "bundles" / "cpce_rfm_da")
    hu, *_ = write_series(tmp_path / "in", n=3, seed=5)
    r = run_app("--bundle", bundle, "-i", tmp_path / "in", "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert r.returncode == 0, f"app failed:\n{r.stderr[-4000:]}"
    (out_dir,) = list((tmp_path / "out").iterdir())
    out, dss = read_hu(out_dir)
    np.testing.assert_allclose(out, cpce_by_hand(hu, net), atol=float(dss[0].RescaleSlope) / 2 + 0.05)
    assert dss[0].SeriesDescription.startswith("Denoised by cpce_rfm_da ")


def _check_derived(out_dir: Path, src_files: list, reference: np.ndarray, tol_hu: float = 1.0):
    """The app's series in ``out_dir`` against its source files: pixel values within ``tol_hu`` of
    ``reference`` (HU, in the order of ``src_files``), HU through rescale, new UIDs, patient/study/frame of
    reference and geometry kept; ITK reads it with the source's origin and spacing."""
    out, dss = read_hu(out_dir)
    src = [pydicom.dcmread(f) for f in src_files]
    by_source = {d.SourceImageSequence[0].ReferencedSOPInstanceUID: (k, d) for k, d in enumerate(dss)}
    order = [by_source[s.SOPInstanceUID][0] for s in src]  # the output slice made from each source slice
    np.testing.assert_allclose(out[order], reference, atol=tol_hu)
    for s in src:
        d = by_source[s.SOPInstanceUID][1]
        assert d.RescaleType == "HU" and float(d.RescaleSlope) <= 1 and "RescaleIntercept" in d
        assert d.SeriesInstanceUID != s.SeriesInstanceUID and d.SOPInstanceUID != s.SOPInstanceUID
        for kw in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient",
                   "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns"):
            assert d[kw].value == s[kw].value, kw
        assert list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"] and not any(e.tag.is_private for e in d)
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    itk = pytest.importorskip("itk")
    img = itk.imread(str(out_dir))
    np.testing.assert_allclose(np.asarray(itk.origin(img)), [float(v) for v in min(
        (s.ImagePositionPatient for s in src), key=lambda p: float(p[2]))], atol=1e-4)
    np.testing.assert_allclose(np.asarray(itk.spacing(img))[:2], [float(v) for v in src[0].PixelSpacing], atol=1e-6)
    np.testing.assert_allclose(itk.array_from_image(img).reshape(out.shape), out, atol=1e-3)
    return dss


def test_each_series_of_a_folder_gets_its_own_output_gaps_and_single_slices_included(app_run, tmp_path):
    """The bundles' policy: a folder of two series gives two series; a series with missing slices and a
    one-slice Siemens-style series (private tags, no SpacingBetweenSlices) are denoised slice by slice, within
    1 HU of the U-Net run by hand through the bundle's slice inferer (what ``monai.bundle run`` gives, see
    test_dicom_series)."""
    hu_gap, *_ = write_series(tmp_path / "in" / "gap", n=6, skip=(2, 3), seed=4)
    hu_one = siemens_style_slice(tmp_path / "in" / "one")
    r = run_app("--bundle", app_run["bundle"], "-i", tmp_path / "in", "-o", tmp_path / "out",
                "--cache-dir", app_run["cache"])
    assert r.returncode == 0, f"app failed:\n{r.stderr[-4000:]}"
    assert "exported earlier" in r.stderr and "2 missing slice(s)" in r.stderr  # cache reused; the gap named
    outs = sorted((tmp_path / "out").iterdir())
    assert len(outs) == 2 and r.stdout.count("Wrote ") == 2
    sources = {pydicom.dcmread(next(o.iterdir())).SourceImageSequence[0].ReferencedSOPInstanceUID: o for o in outs}
    for folder, hu in (("gap", hu_gap), ("one", hu_one)):
        src = sorted((tmp_path / "in" / folder).iterdir())  # by InstanceNumber, as hu
        _check_derived(sources[pydicom.dcmread(src[0]).SOPInstanceUID], src, unet_by_hand(hu))
    assert checksums(app_run["bundle"]) == app_run["before"]


@pytest.mark.skipif(not REAL_QD.is_file(), reason="needs ../shared/real_ldct/dicom (the real Siemens slice)")
def test_app_on_a_real_siemens_slice_matches_monai_bundle_run(app_run, tmp_path):
    """The real quarter-dose slice L506_1mm_0087_QD.IMA (one-slice series, Siemens private tags): it once failed
    in MetaTensor.affine. Copied alone into a temporary folder; nothing derived from it is kept."""
    (tmp_path / "in").mkdir()
    shutil.copy(REAL_QD, tmp_path / "in" / REAL_QD.name)
    r = run_app("--bundle", app_run["bundle"], "-i", tmp_path / "in", "-o", tmp_path / "out",
                "--cache-dir", app_run["cache"])
    assert r.returncode == 0, f"app failed:\n{r.stderr[-4000:]}"
    (out_dir,) = list((tmp_path / "out").iterdir())
    bundle_run_dicom(app_run["bundle"], tmp_path / "in", tmp_path / "ref")
    ref, _ = read_hu(tmp_path / "ref" / "in_denoised")
    dss = _check_derived(out_dir, [tmp_path / "in" / REAL_QD.name], ref)
    src = pydicom.dcmread(tmp_path / "in" / REAL_QD.name)
    src_hu = src.pixel_array * float(src.RescaleSlope) + float(src.RescaleIntercept)
    out = read_hu(out_dir)[0][0]
    body = src_hu > -500
    assert abs(float(out[body].mean() - src_hu[body].mean())) < 10  # HU kept: denoising changes no mean
    assert out[body].std() < src_hu[body].std() and dss[0].Rows == 512
    assert checksums(app_run["bundle"]) == app_run["before"]


def test_app_without_weights_says_how_to_export(tmp_path):
    from ldct_scripts.deploy_app import app  # imports no SDK until the app is built

    bundle = _bundle_copy(tmp_path / "bundle", weights=None)
    with pytest.raises(FileNotFoundError, match="neither models/model.ts nor models/model.pt") as e:
        app.ensure_torchscript(bundle, None, tmp_path / "cache")
    assert "python -m monai.bundle ckpt_export network_def --filepath models/model.ts" in str(e.value)
    with pytest.raises(FileNotFoundError, match="no such TorchScript file"):
        app.ensure_torchscript(bundle, tmp_path / "missing.ts", tmp_path / "cache")
    assert sorted(os.listdir(bundle / "models")) == [] and not (tmp_path / "cache").exists()  # nothing written


def test_app_refuses_a_bad_series_among_good_ones_before_writing(app_run, tmp_path):
    write_series(tmp_path / "in" / "a", n=3)
    write_series(tmp_path / "in" / "b", n=3, seed=1, series_number=4, positions=[0.0, 2.5, 2.5])
    r = run_app("--bundle", app_run["bundle"], "-i", tmp_path / "in", "-o", tmp_path / "out",
                "--cache-dir", app_run["cache"])
    assert r.returncode != 0 and "DicomSeriesError" in r.stderr, r.stderr[-2000:]
    assert "two slices at the same position 2.500 mm" in r.stderr and str(tmp_path / "in" / "b") in r.stderr
    assert not (tmp_path / "out").exists()  # validated before anything is created
