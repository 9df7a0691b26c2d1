"""The transforms compose with MONAI's loaders: a datalist of DICOM and NIfTI files feeds training."""

from __future__ import annotations

import math

import numpy as np
import pydicom.data
import pytest
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from ldct_sim import get_preset, simulate
from ldct_sim.io import slice_affine
from ldct_sim.phantoms import abdominal_phantom
from ldct_sim.transforms import HUToMud, ResampleToResolutiond, SimulateLowDosePaird

nib = pytest.importorskip("nibabel")

PRESET = get_preset(62.5)
G = PRESET.geometry(n_pixels=32, n_views=48)


def pipeline(noise_key=None, label_i0=PRESET.label_i0):
    return Compose([
        LoadImaged("image", image_only=True),
        EnsureChannelFirstd("image"),
        HUToMud("image"),
        ResampleToResolutiond("image", pixel_size_mm=G.pixel_size_mm, n_pixels=G.n_pixels),
        SimulateLowDosePaird("image", G, PRESET.input_i0, label_i0=label_i0, noise_key=noise_key),
    ]).set_random_state(0)


@pytest.fixture(scope="module")
def datalist(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    items = [{"image": pydicom.data.get_testdata_file("CT_small.dcm"), "id": "dicom"}]
    for k in range(2):
        hu = abdominal_phantom(48, seed=k)
        path = root / f"phantom{k}.nii.gz"
        nib.save(nib.Nifti1Image(hu, slice_affine(360.0 / 48, hu.shape)), path)
        items.append({"image": str(path), "id": f"nifti{k}"})
    return items


def test_load_hu_to_mu_resample_and_pair_compose_on_dicom_and_nifti(datalist):
    out = [pipeline(noise_key="noise")(item) for item in datalist]
    for d, item in zip(out, datalist):
        for key in ("image", "label", "noise"):
            assert d[key].shape == (1, 32, 32) and d[key].dtype == torch.float32
            torch.testing.assert_close(d[key].pixdim[:2].float(), torch.tensor([0.0625, 0.0625]))
        m = d["image"].meta
        assert m["filename_or_obj"] == item["image"]  # the loader's meta survives
        assert (m["resolution_um"], m["input_i0"], m["label_i0"]) == (62.5, 3.6e4, 1.8e5)
        assert m["geometry"] == G.to_dict() and m["seed"] >= 0
        assert torch.isfinite(d["image"]).all()
        # the label has the label dose's noise: closer to the noiseless image than the input
        clean = d["image"].as_tensor() - d["noise"].as_tensor()
        assert float((d["label"] - clean).std()) < float(d["noise"].std())
    # the DICOM slice is real CT: its mean attenuation is soft-tissue-like, not air or bone
    assert 0.1 < float(out[0]["label"].mean()) < 0.3


def test_batches_collate_with_their_simulation_meta(datalist):
    loader = DataLoader(Dataset(datalist[1:], pipeline(label_i0=None)), batch_size=2, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 1, 32, 32) and batch["label"].shape == (2, 1, 32, 32)
    meta = batch["label"].meta
    assert torch.equal(meta["input_i0"], torch.tensor([3.6e4, 3.6e4], dtype=torch.float64))
    assert torch.isinf(meta["label_i0"]).all() and meta["noiseless_label"].all()
    assert meta["backend"] == ["torch", "torch"] and meta["geometry"]["n_pixels"].tolist() == [32, 32]
    assert batch["id"] == ["nifti0", "nifti1"]


def test_cache_dataset_caches_the_resampled_slice_but_never_the_noise(datalist):
    ds = CacheDataset(datalist[1:2], pipeline(label_i0=None), progress=False)
    a, b = ds[0], ds[0]
    assert not torch.equal(a["image"], b["image"])  # a new noise draw each epoch
    torch.testing.assert_close(a["label"], b["label"])  # the noiseless label is deterministic
    noiseless = simulate(ds._cache[0]["image"].as_tensor(), G, None)  # the cached item is the resampled mu
    torch.testing.assert_close(a["label"].as_tensor(), noiseless)
    assert math.isinf(a["label"].meta["label_i0"])


def test_a_volume_fed_without_slicing_gets_a_clear_error(tmp_path):
    vol = np.zeros((32, 32, 5), np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    t = Compose([
        LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), HUToMud("image"),
        SimulateLowDosePaird("image", G, 1e4),
    ])
    with pytest.raises(RuntimeError) as info:  # MONAI wraps transform errors
        t({"image": str(tmp_path / "vol.nii.gz")})
    assert "got a 3-D image shaped (1, 32, 32, 5); slice 3-D volumes" in str(info.value.__cause__ or info.value)
