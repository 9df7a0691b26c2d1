"""Fan-beam FBP (ldct_sim.fbp): bias, scale invariance, filters, noise ordering, validation."""

from functools import lru_cache

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from ldct_sim.attenuation import hu_to_mu, mu_to_hu, mu_water
from ldct_sim.fbp import FILTERS, fbp, ramp_filter
from ldct_sim.geometry import FanBeamGeometry
from ldct_sim.noise import make_generator, transmission_noise
from ldct_sim.phantoms import water_disk
from ldct_sim.projectors.tomosipo_backend import has_tomosipo
from ldct_sim.simulate import forward_project

N = 128
DISK_HU = water_disk(N, radius=0.8)  # water (0 HU) in air, anti-aliased rim
DISK_MU = hu_to_mu(DISK_HU).astype(np.float32)
INTERIOR = binary_erosion(DISK_HU > -1.0, iterations=5)  # at least 5 pixels inside the rim


def geometry(pixel_size_mm=1.0, sod_mm=400.0, magnification=2.0, **kw) -> FanBeamGeometry:
    return FanBeamGeometry(
        pixel_size_mm=pixel_size_mm, n_pixels=N, sod_mm=sod_mm, sdd_mm=magnification * sod_mm, n_views=360, **kw
    )


@lru_cache(maxsize=None)
def disk_sinogram(g: FanBeamGeometry) -> np.ndarray:
    return forward_project(DISK_MU, g, model="strip")  # a finer model than the FBP's own sampling


def disk_hu(g: FanBeamGeometry, filter_name: str = "ram-lak") -> np.ndarray:
    return mu_to_hu(fbp(disk_sinogram(g), g, filter_name))


def test_water_disk_bias_is_bounded():
    hu = disk_hu(geometry())
    assert INTERIOR.sum() > 5000
    assert abs(hu[INTERIOR].mean()) < 0.5  # HU
    assert np.abs(hu[INTERIOR]).max() < 10.0
    assert hu[INTERIOR].std() < 2.0
    air = binary_erosion(DISK_HU < -999.0, iterations=5)
    assert abs(mu_to_hu(np.float64(0.0)) - hu[air].mean()) < 5.0  # air stays at -1000 HU


def test_reconstruction_unchanged_under_pixel_size_sweep():
    """Fixed magnification (SDD = 2·SOD), pixel size 0.5-2 mm: the same μ image (cf. ASTRA's test_rec_scaling)."""
    ref = disk_hu(geometry(1.0, sod_mm=600.0))
    for px in (0.5, 2.0):
        g = geometry(px, sod_mm=600.0)
        assert g.det_pixel_mm == pytest.approx(2.0 * px)
        hu = disk_hu(g)
        assert abs(hu[INTERIOR].mean() - ref[INTERIOR].mean()) < 0.5
        diff = (hu - ref)[INTERIOR]
        assert np.sqrt(np.mean(diff**2)) < 3.0  # HU; streaks differ a little with the fan angle
        assert np.abs(diff).max() < 15.0


def test_scaled_scanner_gives_identical_image():
    """Scaling pixel, SOD and SDD together (as Table 1's systems do) leaves the μ image unchanged."""
    a = fbp(disk_sinogram(geometry(1.0, sod_mm=400.0)), geometry(1.0, sod_mm=400.0))
    g10 = geometry(0.1, sod_mm=40.0)
    b = fbp(disk_sinogram(g10), g10)
    np.testing.assert_allclose(b, a, atol=1e-4 * mu_water())


@pytest.mark.parametrize("pitch_factor", [0.5, 2.0])
def test_detector_pitch_sweep_keeps_the_mean(pitch_factor):
    g = geometry()
    g2 = g.replace(det_pixel_mm=g.det_pixel_mm * pitch_factor)
    assert g2.n_det * g2.det_pixel_mm >= g.n_det * g.det_pixel_mm - g2.det_pixel_mm  # still covers the image
    hu = disk_hu(g2)
    assert abs(hu[INTERIOR].mean()) < 1.0


def test_off_centre_object_reconstructs_in_place():
    g = geometry()
    c = np.arange(N) - (N - 1) / 2.0
    xx, yy = np.meshgrid(c, -c)
    mu = np.where((xx - 25.0) ** 2 + (yy - 15.0) ** 2 <= 10.0**2, 0.2, 0.0).astype(np.float32)  # right and up
    rec = fbp(forward_project(mu, g, model="strip"), g)
    inside = rec > 0.1  # half the disk's μ
    assert inside.sum() == pytest.approx((mu > 0).sum(), rel=0.03)
    assert xx[inside].mean() == pytest.approx(25.0, abs=0.1)
    assert yy[inside].mean() == pytest.approx(15.0, abs=0.1)
    assert rec.sum() == pytest.approx(mu.sum(), rel=0.01)


