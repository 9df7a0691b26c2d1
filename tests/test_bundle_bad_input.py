"""Both bundles' ``configs/inference.json`` refuse bad input before writing anything, and leave good input
unharmed at the image border (issue 10, section 2).

Rows of the issue's table covered here, each for both bundles: NIfTI with NaN or inf pixels; values in the
wrong unit or implausible for either (and the ``--check_unit false`` override); a 4-D image of several
channels (and a trailing axis of size 1, which is accepted); a corrupt or mismatched ``models/model.pt``;
uniform water through the shipped weights.

All cases of one bundle run in one fresh interpreter (``monai.bundle.run`` as users run it, from the
bundle folder, once per case), so the bundle's ``scripts`` package never meets the other bundle's and the
interpreter starts only twice.
"""

from __future__ import annotations

import fractions
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("unet_ldct", "cpce_rfm_da")
NETWORK = {"unet_ldct": "LDCTUNet", "cpce_rfm_da": "CPCE2D"}
MU_WATER = 0.2059  # cm^-1 at 60 keV

# Runs every case given as JSON in argv[1] through monai.bundle.run; prints one JSON line of results.
DRIVER = r"""
import json, os, sys, traceback
from monai.bundle import run
cases, results = json.loads(sys.argv[1]), {}
for name, overrides in cases.items():
    try:
        run(config_file="configs/inference.json", bundle_root=".", **overrides)
        error = ""
    except Exception:
        error = traceback.format_exc()
    out = overrides["output_dir"]
    files = sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs)
    results[name] = {"error": error, "files": files}
print("RESULTS " + json.dumps(results))
"""


def _nifti(path: Path, array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.diag([0.7, 0.7, 1.0, 1.0])), str(path))
    return path


def _cases(root: Path, bundle: str) -> dict:
    """Inputs and checkpoints on disk, and the overrides of each case."""
    rng = np.random.default_rng(0)
    mu = (MU_WATER + rng.normal(0.0, 0.01, (32, 32))).astype(np.float32)  # noisy water, cm^-1
    hu = ((mu / MU_WATER - 1.0) * 1000.0).astype(np.float32)
    nan, inf = mu.copy(), mu.copy()
    nan[5:15, 5:15] = np.nan
    inf[0, 0] = np.inf
    _nifti(root / "nan" / "a_good.nii.gz", mu)  # a good file first: it must not be written either
    _nifti(root / "nan" / "b_nan.nii.gz", nan)
    _nifti(root / "inf" / "inf.nii.gz", inf)
    _nifti(root / "hu" / "hu.nii.gz", hu)
    _nifti(root / "mu" / "mu.nii.gz", mu)
    _nifti(root / "huge" / "huge.nii.gz", np.full((32, 32), 1e30, np.float32))
    _nifti(root / "four" / "four.nii.gz", np.full((256, 256, 5, 2), MU_WATER, np.float32))
    _nifti(root / "single" / "single.nii.gz", np.repeat(mu[:, :, None, None], 3, axis=2))
    _nifti(root / "water" / "water.nii.gz", np.full((96, 96), MU_WATER, np.float32))

    models = root / "models"
    models.mkdir()
    shipped = REPO / "bundles" / bundle / "models" / "model.pt"
    (models / "garbage.pt").write_bytes(b"this is not a checkpoint\n" * 40)
    (models / "truncated.pt").write_bytes(shipped.read_bytes()[:4096])
    # a pickle that torch.load(weights_only=True) refuses, with its advice to switch weights_only off
    torch.save({"model": fractions.Fraction(1, 3)}, models / "pickled.pt")
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3), "conv.bias": torch.zeros(4)}, models / "wrong_keys.pt")

    def case(folder, **kw):
        return {"dataset_dir": str(root / folder), "output_dir": str(root / "out" / kw.pop("out", folder)),
                "ckpt_path": str(shipped), **kw}

    return {
        "nan": case("nan"),
        "inf": case("inf"),
        "hu_as_mu": case("hu"),
        "mu_as_hu": case("mu", input_unit="hu"),
        "huge": case("huge"),
        "hu_as_mu_forced": case("hu", out="hu_forced", check_unit="false"),
        "four": case("four"),
        "single": case("single"),
        **{f"ckpt_{p.stem}": case("mu", out=f"ckpt_{p.stem}", ckpt_path=str(p)) for p in sorted(models.iterdir())},
        "water": case("water"),
    }


@pytest.fixture(scope="module", params=BUNDLES)
def ran(request, tmp_path_factory):
    """``(bundle, root, results)``: every case of one bundle, run through its inference config."""
    bundle = request.param
    root = tmp_path_factory.mktemp(f"bad_input_{bundle}")
    cases = _cases(root, bundle)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)  # the bundle needs neither ldct_sim nor the repository's scripts/
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], cwd=REPO / "bundles" / bundle, env=env,
                       capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert r.returncode == 0 and lines, f"driver failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return bundle, root, json.loads(lines[-1][len("RESULTS "):])


