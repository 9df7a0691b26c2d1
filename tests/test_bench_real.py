"""``ldct_scripts.bench.bench_real``: metrics against hand computations, the best-σ search, pairing of NIfTI and DICOM
slices, refusal of bad input before anything is written, and runs end to end through the real bundles on
tiny synthetic pairs (NIfTI through the U-Net, DICOM through CPCE) and on the shared AAPM–Mayo pairs."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import ldct_scripts.bench.bench_real as br

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "real_ldct"
nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")




# ---------------------------------------------------------------------------------------------------------
# synthetic data
# ---------------------------------------------------------------------------------------------------------
def water_phantom(n=64, radius=0.4):
    """An ``(n, n)`` water disk (0 HU) in air (−1000 HU) with a +100 HU insert, float32.

    The insert's mirror images (rows or columns flipped, transposed) do not overlap it, so a misoriented
    output shows."""
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) / n
    img = np.where(r < radius, 0.0, -1000.0)
    img[np.hypot(yy - n * 0.3, xx - n * 0.6) < n * 0.07] = 100.0  # off every axis of symmetry
    return img.astype(np.float32)


def write_nifti(path: Path, arr, spacing=0.7, kernel=None):
    from ldct_sim.io import slice_affine

    path.parent.mkdir(parents=True, exist_ok=True)
    affine = slice_affine(spacing, arr.shape[:2])
    nib.save(nib.Nifti1Image(np.asarray(arr, dtype=np.float32), affine), str(path))
    if kernel:
        stem = str(path)[: -len(".nii.gz")]
        Path(stem + ".json").write_text(json.dumps({"ConvolutionKernel": kernel}))


def nifti_pairs(root: Path, n_pairs=2, n=64, ld_noise=40.0, fd_noise=10.0, seed=0, kernel="B30f"):
    rng = np.random.default_rng(seed)
    truth = water_phantom(n)
    for k in range(n_pairs):
        write_nifti(root / "LD" / f"case{k}.nii.gz", truth + rng.normal(0, ld_noise, truth.shape), kernel=kernel)
        write_nifti(root / "FD" / f"case{k}.nii.gz", truth + rng.normal(0, fd_noise, truth.shape), kernel=kernel)
    return root / "LD", root / "FD"


def write_dicom_series(folder: Path, offsets_hu, z_mm, names=None, kernel="B30f", noise=0.0, seed=0):
    """A DICOM series from pydicom's CT_small.dcm (128², HU = stored − 1024), one slice per z, HU + offset."""
    import pydicom.data
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    for k, (off, z) in enumerate(zip(offsets_hu, z_mm)):
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
        px = ds.pixel_array.astype(np.float64) + off + rng.normal(0, noise, ds.pixel_array.shape)
        ds.PixelData = np.clip(np.round(px), -32768, 32767).astype("<i2").tobytes()
        ds.PatientID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "P1", uid, generate_uid()
        ds.ImagePositionPatient = [-158.1, -179.0, float(z)]
        ds.InstanceNumber = k + 1
        ds.ConvolutionKernel = kernel
        ds.save_as(folder / ((names[k] if names else f"{k}") + ".dcm"))
    return folder


# ---------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------
def test_body_and_window_metrics_match_hand_computation():
    ref = water_phantom(64)
    ref[ref == 100.0] = 0.0  # water disk in air
    body = ref > -500
    pred = ref + np.where(body, 10.0, 50.0)  # +10 HU in the body, +50 HU in the air (still below the window)
    m = br.pair_metrics(pred, ref)
    assert m["rmse_body"] == pytest.approx(10.0, rel=1e-9)
    assert m["psnr_body"] == pytest.approx(20 * math.log10(4096 / 10.0), rel=1e-9)
    rmse_w = 10.0 * math.sqrt(body.mean())  # the air clips to −160 HU in both images: no error there
    assert m["rmse_window"] == pytest.approx(rmse_w, rel=1e-9)
    assert m["psnr_window"] == pytest.approx(20 * math.log10(400 / rmse_w), rel=1e-9)
    same = br.pair_metrics(ref, ref)
    assert same["rmse_body"] == 0.0 and same["ssim_body"] == pytest.approx(1.0, abs=1e-6)
    assert same["ssim_window"] == pytest.approx(1.0, abs=1e-6)


