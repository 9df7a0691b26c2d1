"""The U-Net bundle's datalists (bundles/unet_ldct/scripts/data.py)."""

import json
import os
from pathlib import Path

import pytest

from bundle_loading import bundle_scripts

S = bundle_scripts("unet_ldct")


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