@pytest.mark.parametrize("filter_name", FILTERS)
def test_each_filter_reconstructs_disk_interior(filter_name):
    rec = fbp(disk_sinogram(geometry()), geometry(), filter_name)
    np.testing.assert_allclose(rec[INTERIOR].mean(), mu_water(), rtol=0.005)
    np.testing.assert_allclose(rec[INTERIOR], mu_water(), rtol=0.03)


def test_sharper_filters_have_more_noise():
    """ram-lak > shepp-logan > cosine > hann: the module's order of noise sensitivity."""
    g = geometry()
    clean = torch.from_numpy(disk_sinogram(g))
    noisy = transmission_noise(clean, 1e4, generator=make_generator(0))
    std = [float((fbp(noisy, g, f) - fbp(clean, g, f))[torch.from_numpy(INTERIOR)].std()) for f in FILTERS]
    assert all(a > b * 1.1 for a, b in zip(std, std[1:])), dict(zip(FILTERS, std))


def test_frequency_scaling_lowers_noise_and_is_validated():
    g = geometry()
    clean = torch.from_numpy(disk_sinogram(g))
    noise = transmission_noise(clean, 1e4, generator=make_generator(1)) - clean
    full = float(fbp(noise, g, "hann").std())
    half = float(fbp(noise, g, "hann", frequency_scaling=0.5).std())
    assert half < 0.7 * full
    with pytest.raises(ValueError, match=r"`frequency_scaling` must be in \(0, 1\], got 1.5"):
        fbp(clean, g, frequency_scaling=1.5)