def test_ssim_of_flat_images_is_the_luminance_term():
    ref, pred = np.zeros((32, 32)), np.full((32, 32), 40.0)  # all body (> −500 HU), no contrast
    m = br.pair_metrics(pred, ref)
    c1 = (0.01 * 1.0) ** 2  # data range 1 after mapping to [0, 1]; the contrast term is c2 / c2 = 1
    tol = 1e-4  # MONAI's SSIM runs in float32: E[x²] − E[x]² of a flat image is off by ~1e-8, c2 is 9e-4
    a, b = (0 + 160) / 400, (40 + 160) / 400  # window [−160, 240]
    assert m["ssim_window"] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=tol)
    a, b = (0 + 1024) / 4096, (40 + 1024) / 4096  # body range [−1024, 3072]
    assert m["ssim_body"] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=tol)


def test_body_ssim_over_the_whole_image_is_monais_ssim_metric():
    import torch
    from monai.metrics import SSIMMetric

    rng = np.random.default_rng(1)
    ref = rng.normal(50, 30, (48, 48))
    pred = ref + rng.normal(0, 20, ref.shape)
    m = br.pair_metrics(pred, ref, mask=np.ones(ref.shape, bool))
    scale = lambda x: torch.as_tensor((x + 1024) / 4096)[None, None]  # noqa: E731
    expected = float(SSIMMetric(spatial_dims=2, data_range=1.0)(scale(pred), scale(ref)).mean())
    assert m["ssim_body"] == pytest.approx(expected, abs=1e-6)
    assert m["rmse_body"] == pytest.approx(float(np.sqrt(np.mean((pred - ref) ** 2))), rel=1e-9)


def test_empty_body_mask_and_shape_mismatch_are_refused():
    with pytest.raises(br.BenchError, match="body mask is empty"):
        br.pair_metrics(np.full((16, 16), -1000.0), np.full((16, 16), -1000.0))
    with pytest.raises(br.BenchError, match="one shape"):
        br.pair_metrics(np.zeros((16, 16)), np.zeros((16, 17)))


def test_summary_cut_is_one_minus_ratio_of_mean_rmse():
    rows = []
    for method, values in ((br.INPUT, (20.0, 40.0)), ("net", (15.0, 21.0))):
        for v in values:
            rows.append({"kernel": "B30f", "method": method, **{m: v for m in br.METRICS}})
    s = {r["method"]: r for r in br.summarize(rows, [br.INPUT, "net"])}
    assert s["net"]["rmse_body_cut_pct"] == pytest.approx(100 * (1 - 18.0 / 30.0))
    assert s["net"]["rmse_body_sd"] == pytest.approx(np.std([15.0, 21.0], ddof=1))
    md = br.format_markdown(br.summarize(rows, [br.INPUT, "net"]))
    assert "+40 %" in md and "PSNR peak 4096 HU" in md and "PSNR peak 400 HU" in md


# ---------------------------------------------------------------------------------------------------------
# Gaussian blur
# ---------------------------------------------------------------------------------------------------------
def test_best_sigma_recovers_the_blur_that_made_the_reference():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    lds = [water_phantom(64) + rng.normal(0, 50, (64, 64)).astype(np.float32) for _ in range(2)]
    fds = [gaussian_filter(x, 1.3, mode="reflect") for x in lds]
    sigma, cost = br.best_sigma(lds, fds)
    assert sigma == pytest.approx(1.3, abs=0.01)
    assert cost < 0.5  # HU; zero at exactly 1.3
    assert np.array_equal(br.gaussian_blur(lds[0], 0.0), lds[0])


# ---------------------------------------------------------------------------------------------------------
# pairing and bad input
# ---------------------------------------------------------------------------------------------------------
def test_nifti_pairs_by_sorted_name_with_kernel_from_sidecar_then_option(tmp_path):
    ld, fd = nifti_pairs(tmp_path, n_pairs=2, kernel=None)
    write_nifti(ld / "case2.nii.gz", water_phantom(64), kernel="D45f")
    write_nifti(fd / "case2.nii.gz", water_phantom(64) + 1.0)
    pairs = br.load_pairs(ld, fd, kernel="B40f")
    assert [p.name for p in pairs] == ["case0.nii.gz", "case1.nii.gz", "case2.nii.gz"]
    assert [(p.kernel, p.kernel_from) for p in pairs] == [("B40f", "--kernel"), ("B40f", "--kernel"), ("D45f", "sidecar JSON")]
    assert np.allclose(pairs[2].full_dose_hu - pairs[2].low_dose_hu, 1.0)
    assert pairs[0].spacing_mm == pytest.approx((0.7, 0.7))
    assert br.load_pairs(ld, fd)[0].kernel == "unknown"


