"""The real-data training recipe (``ldct_scripts.recipe.train_real_recipe``): simulated draws, the patch sampler's dose law,
weight export; and the shipped weights on the 15 public AAPM–Mayo pairs (skipped without ../shared)."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MODULE = "ldct_scripts.recipe.train_real_recipe"
PAIRS = REPO.parent / "shared" / "real_ldct" / "dev_pairs.npz"


def _recipe():
    return importlib.import_module(MODULE)


def _disc_slices(tmp_path, n=2, size=32):
    """``n`` water discs in air (HU), with a JSON sidecar giving 0.74 mm pixels."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    hu = np.where(np.hypot(yy, xx) < size * 0.4, 0.0, -1000.0).astype(np.int16)
    path = tmp_path / "nd.npz"
    np.savez(path, hu=np.stack([hu] * n))
    path.with_suffix(".json").write_text(json.dumps([{"id": f"s{i}", "patient": f"P{i}", "pixel_spacing_mm": 0.74} for i in range(n)]))
    return path


def _simulate(rec, npz, out, seed=0):
    rec.main(["simulate", "--npz", str(npz), "--out", str(out), "--realisations", "1", "--views", "64",
              "--kernel-groups", "hann;ram-lak", "--scale-jitter", "0", "--seed", str(seed), "--threads", "1"])


