"""DICOM series in and out of both bundles: validation with clear errors, HU round trips, the inference
configs with ``--output_format dicom``.

Synthetic CT series (64², int16, rescale intercept -1024, a water disc with Gaussian noise in air) are
written with pydicom; pydicom's own ``CT_small.dcm`` is read too.
"""

import filecmp
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, UID, generate_uid

from bundle_loading import bundle_scripts

REPO = Path(__file__).resolve().parents[1]
BUNDLES = {name: REPO / "bundles" / name for name in ("unet_ldct", "cpce_rfm_da")}
D = bundle_scripts("unet_ldct").dicom_series
MU_W = 0.2059
N = 64


def write_series(folder, n=5, size=N, spacing=(0.7, 0.7), dz=2.5, z0=-20.0, noise=50.0, seed=0, modality="CT",
                 series_uid=None, study_uid=None, skip=(), positions=None, ts=ExplicitVRLittleEndian, series_number=3,
                 extensionless=False, name="slice"):
    """A synthetic CT series, one file per slice; returns its HU volume (n, Rows, Columns) and the UIDs.

    A water disc (0 HU) of radius 0.4·size in air (-1000 HU), a 300 HU insert at row 20, column 40,
    Gaussian noise of ``noise`` HU; slices ``dz`` mm apart from ``z0`` (or at ``positions``), minus ``skip``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = series_uid or generate_uid(), study_uid or generate_uid()
    yy, xx = np.mgrid[:size, :size]
    truth = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (0.4 * size) ** 2, 0.0, -1000.0)
    truth[(yy - 20) ** 2 + (xx - 40) ** 2 <= 16] = 300.0
    positions = [z0 + k * dz for k in range(n)] if positions is None else positions
    vols = []
    for k, z in enumerate(positions):
        hu = np.round(truth + rng.normal(0, noise, truth.shape))
        if k in skip:
            continue
        vols.append(hu)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        sop = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ts
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "PH001", "19700101", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.StudyDate, ds.StudyTime = study_uid, "1", "20240101", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyDescription = "A1", "", "Synthetic study"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, series_number, "Low dose"
        ds.Modality, ds.Manufacturer = modality, "Synthetic"
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-size * spacing[1] / 2, -size * spacing[0] / 2, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = list(spacing), dz
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (hu + 1024).astype("<i2").tobytes()
        if UID(ts).is_compressed:  # not a real JPEG stream: validation must refuse the syntax before decoding
            ds.PixelData = encapsulate([ds.PixelData])
            ds["PixelData"].VR = "OB"
        ds.save_as(folder / (f"IM{k:04d}" if extensionless else f"{name}{k:03d}.dcm"), enforce_file_format=True)
    return np.stack(vols), series_uid, study_uid


def read_hu(folder):
    """(HU volume sorted by InstanceNumber, datasets) of a written series, decoded by pydicom."""
    dss = sorted((pydicom.dcmread(p) for p in Path(folder).iterdir()), key=lambda d: int(d.InstanceNumber))
    vol = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])
    return vol, dss


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    return env


def bundle_cli(bundle, *args, expect_ok=True):
    r = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                        *map(str, args)], cwd=BUNDLES[bundle], env=_env(), capture_output=True, text=True, timeout=300)
    if expect_ok:
        assert r.returncode == 0, f"{bundle} inference failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


# ---- the module itself -----------------------------------------------------------------------------------
def test_the_two_bundle_copies_are_identical():
    a, b = (BUNDLES[n] / "scripts" / "dicom_series.py" for n in BUNDLES)
    assert filecmp.cmp(a, b, shallow=False), "bundles/*/scripts/dicom_series.py differ; copy one over the other"


@pytest.mark.parametrize(
    "bounds,expected",
    [((-1024, 3071), (0.125, 0.0)),  # CT's usual range: 1/8 HU steps (3071 * 8 = 24568 <= 32766; 1/16 needs 32768)
     ((-1000, 500), (0.0625, 0.0)),  # finest step offered
     ((-40000, 20000), (1.0, -10000.0)),  # 40000 > 32766 around 0: intercept at the range's centre
     ((0, 1e6), (16.0, 500000.0))],  # wider than int16 at 1 HU: 2^ceil(log2(1e6 / 65532)) = 16, centred
)
def test_rescale_is_the_finest_step_that_fits_int16(bounds, expected):
    lo, hi = bounds
    assert D.choose_rescale(lo, hi) == expected
    slope, intercept = expected
    assert max(hi - intercept, intercept - lo) / slope <= 32767


def test_series_round_trip_keeps_hu_geometry_patient_and_study(tmp_path):
    itk = pytest.importorskip("itk")
    hu, series_uid, study_uid = write_series(tmp_path / "in")
    info = D.validate_series(tmp_path / "in")
    assert info.spacing_mm == pytest.approx(2.5) and info.positions_mm == pytest.approx([-20, -17.5, -15, -12.5, -10])
    img = D.LoadImageSeriesd("image", unit="hu", ensure_channel_first=True)({"image": str(tmp_path / "in")})["image"]
    assert tuple(img.shape) == (1, N, N, 5) and img.meta["source_unit"] == "hu"
    np.testing.assert_array_equal(np.transpose(img[0].numpy(), (2, 1, 0)), hu)  # PydicomReader: (x, y, z), HU exact
    assert json.loads(img.meta["dicom_files"]) == [str(p) for p in sorted((tmp_path / "in").iterdir())]

    values = hu + np.random.default_rng(1).uniform(-0.5, 0.5, hu.shape)  # float HU, not integers
    paths = D.write_dicom_series(values, info.files, tmp_path / "out", series_description="unit test")
    assert [Path(p).name for p in paths] == [f"{i:05d}.dcm" for i in range(1, 6)]
    out, dss = read_hu(tmp_path / "out")
    slope = float(dss[0].RescaleSlope)
    assert slope == 0.0625 and np.abs(out - values).max() <= slope / 2 + 1e-9  # -1220..520 HU: 1/16 HU steps
    src = [pydicom.dcmread(f) for f in info.files]
    assert len({d.SOPInstanceUID for d in dss} | {d.SOPInstanceUID for d in src}) == 10  # all new
    assert len({d.SeriesInstanceUID for d in dss}) == 1 and dss[0].SeriesInstanceUID != series_uid
    for d, s in zip(dss, src):
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows",
                   "Columns", "PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate",
                   "AccessionNumber", "FrameOfReferenceUID", "InstanceNumber"):
            assert d[kw].value == s[kw].value, kw
        assert list(d.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"] and d.SeriesDescription == "unit test"
        assert d.SeriesNumber == 1003 and "RescaleSlope 0.0625" in d.DerivationDescription
        assert d.SourceImageSequence[0].ReferencedSOPInstanceUID == s.SOPInstanceUID
        assert d.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
    a, b = itk.imread(str(tmp_path / "in")), itk.imread(str(tmp_path / "out"))  # ITK's GDCM series reader
    np.testing.assert_allclose(itk.array_from_image(b), values, atol=slope / 2 + 1e-6)
    np.testing.assert_allclose(np.asarray(itk.spacing(b)), np.asarray(itk.spacing(a)))
    np.testing.assert_allclose(np.asarray(itk.origin(b)), np.asarray(itk.origin(a)))
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]  # no temporary folder left behind


def test_loader_converts_dicom_to_the_configs_unit_and_passes_nifti_through(tmp_path):
    hu, *_ = write_series(tmp_path / "in", n=2)
    mu = D.LoadImageSeriesd("image", unit="mu", ensure_channel_first=True)({"image": str(tmp_path / "in")})["image"]
    np.testing.assert_allclose(np.transpose(mu[0].numpy(), (2, 1, 0)), (hu / 1000 + 1) * MU_W, rtol=1e-6, atol=1e-7)
    assert mu.meta["source_unit"] == "hu"
    nib.save(nib.Nifti1Image(np.full((8, 8), 0.2, np.float32), np.eye(4)), tmp_path / "x.nii.gz")
    x = D.LoadImageSeriesd("image", unit="mu")({"image": str(tmp_path / "x.nii.gz")})["image"]
    assert float(x.mean()) == pytest.approx(0.2) and x.meta["source_unit"] == "mu" and "dicom_files" not in x.meta


def test_ct_small_reads_in_hu_and_writes_back(tmp_path):
    src = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    ref = pydicom.dcmread(src)
    expected = ref.pixel_array.astype(np.float64) * float(ref.RescaleSlope) + float(ref.RescaleIntercept)
    img = D.LoadImageSeriesd("image", unit="hu", ensure_channel_first=True)({"image": str(src)})["image"]
    assert tuple(img.shape) == (1, 128, 128)
    np.testing.assert_array_equal(img[0].numpy().T, expected)
    D.write_dicom_series(expected + 0.25, [src], tmp_path / "ct_small_out")
    out, dss = read_hu(tmp_path / "ct_small_out")
    np.testing.assert_allclose(out[0], expected + 0.25, atol=float(dss[0].RescaleSlope) / 2)
    assert dss[0].PatientID == ref.PatientID and dss[0].StudyInstanceUID == ref.StudyInstanceUID
    assert dss[0].PixelSpacing == ref.PixelSpacing and dss[0].ImagePositionPatient == ref.ImagePositionPatient


def test_inputs_are_series_folders_files_and_extensionless_dicom(tmp_path):
    write_series(tmp_path / "one", n=2, extensionless=True)  # files without .dcm, found by the DICM preamble
    assert D.list_inputs(tmp_path / "one", (".nii.gz", ".dcm")) == [str(tmp_path / "one")]
    write_series(tmp_path / "root" / "a", n=2)
    write_series(tmp_path / "root" / "deep" / "b", n=2)
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), tmp_path / "root" / "x.nii.gz")
    names = lambda ps: [os.path.relpath(p, tmp_path / "root") for p in ps]  # noqa: E731
    assert names(D.list_inputs(tmp_path / "root", (".nii.gz", ".dcm"))) == ["a", "x.nii.gz"]
    assert names(D.list_inputs(tmp_path / "root", (".nii.gz", ".dcm"), recursive=True)) == ["a", "deep/b", "x.nii.gz"]
    unet = bundle_scripts("unet_ldct").helpers.list_images(str(tmp_path / "one"), group_dicom_series=True, recursive=False)
    cpce = bundle_scripts("cpce_rfm_da").helpers.list_images(tmp_path / "root", group_dicom_series=True)
    assert unet == [{"image": str(tmp_path / "one")}] and len(cpce) == 3


# ---- bad input: a clear DicomSeriesError, nothing written ------------------------------------------------
def _unavailable_syntax():
    from pydicom.pixels import get_decoder
    from pydicom.uid import HTJ2KLossless, JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless

    for uid in (JPEGLosslessSV1, HTJ2KLossless, JPEGLSLossless, JPEG2000Lossless):
        if not get_decoder(uid).is_available:
            return uid
    return UID("1.2.840.10008.1.2.4.110")  # JPEG XL: pydicom 3.0 has no decoder at all


def _mixed(p):
    write_series(p, n=3, seed=0)
    write_series(p, n=3, seed=1, series_number=4, z0=-19.0, name="other")


def truncate(path, n_bytes=1000):
    """Cut the last ``n_bytes`` off a file, as an interrupted copy does."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-n_bytes])


