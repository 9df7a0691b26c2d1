"""The dataset builder behind ``python -m ldct_sim simulate``: outputs, resume, repair, shards, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from monai.data import load_decathlon_datalist
from pydicom.uid import generate_uid

from ldct_sim import get_preset
from ldct_sim.cli import main
from ldct_sim.dataset import SPLITS, assign_splits, derive_seed, parse_shard

nib = pytest.importorskip("nibabel")

TINY = ["--n-pixels", "32", "--n-views", "48", "--phantom-size", "64", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().out


def load(path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def files_of(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*.nii.gz"))}


def write_dicom_series(folder: Path, n: int, patient: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    uid, paths = generate_uid(), []
    for k in range(n):
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
        ds.PatientID, ds.SeriesInstanceUID, ds.SOPInstanceUID = patient, uid, generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
        ds.InstanceNumber = k + 1
        paths.append(folder / f"{k}.dcm")
        ds.save_as(paths[-1])
    return paths


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One tiny phantom build at two resolutions, reused read-only by several tests."""
    out = tmp_path_factory.mktemp("built") / "out"
    code = main(["simulate", "--phantoms", "3", "--out", str(out), "--resolutions", "62.5", "625", "--seed", "0", *TINY])
    assert code == 0
    return out


def test_phantom_build_writes_nifti_datalists_and_manifest(built):
    names = files_of(built)
    assert len(names) == 3 * 2 * 3  # slices x resolutions x (input, label, noise)
    img = nib.load(built / "res62.5um" / "input" / "phantom_0000_0000.nii.gz")
    assert img.shape == (32, 32) and img.get_data_dtype() == np.float32
    assert img.header.get_zooms() == pytest.approx((0.0625, 0.0625))
    assert np.allclose(np.linalg.norm(img.affine[:3, :2], axis=0), 0.0625)
    inp, lab = load(img.get_filename()), load(built / "res62.5um" / "label" / "phantom_0000_0000.nii.gz")
    body = lab > 0.1
    assert 0.17 < lab[body].mean() < 0.25  # soft tissue around 0.2 cm^-1 at 60 keV
    assert (inp - lab)[body].std() > 0.0  # the input carries more noise than the label

    for res in (62.5, 625):
        dl_path = built / f"res{res:g}um" / "datalist.json"
        entries = [e for key in SPLITS for e in load_decathlon_datalist(dl_path, data_list_key=key)]
        assert sorted(e["id"] for e in entries) == [f"phantom_{k:04d}_0000" for k in range(3)]
        assert all(os.path.isfile(e[k]) for e in entries for k in ("image", "label", "noise"))
        raw = json.loads(dl_path.read_text())
        assert raw["training"][0]["image"].startswith("input/")  # relative to the datalist

    m = json.loads((built / "manifest.json").read_text())
    preset = get_preset(625)
    r = m["resolutions"]["625"]
    assert r["geometry"] == preset.geometry(n_pixels=32, n_views=48).to_dict()
    assert (r["input_i0"], r["label_i0"]) == (preset.input_i0, preset.label_i0)
    assert m["counts"]["done"] == m["counts"]["expected"] == 6 and m["failures"] == []
    assert m["seeds"]["global"] == 0 and set(m["seeds"]["noise"]) == {f"phantom_{k:04d}_0000" for k in range(3)}
    assert m["seeds"]["noise"]["phantom_0000_0000"]["625"] == derive_seed(0, "phantom_0000_0000", "625um", "noise")
    assert m["provenance"]["packages"]["monai"] and m["provenance"]["git"]["commit"]
    assert m["config"]["backend"] == "torch" and m["config"]["forward_model"] == "strip"  # the defaults


def test_noiseless_labels_make_noise_exactly_input_minus_label(tmp_path, capsys):
    out = tmp_path / "nl"
    code, _ = run(capsys, "simulate", "--phantoms", "1", "--out", out, "--resolutions", "250", "--noiseless-label",
                  "--input-i0", "5000", *TINY)
    assert code == 0
    d = out / "res250um"
    inp, lab, noise = (load(d / k / "phantom_0000_0000.nii.gz") for k in ("input", "label", "noise"))
    np.testing.assert_allclose(noise, inp - lab, atol=1e-6)
    rec = json.loads((d / "records" / "phantom_0000_0000.json").read_text())
    assert rec["noiseless_label"] and rec["label_i0"] is None and rec["input_i0"] == 5000.0


