"""Helpers of the U-Net bundle: units and normalisation, datalists, slice inferer, transforms, checkpoints."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRange

from bundle_loading import bundle_scripts

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "unet_ldct"



S = bundle_scripts("unet_ldct")
MU_W = 0.2059


# ---- units and normalisation ---------------------------------------------------------------------
def test_unit_range_maps_air_to_0_and_water_to_1():
    unit_range = S.helpers.intensity_range  # the configs' unit_range: the default window (air, water)
    assert unit_range(input_unit="mu", mu_water=MU_W) == [0.0, MU_W]
    assert unit_range(input_unit="HU") == [-1000.0, 0.0]
    with pytest.raises(ValueError, match=r"`input_unit` must be one of \('mu', 'hu'\), got 'kev'"):
        unit_range(input_unit="kev")
    with pytest.raises(ValueError, match="`mu_water` must be a positive"):
        unit_range(input_unit="mu", mu_water=0.0)


def _to_net(img, unit):
    lo, hi = S.helpers.intensity_range([-1000, 0], unit, MU_W)
    return ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=False, dtype=np.float64)(img)


def _from_net(x, unit):
    lo, hi = S.helpers.intensity_range([-1000, 0], unit, MU_W)
    return ScaleIntensityRange(0.0, 1.0, lo, hi, clip=False, dtype=np.float64)(x)


def test_normalisation_round_trips_and_agrees_between_units():
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1000, 2000, (16, 16))
    mu = (hu / 1000 + 1) * MU_W  # the study's relation
    x_mu, x_hu = _to_net(mu, "mu"), _to_net(hu, "hu")
    np.testing.assert_allclose(x_mu, x_hu, rtol=0, atol=1e-12)  # both give x = mu / mu_water = HU/1000 + 1
    np.testing.assert_allclose(x_mu, mu / MU_W, atol=1e-12)
    np.testing.assert_allclose(_from_net(x_mu, "mu"), mu, atol=1e-12)  # round trip, no offset
    np.testing.assert_allclose(_from_net(x_hu, "hu"), hu, atol=1e-9)
    assert float(_to_net(np.array([0.0]), "hu")[0]) == pytest.approx(1.0)  # water -> 1
    assert float(_to_net(np.array([-1000.0]), "hu")[0]) == pytest.approx(0.0)  # air -> 0


def test_epochs_for_requires_a_whole_number_of_validation_intervals():
    assert S.utils.epochs_for(50000, 1000) == 50
    with pytest.raises(ValueError, match=r"`num_iterations` \(2500\) must be a multiple of the validation interval \(1000\)"):
        S.utils.epochs_for(2500, 1000)
    with pytest.raises(ValueError, match="`epoch_length` must be a positive integer"):
        S.utils.epochs_for(10, 0)


def test_latest_checkpoint_is_the_largest_iteration(tmp_path):
    assert S.helpers.latest_checkpoint(str(tmp_path)) is None
    for it in (8, 12, 100):
        (tmp_path / f"checkpoint_iteration={it}.pt").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"")
    assert S.helpers.latest_checkpoint(str(tmp_path)).endswith("checkpoint_iteration=100.pt")


def test_fp16_export_loads_into_the_float32_network_and_fits_the_zoo_limit(tmp_path):
    torch.manual_seed(0)
    net = S.networks.LDCTUNet()
    src, dst = tmp_path / "ckpt.pt", tmp_path / "model.pt"
    torch.save({"model": net.state_dict(), "optimizer": {}}, src)
    S.utils.export_state_dict(str(src), str(dst))
    assert dst.stat().st_size < 25e6  # the model zoo's limit for committed files
    sd = torch.load(dst, weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values())
    other = S.networks.LDCTUNet()
    other.load_state_dict(sd)
    assert next(other.parameters()).dtype == torch.float32
    for a, b in zip(net.parameters(), other.parameters()):
        torch.testing.assert_close(b, a.half().float())


# ---- datalists --------------------------------------------------------------------------------------
def _datalist(folder: Path, n_train=10):
    folder.mkdir(parents=True)
    items = lambda n, s: [{"image": f"input/{s}{i}.nii.gz", "label": f"label/{s}{i}.nii.gz", "id": f"{s}{i}"} for i in range(n)]  # noqa: E731
    data = {"training": items(n_train, "tr"), "validation": items(2, "va"), "test": []}
    (folder / "datalist.json").write_text(json.dumps(data))
    return folder / "datalist.json"


def test_find_datalist_in_folder_and_resolution_subfolders(tmp_path):
    a = _datalist(tmp_path / "res62.5um")
    b = _datalist(tmp_path / "res625um")
    find = S.data.find_datalist
    assert find(str(a)) == str(a)
    assert find(str(tmp_path / "res625um")) == str(b)
    assert find(str(tmp_path), "res62.5um") == str(a)
    assert find(str(tmp_path), 62.5) == str(a)
    assert find(str(tmp_path), "625") == str(b)
    with pytest.raises(FileNotFoundError, match=r"matches 0 subfolders.*res62\.5um"):
        find(str(tmp_path), 125)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no 'datalist.json'"):
        find(str(tmp_path))


def test_load_split_resolves_paths_and_draws_seeded_subsets(tmp_path):
    dl = str(_datalist(tmp_path / "d"))
    items = S.data.load_split(dl, "training")
    assert len(items) == 10 and items[0]["image"] == os.path.join(str(tmp_path / "d"), "input/tr0.nii.gz")
    assert items[0]["id"] == "tr0"
    sub = S.data.load_split(dl, "training", fraction=0.3, seed=1)
    assert len(sub) == 3 and sub == S.data.load_split(dl, "training", fraction=0.3, seed=1)
    assert [i["id"] for i in sub] != [i["id"] for i in S.data.load_split(dl, "training", fraction=0.3, seed=2)]
    assert len(S.data.load_split(dl, "training", fraction=0.01)) == 1  # at least one image
    with pytest.raises(ValueError, match=r"`fraction` must be in \(0, 1\]"):
        S.data.load_split(dl, "training", fraction=0.0)
    with pytest.raises(ValueError, match="split 'testing' is not in"):
        S.data.load_split(dl, "testing")
    with pytest.raises(ValueError, match="split 'test' of .* is empty"):
        S.data.load_split(dl, "test")


def test_list_images_finds_files_and_dicom_series(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "b.dcm").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "1.dcm").write_bytes(b"")
    names = [os.path.basename(i["image"]) for i in S.helpers.list_images(str(tmp_path), group_dicom_series=True, recursive=False)]
    assert names == ["a.nii.gz", "b.dcm", "series"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image"):
        S.helpers.list_images(str(tmp_path / "empty"), group_dicom_series=True, recursive=False)


# ---- inferer and transforms --------------------------------------------------------------------------
def test_slice_inferer_runs_volumes_slice_by_slice_and_keeps_metadata():
    torch.manual_seed(0)
    net = S.networks.LDCTUNet(pad_mode="replicate").eval()
    vol = MetaTensor(torch.rand(1, 1, 24, 20, 3), affine=torch.diag(torch.tensor([0.7, 0.7, 2.0, 1.0])))
    inferer = S.inferers.SliceInferer2D(sw_batch_size=2)
    with torch.no_grad():
        out = inferer(vol, net)
        expected = torch.stack([net(vol.as_tensor()[..., k]) for k in range(3)], dim=-1)
        assert isinstance(out, MetaTensor) and out.shape == vol.shape
        torch.testing.assert_close(out.as_tensor(), expected)
        torch.testing.assert_close(out.affine, vol.affine)
        torch.testing.assert_close(inferer(vol[..., 0], net).as_tensor(), expected[..., 0])
    with pytest.raises(ValueError, match="got shape"):
        inferer(torch.zeros(1, 16, 16), net)
    with pytest.raises(ValueError, match="`sw_batch_size` must be a positive integer"):
        S.inferers.SliceInferer2D(0)


def test_unit_check_refuses_the_wrong_unit():
    check_mu = S.input_checks.CheckIntensityUnitd("image", unit="mu")
    with pytest.raises(ValueError, match="look like Hounsfield units.*--input_unit hu"):
        check_mu({"image": torch.full((1, 8, 8), 40.0)})
    with pytest.raises(ValueError, match="look like attenuation.*--input_unit mu"):
        S.input_checks.CheckIntensityUnitd("image", unit="hu")({"image": torch.full((1, 8, 8), 0.2)})
    S.input_checks.CheckIntensityUnitd("image", unit="mu", check_unit="false")({"image": torch.full((1, 8, 8), 40.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_mu({"image": torch.full((1, 8, 8), 0.2)})
    with pytest.raises(ValueError, match="`unit` must be one of"):
        S.input_checks.CheckIntensityUnitd("image", unit="kev")


def test_predict_reference_loads_weights_and_is_off_without_them(tmp_path):
    torch.manual_seed(0)
    ref_net = S.networks.LDCTUNet()
    torch.save(ref_net.state_dict(), tmp_path / "ref.pt")
    fresh = S.networks.LDCTUNet()
    x = torch.rand(1, 16, 16)
    t = S.transforms.PredictReferenced("image", fresh, checkpoint=str(tmp_path / "ref.pt"))
    with torch.no_grad():
        torch.testing.assert_close(t({"image": x})["reference"], ref_net.eval()(x[None])[0])
    assert "reference" not in S.transforms.PredictReferenced("image", fresh, checkpoint=None)({"image": x})


def test_flags_from_the_command_line_become_bools():
    to_bool = S.helpers.as_bool
    assert [to_bool(v) for v in (True, "true", "True", "yes", "1", 1)] == [True] * 6
    assert [to_bool(v) for v in (False, "false", "FALSE", "no", "0", 0)] == [False] * 6
    with pytest.raises(ValueError, match="`amp` must be true or false, got 'maybe'"):
        to_bool("maybe", "amp")


def test_bench_train_writes_its_record(tmp_path):
    from ldct_scripts.bench import bench_train as bench

    assert bench.main(["--out", str(tmp_path), "--size", "32", "--batch", "1", "--iters", "1", "--warmup", "0",
                       "--device", "cpu", "--rounds", "1", "--infer-size", "32", "--infer-iters", "1",
                       "--patch-size", "16", "--patch-batch", "1", "--precision-iters", "1"]) == 0
    record = json.loads((tmp_path / "bench_train.json").read_text())
    for net in ("unet_ldct", "cpce_rfm_da"):  # bf16 autocast vs float32 training, both bundles' networks
        p = record["precision"][net]
        assert p["float32_images_per_second"] > 0 and p["bfloat16_images_per_second"] > 0
        assert p["bf16_speedup"] == pytest.approx(p["bfloat16_images_per_second"] / p["float32_images_per_second"])
    assert record["parameters"] == 8_639_169 and record["seconds_per_iteration"] > 0
    assert record["settings"]["size"] == 32 and "git" in record
    workflow = record["workflow"]
    assert workflow["plain_images_per_second"] > 0 and workflow["trainer_images_per_second"] > 0
    rows = {r["variant"]: r for r in record["inference"]["variants"]}
    ref = rows["fp32 eager (no_grad) [reference]"]
    assert ref["speedup_vs_fp32_eager"] == 1.0 and ref["relative_difference_vs_fp32_eager"] == 0.0
    default = rows["fp32 SliceInferer2D (channels-last, in-place) [bundle default]"]
    assert default["relative_difference_vs_fp32_eager"] < 1e-5
    bf16 = rows["bf16 SliceInferer2D --inference_dtype bfloat16 [bundle override]"]
    assert bf16["relative_difference_vs_fp32_eager"] < 0.02
    assert bench.main(["--out", str(tmp_path / "b"), "--size", "32", "--batch", "1", "--iters", "1",
                       "--device", "cpu", "--no-workflow", "--no-inference", "--no-precision"]) == 0
    assert "workflow" not in json.loads((tmp_path / "b" / "bench_train.json").read_text())
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", str(tmp_path), "--size", "40"])  # not a multiple of 16
