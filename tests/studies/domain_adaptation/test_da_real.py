"""``--preset real``'s units without training: the plan, the U-Net's budget in source patches, and prerequisites that
stop the run with the stage to run named (the full run needs ``../shared/real_ldct`` and about 20 CPU minutes)."""

import json

import pytest

from ldct_scripts.cli import parse_kebab
from ldct_scripts.studies import domain_adaptation as da
from ldct_scripts.studies.domain_adaptation.config import PROFILE
from ldct_scripts.studies.engine import StudyError


@pytest.fixture
def study(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    for name in ("dev_pairs.npz", "normal_dose.npz"):
        (real / name).write_bytes(b"x")
    args = parse_kebab(da.build_parser(), ["--results-dir", str(tmp_path / "r"), "--preset", "real", "--real-dir", str(real),
                                           "--methods", "shipped,adaptive,unet"])
    return da.RealTargetStudy(da.resolve_config(args))


def test_plan_trains_every_method_but_the_shipped_weights(study):
    ids = [u.id for u in study.plan()]
    assert ids == ["data/real", "data/r2s", "train/s2r_adaptive", "train/s2r_unet", "train/r2s_adaptive", "train/r2s_unet",
                   "evaluate/s2r_shipped", "evaluate/s2r_adaptive", "evaluate/s2r_unet", "evaluate/table_s2r",
                   "evaluate/r2s_shipped", "evaluate/r2s_adaptive", "evaluate/r2s_unet", "evaluate/table_r2s",
                   "report/report"]


def test_unet_sees_the_cpce_number_of_source_patches(study):
    with pytest.raises(StudyError, match="run --stages data first"):
        study._iterations()
    datalist = study.data_dir / "source" / PROFILE / "datalist.json"
    datalist.parent.mkdir(parents=True)
    datalist.write_text(json.dumps({"training": [{"image": f"{i}.nii.gz"} for i in range(3)]}))
    # 8 epochs x 384 patches; the U-Net's loader yields min(batch 16, 3 slices) = 3 patches per iteration, and
    # validates once an "epoch": its train.json wants a whole number of validation intervals
    assert study._iterations() == (384 // 3) * 8 and study._real_settings("unet")["val_interval"] == 384 // 3
    # R→S: the real source's datalist (10 training pairs: 16 per iteration at most, so 384 // 10 iterations an epoch)
    with pytest.raises(StudyError, match="run --stages data first"):
        study._iterations("r2s")
    real = study.data_dir / "real_source" / "datalist.json"
    real.parent.mkdir(parents=True)
    real.write_text(json.dumps({"training": [{"image": f"{i}.nii.gz"} for i in range(10)]}))
    assert study._iterations("r2s") == (384 // 10) * 8
    assert study._real_settings("adaptive", "r2s")["target_unit"] == "mu" and "target_unit" not in study._real_settings("adaptive")


def test_training_before_the_data_stage_names_the_stage(study):
    with pytest.raises(StudyError, match=r"data/real is not done; run the study with --stages data first"):
        study.train_marker("s2r", "adaptive")
    with pytest.raises(StudyError, match=r"data/real is not done"):  # R→S's data needs S→R's simulation first
        study.train_marker("r2s", "adaptive")
