"""The CPCE bundle's frequency module (bundles/cpce_rfm_da/scripts/frequency.py): DCT, radius, random frequency masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch


@pytest.mark.parametrize("shape", [(8, 8), (17, 23), (1, 5), (3, 2, 12, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dct2_matches_scipy_dctn_ortho(S, shape, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    got = S.frequency.dct2(torch.tensor(a, dtype=dtype)).numpy()
    np.testing.assert_allclose(got, scipy.fft.dctn(a, type=2, axes=(-2, -1), norm="ortho"), atol=tol)
    back = S.frequency.idct2(torch.tensor(a, dtype=dtype)).numpy()
    np.testing.assert_allclose(back, scipy.fft.idctn(a, type=2, axes=(-2, -1), norm="ortho"), atol=tol)


def test_dct2_round_trip_and_parseval(S):
    x = torch.randn(2, 3, 20, 13, dtype=torch.float64)
    coeffs = S.frequency.dct2(x)
    torch.testing.assert_close(S.frequency.idct2(coeffs), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(coeffs.pow(2).sum(), x.pow(2).sum())  # orthonormal


def test_dct_matrix_is_cached_and_orthonormal(S):
    a = S.frequency.dct_matrix(16)
    assert S.frequency.dct_matrix(16) is a
    torch.testing.assert_close(a @ a.T, torch.eye(16), atol=1e-6, rtol=0)


def test_dct2_is_differentiable_and_rejects_integers(S):
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    S.frequency.dct2(x).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * x.detach(), atol=1e-5, rtol=0)  # orthonormal: ‖Cx‖² = ‖x‖²
    with pytest.raises(TypeError, match="floating-point"):
        S.frequency.dct2(torch.ones(4, 4, dtype=torch.int64))


def test_normalized_radius_is_equation_3(S):
    r = S.frequency.normalized_radius(5, 9, dtype=torch.float64)
    assert r.shape == (5, 9)
    assert r[0, 0] == 0 and math.isclose(float(r[-1, -1]), 1.0)
    assert math.isclose(float(r[2, 3]), math.sqrt(2**2 + 3**2) / math.sqrt(4**2 + 8**2))
    assert float(S.frequency.normalized_radius(1, 1)[0, 0]) == 0.0


def test_fixed_rfm_keeps_low_frequencies_and_draws_binary_masks(S):
    rfm = S.frequency.FixedRFM(keep_radius=0.2, keep_prob=0.5)
    x = torch.randn(4, 3, 16, 16)
    r = S.frequency.normalized_radius(16, 16)
    m = rfm.mask(x)
    assert m.shape == (4, 1, 16, 16)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m[:, :, r <= 0.2] == 1).all()
    rfm.eval()
    expectation = rfm.mask(x)
    assert (expectation[0, 0][r > 0.2] == 0.5).all() and (expectation[0, 0][r <= 0.2] == 1).all()
    linear = S.frequency.FixedRFM(keep_radius=0.0, keep_prob=0.2, profile="linear").eval()
    p = linear.keep_probabilities(16, 16)
    assert math.isclose(float(p[-1, -1]), 0.2, rel_tol=1e-6) and float(p[0, 0]) == 1.0
    ones = S.frequency.FixedRFM(keep_prob=1.0)
    torch.testing.assert_close(ones(x), x, atol=1e-5, rtol=0)


def test_fixed_rfm_validates_arguments(S):
    with pytest.raises(ValueError, match="`keep_prob` must lie in"):
        S.frequency.FixedRFM(keep_prob=1.5)
    with pytest.raises(ValueError, match="`keep_radius` must lie in"):
        S.frequency.FixedRFM(keep_radius=-0.1)
    with pytest.raises(ValueError, match="`profile` must be either"):
        S.frequency.FixedRFM(profile="cosine")


def make_adaptive(S, **kwargs):
    torch.manual_seed(0)
    enc = S.networks.VariationalMaskEncoder(channels=(8, 16), latent_dim=4, n_bins=8, hidden=16)
    return S.frequency.AdaptiveRFM(enc, **kwargs)


def test_adaptive_rfm_mask_properties(S):
    rfm = make_adaptive(S, keep_radius=0.15, temperature=0.5)
    image = torch.rand(3, 1, 32, 32)
    features = torch.randn(3, 8, 24, 20)
    r = S.frequency.normalized_radius(24, 20)
    p = rfm.keep_probabilities(image, 24, 20)
    assert p.shape == (3, 1, 24, 20)
    assert (p >= 0).all() and (p <= 1).all()
    assert (p[:, :, r <= 0.15] == 1).all()
    m = rfm.mask(features, image)
    assert (m >= 0).all() and (m <= 1).all() and (m[:, :, r <= 0.15] == 1).all()
    assert not torch.equal(m, rfm.mask(features, image))  # training: a fresh relaxed-Bernoulli draw
    assert rfm.last_kl is not None and torch.isfinite(rfm.last_kl) and rfm.last_kl >= 0
    rfm.eval()
    torch.testing.assert_close(rfm.mask(features, image), rfm.keep_probabilities(image, 24, 20))  # expectation
    torch.testing.assert_close(rfm(features, image), rfm(features, image))


def test_adaptive_rfm_gradients_reach_the_encoder(S):
    rfm = make_adaptive(S)
    image = torch.rand(2, 1, 32, 32)
    features = torch.randn(2, 4, 24, 24, requires_grad=True)
    out = rfm(features, image)
    (out.pow(2).mean() + rfm.last_kl).backward()
    for name, param in rfm.encoder.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert any(param.grad.abs().sum() > 0 for param in rfm.encoder.encoder.parameters())
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_adaptive_rfm_requires_the_image(S):
    rfm = make_adaptive(S)
    with pytest.raises(ValueError, match="pass `image`"):
        rfm(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="same batch size"):
        rfm(torch.randn(2, 4, 8, 8), torch.rand(1, 1, 16, 16))


def test_relaxed_bernoulli_mean_and_low_temperature_limit(S):
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.1, 0.5, 0.9]).expand(20000, 3)
    cold = S.frequency.relaxed_bernoulli(p, temperature=0.01, generator=gen)
    assert ((cold < 0.01) | (cold > 0.99)).float().mean() > 0.97
    torch.testing.assert_close(cold.mean(0), torch.tensor([0.1, 0.5, 0.9]), atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        S.frequency.relaxed_bernoulli(p, temperature=0.0)
