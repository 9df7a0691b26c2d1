"""ResampleToResolution(d): "rescale" scales the object to the target grid, "physical" keeps millimetres."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from ldct_sim.transforms import ResampleToResolution, ResampleToResolutiond


def disk(n: int, spacing_mm: float, radius_mm: float, centre_px=None) -> np.ndarray:
    c = (n - 1) / 2.0 if centre_px is None else centre_px
    yy, xx = np.mgrid[:n, :n]
    return (((yy - c) ** 2 + (xx - c) ** 2) * spacing_mm**2 <= radius_mm**2).astype(np.float32)[None]


def meta(img, spacing, origin=(0.0, 0.0)):
    a = torch.diag(torch.tensor([spacing[0], spacing[1], 1.0, 1.0], dtype=torch.float64))
    a[0, 3], a[1, 3] = origin
    return MetaTensor(torch.as_tensor(img), affine=a)


def test_rescale_keeps_the_object_fraction_of_the_field_and_sets_the_new_spacing():
    img = meta(disk(128, 0.7, 0.7 * 32), (0.7, 0.7))  # radius a quarter of the field of view
    out = ResampleToResolution(pixel_size_mm=0.0625, n_pixels=32)(img)
    assert isinstance(out, MetaTensor) and out.shape == (1, 32, 32)
    torch.testing.assert_close(out.pixdim[:2].float(), torch.tensor([0.0625, 0.0625]))
    # the disk still covers pi/16 of the field (the object was scaled, not cropped)
    assert float(out.sum()) / 32**2 == pytest.approx(np.pi / 16, rel=0.05)


def test_physical_keeps_sizes_in_millimetres_and_the_centre():
    img = meta(disk(100, 1.0, 20.0), (1.0, 1.0), origin=(-49.5, -49.5))  # centre at world (0, 0)
    out = ResampleToResolution(pixel_size_mm=0.5, n_pixels=128, mode="physical")(img)
    area_mm2 = float(out.sum()) * 0.5**2
    assert area_mm2 == pytest.approx(np.pi * 20.0**2, rel=0.03)
    yy, xx = np.mgrid[:128, :128]
    w = out[0].numpy()
    assert (w * yy).sum() / w.sum() == pytest.approx(63.5, abs=0.05)
    assert (w * xx).sum() / w.sum() == pytest.approx(63.5, abs=0.05)
    centre = out.affine.numpy() @ np.array([63.5, 63.5, 0.0, 1.0])
    np.testing.assert_allclose(centre[:2], [0.0, 0.0], atol=1e-9)  # same world centre as the input


def test_physical_crops_a_small_field_and_pads_a_large_one_with_air():
    img = np.full((1, 64, 64), 50.0, np.float32)  # 64 mm of tissue at 1 mm
    crop = ResampleToResolution(0.0625, 32, mode="physical", pad_value=-1000.0, spacing_mm=1.0)(img)
    np.testing.assert_allclose(crop.numpy(), 50.0, atol=1e-4)  # 2 mm central field: all tissue
    pad = ResampleToResolution(2.0, 64, mode="physical", pad_value=-1000.0, spacing_mm=1.0)(img)  # 128 mm field
    assert float(pad[0, 0, 0]) == -1000.0 and float(pad[0, 32, 32]) == pytest.approx(50.0)
    assert float((pad > 0).sum()) == pytest.approx(32 * 32, abs=2 * 32)  # 64 mm square = 32 px of 2 mm


@pytest.mark.parametrize("mode", ["rescale", "physical"])
def test_downsampling_is_antialiased(mode):
    checker = (np.indices((128, 128)).sum(0) % 2).astype(np.float32)[None]  # Nyquist pattern at 0.5 mm
    out = ResampleToResolution(2.0, 32, mode=mode, spacing_mm=0.5)(checker)
    assert float(out.mean()) == pytest.approx(0.5, abs=0.02)
    assert float(out.std()) < 0.05  # averaged away, not aliased into a pattern


def test_rescale_makes_anisotropic_slices_isotropic_before_resizing():
    rows, cols = 50, 100  # 2 mm rows, 1 mm columns: a 100 mm square
    yy, xx = np.mgrid[:rows, :cols]
    img = ((((yy - 24.5) * 2.0) ** 2 + ((xx - 49.5) * 1.0) ** 2) <= 30.0**2).astype(np.float32)[None]
    out = ResampleToResolution(1.0, 64)(meta(img, (2.0, 1.0)))[0].numpy() > 0.5
    height, width = out.any(1).sum(), out.any(0).sum()
    assert abs(int(height) - int(width)) <= 1  # round again


def test_non_square_slice_is_padded_with_air_in_rescale_mode():
    img = np.ones((1, 20, 40), np.float32)
    out = ResampleToResolution(1.0, 40, pad_value=0.0)(img)
    assert out.shape == (1, 40, 40)
    assert float(out[0, 0, 20]) == 0.0 and float(out[0, 20, 20]) == pytest.approx(1.0)


def test_trailing_singleton_depth_is_squeezed_and_volumes_are_refused():
    out = ResampleToResolution(1.0, 16)(np.zeros((1, 32, 32, 1), np.float32))
    assert out.shape == (1, 16, 16)
    with pytest.raises(ValueError, match=r"must be a channel-first 2-D slice \(C, H, W\), got shape \(1, 32, 32, 4\)"):
        ResampleToResolution(1.0, 16)(np.zeros((1, 32, 32, 4), np.float32))


def test_argument_validation():
    with pytest.raises(ValueError, match="ResampleToResolution: `mode` must be one of"):
        ResampleToResolution(1.0, 16, mode="crop")
    with pytest.raises(ValueError, match="`pixel_size_mm` must be a positive number"):
        ResampleToResolution(0.0, 16)
    with pytest.raises(ValueError, match="`n_pixels` must be a positive integer, got 16.5"):
        ResampleToResolution(1.0, 16.5)
    with pytest.raises(ValueError, match="`interp_mode` must be one of"):
        ResampleToResolution(1.0, 16, interp_mode="area")
    with pytest.raises(ValueError, match="mode 'physical' needs the input spacing"):
        ResampleToResolution(1.0, 16, mode="physical")(np.zeros((1, 8, 8), np.float32))


def test_dict_twin_with_nearest_for_a_mask():
    img = meta(disk(64, 1.0, 20.0) * 100.0, (1.0, 1.0))
    mask = meta(disk(64, 1.0, 20.0) * 3.0, (1.0, 1.0))
    d = ResampleToResolutiond(["image", "mask"], 0.5, 48, interp_mode=("bilinear", "nearest"))({"image": img, "mask": mask})
    torch.testing.assert_close(d["image"], ResampleToResolution(0.5, 48)(img))
    assert set(np.unique(d["mask"].numpy())) <= {0.0, 3.0}