def test_noise_insertion_labels_are_the_slice_and_inputs_add_the_same_noise(tmp_path, capsys):
    """--noise-insertion: label = the resampled slice (no second kernel blur), input = label + the noise image that a
    --noiseless-label build of the same seed draws, so the pair differs by the simulated noise alone."""
    common = ["--phantoms", "1", "--resolutions", "250", "--input-i0", "5000", "--seed", "3", *TINY]
    assert run(capsys, "simulate", "--out", tmp_path / "nl", "--noiseless-label", *common)[0] == 0
    assert run(capsys, "simulate", "--out", tmp_path / "ni", "--noise-insertion", *common)[0] == 0
    nl, ni = ({k: load(tmp_path / o / "res250um" / k / "phantom_0000_0000.nii.gz") for k in ("input", "label", "noise")}
              for o in ("nl", "ni"))
    np.testing.assert_allclose(ni["noise"], nl["noise"], atol=1e-6)
    np.testing.assert_allclose(ni["input"], ni["label"] + ni["noise"], atol=1e-6)
    assert ni["label"].min() >= 0.0 and np.abs(ni["label"] - nl["label"]).max() > 1e-3  # the slice, not its reconstruction
    assert ni["label"][0, 0] == 0.0 and nl["label"][0, 0] != 0.0  # air is exactly 0 cm⁻¹ without a reconstruction
    assert np.isclose(np.median(ni["label"][ni["label"] > 0.1]), np.median(nl["label"][nl["label"] > 0.1]), rtol=0.05)
    rec = json.loads((tmp_path / "ni" / "res250um" / "records" / "phantom_0000_0000.json").read_text())
    assert rec["noise_insertion"] and not rec["noiseless_label"] and rec["label_i0"] is None
    with pytest.raises(SystemExit) as bad:
        run(capsys, "simulate", "--out", tmp_path / "bad", "--noise-insertion", "--noiseless-label", *common)
    assert bad.value.code == 2 and "excludes" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_physical_mode_crops_the_centre_where_rescale_keeps_the_whole_body(tmp_path, capsys):
    # phantoms span 360 mm; at 625 um x 32 px the physical field is the central 20 mm: all tissue
    for mode in ("rescale", "physical"):
        code, _ = run(capsys, "simulate", "--phantoms", "1", "--out", tmp_path / mode, "--resolutions", "625",
                      "--mode", mode, "--noiseless-label", *TINY)
        assert code == 0
    whole = load(tmp_path / "rescale" / "res625um" / "label" / "phantom_0000_0000.nii.gz")
    centre = load(tmp_path / "physical" / "res625um" / "label" / "phantom_0000_0000.nii.gz")
    assert abs(whole[0, 0]) < 0.02  # air around the body
    assert (centre > 0.1).mean() > 0.95  # no air inside the abdomen's central 2 cm


def test_rerun_skips_finished_slices(built, capsys):
    before = files_of(built)
    code, text = run(capsys, "simulate", "--phantoms", "3", "--out", built, "--resolutions", "62.5", "625", *TINY)
    assert code == 0 and "0 slice-resolutions written, 6 already done, 0 failed" in text
    assert files_of(built) == before  # nothing rewritten


def test_deleted_and_truncated_outputs_are_repaired_identically(tmp_path, capsys):
    out = tmp_path / "rep"
    args = ["simulate", "--phantoms", "2", "--out", out, "--resolutions", "625", *TINY]
    assert run(capsys, *args)[0] == 0
    gone = out / "res625um" / "noise" / "phantom_0001_0000.nii.gz"
    cut = out / "res625um" / "input" / "phantom_0000_0000.nii.gz"
    want_gone, want_cut = load(gone), load(cut)
    gone.unlink()
    cut.write_bytes(cut.read_bytes()[:100])  # a half-written file from another tool
    code, text = run(capsys, *args)
    assert code == 0 and "2 slice-resolutions written, 0 already done" in text
    np.testing.assert_array_equal(load(gone), want_gone)  # same seed, same noise
    np.testing.assert_array_equal(load(cut), want_cut)