def test_ramp_filter_is_a_band_limited_ramp():
    n = 256
    resp = ramp_filter(n)
    f = torch.fft.fftfreq(n, dtype=torch.float64).abs()  # cycles per sample
    assert torch.all(resp >= 0)
    assert float(resp[n // 2]) == pytest.approx(0.5, abs=1e-3)  # |f| at Nyquist
    mid = (f > 0.05) & (f <= 0.5)
    torch.testing.assert_close(resp[mid], f[mid], rtol=0.02, atol=1e-3)
    assert 0.0 < float(resp[0]) < 1.0 / n  # the spatial kernel's small DC term, not a hard zero
    for name in FILTERS[1:]:
        assert torch.all(ramp_filter(n, name) <= resp + 1e-12)


def test_fbp_is_linear_batched_and_type_preserving():
    g = geometry()
    s = disk_sinogram(g)
    batch = np.stack([s, 2.0 * s])[:, None]  # (2, 1, V, D)
    rec = fbp(batch, g)
    assert isinstance(rec, np.ndarray) and rec.shape == (2, 1, N, N)
    np.testing.assert_allclose(rec[1, 0], 2.0 * rec[0, 0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rec[0, 0], fbp(s, g), rtol=1e-5, atol=1e-7)
    t = fbp(torch.from_numpy(s), g)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), rec[0, 0], rtol=1e-5, atol=1e-7)


def test_fbp_rejects_short_scan():
    g = geometry()
    with pytest.raises(ValueError, match="the geometry must cover 360°; short scans need Parker weighting"):
        fbp(np.zeros((180, g.n_det), np.float32), g[:180])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fbp_rejects_non_finite_sinogram(bad):
    g = geometry()
    s = disk_sinogram(g).copy()
    s[3, 4] = bad
    with pytest.raises(ValueError, match="fbp: the sinogram holds NaN or infinite values"):
        fbp(s, g)


def test_fbp_rejects_unknown_filter():
    g = geometry()
    with pytest.raises(ValueError, match=r"Unknown filter 'hamm'; expected one of \('ram-lak', 'shepp-logan'"):
        fbp(disk_sinogram(g), g, "hamm")


def test_fbp_rejects_wrong_sinogram_shape():
    g = geometry()
    with pytest.raises(ValueError, match=rf"fbp: expected an array shaped \(\.\.\., 360, {g.n_det}\), got \(360, 7\)"):
        fbp(np.zeros((360, 7), np.float32), g)


def test_fbp_backend_chooses_where_the_same_fbp_runs():
    """Every backend runs this FBP; torch's stored backprojection matrix and the on-the-fly path of the
    others agree to float rounding."""
    g = geometry()
    sino = disk_sinogram(g)
    on_the_fly, with_matrix = np.asarray(fbp(sino, g, backend="astra")), np.asarray(fbp(sino, g, backend="torch"))
    np.testing.assert_allclose(on_the_fly, with_matrix, rtol=0, atol=1e-5 * float(np.abs(on_the_fly).max()))


def test_fbp_rejects_unknown_backend():
    g = geometry()
    with pytest.raises(ValueError, match="Unknown backend 'cuda'"):
        fbp(disk_sinogram(g), g, backend="cuda")


@pytest.mark.skipif(has_tomosipo, reason="tomosipo is installed")
def test_fbp_tomosipo_backend_needs_tomosipo():
    g = geometry()
    with pytest.raises(ImportError, match="tomosipo"):
        fbp(disk_sinogram(g), g, backend="tomosipo")


# ---- the backprojection as a sparse matrix (issue 11) ------------------------------------------------
@pytest.mark.parametrize("n_views", [48, 46])  # with the quarter-turn symmetry, and without it
def test_backprojection_matrix_equals_the_gather_backprojection(n_views):
    from ldct_sim.fbp import backprojection_matrix, weighted_backproject

    g = FanBeamGeometry(pixel_size_mm=1.0, n_pixels=24, sod_mm=90.0, sdd_mm=180.0, n_views=n_views, angle_offset=0.2)
    q = torch.randn(2, 3, *g.sinogram_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    on_the_fly = weighted_backproject(q, g, matrix=False)
    with_matrix = weighted_backproject(q, g, matrix=True)
    assert with_matrix.shape == (2, 3, 24, 24) and with_matrix.dtype == torch.float64
    torch.testing.assert_close(with_matrix, on_the_fly, rtol=1e-5, atol=1e-6 * float(on_the_fly.abs().max()))
    stored = n_views // 4 if n_views % 4 == 0 else n_views
    m = backprojection_matrix(g)
    assert m.shape == (24 * 24, stored * g.n_det) and m.nnz == 24 * 24 * 2 * stored
    np.testing.assert_allclose(
        weighted_backproject(q[0, 0].float(), g).numpy(), on_the_fly[0, 0].numpy(), rtol=1e-4, atol=1e-5 * float(on_the_fly.abs().max())
    )


def test_weighted_backproject_rejects_bad_matrix_option():
    from ldct_sim.fbp import weighted_backproject

    g = geometry()
    with pytest.raises(ValueError, match="`matrix` must be None, True or False, got 'auto'"):
        weighted_backproject(torch.zeros(g.sinogram_shape), g, matrix="auto")


def test_default_backprojection_does_not_depend_on_what_ran_before(monkeypatch):
    """Same input, same bits: the default uses the matrix from the first call (no switch after N calls)."""
    import importlib

    from ldct_sim.projectors import sparse

    fbp_module = importlib.import_module("ldct_sim.fbp")  # the module (ldct_sim.fbp the attribute is the function)
    monkeypatch.setattr(fbp_module, "_weighted_backproject_gather", lambda q, g: pytest.fail("computed on the fly"))
    g = FanBeamGeometry(pixel_size_mm=1.0, n_pixels=12, sod_mm=70.0, sdd_mm=140.0, n_views=20, angle_offset=0.123)
    q = torch.randn(2, *g.sinogram_shape, generator=torch.Generator().manual_seed(0))
    sparse.clear_operator_registry()
    first = fbp_module.weighted_backproject(q, g)
    for _ in range(3):
        assert torch.equal(fbp_module.weighted_backproject(q, g), first)
    sparse.clear_operator_registry()


def test_only_the_torch_backend_builds_and_keeps_a_backprojection_matrix(tmp_path, monkeypatch):
    """One-off geometries (astra, tomosipo) never build or cache the 0.7 GiB-at-512² matrix; torch keeps it,
    and each backend gives the same bits on every call."""
    from ldct_sim.projectors import sparse

    monkeypatch.setenv("LDCT_SIM_CACHE", str(tmp_path / "cache"))
    sparse.clear_operator_registry()
    g = FanBeamGeometry(pixel_size_mm=1.0, n_pixels=24, sod_mm=90.0, sdd_mm=180.0, n_views=48, angle_offset=0.3)
    sino = torch.randn(*g.sinogram_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    first = fbp(sino, g, backend="astra")
    assert sparse._REGISTRY.held() == 0 and not any((tmp_path / "cache").glob("*"))
    torch.testing.assert_close(fbp(sino, g, backend="astra"), first, rtol=0, atol=0)
    with_matrix = fbp(sino, g, backend="torch")
    assert sparse._REGISTRY.held() > 0
    torch.testing.assert_close(fbp(sino, g, backend="torch"), with_matrix, rtol=0, atol=0)
    torch.testing.assert_close(with_matrix, first, rtol=1e-5, atol=1e-6 * float(first.abs().max()))
    sparse.clear_operator_registry()
