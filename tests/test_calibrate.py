"""Calibration of a scanner profile on low-dose / full-dose pairs (ldct_sim.calibrate and the CLI).

Synthetic pairs with a known kernel and dose check that calibration recovers them; the real AAPM–Mayo
pairs in ../shared/real_ldct (skipped when absent) check the acceptance criteria of issue 12: the profile's
simulated noise on the full-dose images matches the real noise within 20% in SD and 15% in mean NPS
frequency. Real pixels only ever go to tmp_path.
"""

import copy
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from ldct_sim.attenuation import hu_to_mu, mu_to_hu, mu_water
from ldct_sim.calibrate import (
    CTPair,
    calibrate,
    load_pairs,
    noise_masks,
    noise_roi_grid,
    noise_stats,
    pairing_statistic,
)
from ldct_sim.cli import main
from ldct_sim.fbp import ApodizedRamp, fbp
from ldct_sim.geometry import get_clinical_preset
from ldct_sim.io import slice_affine
from ldct_sim.noise import make_generator, transmission_noise
from ldct_sim.phantoms import abdominal_phantom
from ldct_sim.profile import ScannerProfile, load_profile
from ldct_sim.simulate import LowDoseSimulator, forward_project

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real_ldct"
needs_real = pytest.mark.skipif(not (REAL / "dev_pairs.npz").is_file(), reason="../shared/real_ldct (real AAPM-Mayo pairs) is absent")

N, PX = 160, 0.75  # synthetic slices: 120 mm field, clinical pixel size
TRUE_KERNEL = ApodizedRamp(s_mm2=-2.5, q_mm4=3.0)  # a smooth, B30f-like kernel
TRUE_I0 = 1.5e5


def _synthetic_pair(pairing: str, seed: int = 0, ratio: float = 4.0):
    """(LD, FD) in HU of a phantom: FD at ratio·I0; LD = FD + inserted noise, or an independent scan at I0."""
    hu = abdominal_phantom(N, seed=seed)
    g = get_clinical_preset("definition_as").geometry(PX, N)
    sim = LowDoseSimulator(g, backend="astra", forward_model="line", filter=TRUE_KERNEL)
    mu = hu_to_mu(hu).astype(np.float32)
    if pairing == "inserted":
        i0_ins = 1.0 / (1.0 / TRUE_I0 - 1.0 / (ratio * TRUE_I0))  # the extra noise that takes FD to LD
        res = sim.run(mu, [ratio * TRUE_I0, i0_ins], seed=seed)
        fd = mu_to_hu(res.low_dose[0].numpy())
        ld = fd + res.noise[1].numpy() * 1000.0 / mu_water()
    else:
        res = sim.run(mu, [ratio * TRUE_I0, TRUE_I0], seed=seed)
        fd, ld = mu_to_hu(res.low_dose[0].numpy()), mu_to_hu(res.low_dose[1].numpy())
    return ld.astype(np.float32), fd.astype(np.float32)


def _write_nifti(path: Path, hu: np.ndarray, spacing_mm: float) -> Path:
    img = nib.Nifti1Image(np.asarray(hu, dtype=np.float32)[:, :, None], slice_affine((spacing_mm, spacing_mm), hu.shape))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def _max_window_gap(a: ApodizedRamp, b: ApodizedRamp, f_max: float) -> float:
    f = torch.linspace(0.0, f_max, 64, dtype=torch.float64)
    return float((a.window(f) - b.window(f)).abs().max())


# ---- synthetic: recover a known kernel and dose ---------------------------------------------------
@pytest.mark.parametrize("pairing", ["inserted", "independent"])
def test_recovers_known_kernel_and_dose(pairing):
    ld, fd = _synthetic_pair(pairing)
    pair = CTPair(ld, fd, (PX, PX), "ld", "fd")
    res = calibrate(None, None, pairs=[pair], roi_px=32, body_margin_px=4)
    p, fit = res.profile, res.profile.fit
    assert fit["pairing"] == pairing  # detected from the data
    assert (fit["pairing_statistic_kappa"] < 0.5) == (pairing == "inserted")
    assert p.i0 == pytest.approx(TRUE_I0, rel=0.1)
    assert p.full_dose_i0 == pytest.approx(4 * p.i0)
    # the window is only seen up to the image's Nyquist frequency, 1/(2·0.75 mm)
    assert _max_window_gap(p.kernel, TRUE_KERNEL, 0.5 / PX) < 0.08
    assert abs(res.sd_error) < 0.05 and abs(res.mean_frequency_error) < 0.03
    assert fit["residuals"]["sd_relative"] == pytest.approx(res.sd_error)