def _short_pixel_data(p):
    """A well-formed file whose PixelData element is shorter than Rows x Columns x 2 bytes."""
    write_series(p, n=2)
    f = sorted(p.iterdir())[1]
    ds = pydicom.dcmread(f)
    ds.PixelData = ds.PixelData[: N * N]  # half the slice
    ds.save_as(f, enforce_file_format=True)


def _other_size(p):
    write_series(p, n=2)
    uid = pydicom.dcmread(next(p.glob("*.dcm"))).SeriesInstanceUID
    write_series(p, n=1, size=N // 2, z0=-15.0, series_uid=uid, name="small")


BAD = {
    "truncated file": (lambda p: (write_series(p, n=3), truncate(p / "slice001.dcm")),
                       [r"slice001\.dcm: truncated", r"declares 8192 bytes but the file holds only 7192"]),
    "short pixel data": (_short_pixel_data, [r"slice001\.dcm: the pixel data are incomplete: 4096 bytes",
                                             r"Rows 64 × Columns 64 .* need 8192 bytes"]),
    "two slices at one position": (lambda p: write_series(p, n=3, positions=[0.0, 2.5, 2.5]),
                                   [r"two slices at the same position 2\.500 mm"]),
    "slices of different size": (_other_size, [r"slices of different size \(Rows × Columns\) in one series",
                                               r"32×32 \(e\.g\. .*small000\.dcm\)", "ambiguous"]),
    "not CT": (lambda p: write_series(p, n=2, modality="MR"), [r"Modality is 'MR'", "denoises CT images only"]),
    "other pixel spacing": (lambda p: (write_series(p, n=2, dz=2.5), write_series(
        p / "x", n=1, z0=-15.0, spacing=(0.8, 0.8), series_uid=pydicom.dcmread(next(p.glob("*.dcm"))).SeriesInstanceUID)),
        [r"inconsistent PixelSpacing", r"\[0\.8, 0\.8\]"]),
    "compressed": (lambda p: write_series(p, n=2, ts=_unavailable_syntax()),
                   [str(_unavailable_syntax()), r"(pylibjpeg|cannot|no pixel data decoder)"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_series_raise_a_clear_error_and_write_nothing(tmp_path, case):
    make, patterns = BAD[case]
    series = tmp_path / "series"
    make(series)
    recursive = case == "other pixel spacing"  # that series has one slice in a subfolder
    with pytest.raises(D.DicomSeriesError) as e:
        D.validate_series(series, recursive=recursive)
    for pattern in patterns:
        assert re.search(pattern, str(e.value)), (pattern, str(e.value))
    if not recursive:
        with pytest.raises(D.DicomSeriesError):
            D.check_inputs([{"image": str(series)}], "dicom")
        with pytest.raises(D.DicomSeriesError):
            D.LoadImageSeriesd("image")({"image": str(series)})
    assert sorted(os.listdir(tmp_path)) == ["series"]


def test_writer_refuses_bad_volumes_and_a_crash_leaves_no_half_series(tmp_path, monkeypatch):
    hu, *_ = write_series(tmp_path / "in", n=3)
    files = D.validate_series(tmp_path / "in").files
    with pytest.raises(ValueError, match="NaN/inf"):
        D.write_dicom_series(np.where(hu > 250, np.nan, hu), files, tmp_path / "out")
    with pytest.raises(ValueError, match=r"does not match 2 reference slice"):
        D.write_dicom_series(hu, files[:2], tmp_path / "out")
    D.write_dicom_series(hu, files, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    calls = []

    def crash(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return save_as(self, *args, **kwargs)

    save_as = Dataset.save_as
    monkeypatch.setattr(Dataset, "save_as", crash)
    with pytest.raises(OSError, match="disk full"):
        D.write_dicom_series(hu + 5, files, tmp_path / "out")  # a second series, beside the finished one
    with pytest.raises(OSError, match="disk full"):
        calls.clear()
        D.write_dicom_series(hu + 5, files, tmp_path / "new")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # old series intact
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]  # no half series, no temporary folders
    with pytest.raises(FileExistsError, match="never replaced"):
        D.write_dicom_series(hu, files, tmp_path / "out", if_exists="error")


def test_saver_writes_dicom_sources_back_in_hu_as_nifti_or_dicom(tmp_path):
    hu, *_ = write_series(tmp_path / "in", n=2)
    load = D.LoadImageSeriesd("image", unit="mu", ensure_channel_first=True)  # the configs' default unit
    img = load({"image": str(tmp_path / "in")})["image"]
    common = dict(unit="mu", output_dir=str(tmp_path / "out"), output_postfix="den", separate_folder=False,
                  resample=False, print_log=False)
    D.SaveImageSeriesd("pred", **common)({"pred": img})
    nii = nib.load(tmp_path / "out" / "in_den.nii.gz")
    np.testing.assert_allclose(np.transpose(nii.get_fdata(), (2, 1, 0)), hu, atol=2e-3)  # HU, not cm^-1
    np.testing.assert_allclose(nii.affine, img.affine.numpy(), atol=1e-6)
    D.SaveImageSeriesd("pred", output_format="dicom", **common)({"pred": img})
    out, dss = read_hu(tmp_path / "out" / "in_den")
    np.testing.assert_allclose(out, hu, atol=float(dss[0].RescaleSlope) / 2 + 2e-3)


def test_dicom_output_of_nifti_input_and_unknown_formats_are_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), tmp_path / "x.nii.gz")
    with pytest.raises(ValueError, match="not DICOM; use --output_format nifti"):
        D.check_inputs([{"image": str(tmp_path / "x.nii.gz")}], "dicom")
    with pytest.raises(ValueError, match="`output_format` must be one of"):
        D.SaveImageSeriesd("pred", output_format="png")


# ---- the bundles' inference configs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cpce_ckpt(tmp_path_factory):
    """Random CPCE-2D weights (the bundle ships none yet), as its inference.json builds the network."""
    path = tmp_path_factory.mktemp("cpce") / "model.pt"
    torch.manual_seed(0)
    net = bundle_scripts("cpce_rfm_da").networks.CPCE2D(in_channels=1, out_channels=1, channels=32, residual=True)
    torch.save(net.state_dict(), path)
    return path, net.eval()


def _config_margin(bundle):
    """The edge margin (pixels) the bundle's inference.json gives its slice inferer."""
    return json.loads((BUNDLES[bundle] / "configs" / "inference.json").read_text())["inferer"].get("margin", 0)


def unet_by_hand(hu):
    """The shipped (residual) U-Net on each slice of an HU volume (n, Rows, Columns), through the bundle's own slice
    inferer (its edge handling), as the U-Net config runs it."""
    S = bundle_scripts("unet_ldct")
    net = S.networks.LDCTUNet(pad_mode="reflect", residual=True).eval()
    net.load_state_dict(torch.load(BUNDLES["unet_ldct"] / "models" / "model.pt", weights_only=True))
    with torch.no_grad():  # the network sees mu / mu_water = HU / 1000 + 1, slices as (x, y) images
        x = torch.from_numpy((hu / 1000 + 1).transpose(0, 2, 1).astype(np.float32))[:, None]
        y = S.inferers.SliceInferer2D(channels_last=False, margin=_config_margin("unet_ldct"))(x, net)
        return ((np.asarray(y)[:, 0] - 1) * 1000).transpose(0, 2, 1)


def cpce_by_hand(hu, net):
    """CPCE-2D on each slice of an HU volume through the bundle's slice inferer: HU -> cm^-1 -> [0, 1] over
    the HU window -> network -> back to HU."""
    S = bundle_scripts("cpce_rfm_da")
    lo, hi = S.helpers.intensity_range([-1024, 3072], "mu", MU_W)
    with torch.no_grad():
        x = ((hu / 1000 + 1) * MU_W - lo) / (hi - lo)
        y = S.inferers.SlicewiseInferer(margin=_config_margin("cpce_rfm_da"))(torch.from_numpy(x.transpose(0, 2, 1).astype(np.float32))[:, None], net)
        y = np.asarray(y)[:, 0].transpose(0, 2, 1)
    return ((y * (hi - lo) + lo) / MU_W - 1) * 1000


def test_unet_config_reads_dicom_without_input_unit_and_writes_a_denoised_series(tmp_path):
    hu_a, uid_a, study = write_series(tmp_path / "in" / "a", n=4, seed=0)
    write_series(tmp_path / "in" / "b", n=3, seed=1, study_uid=study)
    bundle_cli("unet_ldct", "--dataset_dir", tmp_path / "in", "--output_dir", tmp_path / "out", "--output_format", "dicom")
    assert sorted(os.listdir(tmp_path / "out")) == ["a_denoised", "b_denoised"]
    out, dss = read_hu(tmp_path / "out" / "a_denoised")
    np.testing.assert_allclose(out, unet_by_hand(hu_a), atol=float(dss[0].RescaleSlope) / 2 + 0.05)
    disc = (slice(None), slice(24, 40), slice(16, 30))  # uniform water, away from the insert
    assert out[disc].std() < 0.5 * hu_a[disc].std()  # shipped weights: about 50 -> 14 HU
    assert abs(out[disc].mean()) < 15 and abs(out[:, :4, :4].mean() + 1000) < 30
    assert dss[0].SeriesInstanceUID != uid_a and dss[0].StudyInstanceUID == study
    assert dss[0].SeriesDescription.startswith("Denoised by unet_ldct ")
    assert "unet_ldct MONAI bundle" in dss[0].DerivationDescription



def test_cpce_config_finds_series_at_any_depth_and_writes_dicom_in_hu(tmp_path, cpce_ckpt):
    """A folder two levels down holding two series (3 slices, and 1 slice) gives two outputs."""
    ckpt, net = cpce_ckpt
    study = tmp_path / "root" / "deep" / "study"
    hu3, uid3, _ = write_series(study, n=3)
    hu4, uid4, _ = write_series(study, n=1, seed=1, series_number=4, name="one")
    bundle_cli("cpce_rfm_da", "--dataset_dir", tmp_path / "root", "--output_dir", tmp_path / "out",
               "--output_format", "dicom", "--ckpt_path", ckpt)
    assert sorted(os.listdir(tmp_path / "out")) == ["study_series3_denoised", "study_series4_denoised"]
    for hu, uid, folder, prefix in ((hu3, uid3, "study_series3_denoised", "slice"), (hu4, uid4, "study_series4_denoised", "one")):
        out, dss = read_hu(tmp_path / "out" / folder)
        np.testing.assert_allclose(out, cpce_by_hand(hu, net), atol=float(dss[0].RescaleSlope) / 2 + 0.05)
        src = sorted(study.glob(f"{prefix}*.dcm"))
        for d, s in zip(dss, map(pydicom.dcmread, src)):
            assert d.ImagePositionPatient == s.ImagePositionPatient and d.SeriesInstanceUID != uid
            assert d.SourceImageSequence[0].ReferencedSOPInstanceUID == s.SOPInstanceUID
        assert dss[0].SeriesDescription.startswith("Denoised by cpce_rfm_da ")


# ---- issue 10: no silent bad output, nothing of the user's touched ------------------------------------------
def _tree(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def test_a_truncated_file_after_a_good_series_stops_the_run_before_anything_is_written(tmp_path, cpce_ckpt):
    write_series(tmp_path / "in" / "a_good", n=3)
    write_series(tmp_path / "in" / "b_cut", n=3, seed=1)
    truncate(tmp_path / "in" / "b_cut" / "slice002.dcm")
    r = bundle_cli("cpce_rfm_da", "--dataset_dir", tmp_path / "in", "--output_dir", tmp_path / "out",
                   "--output_format", "dicom", "--ckpt_path", cpce_ckpt[0], expect_ok=False)
    assert r.returncode != 0 and "DicomSeriesError" in r.stderr
    bad = str(tmp_path / "in" / "b_cut" / "slice002.dcm")
    assert f"{bad}: truncated: its PixelData element declares 8192 bytes but the file holds only 7192" in r.stderr
    assert "less than expected" not in r.stderr  # pydicom's own message, without the file, no longer comes
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")  # not even the good series


def test_a_rerun_never_replaces_or_deletes_an_existing_output(tmp_path, caplog):
    """Policy: an existing output series folder is left exactly as it is; the new series goes beside it."""
    write_series(tmp_path / "in", n=2)
    img = D.LoadImageSeriesd("image", unit="hu", ensure_channel_first=True)({"image": str(tmp_path / "in")})["image"]
    save = D.SaveImageSeriesd("pred", output_format="dicom", unit="hu", output_dir=str(tmp_path / "out"),
                              output_postfix="denoised")
    save({"pred": img})
    (tmp_path / "out" / "in_denoised" / "notes.txt").write_text("the user's notes")
    before = _tree(tmp_path / "out")
    with caplog.at_level(logging.WARNING):
        save({"pred": img})
    after = _tree(tmp_path / "out")
    assert {k: after.get(k) for k in before} == before  # nothing changed or deleted, notes.txt included
    assert sorted(set(after) - set(before)) == ["in_denoised_2/00001.dcm", "in_denoised_2/00002.dcm"]
    assert (f"{tmp_path / 'out' / 'in_denoised'} already exists and was left as it is (an existing output is never "
            f"replaced or deleted)") in caplog.text
    assert f"was written beside it, to {tmp_path / 'out' / 'in_denoised_2'}" in caplog.text


def test_gaps_single_slices_and_several_series_in_a_folder_each_get_their_own_output(tmp_path, caplog):
    """The 2-D U-Net denoises slices independently: gaps and uneven spacing are fine with DICOM output;
    a folder of two series gives two outputs; each output slice keeps its source slice's position."""
    hu3, *_ = write_series(tmp_path / "in" / "study", n=6, skip=(2, 3))  # series 3: a gap of two slices
    hu4, *_ = write_series(tmp_path / "in" / "study", n=1, seed=1, series_number=4, name="one")  # one slice
    hu_u, *_ = write_series(tmp_path / "in" / "uneven", n=4, seed=2, positions=[0.0, 2.5, 5.0, 8.5])
    items = D.check_inputs(bundle_scripts("unet_ldct").helpers.list_images(str(tmp_path / "in"), group_dicom_series=True,
                                                                           recursive=False), "dicom")
    assert [i["image"] if isinstance(i["image"], str) else len(i["image"]) for i in items] == [
        4, 1, str(tmp_path / "in" / "uneven")]  # the two series of study/, by SeriesNumber, as lists of files
    for folder, patterns, n_series in (("uneven", ["uneven slice spacing", r"gaps of 3\.5 mm after 5\.000 mm"], 1),
                                       ("study", [r"2 missing slice\(s\)", r"-15\.000, -12\.500 mm"], 2)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):  # NIfTI has one slice spacing: accepted, with a warning and the fix
            assert len(D.check_inputs([{"image": str(tmp_path / "in" / folder)}], "nifti")) == n_series
        for pattern in patterns + ["slice spacing is nominal. Pass --output_format dicom"]:
            assert re.search(pattern, caplog.text), (pattern, caplog.text)
    assert D.check_inputs([{"image": str(tmp_path / "in" / "study" / "one000.dcm")}], "nifti")  # one slice: fine
    img = D.LoadImageSeriesd("image", unit="hu", ensure_channel_first=True)({"image": items[1]["image"]})["image"]
    D.SaveImageSeriesd("pred", unit="hu", output_dir=str(tmp_path / "nii"), output_postfix="denoised",
                       separate_folder=False, resample=False, print_log=False)({"pred": img})
    assert os.listdir(tmp_path / "nii") == ["study_series4_denoised.nii.gz"]  # NIfTI named after its series too
    _, uid_a, _ = write_series(tmp_path / "same", n=1)
    _, uid_b, _ = write_series(tmp_path / "same", n=1, seed=1, name="other")  # another series, same SeriesNumber 3
    load = D.LoadImageSeriesd("image", unit="hu")
    names = sorted(load(i)["image"].meta["output_name"] for i in D.check_inputs([{"image": str(tmp_path / "same")}]))
    assert names == sorted(f"same_series3_{hashlib.sha1(u.encode()).hexdigest()[:8]}" for u in (uid_a, uid_b))

    bundle_cli("unet_ldct", "--dataset_dir", tmp_path / "in", "--output_dir", tmp_path / "out", "--output_format", "dicom")
    assert sorted(os.listdir(tmp_path / "out")) == ["study_series3_denoised", "study_series4_denoised", "uneven_denoised"]
    for folder, hu, src in (("study_series3_denoised", hu3, sorted((tmp_path / "in" / "study").glob("slice*"))),
                            ("study_series4_denoised", hu4, [tmp_path / "in" / "study" / "one000.dcm"]),
                            ("uneven_denoised", hu_u, sorted((tmp_path / "in" / "uneven").iterdir()))):
        out, dss = read_hu(tmp_path / "out" / folder)
        np.testing.assert_allclose(out, unet_by_hand(hu), atol=float(dss[0].RescaleSlope) / 2 + 0.05)
        assert [d.ImagePositionPatient for d in dss] == [pydicom.dcmread(f).ImagePositionPatient for f in src]


def test_dicom_output_folders_get_the_users_umask(tmp_path):
    write_series(tmp_path / "in", n=1)
    files = D.validate_series(tmp_path / "in").files
    old = os.umask(0o027)
    try:
        paths = D.write_dicom_series(np.zeros((1, N, N)), files, tmp_path / "out")
    finally:
        os.umask(old)
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == oct(0o750)  # mkdtemp alone gives 0o700
    assert oct(Path(paths[0]).stat().st_mode & 0o777) == oct(0o640)
