"""The CPCE bundle's data module (bundles/cpce_rfm_da/scripts/data.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_select_sliced_and_list_images_read_dicom_and_nifti(S, tmp_path):
    import nibabel as nib
    import pydicom.data
    from monai.transforms import LoadImaged

    (tmp_path / "sub").mkdir()
    dcm = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    (tmp_path / "sub" / "slice.dcm").write_bytes(dcm.read_bytes())
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 5), np.float32), np.eye(4)), str(tmp_path / "vol.nii.gz"))
    (tmp_path / "notes.txt").write_text("not an image")
    items = S.helpers.list_images(tmp_path)
    assert [Path(i["image"]).name for i in items] == ["slice.dcm", "vol.nii.gz"]
    load = LoadImaged("image", ensure_channel_first=True, image_only=True)
    for item, shape in zip(items, [(1, 128, 128), (1, 16, 16)]):
        out = S.data.SelectSliced("image")(load(item))
        assert tuple(out["image"].shape) == shape
    with pytest.raises(FileNotFoundError, match="no image"):
        S.helpers.list_images(tmp_path / "sub", suffixes=(".nii",))


def test_cross_domain_dataset_pairs_each_source_item_with_a_target_image(S):
    source = [{"image": np.full((1, 4, 4), k, np.float32), "label": np.zeros((1, 4, 4), np.float32)} for k in range(3)]
    target = [{"image": np.full((1, 4, 4), 100 + k, np.float32)} for k in range(2)]
    ds = S.data.CrossDomainDataset(source, target)
    assert len(ds) == 3
    item = ds[1]
    assert float(item["image"].max()) == 1 and float(item["target"].max()) in (100, 101)
    assert "target" not in S.data.CrossDomainDataset(source, [])[0]
    with pytest.raises(ValueError, match="must not be empty"):
        S.data.CrossDomainDataset([], target)
