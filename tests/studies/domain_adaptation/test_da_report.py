"""The cross-domain study's reports: every slot of both templates is filled, the real report reads its table and
the adaptive run's mask report, and states the selection rule and the seed's claim."""

import json
import types

from ldct_scripts.studies.domain_adaptation import PRESETS, REAL_METHODS, report
from ldct_scripts.studies.domain_adaptation.config import CPCE_BUNDLE, SELECTION_RULE, Config


def _study(tmp_path, preset):
    sizes = PRESETS[preset]
    cfg = Config(results_dir=str(tmp_path), preset=preset, stages=("report",), directions=("s2r",),
                 methods=tuple(REAL_METHODS), unet=False, vgg_weights=None, lambda_adv=1.0, lambda_align=1.0,
                 val_interval=1, seed=0, device="cpu", real_dir=str(tmp_path / "real"), patches_per_epoch=384, **sizes)
    return types.SimpleNamespace(cfg=cfg, root=tmp_path, state_dir=tmp_path / "state", tables=tmp_path / "tables",
                                 figures=tmp_path / "figures")


def _row(method, rmse, psnr):
    return {"kernel": "B30f", "n_pairs": "3", "method": method, "rmse_body_mean": str(rmse), "rmse_body_sd": "1.0",
            "psnr_body_mean": str(psnr), "psnr_body_sd": "0.5", "ssim_body_mean": "0.9", "ssim_body_sd": "0.01"}


def test_real_report_states_rule_table_reading_and_mask(tmp_path):
    study = _study(tmp_path, "real")
    mask = tmp_path / "runs" / "s2r_adaptive" / "mask_report.json"
    mask.parent.mkdir(parents=True)
    side = {"source": {"mean": [0.5]}, "target": {"mean": [0.5]}, "max_domain_gap": 0.0, "max_sd_over_images": 0.0,
            "adaptive_mask": False}
    mask.write_text(json.dumps({"before": side, "after": side}))
    rows = [_row("low-dose input", 30.0, 40.0), _row(REAL_METHODS["baseline"][0], 20.0, 43.0),
            _row(REAL_METHODS["adaptive"][0], 19.0, 43.4)]
    r2s = [_row("low-dose input", 40.0, 38.0), _row(REAL_METHODS["baseline"][0], 20.0, 44.0),
           _row(REAL_METHODS["adaptive"][0], 21.0, 43.5)]
    outputs, _ = report.write_real_report(study, {"s2r": rows, "r2s": r2s})
    text = (tmp_path / "report.md").read_text()
    assert outputs["files"] == [str(tmp_path / "report.md")] and "${" not in text
    assert text.index("## S→R on the 15 shared") < text.index("## R→S on the simulated pairs of L067 and L109")
    assert "-0.50 dB body PSNR, +1.0 HU body RMSE (seed B claims +4.6 dB R→S)" in text  # 40.92 − 36.31 dB
    assert text.count("- (no adaptive run)") == 1  # only S→R's adaptive run left a mask report
    assert f"Selection rule: {SELECTION_RULE}." in text and "8 epochs × 384 patches of 64² (batch 16)" in text
    assert "| B30f | 3 | CPCE + adaptive RFM alignment | 19.0 ± 1.0 |" in text
    assert "+0.40 dB body PSNR, -1.0 HU body RMSE (seed B claims +3.7 dB S→R)" in text
    assert "- after adaptation: mean keep-probability source 0.500" in text and "not adaptive" in text
    assert '"preset": "real"' in text
    adapt = json.loads((CPCE_BUNDLE / "configs" / "adapt.json").read_text())
    assert f"λ_adv = {adapt['lambda_adv']:g} and λ_align = {adapt['lambda_align']:g} (`configs/adapt.json`)" in text


def test_simulated_report_template_has_every_slot(tmp_path):
    text = report.fill("report.md.in", {k: f"<{k}>" for k in ("preset", "commit", "dirty", "table", "perceptual",
                                                               "seed_table", "reading", "figures", "argv", "settings")})
    assert "${" not in text and "Preset `<preset>`" in text and "<seed_table>" in text