def test_dicom_pairs_by_position_not_by_file_order(tmp_path):
    write_dicom_series(tmp_path / "LD", offsets_hu=(0, 300), z_mm=(0.0, 5.0), names=("a", "b"))
    write_dicom_series(tmp_path / "FD", offsets_hu=(310, 10), z_mm=(5.0, 0.0), names=("a", "b"))  # z order reversed
    pairs = br.load_pairs(tmp_path / "LD", tmp_path / "FD")
    assert len(pairs) == 2 and {p.kernel for p in pairs} == {"B30f"}
    assert all(p.kernel_from == "DICOM header" for p in pairs)
    for p in pairs:
        assert np.allclose(p.full_dose_hu - p.low_dose_hu, 10.0)  # each slice met its partner at the same z


def test_unpaired_and_mismatched_inputs_are_refused_naming_the_file(tmp_path):
    ld, fd = nifti_pairs(tmp_path / "a", n_pairs=2)
    (fd / "case1.nii.gz").unlink()
    with pytest.raises(br.PairError, match="2 NIfTI file.*--full-dose 1"):
        br.load_pairs(ld, fd)
    ld, fd = nifti_pairs(tmp_path / "b", n_pairs=1)
    write_nifti(fd / "case0.nii.gz", np.zeros((64, 60)) - 1000)
    with pytest.raises(br.PairError, match=r"case0.nii.gz.*\(64, 64\).*\(64, 60\)"):
        br.load_pairs(ld, fd)
    write_dicom_series(tmp_path / "dLD", offsets_hu=(0,), z_mm=(0.0,))
    write_dicom_series(tmp_path / "dFD", offsets_hu=(0,), z_mm=(2.5,))
    with pytest.raises(br.PairError, match="no full-dose partner.*slice position"):
        br.load_pairs(tmp_path / "dLD", tmp_path / "dFD")
    with pytest.raises(br.PairError, match="DICOM and --full-dose NIFTI"):
        br.load_pairs(tmp_path / "dLD", fd)
    write_nifti(tmp_path / "mu" / "LD" / "x.nii.gz", water_phantom(32) / 5000 + 0.2)
    write_nifti(tmp_path / "mu" / "FD" / "x.nii.gz", water_phantom(32) / 5000 + 0.2)
    with pytest.raises(br.PairError, match="does not look like CT in HU"):
        br.load_pairs(tmp_path / "mu" / "LD", tmp_path / "mu" / "FD")