def test_simulate_writes_seeded_noise_whose_texture_follows_the_kernel(tmp_path):
    rec = _recipe()
    npz = _disc_slices(tmp_path)
    _simulate(rec, npz, tmp_path / "a")
    _simulate(rec, npz, tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").glob("*.npz"))
    assert files == ["000_0.npz", "001_0.npz"]
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [d["patient"] for d in man["draws"]] == ["P0", "P1"]
    with np.load(tmp_path / "a" / "000_0.npz") as d, np.load(tmp_path / "b" / "000_0.npz") as e:
        assert list(d["kernels"]) == ["hann", "ram-lak"]
        assert d["noise_hu"].shape == (2, 32, 32) and d["noise_hu"].dtype == np.float16
        np.testing.assert_array_equal(d["noise_hu"], e["noise_hu"])  # same seed, same noise
        body = d["image_hu"] > -500
        smooth, sharp = (float(n.astype(np.float32)[body].std()) for n in d["noise_hu"])
        # Hann apodisation keeps less high-frequency noise than the bare ramp
        assert 0 < smooth < 0.8 * sharp
    _simulate(rec, npz, tmp_path / "c", seed=1)
    with np.load(tmp_path / "a" / "000_0.npz") as d, np.load(tmp_path / "c" / "000_0.npz") as e:
        assert not np.array_equal(d["noise_hu"], e["noise_hu"])


def test_patch_sampler_scales_noise_as_one_over_sqrt_dose(tmp_path):
    rec = _recipe()
    data = tmp_path / "sim"
    data.mkdir()
    gen = np.random.default_rng(0)
    np.savez(data / "000_0.npz", image_hu=np.zeros((48, 48), np.float32),
             noise_hu=(10.0 * gen.standard_normal((1, 48, 48))).astype(np.float16), kernels=np.array(["cosine"]),
             pixel_mm=0.74, i0_ref=1e5, source="s", patient="P0")

    def noise_sd(i0):
        s = rec.PatchSampler(str(data), 32, (i0, i0), intensity_jitter=0.0, seed=3)
        x, y = s.sample(8)
        assert x.shape == y.shape == (8, 1, 32, 32)
        assert torch.all(y == 0)  # label: the anatomy itself
        return float((x - y).std())

    sd_ref, sd_quarter = noise_sd(1e5), noise_sd(2.5e4)
    assert sd_ref == pytest.approx(10.0, rel=0.1)
    assert sd_quarter == pytest.approx(2 * sd_ref, rel=1e-3)  # a quarter of the dose, twice the noise
    a, b = (rec.PatchSampler(str(data), 32, (1e4, 3e5), seed=5).sample(4) for _ in range(2))
    assert torch.equal(a[0], b[0])  # seeded
    assert rec.PatchSampler(str(data), 32, (1e4, 3e5), exclude_patients=("P1",)).images
    with pytest.raises(SystemExit, match="no simulated draws"):
        rec.PatchSampler(str(data), 32, (1e4, 3e5), exclude_patients=("P0",))


def test_train_resumes_from_its_checkpoint_and_writes_cpu_weights(tmp_path):
    data = tmp_path / "sim"
    data.mkdir()
    gen = np.random.default_rng(1)
    np.savez(data / "000_0.npz", image_hu=np.full((40, 40), 40.0, np.float32),
             noise_hu=(20.0 * gen.standard_normal((1, 40, 40))).astype(np.float16), kernels=np.array(["cosine"]),
             pixel_mm=0.74, i0_ref=1e5, source="s", patient="P0")
    run = [sys.executable, "-m", MODULE, "train", "--bundle", "cpce_rfm_da", "--data", str(data), "--out",
           str(tmp_path / "run"), "--patch", "24", "--batch", "2", "--log-every", "1", "--minutes", "5"]
    for iters in (2, 3):  # the second call resumes at iteration 2 and does one more
        done = subprocess.run(run + ["--max-iters", str(iters)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stderr and "at iteration 2" in done.stderr and "done: 3 iterations" in done.stderr
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ck["iteration"] == 3 and ck["scaler"] == {}  # bf16 on the CPU: no loss scaling (fp16 on a GPU has it)
    weights = torch.load(tmp_path / "run" / "model.pt", weights_only=True)  # the bundle's format: CPU tensors
    assert all(v.device.type == "cpu" for v in weights.values()) and set(weights) == set(ck["model"])
    assert json.loads((tmp_path / "run" / "train.json").read_text())["iterations"] == 3


def test_export_round_trips_and_refuses_foreign_weights(tmp_path):
    shipped = REPO / "bundles" / "cpce_rfm_da" / "models" / "model.pt"
    dest = tmp_path / "model.pt"
    cmd = [sys.executable, "-m", MODULE, "export", "--bundle", "cpce_rfm_da", "--ckpt", str(shipped), "--dest", str(dest)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = torch.load(shipped, weights_only=True), torch.load(dest, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"foo": torch.zeros(1)}}, bad)
    dest2 = tmp_path / "nothing.pt"
    cmd[cmd.index(str(shipped))], cmd[-1] = str(bad), str(dest2)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "foo" in done.stderr
    assert not dest2.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_train_refuses_a_missing_gpu_and_fp16_on_the_cpu(tmp_path):
    base = [sys.executable, "-m", MODULE, "train", "--bundle", "cpce_rfm_da",
            "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    done = subprocess.run(base + ["--device", "cuda"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--device cuda asked for, but torch" in done.stderr and "sees no CUDA GPU" in done.stderr
    done = subprocess.run(base + ["--amp", "fp16"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "--amp fp16 needs --device cuda" in done.stderr
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_zero_last_layer_starts_the_shipped_residual_unet_as_the_identity():
    rec = _recipe()
    net = rec.load_network("unet_ldct").eval()  # inference.json's network: residual by default
    assert net.residual
    x = torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        assert not torch.equal(net(x), x)
        assert torch.equal(rec.zero_last_layer(net)(x), x)
    assert float(net.head.weight.abs().sum()) == 0.0 and float(net.down[0][0][0].weight.abs().sum()) > 0.0
    with pytest.raises(ValueError, match="no convolution"):
        rec.zero_last_layer(torch.nn.Linear(2, 2))
    assert not rec.load_network("unet_ldct", residual="false").residual  # the seed's network, for older weights
    cpce = rec.load_network("cpce_rfm_da")  # the CPCE's shipped weights (0.5.0 on) are residual too
    assert cpce.residual and not rec.load_network("cpce_rfm_da", residual="false").residual
    with torch.no_grad():  # the CPCE's last layer is deconv8: zeroed, the residual CPCE passes its input through
        assert torch.equal(rec.zero_last_layer(cpce.eval())(x), x)
    with pytest.raises(RuntimeError, match="as_bool") as err:  # MONAI wraps the config's own check
        rec.load_network("cpce_rfm_da", residual="maybe")
    assert "`residual` must be true or false" in str(err.value.__cause__)


# ------------------------------------------------------------------------------------------------ real pairs
#: body RMSE cut vs the quarter-dose input that the shipped weights must keep on central 256² crops of the
#: first three B30f pairs and the D45f pair (all patient L506, held out of training), and the margin in
#: points over a Gaussian blur of about the best σ. Measured at shipping (crops, U-Net 0.7.0 / CPCE 0.5.0):
#: U-Net 33 % / 48 %, CPCE 33 % / 47 %, Gaussian 13 % / 46 %. Issue 12 asked for 35 % and +10 points on both kernels
#: (the model cards give where the weights stand; on the whole pairs B30f is at 34-35 %); these floors keep what the
#: shipped weights do from slipping. On this D45f crop both networks are only 1-2 points ahead of the Gaussian.
MIN_CUT = {"unet_ldct": {"B30f": 0.31, "D45f": 0.46}, "cpce_rfm_da": {"B30f": 0.31, "D45f": 0.45}}
MIN_MARGIN = {"unet_ldct": {"B30f": 0.18, "D45f": 0.0}, "cpce_rfm_da": {"B30f": 0.18, "D45f": 0.0}}
GAUSS_SIGMA = {"B30f": 0.6, "D45f": 0.7}  # about the best σ (pixels) per kernel on these pairs


@pytest.mark.skipif(not PAIRS.is_file(), reason="../shared/real_ldct (the public AAPM–Mayo pairs) is absent")
@pytest.mark.parametrize("bundle", ["unet_ldct", "cpce_rfm_da"])
def test_shipped_weights_beat_the_input_and_a_gaussian_on_real_pairs(bundle):
    from scipy.ndimage import gaussian_filter

    rec = _recipe()
    records = json.loads(PAIRS.with_suffix(".json").read_text())
    with np.load(PAIRS) as d:
        qd, fd = d["quarter_dose_hu"].astype(np.float32), d["full_dose_hu"].astype(np.float32)
    net = rec.load_network(bundle, str(REPO / "bundles" / bundle / "models" / "model.pt")).eval()  # as inference.json builds it
    torch.set_num_threads(1)
    c = slice(128, 384)  # the central 256² crop: the body, and fast
    for kernel, min_cut in MIN_CUT[bundle].items():
        idx = [i for i, r in enumerate(records) if rec.kernel_group(r) == kernel][:3]
        inp, out, gau = [], [], []
        for i in idx:
            q, f = qd[i][c, c], fd[i][c, c]
            with torch.inference_mode():
                y = rec.from_net(net(rec.to_net(torch.from_numpy(q)[None, None], bundle)), bundle)[0, 0].numpy()
            inp.append(rec.body_rmse(q, f))
            out.append(rec.body_rmse(y, f))
            gau.append(rec.body_rmse(gaussian_filter(q, GAUSS_SIGMA[kernel]), f))
        cut, gauss_cut = 1 - np.mean(out) / np.mean(inp), 1 - np.mean(gau) / np.mean(inp)
        print(f"{bundle} {kernel}: input {np.mean(inp):.1f} HU, denoised {np.mean(out):.1f} HU ({100 * cut:.0f}%), "
              f"Gaussian σ={GAUSS_SIGMA[kernel]} {100 * gauss_cut:.0f}%")
        assert cut >= min_cut
        assert cut >= gauss_cut + MIN_MARGIN[bundle][kernel]


@pytest.mark.parametrize("bf16", [False, True])
def test_unet_train_config_bf16_knob_runs_the_network_in_bfloat16(bf16):
    from monai.bundle import ConfigParser

    from bundle_loading import bundle_scripts_as_scripts

    bundle_scripts_as_scripts("unet_ldct")
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "unet_ldct" / "configs" / "train.json"))
    parser["bundle_root"] = str(REPO / "bundles" / "unet_ldct")
    parser["bf16"] = bf16
    parser["device"] = "$torch.device('cpu')"
    inferer, net = parser.get_parsed_content("train#inferer"), parser.get_parsed_content("network")
    seen = []
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = inferer(torch.rand(2, 1, 32, 32), net)
    assert seen == [torch.bfloat16 if bf16 else torch.float32]
    assert out.dtype == torch.float32 and out.shape == (2, 1, 32, 32)  # the loss sees float32