def test_shards_cover_every_slice_once_and_match_an_unsharded_run(tmp_path, capsys):
    shared, single = tmp_path / "shared", tmp_path / "single"
    common = ["--phantoms", "5", "--resolutions", "625", *TINY]
    texts = [run(capsys, "simulate", "--out", shared, "--shard", f"{i}/2", *common)[1] for i in range(2)]
    assert "(shard 0/2): 3 of 5 slices; 3 slice-resolutions written" in texts[0]
    assert "(shard 1/2): 2 of 5 slices; 2 slice-resolutions written" in texts[1]
    code, text = run(capsys, "datalist", shared)
    assert code == 0 and "5 of 5 slice-resolutions done" in text
    dl = json.loads((shared / "res625um" / "datalist.json").read_text())
    ids = [e["id"] for key in SPLITS for e in dl[key]]
    assert sorted(ids) == [f"phantom_{k:04d}_0000" for k in range(5)]
    assert run(capsys, "simulate", "--out", single, *common)[0] == 0
    assert json.loads((single / "res625um" / "datalist.json").read_text()) == dl  # same splits, seeds, files
    for f in files_of(single):
        np.testing.assert_array_equal(load(shared / f), load(single / f))


def test_corrupt_dicom_among_good_ones_is_skipped_and_reported(tmp_path, capsys):
    src = tmp_path / "ct"
    write_dicom_series(src / "p1", 2, "alice")
    write_dicom_series(src / "p2", 1, "bob")
    (src / "p1" / "broken.dcm").write_bytes(b"\x00garbage" * 50)
    out = tmp_path / "out"
    code, text = run(capsys, "simulate", "--input", src, "--out", out, "--resolutions", "625", *TINY)
    assert code == 0
    assert "3 of 3 slices; 3 slice-resolutions written, 0 already done, 1 failed" in text
    assert "broken.dcm" in text and "not a readable DICOM file" in text
    m = json.loads((out / "manifest.json").read_text())
    assert [Path(f["path"]).name for f in m["failures"]] == ["broken.dcm"]
    assert m["split_by"] == "group" and m["counts"]["done"] == 3
    dl = json.loads((out / "res625um" / "datalist.json").read_text())
    groups = {key: {e["group"] for e in dl[key]} for key in SPLITS}
    assert not groups["training"] & groups["validation"] and not groups["training"] & groups["test"]
    assert not groups["validation"] & groups["test"]  # a patient never spans two splits


def test_nothing_readable_exits_non_zero(tmp_path, capsys):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.dcm").write_bytes(b"nope")
    code, text = run(capsys, "simulate", "--input", src, "--out", tmp_path / "o", "--resolutions", "625", *TINY)
    assert code == 1 and "1 failed" in text


def test_nan_slice_is_skipped_and_the_others_are_written(tmp_path, capsys):
    vol = np.zeros((16, 16, 3), np.float32)
    vol[2, 2, 1] = np.nan
    nib.save(nib.Nifti1Image(vol, np.diag([0.7, 0.7, 1.0, 1.0])), tmp_path / "vol.nii.gz")
    out = tmp_path / "o"
    code, text = run(capsys, "simulate", "--input", tmp_path / "vol.nii.gz", "--out", out, "--resolutions", "625", *TINY)
    assert code == 0 and "2 slice-resolutions written, 0 already done, 1 failed" in text
    assert "slice 1 holds 1 NaN or infinite pixels" in text
    assert json.loads((out / "manifest.json").read_text())["split_by"] == "slice"  # one volume: split by slice


def test_bad_arguments_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--phantoms", "1", "--out", str(tmp_path / "x"), "--resolutions", "100", *TINY])
    assert info.value.code == 2 and "Unknown preset 100.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--phantoms", "1", "--out", str(tmp_path / "x"), "--shard", "2/2", *TINY])
    assert "`shard` must be 'i/n' with 0 <= i < n, got '2/2'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`shard` must be 'i/n'"):
        parse_shard("1")


def test_other_settings_into_the_same_folder_are_refused(built, tmp_path, capsys):
    code = main(["simulate", "--phantoms", "3", "--out", str(built), "--resolutions", "625", *TINY[:2], "--n-views", "64",
                 *TINY[4:]])
    err = capsys.readouterr().err
    assert code == 2 and "holds a dataset made with other settings (n_views: 48 -> 64)" in err


