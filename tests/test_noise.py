"""Pre-log transmission noise (ldct_sim.noise): Poisson statistics, electronic noise, floors, seeding."""

import math

import numpy as np
import pytest
import torch

from ldct_sim.noise import MIN_COUNT, check_i0, make_generator, transmission_noise

SHAPE = (200, 500)  # 10⁵ rays


def _constant(p: float, dtype=torch.float64) -> torch.Tensor:
    return torch.full(SHAPE, p, dtype=dtype)


@pytest.mark.parametrize("i0, p", [(1e4, 2.0), (1e5, 0.5), (3.6e4, 4.0)])
def test_post_log_noise_is_unbiased_with_poisson_variance(i0, p):
    """Var[−ln(N/I0)] ≈ 1/λ with λ = I0·e^{−p} (delta method), mean ≈ p."""
    noisy = transmission_noise(_constant(p), i0, generator=make_generator(0))
    lam = i0 * math.exp(-p)
    assert float(noisy.var()) == pytest.approx(1.0 / lam, rel=0.03)  # σ of a variance estimate on 10⁵ rays: 0.5%
    assert float(noisy.mean()) == pytest.approx(p, abs=1.0 / lam + 4.0 * math.sqrt(1.0 / lam / noisy.numel()))


def test_noise_std_scales_with_inverse_sqrt_dose():
    p = _constant(2.0)
    s1 = float(transmission_noise(p, 1e4, generator=make_generator(0)).std())
    s4 = float(transmission_noise(p, 4e4, generator=make_generator(1)).std())
    assert s1 / s4 == pytest.approx(2.0, rel=0.02)


def test_electronic_noise_adds_variance_in_photons():
    """Var ≈ (λ + σe²)/λ²: the Gaussian term is in photons, before the log."""
    i0, p, sigma_e = 1e3, 1.0, 20.0
    lam = i0 * math.exp(-p)
    noisy = transmission_noise(_constant(p), i0, electronic_noise_std=sigma_e, generator=make_generator(0))
    assert float(noisy.var()) == pytest.approx((lam + sigma_e**2) / lam**2, rel=0.03)


def test_same_seed_same_noise_other_seed_other_noise():
    p = _constant(1.0)
    a = transmission_noise(p, 1e4, electronic_noise_std=5.0, generator=make_generator(7))
    b = transmission_noise(p, 1e4, electronic_noise_std=5.0, generator=make_generator(7))
    c = transmission_noise(p, 1e4, electronic_noise_std=5.0, generator=make_generator(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float((a - c).abs().mean()) > 0.5 * float(a.std())
    # the two draws are independent, not shifted copies
    assert abs(float(np.corrcoef((a - 1.0).flatten().numpy(), (c - 1.0).flatten().numpy())[0, 1])) < 0.02


def test_zero_counts_are_floored_to_finite_values():
    """At I0 = 2 photons behind 10 cm⁻¹·cm of attenuation nearly every ray counts zero photons."""
    p = _constant(10.0)
    noisy = transmission_noise(p, 2.0, generator=make_generator(0))
    assert torch.isfinite(noisy).all()
    assert float(noisy.max()) == pytest.approx(math.log(2.0 / MIN_COUNT))  # ln(I0 / floor)
    assert float((noisy == noisy.max()).double().mean()) > 0.99  # λ = 2·e⁻¹⁰: almost all rays floored
    # negative counts from electronic noise are floored too
    noisy_e = transmission_noise(p, 2.0, electronic_noise_std=10.0, generator=make_generator(0))
    assert torch.isfinite(noisy_e).all() and float(noisy_e.max()) <= math.log(2.0 / MIN_COUNT) + 1e-12
    floor_half = transmission_noise(p, 2.0, min_count=0.5, generator=make_generator(0))
    assert float(floor_half.max()) == pytest.approx(math.log(4.0))


def test_one_dose_per_image():
    p = torch.full((2, 100, 500), 2.0, dtype=torch.float64)
    noisy = transmission_noise(p, torch.tensor([1e4, 4e4]), generator=make_generator(0))
    assert noisy.shape == p.shape
    assert float(noisy[0].std() / noisy[1].std()) == pytest.approx(2.0, rel=0.03)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_shape_are_kept(dtype):
    p = _constant(1.0, dtype)
    out = transmission_noise(p, 1e5, generator=make_generator(0))
    assert out.dtype == dtype and out.shape == p.shape


def test_make_generator():
    assert make_generator(None) is None
    g1, g2 = make_generator(3), make_generator(3)
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_rejects_bad_seed(seed):
    with pytest.raises(ValueError, match="`seed` must be a non-negative integer or None"):
        make_generator(seed)


@pytest.mark.parametrize("i0", [0.0, -1e4, float("nan"), float("inf"), [], [1e4, 0.0]])
def test_rejects_non_positive_i0(i0):
    with pytest.raises(ValueError, match=r"`i0` \(incident photons per detector element per view\) must be positive and finite"):
        transmission_noise(_constant(1.0), i0)
    with pytest.raises(ValueError, match="simulate: `i0`"):
        check_i0(i0)


def test_rejects_negative_electronic_noise():
    with pytest.raises(ValueError, match="`electronic_noise_std` must be >= 0 photons, got -1.0"):
        transmission_noise(_constant(1.0), 1e4, electronic_noise_std=-1.0)


def test_rejects_non_positive_count_floor():
    with pytest.raises(ValueError, match="`min_count` must be > 0 photons, got 0"):
        transmission_noise(_constant(1.0), 1e4, min_count=0)
