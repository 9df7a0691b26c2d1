"""ldct_sim.phantoms: the plain phantom stays what it was; the rich detail is seeded and in physical HU ranges."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from ldct_sim.phantoms import RICH_FEATURES, abdominal_phantom

#: sha256 of the float32 bytes of ``abdominal_phantom(**kwargs)`` as it was before ``detail`` existed
#: (shipped sample data and other tests depend on these arrays).
PLAIN_SHA256 = {
    (("n_pixels", 48), ("seed", 3)): "5416fa9dca25026be54abe895eb238b7f49cc4d74b2034eb9abdae2cd5bd1f3f",
    (("n_pixels", 64), ("seed", 0)): "7f63b2c9ad4adb07acd643343c9aa9e7ddcef2ccdee25541b2fc5bd866bbe6a9",
    (("n_lesions", 0), ("n_pixels", 128), ("seed", 1), ("supersample", 3)):
        "ba20c64db5892ec5fb2dd133da292fdab08881be39f8d93122d6a99a284b3a46",
}
N = 96  # small, fast; supersample=1 and texture_hu=0 below keep painted values exact


def _pair(detail, seed=0, n=N):
    """(plain, detailed) without texture or anti-aliasing, so each pixel holds one painted value."""
    kw = dict(seed=seed, texture_hu=0.0, supersample=1)
    return abdominal_phantom(n, **kw), abdominal_phantom(n, detail=detail, **kw)


@pytest.mark.parametrize("kwargs", [dict(k) for k in PLAIN_SHA256])
def test_default_is_the_old_phantom(kwargs):
    default = abdominal_phantom(**kwargs)
    assert hashlib.sha256(default.tobytes()).hexdigest() == PLAIN_SHA256[tuple(sorted(kwargs.items()))]
    np.testing.assert_array_equal(abdominal_phantom(**kwargs, detail="plain"), default)


@pytest.mark.parametrize("detail", ["rich", "vessels", "bowel", "stranding", "trabecular"])
def test_seeded(detail):
    a = abdominal_phantom(64, seed=5, detail=detail)
    np.testing.assert_array_equal(a, abdominal_phantom(64, seed=5, detail=detail))
    assert not np.array_equal(a, abdominal_phantom(64, seed=6, detail=detail))
    assert not np.array_equal(a, abdominal_phantom(64, seed=5))  # the detail shows
    assert a.dtype == np.float32 and a.shape == (64, 64) and np.isfinite(a).all()


def test_detail_spellings_agree():
    a = abdominal_phantom(64, seed=2, detail="vessels, bowel")
    np.testing.assert_array_equal(a, abdominal_phantom(64, seed=2, detail=("bowel", "vessels")))
    rich = abdominal_phantom(64, seed=2, detail="rich")
    np.testing.assert_array_equal(rich, abdominal_phantom(64, seed=2, detail=RICH_FEATURES))


def test_features_draw_from_their_own_streams():
    # what the trabecular feature paints is the same with or without the other features
    plain, alone = _pair("trabecular", 4)
    rich = _pair("rich", 4)[1]
    changed = alone != plain
    assert changed.sum() > 20
    np.testing.assert_array_equal(rich[changed], alone[changed])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bowel_gas_and_contrast(seed):
    plain, rich = _pair("bowel", seed)
    inside = binary_erosion(plain > -1000.0, iterations=2)
    assert ((rich == -1000.0) & inside).sum() > 5  # gas pockets inside the body
    changed = rich[rich != plain]
    gas, wall = changed == -1000.0, changed == 35.0
    fluid, contrast = (changed >= 5) & (changed <= 30), (changed >= 200) & (changed <= 400)
    assert (gas | fluid | wall | contrast).all(), np.unique(changed[~(gas | fluid | wall | contrast)])
    assert contrast.sum() > 5  # oral contrast in some loop or the stomach for these seeds


@pytest.mark.parametrize("seed", [0, 3])
def test_vessels_enhance_within_range(seed):
    plain, rich = _pair("vessels", seed)
    changed = rich != plain
    assert changed.sum() > 20
    assert rich[changed].min() >= 150.0 and rich[changed].max() <= 300.0
    assert set(np.unique(plain[changed])) <= {60.0, -80.0, 180.0}  # liver, visceral fat, the aorta


def test_fat_stranding_is_faint_and_in_fat():
    plain, rich = _pair("stranding", 1)
    changed = rich != plain
    assert changed.sum() > 20
    assert set(np.unique(plain[changed])) <= {-100.0, -80.0}  # only fat
    assert rich[changed].min() >= -100.0 and rich[changed].max() <= -30.0
    fat = (plain == -100.0) | (plain == -80.0)
    assert rich[fat].std() > plain[fat].std()


def test_trabecular_bone():
    plain, rich = _pair("trabecular", 0, n=128)
    marrow = plain == 250.0
    assert rich[marrow].min() >= 150.0 and rich[marrow].max() <= 300.0
    # the plain 800 HU cortex becomes a thinner 1000-1300 HU rim, its inner edge cancellous bone
    cortex = rich[plain == 800.0]
    rim, inner = cortex >= 1000.0, (cortex >= 150.0) & (cortex <= 300.0)
    assert rim.sum() > 10 and cortex.max() <= 1300.0 and (rim | inner).all()
    # with the default texture and anti-aliasing, the cancellous lattice is the variance the plain marrow lacks
    plain_t, rich_t = abdominal_phantom(128, seed=0), abdominal_phantom(128, seed=0, detail="trabecular")
    core = binary_erosion(marrow, iterations=2)
    assert rich_t[core].std() > 10.0 > plain_t[core].std() + 5.0


def test_tiny_rich_phantom():
    img = abdominal_phantom(8, seed=0, detail="rich")
    assert img.shape == (8, 8) and np.isfinite(img).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(detail="fancy"), r"unknown `detail` 'fancy'.*'vessels'"),
        (dict(detail=["vessels", "gas"]), r"unknown `detail`"),
        (dict(detail=""), r"unknown `detail` ''"),
        (dict(detail=None), r"unknown `detail` None"),
        (dict(n_pixels=4), r"`n_pixels` must be an integer >= 8, got 4"),
        (dict(n_pixels=64.0), r"`n_pixels` must be an integer"),
        (dict(texture_hu=-1.0), r"`texture_hu` must be >= 0"),
        (dict(seed=np.random.default_rng(0), detail="rich"), r"`seed` must be an integer"),
    ],
)
def test_bad_input_refused(kwargs, match):
    kwargs = {"n_pixels": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        abdominal_phantom(**kwargs)
