"""ldct_sim.noise_power: the NPS convention checked by hand (Parseval, white noise, a checkerboard, a
cosine, a two-tap filter), the radial average, ROI tiling, errors, and the ramp shape of FBP noise."""

import numpy as np
import pytest

from ldct_sim.noise_power import extract_rois, nps_2d, radial_average, radial_nps


def test_checkerboard_puts_all_power_at_the_nyquist_corner():
    # x[i, j] = a (-1)^(i+j): its DFT is N^2 a at (N/2, N/2) and 0 elsewhere, so
    # NPS = dx dy / N^2 * (N^2 a)^2 = dx dy N^2 a^2 there: 0.5 * 0.5 * 16 * 9 = 36 (cm^-1)^2 mm^2.
    a, n, dx = 3.0, 4, 0.5
    x = a * (-1.0) ** np.add.outer(np.arange(n), np.arange(n))
    nps, fy, fx = nps_2d(x, dx)
    assert fy[0] == pytest.approx(-1.0) and fx[0] == pytest.approx(-1.0)  # -1/(2 dx) mm^-1, first after fftshift
    assert nps[0, 0] == pytest.approx(36.0)
    assert np.count_nonzero(np.abs(nps) > 1e-12) == 1
    assert nps.sum() * (fx[1] - fx[0]) * (fy[1] - fy[0]) == pytest.approx(a**2)  # = the variance


def test_cosine_has_two_peaks_holding_half_the_squared_amplitude():
    # a cos(2 pi k x / N) along x: two peaks at fx = +-k/(N dx), each dx dy Nx Ny a^2 / 4; variance a^2 / 2
    a, ny, nx, k, dx, dy = 2.0, 8, 16, 3, 0.25, 0.5
    x = np.tile(a * np.cos(2 * np.pi * k * np.arange(nx) / nx), (ny, 1))
    nps, fy, fx = nps_2d(x, (dy, dx))
    peak = dx * dy * nx * ny * a**2 / 4
    iy0 = int(np.argmin(np.abs(fy)))
    for f in (k / (nx * dx), -k / (nx * dx)):
        assert nps[iy0, int(np.argmin(np.abs(fx - f)))] == pytest.approx(peak)
    assert nps.sum() == pytest.approx(2 * peak)
    assert fx[-1] == pytest.approx((nx / 2 - 1) / (nx * dx)) and fy[0] == pytest.approx(-1 / (2 * dy))


def test_integral_equals_the_variance_for_any_roi():
    rng = np.random.default_rng(1)
    rois = rng.gamma(2.0, 3.0, size=(5, 12, 20))  # not zero-mean, not Gaussian, rectangular
    res = radial_nps(rois, (0.3, 0.7))
    assert res.integral == pytest.approx(rois.var(axis=(1, 2)).mean(), rel=1e-12)
    assert res.variance == pytest.approx(res.integral, rel=1e-12)
    assert res.n_rois == 5 and res.nps_2d.shape == (12, 20)


def test_white_noise_gives_a_flat_nps_of_sigma2_dx_dy():
    rng = np.random.default_rng(0)
    sigma, dx = 20.0, 0.625  # HU, mm
    res = radial_nps(rng.normal(0.0, sigma, size=(400, 32, 32)), dx)
    expected = sigma**2 * dx * dx  # HU^2 mm^2
    assert res.nps.mean() == pytest.approx(expected, rel=0.02)
    assert np.all(np.abs(res.nps / expected - 1) < 0.1)  # flat: every ring within 10 % (>= 4 x 400 samples each)
    assert res.frequency_mm[0] == pytest.approx(1 / (32 * dx)) and res.frequency_mm[-1] <= 1 / (2 * dx) + 1e-12


def test_two_tap_average_gives_a_cos_squared_nps():
    # n = (w + roll(w, 1 along x)) / 2 has H(fx) = cos(pi fx dx) up to a phase: NPS = sigma^2 dx dy cos^2(pi fx dx)
    rng = np.random.default_rng(2)
    w = rng.normal(0.0, 1.0, size=(300, 16, 16))
    n = 0.5 * (w + np.roll(w, 1, axis=2))
    nps, fy, fx = nps_2d(n, 0.5)
    expected = 0.25 * np.cos(np.pi * fx * 0.5) ** 2
    measured = nps.mean(axis=0)  # average over fy: the spectrum does not depend on fy
    keep = np.abs(fx) > 0  # the mean removal empties fx = fy = 0
    np.testing.assert_allclose(measured[keep], expected[keep], atol=0.02)
    assert measured[0] < 0.01  # the Nyquist column, cos^2(pi/2) = 0