def test_pairing_statistic_by_construction():
    """κ ≈ 0 for inserted noise, ≈ 1 for independent scans (noise-only 'anatomy' makes it exact)."""
    rng = np.random.default_rng(0)
    base = np.zeros((128, 128), np.float32)
    n_fd = rng.normal(0, 10, base.shape).astype(np.float32)
    n_extra = rng.normal(0, 10 * math.sqrt(3), base.shape).astype(np.float32)  # r = 4: var_LD = 4 var_FD
    n_ld = rng.normal(0, 20, base.shape).astype(np.float32)
    soft = np.ones(base.shape, bool)
    inserted = CTPair(base + n_fd + n_extra, base + n_fd, (1, 1), "a", "b")
    independent = CTPair(base + n_ld, base + n_fd, (1, 1), "a", "b")
    assert abs(pairing_statistic([inserted], [soft], 4.0)) < 0.1
    assert pairing_statistic([independent], [soft], 4.0) == pytest.approx(1.0, abs=0.1)


def test_noise_stats_match_hand_computation():
    rng = np.random.default_rng(1)
    img = rng.normal(0, 5.0, (96, 96))
    body = np.ones_like(img, bool)
    rois = noise_roi_grid(body, 32)
    assert len(rois) == 25  # 5 x 5 half-overlapping 32-pixel ROIs in 96 pixels
    st = noise_stats([img], [body], [rois], 32, [0.5])
    assert st.sd_hu == pytest.approx(img.std(), rel=1e-9)
    # white noise: flat 2-D NPS, mean radial frequency of the square [-1/2, 1/2)² ≈ 0.38 cycles/pixel
    assert st.mean_frequency == pytest.approx(0.383, abs=0.01)
    f_mm, nps_mm, n_roi = st.per_image[0]
    assert n_roi == 25 and f_mm[0] == pytest.approx(1 / 32 / 0.5)
    assert np.median(nps_mm) == pytest.approx(25.0 * 0.25, rel=0.15)  # σ²·Δx² in HU²·mm²


def test_masks_keep_soft_tissue_inside_the_body():
    hu = abdominal_phantom(128, seed=3)
    body, soft = noise_masks(hu)
    assert soft.any() and not (soft & ~body).any()
    assert (hu[soft] >= -100).all() and (hu[soft] <= 200).all()
    assert not body[0].any() and not body[:, 0].any()  # air around the body


# ---- inputs and errors ----------------------------------------------------------------------------
def test_load_pairs_by_sorted_name(tmp_path):
    a, b = _synthetic_pair("inserted", seed=1)
    for k in range(2):
        _write_nifti(tmp_path / "ld" / f"s{k}.nii.gz", a + k, PX)
        _write_nifti(tmp_path / "fd" / f"s{k}.nii.gz", b + k, PX)
    pairs = load_pairs(tmp_path / "ld", tmp_path / "fd")
    assert [Path(p.low_dose_path).name for p in pairs] == ["s0.nii.gz", "s1.nii.gz"]
    assert [Path(p.full_dose_path).name for p in pairs] == ["s0.nii.gz", "s1.nii.gz"]
    np.testing.assert_allclose(pairs[1].low_dose_hu - pairs[1].full_dose_hu, a - b, atol=1e-3)
    assert pairs[0].spacing_mm == pytest.approx((PX, PX))


