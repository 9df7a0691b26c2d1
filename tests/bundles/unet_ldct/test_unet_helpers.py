"""The U-Net bundle's copy of the shared helpers (bundles/common/helpers.py): units and normalisation, switches, inputs, checkpoints."""

import os

import numpy as np
import pytest
from monai.transforms import ScaleIntensityRange

from bundle_loading import bundle_scripts

S = bundle_scripts("unet_ldct")
MU_W = 0.2059  # cm^-1, water at 60 keV


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


def test_latest_checkpoint_is_the_largest_iteration(tmp_path):
    assert S.helpers.latest_checkpoint(str(tmp_path)) is None
    for it in (8, 12, 100):
        (tmp_path / f"checkpoint_iteration={it}.pt").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"")
    assert S.helpers.latest_checkpoint(str(tmp_path)).endswith("checkpoint_iteration=100.pt")


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


def test_flags_from_the_command_line_become_bools():
    to_bool = S.helpers.as_bool
    assert [to_bool(v) for v in (True, "true", "True", "yes", "1", 1)] == [True] * 6
    assert [to_bool(v) for v in (False, "false", "FALSE", "no", "0", 0)] == [False] * 6
    with pytest.raises(ValueError, match="`amp` must be true or false, got 'maybe'"):
        to_bool("maybe", "amp")