def _refused(results: dict, case: str, *phrases: str) -> str:
    """The case's error text, after checking that it names each phrase and that nothing was written."""
    res = results[case]
    assert res["error"], f"{case}: ran without error and wrote {res['files']}"
    for phrase in phrases:
        assert phrase in res["error"], f"{case}: {phrase!r} not in the error:\n{res['error'][-3000:]}"
    assert res["files"] == [], f"{case}: wrote {res['files']} before refusing"
    return res["error"]


def test_nan_or_inf_pixels_are_refused_naming_the_file(ran):
    _, root, results = ran
    _refused(results, "nan", str(root / "nan" / "b_nan.nii.gz"), "100 NaN and 0 infinite pixel values")
    _refused(results, "inf", str(root / "inf" / "inf.nii.gz"), "0 NaN and 1 infinite pixel values")


def test_a_wrong_or_implausible_unit_is_refused_with_the_fix_and_can_be_forced(ran):
    _, root, results = ran
    _refused(results, "hu_as_mu", str(root / "hu" / "hu.nii.gz"), "look like Hounsfield units",
             "the input unit is 'mu'", "pass --input_unit hu", "--check_unit false")
    _refused(results, "mu_as_hu", str(root / "mu" / "mu.nii.gz"), "look like attenuation in cm^-1",
             "the input unit is 'hu'", "pass --input_unit mu")
    err = _refused(results, "huge", str(root / "huge" / "huge.nii.gz"), "implausible for either unit")
    assert "look like Hounsfield" not in err
    forced = results["hu_as_mu_forced"]
    assert forced["error"] == "" and forced["files"] == ["hu_denoised.nii.gz"]


def test_an_image_of_several_channels_is_refused_and_a_trailing_single_axis_accepted(ran):
    _, root, results = ran
    _refused(results, "four", str(root / "four" / "four.nii.gz"), "shape (256, 256, 5, 2) (4-D)",
             "2-D image (H, W) or a 3-D volume of slices")
    assert results["single"]["error"] == "" and results["single"]["files"] == ["single_denoised.nii.gz"]
    out = np.asarray(nib.load(str(root / "out" / "single" / "single_denoised.nii.gz")).dataobj).squeeze()
    assert out.shape == (32, 32, 3)


@pytest.mark.parametrize("ckpt", ["garbage", "truncated", "pickled", "wrong_keys"])
def test_a_bad_checkpoint_is_refused_saying_what_it_should_hold(ran, ckpt):
    bundle, root, results = ran
    path = str(root / "models" / f"{ckpt}.pt")
    err = _refused(results, f"ckpt_{ckpt}", path, f"It should hold a state dict of {NETWORK[bundle]}",
                   "torch.save(network.state_dict(), path)")
    assert "weights_only" not in err  # torch's advice to unpickle arbitrary code is never passed on
    if ckpt == "wrong_keys":
        assert "do not fit" in err and "2 unexpected (e.g. ['conv.weight', 'conv.bias'])" in err
    else:
        assert "not a PyTorch file of tensors" in err or "not a state dict" in err


def test_uniform_water_stays_within_10_hu_of_the_input_to_the_border(ran):
    _, root, results = ran
    assert results["water"]["error"] == "", results["water"]["error"][-3000:]
    out = np.asarray(nib.load(str(root / "out" / "water" / "water_denoised.nii.gz")).dataobj, np.float64).squeeze()
    assert out.shape == (96, 96)
    err_hu = np.abs(out - MU_WATER) / MU_WATER * 1000.0
    assert err_hu.max() <= 10.0, f"max |out - in| = {err_hu.max():.1f} HU at {np.unravel_index(err_hu.argmax(), out.shape)}"


def test_the_input_checks_module_is_the_same_in_both_bundles():
    a, b = (REPO / "bundles" / n / "scripts" / "input_checks.py" for n in BUNDLES)
    assert a.read_bytes() == b.read_bytes(), "bundles/*/scripts/input_checks.py differ; copy one over the other"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_the_inferers_margin_pads_by_reflection_and_crops_back(bundle):
    from bundle_loading import bundle_scripts

    inferers = bundle_scripts(bundle).inferers
    cls = inferers.SliceInferer2D if bundle == "unet_ldct" else inferers.SlicewiseInferer
    x = torch.rand(1, 1, 20, 24)
    seen = []

    def net(t):  # records what the network sees; the identity otherwise
        seen.append(t.shape)
        return t * 1.0

    with torch.no_grad():
        torch.testing.assert_close(cls(margin=8)(x, net), x)
        assert tuple(seen[-1]) == (1, 1, 36, 40)
        torch.testing.assert_close(cls(margin=0)(x, net), x)
        assert tuple(seen[-1]) == (1, 1, 20, 24)
        small = torch.rand(1, 1, 5, 6)  # too small to reflect by 8: replicated instead
        torch.testing.assert_close(cls(margin=8)(small, net), small)
        torch.testing.assert_close(inferers.pad_margin(small, 8)[0, 0, :8, :8], small[0, 0, 0, 0].expand(8, 8))
        torch.testing.assert_close(inferers.pad_margin(x, 2)[..., 2:-2, :2], x[..., 1:3].flip(-1))
    with pytest.raises(ValueError, match="`margin` must be a non-negative integer"):
        cls(margin=-1)