def test_load_pairs_by_dicom_position(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for role, offset in (("ld", 7), ("fd", 0)):
        (tmp_path / role).mkdir()
        for k, z in enumerate((10.0, 20.0, 30.0)):
            ds = copy.deepcopy(src)  # Dataset.copy() shares its data elements
            ds.ImagePositionPatient = [0.0, 0.0, z]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.SeriesInstanceUID = f"1.2.3.{1 + (role == 'fd')}"
            ds.SOPInstanceUID = f"1.2.3.{1 + (role == 'fd')}.{k + 1}"
            ds.InstanceNumber = 3 - k if role == "ld" else k + 1  # names and numbers disagree with positions
            arr = ds.pixel_array.copy()
            arr[0, 0] += offset + k
            ds.PixelData = arr.tobytes()
            name = f"{role}_{(k * 2) % 3}.dcm" if role == "ld" else f"{role}_{k}.dcm"  # LD names out of order
            ds.save_as(tmp_path / role / name, enforce_file_format=True)
    pairs = load_pairs(tmp_path / "ld", tmp_path / "fd")
    assert len(pairs) == 3
    for p in pairs:  # same position: the marked corner differs by exactly the LD offset
        assert p.low_dose_hu[0, 0] - p.full_dose_hu[0, 0] == pytest.approx(7.0)


def test_mismatched_counts_are_refused(tmp_path):
    a, b = _synthetic_pair("inserted", seed=1)
    _write_nifti(tmp_path / "ld" / "s0.nii.gz", a, PX)
    _write_nifti(tmp_path / "ld" / "s1.nii.gz", a, PX)
    _write_nifti(tmp_path / "fd" / "s0.nii.gz", b, PX)
    with pytest.raises(ValueError, match=r"--low-dose holds 2 NIfTI file\(s\) and --full-dose 1; NIfTI pairs by sorted name"):
        load_pairs(tmp_path / "ld", tmp_path / "fd")


def test_mismatched_shapes_and_spacings_are_refused(tmp_path):
    a, b = _synthetic_pair("inserted", seed=1)
    ld = _write_nifti(tmp_path / "ld.nii.gz", a, PX)
    with pytest.raises(ValueError, match=r"ld.nii.gz \(slice 0\) is \(160, 160\) but its full-dose partner .*fd.nii.gz is \(128, 128\)"):
        load_pairs(ld, _write_nifti(tmp_path / "fd.nii.gz", b[:128, :128], PX))
    with pytest.raises(ValueError, match=r"pixel spacing .* differs .* aligned pixel for pixel"):
        load_pairs(ld, _write_nifti(tmp_path / "fd2.nii.gz", b, 0.8))


def test_non_ct_and_missing_inputs_are_refused(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Modality = "MR"
    ds.save_as(tmp_path / "mr.dcm", enforce_file_format=True)
    fd = _write_nifti(tmp_path / "fd.nii.gz", np.zeros((128, 128), np.float32), 0.66)
    with pytest.raises(ValueError, match=r"--low-dose: .*mr.dcm: DICOM modality is 'MR', not 'CT'"):
        load_pairs(tmp_path / "mr.dcm", fd)
    with pytest.raises(ValueError, match=r"--full-dose: .*nope"):
        load_pairs(fd, tmp_path / "nope")


def test_calibrate_refuses_bad_settings_and_empty_slices():
    a, b = _synthetic_pair("inserted", seed=2)
    pair = CTPair(a, b, (PX, PX), "ld", "fd")
    with pytest.raises(ValueError, match=r"`dose_ratio` .* must be > 1, got 1.0"):
        calibrate(None, None, pairs=[pair], dose_ratio=1.0)
    with pytest.raises(ValueError, match=r"`pairing` must be one of \('auto', 'inserted', 'independent'\)"):
        calibrate(None, None, pairs=[pair], pairing="guess")
    air = np.full((128, 128), -1000.0, np.float32)
    with pytest.raises(ValueError, match=r"'fd' has 0 64x64 ROIs inside the body .* too little to measure noise"):
        calibrate(None, None, pairs=[CTPair(air + 1, air, (PX, PX), "ld", "fd")])
    with pytest.raises(ValueError, match="equals its full dose"):
        calibrate(None, None, pairs=[CTPair(b, b, (PX, PX), "ld", "fd")], roi_px=32, body_margin_px=4)


def test_cli_calibrate_writes_profile_and_figure_and_simulate_uses_it(tmp_path, capsys):
    a, b = _synthetic_pair("inserted", seed=4)
    ld = _write_nifti(tmp_path / "in" / "ld.nii.gz", a, PX)
    fd = _write_nifti(tmp_path / "in" / "fd.nii.gz", b, PX)
    out = tmp_path / "prof" / "mine.json"
    assert main(["calibrate", "--low-dose", str(ld), "--full-dose", str(fd), "--out", str(out), "--roi-px", "32"]) == 0
    text = capsys.readouterr().out
    assert "noise SD in soft tissue: real" in text and "mine" in text
    assert sorted(f.name for f in out.parent.iterdir()) == ["mine.json", "mine.png"]
    p = ScannerProfile.load(out)
    assert p.name == "mine" and p.fit["pairing"] == "inserted" and p.fit["n_pairs"] == 1
    assert p.fit["real"]["radial_nps"]["nps_hu2_pixel2"] and p.fit["simulated"]["mean_frequency_cycles_per_pixel"] > 0
    assert p.provenance["git"]["commit"]
    # refuses to replace it without --overwrite, and writes nothing
    before = out.read_bytes()
    assert main(["calibrate", "--low-dose", str(ld), "--full-dose", str(fd), "--out", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err and out.read_bytes() == before

    # simulate with the profile: the slice keeps its own 0.75 mm grid; noise images under **/noise/
    ds = tmp_path / "ds"
    assert main(["simulate", "--input", str(fd), "--profile", str(out), "--out", str(ds), "--n-views", "288",
                 "--forward-model", "line", "--progress"]) in (0,)
    noise = list(ds.glob("**/noise/*.nii.gz"))
    assert len(noise) == 1 and noise[0].parent.parent.name == "mine"
    img = nib.load(noise[0])
    assert img.shape[:2] == (N, N) and np.allclose(np.linalg.norm(img.affine[:3, :2], axis=0), PX)
    manifest = json.loads((ds / "manifest.json").read_text())
    unit = manifest["resolutions"]["mine"]
    assert unit["input_i0"] == pytest.approx(p.i0) and unit["label_i0"] == pytest.approx(p.full_dose_i0)
    assert unit["profile"]["kernel"] == p.kernel.to_dict()


def test_cli_calibrate_bad_input_writes_nothing(tmp_path, capsys):
    a, b = _synthetic_pair("inserted", seed=5)
    ld = _write_nifti(tmp_path / "ld.nii.gz", a, PX)
    fd = _write_nifti(tmp_path / "fd.nii.gz", b[:128, :128], PX)
    out = tmp_path / "out" / "p.json"
    assert main(["calibrate", "--low-dose", str(ld), "--full-dose", str(fd), "--out", str(out)]) == 2
    assert "aligned pixel for pixel" in capsys.readouterr().err
    assert not out.parent.exists()


def test_cli_simulate_profile_refuses_conflicting_flags(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--phantoms", "1", "--profile", "x.json", "--filter", "hann", "--out", str(tmp_path / "o")])
    assert "--filter cannot be combined with --profile" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- real AAPM–Mayo pairs: the acceptance criteria --------------------------------------------------
def _real(ids):
    d = np.load(REAL / "dev_pairs.npz")
    meta = json.loads((REAL / "dev_pairs.json").read_text())
    index = {m["id"]: k for k, m in enumerate(meta)}
    return [(d["quarter_dose_hu"][index[i]].astype(np.float32), d["full_dose_hu"][index[i]].astype(np.float32),
             float(meta[index[i]]["pixel_spacing_mm"])) for i in ids]


def _check_profile_on_real(profile: ScannerProfile, pairs, recon_px=256, seed=123):
    """Simulate noise with the profile (public API, fresh draws) on each full dose; compare with LD − FD.

    Returns (simulated quarter-dose SD, real quarter-dose SD estimate, simulated mean frequency, real one).
    """
    r = profile.dose_ratio
    factor = (1 - 1 / r) if profile.fit.get("pairing", "inserted") == "inserted" else (1 + 1 / r)
    sims, reals, softs, rois, sp = [], [], [], [], []
    for k, (ld, fd, px) in enumerate(pairs):
        g = profile.geometry(px, fd.shape[0])
        g_roi = g.replace(n_pixels=recon_px, n_det=g.n_det, det_pixel_mm=g.det_pixel_mm)
        sino = torch.as_tensor(forward_project(hu_to_mu(np.clip(fd, -1000, None), profile.energy_kev), g, "astra", model="line"),
                               dtype=torch.float64)
        noisy = transmission_noise(sino, profile.i0, generator=make_generator(seed + k))  # quarter dose itself
        sims.append(fbp(noisy - sino, g_roi, profile.kernel).numpy() * 1000.0 / mu_water(profile.energy_kev))
        c = (fd.shape[0] - recon_px) // 2
        crop = (slice(c, c + recon_px),) * 2
        body, soft = noise_masks(fd)
        reals.append((ld - fd)[crop])
        softs.append(soft[crop])
        rois.append(noise_roi_grid(body[crop], 64))
        sp.append(px)
    s = noise_stats(sims, softs, rois, 64, sp)
    t = noise_stats(reals, softs, rois, 64, sp)
    return s.sd_hu, t.sd_hu / math.sqrt(factor), s.mean_frequency, t.mean_frequency


def _calibrate_real_with_cli(tmp_path, ids, name):
    pairs = _real(ids)
    for k, (ld, fd, px) in enumerate(pairs):
        _write_nifti(tmp_path / "ld" / f"{k:02d}.nii.gz", ld, px)
        _write_nifti(tmp_path / "fd" / f"{k:02d}.nii.gz", fd, px)
    out = tmp_path / f"{name}.json"
    assert main(["calibrate", "--low-dose", str(tmp_path / "ld"), "--full-dose", str(tmp_path / "fd"), "--out", str(out),
                 "--recon-px", "256", "--dose-ratio", "4"]) == 0
    return ScannerProfile.load(out), pairs


@needs_real
def test_real_b30f_profile_reproduces_quarter_dose_noise(tmp_path):
    """Calibrate on one smooth-kernel pair; check on it and on another B30f pair of the same series."""
    profile, _ = _calibrate_real_with_cli(tmp_path, ["L506_40"], "b30f")
    assert profile.fit["pairing"] == "inserted"  # Mayo's quarter dose is noise inserted into the full dose
    sd_sim, sd_real, mf_sim, mf_real = _check_profile_on_real(profile, _real(["L506_40", "L506_120"]))
    assert sd_sim == pytest.approx(sd_real, rel=0.20)
    assert mf_sim == pytest.approx(mf_real, rel=0.15)
    assert 0.22 < mf_real < 0.27  # the smooth kernel's texture (the issue: 0.242)


@needs_real
def test_real_d45f_profile_reproduces_quarter_dose_noise(tmp_path):
    profile, pairs = _calibrate_real_with_cli(tmp_path, ["L506_3mm_SHARP_0032"], "d45f")
    sd_sim, sd_real, mf_sim, mf_real = _check_profile_on_real(profile, pairs)
    assert sd_sim == pytest.approx(sd_real, rel=0.20)
    assert mf_sim == pytest.approx(mf_real, rel=0.15)
    assert mf_real > 0.36  # the sharp kernel's texture (the issue: 0.388)
    assert profile.kernel.s_mm2 > 0  # an edge-enhancing window


@needs_real
def test_shipped_profiles_reproduce_real_noise():
    b30f = load_profile("definition_as_b30f")
    d45f = load_profile("definition_as_d45f")
    for profile, ids in ((b30f, ["L506_80"]), (d45f, ["L506_3mm_SHARP_0032"])):
        sd_sim, sd_real, mf_sim, mf_real = _check_profile_on_real(profile, _real(ids))
        assert sd_sim == pytest.approx(sd_real, rel=0.20), profile.name
        assert mf_sim == pytest.approx(mf_real, rel=0.15), profile.name


@needs_real
def test_real_dicom_pair_is_paired_by_position_with_its_kernel(tmp_path):
    """The original Siemens files of one pair: copied into two series folders, paired by slice position."""
    import shutil

    for role, tag in (("ld", "QD"), ("fd", "FD")):
        (tmp_path / role).mkdir()
        shutil.copy(REAL / "dicom" / f"L506_1mm_0087_{tag}.IMA", tmp_path / role / "slice.IMA")
    (pair,) = load_pairs(tmp_path / "ld", tmp_path / "fd")
    assert pair.kernel == "B30f" and pair.spacing_mm == pytest.approx((0.7421875, 0.7421875))
    body, soft = noise_masks(pair.full_dose_hu)
    noise = (pair.low_dose_hu - pair.full_dose_hu)[soft]
    assert 30.0 < noise.std() < 90.0  # 1 mm quarter-dose noise, not anatomy: the pair is aligned