def test_assign_splits_keeps_proportions_and_is_deterministic():
    rng = np.random.default_rng(0)
    units = {f"patient{k:02d}": int(rng.integers(50, 150)) for k in range(40)}
    a = assign_splits(units, (0.8, 0.1, 0.1), seed=1)
    assert a == assign_splits(units, (0.8, 0.1, 0.1), seed=1) and a != assign_splits(units, (0.8, 0.1, 0.1), seed=2)
    total = sum(units.values())
    share = {s: sum(n for u, n in units.items() if a[u] == s) / total for s in SPLITS}
    assert share["training"] == pytest.approx(0.8, abs=0.04) and share["test"] == pytest.approx(0.1, abs=0.04)
    three = assign_splits({"a": 1, "b": 1, "c": 1})
    assert sorted(three.values()) == sorted(SPLITS)  # tiny runs still exercise every split


def test_presets_command_prints_table_1():
    res = subprocess.run([sys.executable, "-m", "ldct_sim", "presets"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, timeout=120)
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines() if line.strip()[:1].isdigit()}
    assert sorted(rows, key=float) == ["62.5", "125", "250", "375", "500", "625"]
    # 625 um: SDD 1500, SOD 750, I0 5.6e4 / 2.8e5, det pixel 1.25 mm, FOV 320 mm
    assert rows["625"][2:6] == ["1500", "750", "5.6e+04", "2.8e+05"]
    assert rows["625"][6] == "1.25" and rows["625"][8] == "320"
    assert int(rows["62.5"][7]) == get_preset(62.5).geometry().n_det


def test_input_i0_range_draws_a_recorded_dose_per_slice(tmp_path, capsys):
    out = tmp_path / "range"
    code, _ = run(capsys, "simulate", "--phantoms", "4", "--out", out, "--resolutions", "625",
                  "--input-i0-range", "1e3", "1e6", "--noiseless-label", "--seed", "3", *TINY)
    assert code == 0
    dl = json.loads((out / "res625um" / "datalist.json").read_text())
    entries = [e for s in SPLITS for e in dl[s]]
    doses = np.array([e["input_i0"] for e in entries])
    assert len(doses) == 4 and np.all((doses >= 1e3) & (doses <= 1e6)) and len(set(doses)) == 4
    # the recorded dose is the one used: noise std falls as 1/sqrt(I0) across slices
    std = np.array([load(out / "res625um" / e["noise"]).std() for e in entries])
    order = np.argsort(doses)
    assert np.all(np.diff(std[order]) < 0)
    # reproducible: the same seed draws the same doses
    out2 = tmp_path / "range2"
    run(capsys, "simulate", "--phantoms", "4", "--out", out2, "--resolutions", "625",
        "--input-i0-range", "1e3", "1e6", "--noiseless-label", "--seed", "3", *TINY)
    dl2 = json.loads((out2 / "res625um" / "datalist.json").read_text())
    assert sorted(e["input_i0"] for s in SPLITS for e in dl2[s]) == sorted(doses.tolist())


def test_input_i0_range_rejects_bad_ranges(capsys):
    from ldct_sim.dataset import DatasetConfig

    with pytest.raises(ValueError, match="input_i0_range"):
        DatasetConfig(input_i0_range=(1e5, 1e3))
    with pytest.raises(ValueError, match="either `input_i0` or `input_i0_range`"):
        DatasetConfig(input_i0=1e4, input_i0_range=(1e3, 1e5))


@pytest.mark.parametrize("split", [(8, 2, 2), (80, 10, 10), (0.7, 0.2, 0.1), (1, 1, 1)])
def test_split_normalisation_is_idempotent(split):
    """A config rebuilt from its own saved split equals it bit for bit (the resume fingerprint compares them)."""
    from ldct_sim.dataset import DatasetConfig

    first = DatasetConfig(resolutions=(625.0,), split=split)
    again = DatasetConfig(resolutions=(625.0,), split=tuple(first.split))
    assert again.split == first.split
    assert abs(sum(first.split) - 1.0) < 1e-12
    assert first.split[0] / first.split[1] == pytest.approx(split[0] / split[1])