def test_plane_detrending_removes_a_ramp_that_mean_removal_keeps():
    yy, xx = np.mgrid[:16, :16]
    ramp = 0.3 * xx - 0.2 * yy + 5.0
    assert nps_2d(ramp, 1.0, detrend="plane")[0].max() < 1e-20
    assert nps_2d(ramp, 1.0, detrend="mean")[0].max() > 1.0


def test_radial_average_of_the_radius_returns_the_ring_centres():
    f = np.fft.fftshift(np.fft.fftfreq(64, d=0.5))
    fr = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    centres, values, counts = radial_average(fr, f, f)
    w = 1 / 32.0
    np.testing.assert_allclose(centres, w * np.arange(1, len(centres) + 1))
    assert np.all(np.abs(values - centres) < w / 2)  # the mean radius in a ring lies in the ring
    assert centres[-1] <= 1.0 and counts.sum() == np.count_nonzero((fr <= 1.0 + 1e-12) & (fr >= w / 2))


def test_extract_rois_tiles_the_image_centre():
    img = np.arange(64 * 64, dtype=float).reshape(64, 64)
    rois = extract_rois(img, 16, grid=2)  # centres at 64/2 -+ 64/8: ROIs start at rows/cols 16 and 32
    assert rois.shape == (4, 16, 16)
    starts = [(int(r[0, 0]) // 64, int(r[0, 0]) % 64) for r in rois]
    assert starts == [(16, 16), (16, 32), (32, 16), (32, 32)]
    one = extract_rois(img, 8, grid=1)
    assert one[0, 0, 0] == img[28, 28]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: nps_2d(np.zeros((4, 4)), -1.0), "pixel_size_mm"),
        (lambda: nps_2d(np.zeros((4, 4)), 1.0, detrend="linear"), "detrend"),
        (lambda: nps_2d(np.zeros(8), 1.0), "shape"),
        (lambda: nps_2d(np.full((4, 4), np.nan), 1.0), "NaN"),
        (lambda: nps_2d([np.zeros((4, 4)), np.zeros((4, 5))], 1.0), "same shape"),
        (lambda: radial_average(np.zeros((4, 4)), np.arange(4.0), np.arange(5.0)), "does not match"),
        (lambda: extract_rois(np.zeros((8, 8)), 9), "roi_size"),
        (lambda: extract_rois(np.zeros((8, 8, 2)), 4), "2-D"),
    ],
)
def test_bad_input_raises_a_named_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_fbp_noise_has_a_ramp_shaped_nps():
    """Noise of a fan-beam FBP reconstruction (ram-lak) is not white: little power at low frequencies."""
    from ldct_sim import FanBeamGeometry, LowDoseSimulator, hu_to_mu
    from ldct_sim.phantoms import water_disk

    g = FanBeamGeometry(pixel_size_mm=0.625, n_pixels=64, sod_mm=750.0, sdd_mm=1500.0, n_views=120)
    mu = hu_to_mu(water_disk(64, radius=0.9))
    out = LowDoseSimulator(g).run(mu, [1e4] * 16, noiseless=True, seed=3)  # 16 noise draws in one batched FBP
    rois = np.stack([n.numpy().squeeze()[16:48, 16:48] for n in out.noise])  # the central 32 x 32 of the disk
    res = radial_nps(rois, 0.625)
    assert res.integral == pytest.approx(res.variance, rel=1e-12)
    f, ny = res.frequency_mm, res.nyquist_mm
    low, mid = res.nps[f <= 0.1 * ny + 1e-9].mean(), res.nps[(f > 0.3 * ny) & (f < 0.7 * ny)].mean()
    assert mid > 1.8 * low  # a ramp: about 2.6x here; white noise would give 1
    assert 0.3 * ny < res.mean_frequency_mm < ny