def test_main_refuses_bad_options_and_writes_nothing(tmp_path, capsys):
    ld, fd = nifti_pairs(tmp_path, n_pairs=1)
    out = tmp_path / "out"
    assert br.main(["--low-dose", str(ld), "--out", str(out)]) == 2
    assert "--low-dose and --full-dose go together" in capsys.readouterr().err
    assert br.main(["--low-dose", str(ld), "--full-dose", str(fd), "--out", str(out), "--ckpt", "foo=x.pt"]) == 2
    assert "'foo' is not among --bundles" in capsys.readouterr().err
    assert br.main(["--low-dose", str(ld), "--full-dose", str(fd / "nope"), "--out", str(out), "--bundles"]) == 2
    assert "--full-dose" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert br.main(["--low-dose", str(ld), "--full-dose", str(fd), "--out", str(out), "--bundles"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_npz_pairs_become_nifti_that_bundles_see_as_they_see_the_dicom_file(tmp_path):
    """``--from-npz``: ldct_sim reads back the npz image, and MONAI's loader (what the bundles use) presents
    the NIfTI exactly as it presents the DICOM slice the image came from (columns first)."""
    import pydicom.data
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    from ldct_sim.io import iter_ct_slices

    dcm = pydicom.data.get_testdata_file("CT_small.dcm")
    hu = next(iter_ct_slices(dcm)).hu.astype(np.int16)
    np.savez(tmp_path / "pairs.npz", quarter_dose_hu=np.stack([hu, hu + 5]), full_dose_hu=np.stack([hu, hu]), id=np.array(["a", "b"]))
    (tmp_path / "pairs.json").write_text(json.dumps([{"id": "a", "kernel": "B30f (smooth)", "pixel_spacing_mm": 0.66},
                                                     {"id": "b", "kernel": "unknown", "pixel_spacing_mm": None}]))
    ld, fd = br.npz_to_nifti(tmp_path / "pairs.npz", tmp_path / "nii")
    back = next(iter_ct_slices(ld / "a.nii.gz"))
    assert np.array_equal(back.hu, hu) and back.spacing_mm == pytest.approx((0.66, 0.66))
    seen_nifti = np.asarray(LoadImage(image_only=True)(str(ld / "a.nii.gz"))).squeeze()
    seen_dicom = np.asarray(LoadImage(image_only=True, reader=PydicomReader(force=True))(dcm)).squeeze()
    assert np.array_equal(seen_nifti, seen_dicom)
    rows_first, _ = br.npz_to_nifti(tmp_path / "pairs.npz", tmp_path / "rows", layout="ldct_sim")
    assert np.array_equal(next(iter_ct_slices(rows_first / "a.nii.gz")).hu, hu)
    assert np.array_equal(np.asarray(LoadImage(image_only=True)(str(rows_first / "a.nii.gz"))).squeeze(), seen_dicom.T)
    pairs = br.load_pairs(ld, fd)
    assert [(p.name, p.kernel) for p in pairs] == [("a.nii.gz", "B30f"), ("b.nii.gz", "unknown")]
    assert pairs[1].spacing_mm == pytest.approx((0.66, 0.66))  # no spacing in its record: the others' median
    assert json.loads((fd / "b.json").read_text())["PixelSpacingAssumed"] is True
    with pytest.raises(br.BenchError, match=r"unknown pair id\(s\) \['c'\]"):
        br.npz_to_nifti(tmp_path / "pairs.npz", tmp_path / "nii2", ids=["c"])


# ---------------------------------------------------------------------------------------------------------
# end to end through the real bundles (tiny images)
# ---------------------------------------------------------------------------------------------------------
def _table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_end_to_end_nifti_through_the_unet_bundle(tmp_path):
    ld, fd = nifti_pairs(tmp_path, n_pairs=2)
    out = tmp_path / "out"
    assert br.main(["--low-dose", str(ld), "--full-dose", str(fd), "--out", str(out), "--bundles", "unet_ldct",
                    "--override", "unet_ldct:sw_batch_size=2", "--no-progress"]) == 0
    rows = _table(out / "results.csv")
    assert [r["method"] for r in rows] == [br.INPUT, br.GAUSSIAN, "unet_ldct"]
    assert {r["kernel"] for r in rows} == {"B30f"} and {r["n_pairs"] for r in rows} == {"2"}
    inp = float(rows[0]["rmse_body_mean"])
    assert 35 < inp < 50  # sqrt(40² + 10²) HU of noise, plus the disk edge
    assert float(rows[1]["rmse_body_mean"]) < inp and float(rows[1]["sigma_px"]) > 0.3
    assert all(math.isfinite(float(r[f"{m}_mean"])) for r in rows for m in br.METRICS)
    # the bundle's output lines up with its input (not flipped or transposed): far closer to it than to a mirror
    den = sorted((out / "denoised" / "unet_ldct").glob("*.nii.gz"))
    assert len(den) == 2
    pairs = br.load_pairs(ld, fd)
    from ldct_sim.io import iter_ct_slices

    out_img = next(iter_ct_slices(den[0])).hu
    insert = water_phantom(64) == 100.0
    assert out_img[insert].mean() > 60  # +100 HU where the input has it
    for mirrored in (insert[::-1], insert[:, ::-1], insert.T):
        assert abs(out_img[mirrored].mean()) < 40  # water (0 HU) where a flipped output would put it
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["bundles"]["unet_ldct"]["command"][2:5] == ["monai.bundle", "run", "--config_file"]
    assert "--input_unit" in prov["bundles"]["unet_ldct"]["command"] and prov["gaussian_sigma_px"]["B30f"] > 0
    assert prov["git"]["commit"] and prov["conventions"]["window_psnr_peak_hu"] == 400
    assert (out / "crops.png").stat().st_size > 1000 and (out / "results.md").is_file()
    assert len(_table(out / "per_pair.csv")) == 3 * 2


def test_end_to_end_dicom_through_the_cpce_bundle(tmp_path):
    write_dicom_series(tmp_path / "LD", offsets_hu=(0, 0), z_mm=(0.0, 5.0), noise=30.0, seed=1)
    write_dicom_series(tmp_path / "FD", offsets_hu=(0, 0), z_mm=(0.0, 5.0), noise=5.0, seed=2)
    out = tmp_path / "out"
    assert br.main(["--low-dose", str(tmp_path / "LD"), "--full-dose", str(tmp_path / "FD"), "--out", str(out),
                    "--bundles", "cpce_rfm_da", "--no-progress"]) == 0
    rows = {r["method"]: r for r in _table(out / "results.csv")}
    assert set(rows) == {br.INPUT, br.GAUSSIAN, "cpce_rfm_da"} and rows[br.INPUT]["kernel"] == "B30f"
    assert len(list((out / "denoised" / "cpce_rfm_da").glob("*_denoised/*.dcm"))) == 2  # a derived DICOM series
    assert float(rows["cpce_rfm_da"]["rmse_body_mean"]) < 3 * float(rows[br.INPUT]["rmse_body_mean"])


# ---------------------------------------------------------------------------------------------------------
# the shared AAPM–Mayo pairs (CI has ../shared; a user's clone does not)
# ---------------------------------------------------------------------------------------------------------
needs_shared = pytest.mark.skipif(not (SHARED / "dev_pairs.npz").is_file(), reason="../shared/real_ldct is absent (not part of the project)")


@needs_shared
def test_shared_npz_pairs_give_the_known_input_rmse_per_kernel(tmp_path):
    out = tmp_path / "out"
    ids = ["L506_0", "L506_3mm_SHARP_0032"]
    assert br.main(["--from-npz", str(SHARED / "dev_pairs.npz"), "--npz-ids", *ids, "--out", str(out),
                    "--bundles", "--no-progress"]) == 0
    rows = {(r["kernel"], r["method"]): r for r in _table(out / "results.csv")}
    assert float(rows[("B30f", br.INPUT)]["rmse_body_mean"]) == pytest.approx(26.9, abs=0.1)
    assert float(rows[("D45f", br.INPUT)]["rmse_body_mean"]) == pytest.approx(94.5, abs=0.1)  # shared README
    assert float(rows[("D45f", br.GAUSSIAN)]["rmse_body_mean"]) == pytest.approx(54, abs=1)  # issue 12
    prov = json.loads((out / "provenance.json").read_text())
    assert [p["kernel_from"] for p in prov["pairs"]] == ["sidecar JSON"] * 2


@needs_shared
def test_shared_dicom_pair_reads_kernel_from_the_siemens_header(tmp_path):
    dcm = SHARED / "dicom"
    pairs = br.load_pairs(dcm / "L506_1mm_0087_QD.IMA", dcm / "L506_1mm_0087_FD.IMA")
    assert [(p.kernel, p.kernel_from) for p in pairs] == [("B30f", "DICOM header")]
    m = br.pair_metrics(pairs[0].low_dose_hu, pairs[0].full_dose_hu)
    assert m["rmse_body"] == pytest.approx(64, abs=0.5)  # shared README: 64 HU for the 1 mm B30f pair


@needs_shared
@pytest.mark.slow
def test_shared_pair_scores_the_same_from_dicom_and_from_the_npz(tmp_path):
    """The 1 mm B30f pair through both bundles, once from the original DICOM files (DICOM in and out), once
    from the npz (NIfTI in and out): the same numbers, to the DICOM output's quantisation (≤ 1 HU steps)."""
    dcm = SHARED / "dicom"
    assert br.main(["--low-dose", str(dcm / "L506_1mm_0087_QD.IMA"), "--full-dose", str(dcm / "L506_1mm_0087_FD.IMA"),
                    "--out", str(tmp_path / "dicom"), "--no-progress"]) == 0
    assert br.main(["--from-npz", str(SHARED / "dev_pairs.npz"), "--npz-ids", "L506_1mm_0087", "--out", str(tmp_path / "npz"),
                    "--no-progress"]) == 0
    a = {r["method"]: r for r in _table(tmp_path / "dicom" / "results.csv")}
    b = {r["method"]: r for r in _table(tmp_path / "npz" / "results.csv")}
    for method in (br.INPUT, br.GAUSSIAN, "unet_ldct", "cpce_rfm_da"):
        assert float(a[method]["rmse_body_mean"]) == pytest.approx(float(b[method]["rmse_body_mean"]), abs=0.3), method
