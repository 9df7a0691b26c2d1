"""The ``cpce_rfm_da`` bundle's configs: training (both domains, baseline, resume), inference, evaluation, metadata.

Tiny data: 32-pixel phantoms simulated with ``ldct_sim`` into both domains (``scripts.domains``).
Run: ``PYTHONPATH=. python -m pytest tests/test_cpce_bundle.py -x -q``
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle_loading import bundle_scripts_as_scripts

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "cpce_rfm_da"
CONFIGS = BUNDLE / "configs"
SCHEMA = BUNDLE.parents[2] / "shared" / "monai" / "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"

TINY = {
    "batch_size": 2,
    "patch_size": [32, 32],
    "num_workers": 0,
    "cache_rate": 0.0,
    "use_perceptual": False,
    "align_discriminator#channels": [8, 16],
    "align_discriminator#strides": [1, 2],
    "align_discriminator#hidden": 16,
    "image_discriminator#channels": [8, 16],
    "image_discriminator#strides": [1, 2],
    "image_discriminator#hidden": 16,
}


def load_bundle_scripts():
    return bundle_scripts_as_scripts("cpce_rfm_da")


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """Both simulated domains, 32 × 32 pixels, 4 training, 2 validation and 2 test images each."""
    S = load_bundle_scripts()
    import scripts.domains

    out = tmp_path_factory.mktemp("cpce_domains")
    scripts.domains.make_domains(out, n_pixels=32, n_views=48, n_train=4, n_validation=2, n_test=2, seed=3)
    assert S is sys.modules["scripts"]
    return out


def workflow(config, workflow_type, run_id="run", **override):
    load_bundle_scripts()
    from monai.bundle import ConfigWorkflow

    return ConfigWorkflow(
        config_file=str(CONFIGS / config),
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        run_id=run_id,
        bundle_root=str(BUNDLE),
        **override,
    )


def train(domains, ckpt_dir, **override):
    wf = workflow(
        "train.json",
        "train",
        dataset_dir=str(domains),
        ckpt_dir=str(ckpt_dir),
        output_dir=str(ckpt_dir / "logs"),
        **{**TINY, **override},
    )
    wf.initialize()
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    wf.finalize()
    return wf, trainer


def test_domains_are_written_with_datalists(domains):
    record = json.loads((domains / "domains.json").read_text())
    assert set(record["domains"]) == {"real", "synthetic"}
    assert record["domains"]["real"]["preset_um"] != record["domains"]["synthetic"]["preset_um"]
    s2r = json.loads((domains / "datalist_s2r.json").read_text())
    r2s = json.loads((domains / "datalist_r2s.json").read_text())
    assert {len(s2r[k]) for k in ("source", "target")} == {4} and len(s2r["validation"]) == 2
    assert s2r["source"][0]["image"].startswith("synthetic/") and s2r["target"][0]["image"].startswith("real/")
    assert "label" not in s2r["target"][0]
    assert r2s["source"][0]["image"].startswith("real/") and r2s["target"][0]["image"].startswith("synthetic/")
    assert not {i["image"] for i in s2r["source"]} & {i["image"] for i in s2r["validation"] + s2r["test"]}
    # model selection reads source pairs only (issue 13): no target label before the test
    assert all(i["image"].startswith("synthetic/validation/") for i in s2r["validation"])
    assert all(i["image"].startswith("real/test/") for i in s2r["test"])


@pytest.mark.parametrize(
    "config,kind", [("train.json", "train"), ("inference.json", "infer"), ("evaluate.json", "eval")]
)
def test_configs_have_the_required_properties(domains, tmp_path, config, kind):
    out = {"output_dir": str(tmp_path / "out")}
    if kind == "infer":
        ckpt = _random_checkpoint(tmp_path / "model.pt")
        wf = workflow(config, kind, dataset_dir=str(domains / "real" / "test"), ckpt_path=str(ckpt), **out)
    elif kind == "train":
        wf = workflow(config, kind, dataset_dir=str(domains), ckpt_dir=str(tmp_path / "ckpt"), **out, **TINY)
    else:
        wf = workflow(config, kind, dataset_dir=str(domains), **out)
    wf.initialize()
    assert wf.check_properties() == []


def test_metadata_passes_the_model_zoo_schema():
    if not SCHEMA.is_file():
        pytest.skip("shared/ (the MONAI metadata schema) is not beside the clone")
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert set(meta["network_data_format"]["inputs"]) == {"image"}
    assert set(meta["network_data_format"]["outputs"]) == {"pred"}
    assert meta["version"] in meta["changelog"]


def test_network_matches_its_metadata():
    load_bundle_scripts()
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        bundle_root=str(BUNDLE),
    )


def test_adversarial_training_on_both_domains_checkpoints_and_resumes(domains, tmp_path):
    S = load_bundle_scripts()
    ckpt = tmp_path / "run"
    _, trainer = train(domains, ckpt, max_epochs=1)
    out = trainer.state.output
    for key in ("loss", "d_loss", "d_loss_align", "d_loss_image", "loss_rec", "loss_adv", "loss_align", "loss_kl"):
        assert math.isfinite(out[key]), key
    assert trainer.state.epoch == 1
    assert sorted(p.name for p in ckpt.glob("*.pt")) == ["checkpoint_epoch=1.pt", "model.pt", "model_final.pt"]

    # the best-on-source-validation weights reload into a fresh CPCE-2D and reproduce the trained network
    net = S.networks.CPCE2D(residual=True)  # train.json's default network
    net.load_state_dict(torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True))
    full = torch.load(ckpt / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=True)
    parts = ("model", "mask_encoder", "align_discriminator", "image_discriminator", "optimizer", "d_optimizer")
    assert set(full) == {*parts, "trainer"}
    assert full["trainer"]["iteration"] == trainer.state.epoch_length  # one epoch done
    x = torch.rand(1, 1, 32, 32)
    trained = trainer.network.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), trained(x))

    # resume: the same command with more epochs continues from epoch 1
    _, resumed = train(domains, ckpt, max_epochs=2)
    assert resumed.state.epoch == 2 and resumed.state.iteration == 2 * resumed.state.epoch_length
    assert sorted(p.name for p in ckpt.glob("checkpoint_*.pt")) == ["checkpoint_epoch=2.pt"]
    second = torch.load(ckpt / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=True)
    assert second["trainer"]["iteration"] == 2 * resumed.state.epoch_length
    assert not torch.equal(second["model"]["conv1.weight"], full["model"]["conv1.weight"])


def test_baseline_switch_trains_plain_cpce_with_the_same_code(domains, tmp_path):
    _, trainer = train(domains, tmp_path / "baseline", max_epochs=1, baseline=True, resume=False)
    out = trainer.state.output
    assert math.isfinite(out["loss"]) and math.isfinite(out["loss_rec"])
    assert out["d_loss"] == 0.0 and "loss_adv" not in out and "loss_align" not in out
    assert not trainer.align and not trainer.adversarial
    assert "target" not in trainer.data_loader.dataset[0]


def test_fixed_rfm_weighting_switch_and_an_unlabelled_hu_target_folder(domains, tmp_path):
    import nibabel as nib
    import pydicom.data

    target = tmp_path / "target_hu"
    target.mkdir()
    for k in range(2):
        src = nib.load(str(domains / "real" / "train" / f"{k:04d}_ldct.nii.gz"))
        hu = (np.asarray(src.dataobj, dtype=np.float32) / 0.2059 - 1.0) * 1000.0
        nib.save(nib.Nifti1Image(hu, src.affine), str(target / f"{k}.nii.gz"))
    (target / "ct.dcm").write_bytes(Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes())
    wf, trainer = train(
        domains,
        tmp_path / "fixed",
        max_epochs=1,
        rfm_mode="fixed",
        loss_weighting="alignment",
        target_dir=str(target),
        target_unit="hu",
        val_interval=5,
    )
    out = trainer.state.output
    assert "loss_kl" not in out and 0.0 <= out["loss_align_weight"] <= 1.0 and math.isfinite(out["loss"])
    assert type(trainer.rfm).__name__ == "FixedRFM"
    dataset = trainer.data_loader.dataset
    assert len(dataset.target_data) == 3
    lo, hi = wf.parser.get_parsed_content("target_intensity_range")
    assert (lo, hi) == (-1024.0, 3072.0)
    assert 0.0 <= float(dataset[0]["target"].mean()) <= 0.5  # HU target scaled like the cm⁻¹ source


def test_training_stops_with_a_clear_message_without_vgg_weights(domains, tmp_path):
    wf = workflow(
        "train.json",
        "train",
        dataset_dir=str(domains),
        ckpt_dir=str(tmp_path),
        output_dir=str(tmp_path / "logs"),
        **{**TINY, "use_perceptual": True, "vgg_weights": str(tmp_path / "no_vgg19.pth")},
    )
    wf.initialize()
    with pytest.raises(Exception) as info:
        wf.run()
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    missing = [e for e in chain if isinstance(e, FileNotFoundError)]
    assert missing, chain
    assert "no_vgg19.pth" in str(missing[0]) and "--use_perceptual False" in str(missing[0])


def _random_checkpoint(path: Path) -> Path:
    S = load_bundle_scripts()
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(S.networks.CPCE2D().state_dict(), path)
    return path


def test_inference_without_weights_says_how_to_get_them(domains, tmp_path):
    data = str(domains / "real" / "test")
    wf = workflow(
        "inference.json", "infer", dataset_dir=data, ckpt_path=str(tmp_path / "x.pt"), output_dir=str(tmp_path / "o")
    )
    wf.initialize()
    with pytest.raises(Exception) as info:
        wf.run()
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, FileNotFoundError) and "Pass --ckpt_path FILE" in str(e) for e in chain), chain


def test_inference_keeps_shape_and_unit_and_needs_no_ldct_sim(domains, tmp_path):
    import nibabel as nib

    ckpt = _random_checkpoint(tmp_path / "models" / "model.pt")
    src = nib.load(str(domains / "real" / "test" / "0000_ldct.nii.gz"))
    mu = np.asarray(src.dataobj, dtype=np.float32)
    inputs = tmp_path / "in_hu"
    inputs.mkdir()
    nib.save(nib.Nifti1Image((mu / 0.2059 - 1.0) * 1000.0, src.affine), str(inputs / "slice.nii.gz"))
    nib.save(nib.Nifti1Image(np.stack([mu, mu], -1), src.affine), str(tmp_path / "volume_mu.nii.gz"))
    code = (
        "import sys; sys.modules['ldct_sim'] = None\n"  # importing ldct_sim now fails
        "from monai.bundle import run\n"
        "kw = dict(config_file='configs/inference.json', bundle_root='.', ckpt_path=sys.argv[1], logging_file=False)\n"
        "run(dataset_dir=sys.argv[2], output_dir=sys.argv[3], input_unit='hu', **kw)\n"
        "run(dataset_dir=sys.argv[4], output_dir=sys.argv[5], **kw)\n"
    )
    vol_dir = tmp_path / "in_mu"
    vol_dir.mkdir()
    (tmp_path / "volume_mu.nii.gz").rename(vol_dir / "volume_mu.nii.gz")
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, (ckpt, inputs, tmp_path / "out_hu", vol_dir, tmp_path / "out_mu"))],
        cwd=BUNDLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    hu = nib.load(str(tmp_path / "out_hu" / "slice_denoised.nii.gz")).get_fdata()
    assert hu.shape == (32, 32) and hu.min() >= -1024.0 - 1e-3 and hu.max() > -1024.0  # HU out for HU in
    vol = nib.load(str(tmp_path / "out_mu" / "volume_mu_denoised.nii.gz")).get_fdata()
    assert vol.shape == (32, 32, 2) and vol.max() < 1.0  # cm⁻¹ out for cm⁻¹ in
    np.testing.assert_allclose(vol[..., 0], vol[..., 1], atol=1e-6)
    # the same network on the same image gives the same values in both units
    np.testing.assert_allclose(hu, (vol[..., 0] / 0.2059 - 1.0) * 1000.0, atol=0.05)


def test_evaluate_writes_table_1_with_stated_conventions(domains, tmp_path):
    runs = tmp_path / "runs"
    _random_checkpoint(runs / "s2r_adaptive_rfm" / "model.pt")
    wf = workflow(
        "evaluate.json", None, dataset_dir=str(domains), runs_dir=str(runs), output_dir=str(tmp_path / "eval")
    )
    wf.initialize()
    wf.run()
    table = (tmp_path / "eval" / "table.md").read_text(encoding="utf-8")
    assert "PSNR (dB), full range [-1024, 3072] HU, peak 4096 HU, mean ± std" in table
    assert "PSNR (dB), window [-160, 240] HU, peak 400 HU, mean ± std" in table
    assert "SSIM, window [-160, 240] HU, data range 400 HU" in table
    lines = table.splitlines()
    assert lines[0] == "| | LDCT | CPCE | CPCE + fixed RFM alignment (ablation) | CPCE + adaptive RFM alignment |"
    assert any(line.startswith("| S→R |") and line.endswith(" |") and "–" in line for line in lines)
    with open(tmp_path / "eval" / "table.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    methods = {(r["direction"], r["method"]) for r in rows}
    assert methods == {("S→R", "LDCT"), ("R→S", "LDCT"), ("S→R", "CPCE + adaptive RFM alignment")}
    assert all(math.isfinite(float(r["mean"])) and int(r["n_images"]) == 2 for r in rows)

    # the standard single-model evaluator of the same config agrees with the table
    single = workflow(
        "evaluate.json",
        None,
        run_id="evaluate_model",
        dataset_dir=str(domains),
        ckpt_path=str(runs / "s2r_adaptive_rfm" / "model.pt"),
        output_dir=str(tmp_path / "eval_single"),
    )
    single.initialize()
    single.run()
    metrics = single.parser.get_parsed_content("evaluator").state.metrics
    by_metric = {r["metric"]: float(r["mean"]) for r in rows if r["method"] == "CPCE + adaptive RFM alignment"}
    assert math.isclose(metrics["ssim_window"], by_metric["ssim_window"], rel_tol=1e-4)
    assert (tmp_path / "eval_single" / "metrics.csv").is_file()


def test_training_unit_checks_name_their_own_override_and_can_be_forced():
    """A source pair checked against ``--input_unit``, an unlabelled target against ``--target_unit``;
    ``--check_unit false`` turns both checks off, as in inference (HU water is 0: it looks like μ)."""
    load_bundle_scripts()
    from monai.bundle import ConfigParser

    hu_slice = {"image": torch.full((1, 32, 32), 40.0)}
    hu_slice["image"][0, :8] = -1000.0  # air and soft tissue in HU
    for check_unit, expect_error in ((True, True), (False, False)):
        parser = ConfigParser()
        parser.read_config(str(BUNDLE / "configs" / "train.json"))
        parser["check_unit"] = check_unit
        for path, flag in (("train#preprocessing#transforms#2", "--input_unit hu"),
                           ("train#target_preprocessing#transforms#2", "--target_unit hu")):
            check = parser.get_parsed_content(path)
            data = {"image": hu_slice["image"].clone(), "label": hu_slice["image"].clone()}
            if expect_error:
                with pytest.raises(ValueError, match=flag):
                    check(data)
            else:
                check(data)
