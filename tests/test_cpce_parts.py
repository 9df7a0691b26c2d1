"""Parts of the ``cpce_rfm_da`` bundle: CPCE-2D, DCT and random frequency masks, VGG-19, losses, trainer, data helpers.

Run: ``PYTHONPATH=. python -m pytest tests/test_cpce_parts.py -x -q``
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import torch

from bundle_loading import bundle_scripts_as_scripts

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "cpce_rfm_da"


def load_bundle_scripts():
    return bundle_scripts_as_scripts("cpce_rfm_da")


@pytest.fixture
def S():
    return load_bundle_scripts()


# ---- CPCE-2D ------------------------------------------------------------------------------------------


def test_cpce_has_62016_parameters(S):
    net = S.networks.CPCE2D()
    assert sum(p.numel() for p in net.parameters()) == 62_016


def test_cpce_layers_follow_the_reference(S):
    net = S.networks.CPCE2D()
    convs = [net.conv1, net.conv2, net.conv3, net.conv4]
    deconvs = [net.deconv5, net.deconv6, net.deconv7]
    squeezes = [net.transpose1, net.transpose2, net.transpose3]
    for m in convs + deconvs + squeezes + [net.deconv8]:
        assert m.bias is None
        assert m.padding == (0, 0) and m.stride == (1, 1)
    assert [m.kernel_size for m in convs + deconvs] == [(3, 3)] * 7
    assert all(isinstance(m, torch.nn.ConvTranspose2d) for m in deconvs + [net.deconv8])
    assert [m.out_channels for m in convs + deconvs + squeezes] == [32] * 10
    assert [(m.in_channels, m.kernel_size) for m in squeezes] == [(64, (1, 1))] * 3
    assert (net.deconv8.out_channels, net.deconv8.kernel_size) == (1, (3, 3))


@pytest.mark.parametrize("shape", [(9, 9), (32, 32), (37, 50)])
def test_cpce_output_size_equals_input_size(S, shape):
    net = S.networks.CPCE2D()
    x = torch.rand(2, 1, *shape)
    y, features = net.forward_with_features(x)
    torch.testing.assert_close(net(x), y)
    assert y.shape == x.shape
    assert features.shape == (2, 32, shape[0] - 8, shape[1] - 8)
    assert (y >= 0).all()  # final ReLU


def test_cpce_scripts_to_torchscript(S, tmp_path):
    net = S.networks.CPCE2D().eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "cpce.ts"))
    loaded = torch.jit.load(str(tmp_path / "cpce.ts"))
    x = torch.rand(1, 1, 21, 17)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
        torch.testing.assert_close(loaded.forward_with_features(x)[1], net.forward_with_features(x)[1])


def test_cpce_rejects_small_or_unbatched_input(S):
    net = S.networks.CPCE2D()
    with pytest.raises(ValueError, match="H, W >= 9"):
        net(torch.rand(1, 1, 8, 16))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.rand(1, 16, 16))


# ---- DCT and radius ------------------------------------------------------------------------------------


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


# ---- random frequency masks ----------------------------------------------------------------------------


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


# ---- other networks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16, 16), (24, 40)])
def test_discriminator_and_encoder_shapes(S, shape):
    d = S.networks.Discriminator(in_channels=3, channels=(8, 16), strides=(1, 2), hidden=16)
    assert d(torch.rand(2, 3, *shape)).shape == (2, 1)
    enc = S.networks.VariationalMaskEncoder(latent_dim=5, n_bins=7).eval()
    logits, mu, logvar = enc(torch.rand(2, 1, *shape))
    assert logits.shape == (2, 7) and mu.shape == logvar.shape == (2, 5)
    torch.testing.assert_close(enc(torch.ones(1, 1, *shape))[0], enc(torch.ones(1, 1, *shape))[0])
    with pytest.raises(ValueError, match="one entry per convolution"):
        S.networks.Discriminator(channels=(8, 16), strides=(1,))


# ---- VGG-19 --------------------------------------------------------------------------------------------


def test_vgg_layer_names_match_torchvision_indices(S):
    names = S.vgg.VGG19_LAYER_NAMES
    assert len(names) == 37
    assert names[0] == "conv1_1" and names[4] == "pool1" and names[34] == "conv5_4" and names[35] == "relu5_4"


def test_vgg_without_weights_stops_with_a_clear_message(S, tmp_path):
    with pytest.raises(FileNotFoundError, match="use_perceptual False"):
        S.vgg.VGGPerceptualLoss(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        S.vgg.VGGPerceptualLoss(tmp_path / "missing.pth")


def test_vgg_loads_a_torchvision_layout_state_dict(S, tmp_path):
    gen = torch.Generator().manual_seed(0)
    reference = S.vgg.VGG19Features(None, layer="pool5", require_weights=False)
    state = {
        k: (torch.randn(v.shape, generator=gen) * 0.01).half()
        for k, v in S.vgg.torchvision_layout_state_dict(reference.features).items()
    }
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's classifier entries are ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loss = S.vgg.VGGPerceptualLoss(path, layer="relu5_4")
    torch.testing.assert_close(loss.vgg.features[34].weight, state["features.34.weight"].float())
    assert len(loss.vgg.features) == 36
    assert all(not p.requires_grad for p in loss.parameters())
    y = torch.rand(1, 1, 32, 32)
    pred = (y + 0.1 * torch.randn_like(y)).requires_grad_(True)
    assert float(loss(y, y)) == 0.0
    value = loss(pred, y)
    value.backward()
    assert value > 0 and pred.grad.abs().sum() > 0
    loss.train()
    assert not loss.vgg.training
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision-layout VGG-19"):
        S.vgg.VGG19Features(tmp_path / "bad.pth", layer="relu1_2")


# ---- losses --------------------------------------------------------------------------------------------


def test_discriminator_loss_at_chance_is_log4(S):
    loss = S.losses.DiscriminatorLoss()
    assert math.isclose(float(loss(torch.zeros(4, 1), torch.zeros(4, 1))), math.log(4.0), rel_tol=1e-6)
    assert float(loss(torch.full((4, 1), 20.0), torch.full((4, 1), -20.0))) < 1e-6


def test_generator_loss_is_the_weighted_sum(S):
    torch.manual_seed(0)
    pred, label = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    adv, a_s, a_t, kl = torch.randn(2, 1), torch.randn(2, 1), torch.randn(2, 1), torch.tensor(0.3)
    per = lambda p, y: (p - y).abs().mean()  # noqa: E731 - stands in for VGG
    loss = S.losses.GeneratorLoss(lambda_adv=0.5, lambda_align=0.25, beta_kl=0.1, perceptual=per)
    terms = loss(pred, label, adv, a_s, a_t, kl)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = (
        0.5 * bce(adv, torch.ones_like(adv))
        + 0.25 * (bce(a_s, torch.zeros_like(a_s)) + bce(a_t, torch.ones_like(a_t)))
        + 0.67 * torch.mean((pred - label) ** 2)
        + 0.33 * per(pred, label)
        + 0.1 * kl
    )
    torch.testing.assert_close(terms["total"], expected)
    assert set(terms) == {"rec", "per", "adv", "align", "kl", "total"}
    baseline = S.losses.GeneratorLoss(perceptual=None)(pred, label)
    torch.testing.assert_close(baseline["total"], 0.67 * torch.mean((pred - label) ** 2))


def test_alignment_weighted_variant_scales_the_supervised_terms(S):
    pred, label = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    loss = S.losses.GeneratorLoss(weighting="alignment", lambda_align=0.0)
    zeros = torch.zeros(2, 1)
    at_chance = loss(pred, label, align_logits_source=zeros, align_logits_target=zeros, d_align_loss=math.log(4.0))
    torch.testing.assert_close(at_chance["total"], 0.67 * torch.mean((pred - label) ** 2))
    separated = loss(pred, label, align_logits_source=zeros, align_logits_target=zeros, d_align_loss=0.0)
    assert float(separated["align_weight"]) == 0.0 and float(separated["total"]) == 0.0
    assert math.isclose(float(S.losses.alignment_weight(math.log(4.0) / 2)), 0.5, rel_tol=1e-6)


def test_generator_loss_validates_arguments(S):
    with pytest.raises(ValueError, match="`lambda_rec` must be a finite number >= 0"):
        S.losses.GeneratorLoss(lambda_rec=-1.0)
    with pytest.raises(ValueError, match="`weighting` must be either 'sum' or 'alignment'"):
        S.losses.GeneratorLoss(weighting="product")
    with pytest.raises(ValueError, match="give both"):
        S.losses.GeneratorLoss()(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), align_logits_source=torch.zeros(1, 1))


# ---- trainer -------------------------------------------------------------------------------------------


def _tiny_parts(S, rfm_mode="adaptive"):
    torch.manual_seed(0)
    net = S.networks.CPCE2D(channels=8)
    enc = S.networks.VariationalMaskEncoder(channels=(4, 8), latent_dim=4, n_bins=4, hidden=8)
    rfm = {"adaptive": S.frequency.AdaptiveRFM(enc), "fixed": S.frequency.FixedRFM(), "none": None}[rfm_mode]
    d_w = S.networks.Discriminator(in_channels=8, channels=(8, 8), strides=(1, 2), hidden=8)
    d_y = S.networks.Discriminator(in_channels=1, channels=(8, 8), strides=(1, 2), hidden=8)
    opt = torch.optim.Adam(list(net.parameters()) + list(enc.parameters()), lr=1e-3)
    d_opt = torch.optim.Adam(list(d_w.parameters()) + list(d_y.parameters()), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    data = [
        {
            "image": torch.rand(2, 1, 20, 20, generator=gen),
            "label": torch.rand(2, 1, 20, 20, generator=gen),
            "target": torch.rand(2, 1, 20, 20, generator=gen),
        }
        for _ in range(2)
    ]
    return net, enc, rfm, d_w, d_y, opt, d_opt, data


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize("rfm_mode,weighting", [("adaptive", "sum"), ("fixed", "alignment"), ("none", "sum")])
def test_trainer_updates_every_part_with_finite_losses(S, rfm_mode, weighting):
    net, enc, rfm, d_w, d_y, opt, d_opt, data = _tiny_parts(S, rfm_mode)
    before = {m: _snapshot(m) for m in (net, enc, d_w, d_y)}
    trainer = S.trainer.DomainAdaptationTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=opt,
        loss_function=S.losses.GeneratorLoss(weighting=weighting),
        d_loss_function=S.losses.DiscriminatorLoss(),
        align_discriminator=d_w,
        image_discriminator=d_y,
        d_optimizer=d_opt,
        rfm=rfm,
    )
    trainer.run()
    out = trainer.state.output
    for key in ("loss", "d_loss", "d_loss_align", "d_loss_image", "loss_rec", "loss_adv", "loss_align"):
        assert math.isfinite(out[key]), key
    assert ("loss_kl" in out) == (rfm_mode == "adaptive")
    assert ("loss_align_weight" in out) == (weighting == "alignment")
    assert _changed(before[net], net) and _changed(before[d_w], d_w) and _changed(before[d_y], d_y)
    assert _changed(before[enc], enc) == (rfm_mode == "adaptive")
    assert all(p.requires_grad for p in list(d_w.parameters()) + list(d_y.parameters()))


def test_trainer_baseline_needs_no_target_and_leaves_discriminators_alone(S):
    net, enc, rfm, d_w, d_y, opt, d_opt, data = _tiny_parts(S)
    data = [{"image": b["image"], "label": b["label"]} for b in data]
    before = _snapshot(d_w) + _snapshot(d_y)
    trainer = S.trainer.DomainAdaptationTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=opt,
        loss_function=S.losses.GeneratorLoss(),
        d_loss_function=S.losses.DiscriminatorLoss(),
        align_discriminator=d_w,
        image_discriminator=d_y,
        d_optimizer=d_opt,
        rfm=rfm,
        align=False,
        adversarial=False,
    )
    trainer.run()
    out = trainer.state.output
    assert out["d_loss"] == 0.0 and "loss_adv" not in out and "loss_align" not in out
    assert all(torch.equal(a, b) for a, b in zip(before, list(d_w.parameters()) + list(d_y.parameters())))


def test_trainer_validates_its_configuration(S):
    net, enc, rfm, d_w, d_y, opt, d_opt, data = _tiny_parts(S)
    common = dict(device="cpu", max_epochs=1, train_data_loader=data, network=net, optimizer=opt)
    loss = S.losses.GeneratorLoss()
    with pytest.raises(ValueError, match="`align=True` needs an `align_discriminator`"):
        S.trainer.DomainAdaptationTrainer(**common, loss_function=loss, image_discriminator=d_y)
    with pytest.raises(ValueError, match="`representation` must be either"):
        S.trainer.DomainAdaptationTrainer(**common, loss_function=loss, representation="latent")
    with pytest.raises(ValueError, match="need `d_optimizer` and `d_loss_function`"):
        S.trainer.DomainAdaptationTrainer(
            **common, loss_function=loss, align_discriminator=d_w, image_discriminator=d_y
        )


# ---- data helpers --------------------------------------------------------------------------------------


def test_as_bool_reads_switches_strictly(S):
    assert S.helpers.as_bool("False") is False and S.helpers.as_bool("yes") is True and S.helpers.as_bool(True) is True
    with pytest.raises(ValueError, match="`value` must be true or false, got .flase."):
        S.helpers.as_bool("flase")


def test_intensity_range_maps_the_hu_window_to_each_unit(S):
    assert S.helpers.intensity_range([-1024, 3072], "hu") == [-1024.0, 3072.0]
    lo, hi = S.helpers.intensity_range([-1000, 0], "mu", mu_water=0.2059)
    assert lo == 0.0 and math.isclose(hi, 0.2059)
    with pytest.raises(ValueError, match="`input_unit` must be one of \\('mu', 'hu'\\)"):
        S.helpers.intensity_range([-1000, 0], "kev")


def test_check_intensity_unit_refuses_the_wrong_unit(S, recwarn):
    mu = {"image": torch.full((1, 8, 8), 0.2)}
    hu = {"image": torch.linspace(-1000, 1000, 64).reshape(1, 8, 8)}
    S.input_checks.CheckIntensityUnitd("image", "mu")(mu)
    S.input_checks.CheckIntensityUnitd("image", "hu")(hu)
    assert len(recwarn) == 0
    with pytest.raises(ValueError, match="pass --input_unit hu"):
        S.input_checks.CheckIntensityUnitd("image", "mu")(hu)
    with pytest.raises(ValueError, match="pass --input_unit mu"):
        S.input_checks.CheckIntensityUnitd("image", "hu")(mu)
    with pytest.raises(ValueError, match="`unit` must be one of"):
        S.input_checks.CheckIntensityUnitd("image", "kelvin")


def test_require_file_names_what_is_missing(S, tmp_path):
    with pytest.raises(FileNotFoundError, match="CPCE-2D weights: .* does not exist. Train first"):
        S.helpers.require_file(tmp_path / "model.pt", "CPCE-2D weights", "Train first.")
    (tmp_path / "model.pt").write_bytes(b"")
    assert S.helpers.require_file(tmp_path / "model.pt") == str(tmp_path / "model.pt")


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


def test_slicewise_inferer_runs_volumes_slice_by_slice(S):
    net = S.networks.CPCE2D(channels=4).eval()
    vol = torch.rand(1, 1, 12, 12, 3)
    inferer = S.inferers.SlicewiseInferer(sw_batch_size=2)
    with torch.no_grad():
        out = inferer(vol, net)
        assert out.shape == vol.shape
        torch.testing.assert_close(out[..., 1], net(vol[..., 1]))
        torch.testing.assert_close(inferer(vol[..., 0], net), net(vol[..., 0]))
