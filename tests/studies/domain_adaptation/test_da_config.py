"""The cross-domain study's options: presets (``presets.json``) and the seed's Table 1 (``seed.json``), the old
``--snake_case`` spellings, refusals that name the option before anything is written, the real target's guards."""

import pytest

from ldct_scripts import REPO
from ldct_scripts.cli import parse_kebab
from ldct_scripts.studies import domain_adaptation as da
from ldct_scripts.studies.domain_adaptation import cli


def _config(tmp_path, *extra):
    return da.resolve_config(parse_kebab(da.build_parser(), ["--results-dir", str(tmp_path / "r"), *extra]))


def _real_dir(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    for name in ("dev_pairs.npz", "normal_dose.npz"):
        (real / name).write_bytes(b"")
    return real


def test_presets_and_overrides_resolve(tmp_path):
    small = _config(tmp_path)  # the default preset
    assert (small.preset, small.n_pixels, small.max_epochs, small.val_interval) == ("small", 128, 40, 4)
    assert small.methods == ("baseline", "adaptive") and small.directions == ("s2r", "r2s") and small.unet
    assert small.stages == da.STAGES and small.vgg_weights is None
    smoke = _config(tmp_path, "--preset", "smoke", "--methods", "adaptive,fixed", "--directions", "r2s", "--no-unet",
                    "--stages", "report,data", "--n-pixels", "64", "--lambda-adv", "0.001")
    assert (smoke.n_pixels, smoke.n_train, smoke.val_interval, smoke.lambda_adv) == (64, 4, 1, 0.001)
    assert smoke.methods == ("adaptive", "fixed") and smoke.directions == ("r2s",) and not smoke.unet
    assert smoke.stages == ("data", "report")  # in the study's order
    assert _config(tmp_path, "--preset", "paper").n_views is None  # the domains' own default
    assert da.SEED["table1"]["psnr"]["S→R"]["Ours"] == "42.27±0.63" and da.SEED["s2r_gain_db"] == 3.7


def test_old_snake_case_spellings_still_work(tmp_path):
    c = _config(tmp_path, "--preset", "smoke", "--max_epochs", "3", "--lambda_align", "0.01", "--no_unet")
    assert (c.max_epochs, c.lambda_align, c.unet) == (3, 0.01, False)


@pytest.mark.parametrize("extra, message", [
    (["--methods", "baseline,cyclegan"], "unknown method ['cyclegan']"),
    (["--directions", "s2x"], "unknown direction ['s2x']"),
    (["--stages", "data,paint"], "unknown stage ['paint']"),
    (["--vgg-weights", "/nonexistent/vgg19.pth"], "--vgg-weights '/nonexistent/vgg19.pth' is not a file"),
])
def test_bad_options_are_named(tmp_path, extra, message):
    with pytest.raises(ValueError) as err:
        _config(tmp_path, "--preset", "smoke", *extra)
    assert message in str(err.value)


def test_real_preset_defaults_to_all_five_methods(tmp_path):
    c = _config(tmp_path, "--preset", "real", "--real-dir", str(_real_dir(tmp_path)))
    assert c.real and c.methods == tuple(da.REAL_METHODS) and c.directions == ("s2r", "r2s") and not c.unet
    assert c.stages == ("data", "train", "evaluate", "report") and (c.n_views, c.max_epochs, c.patches_per_epoch) == (576, 8, 384)


def test_real_target_refuses_a_missing_folder_and_results_inside_the_repository(tmp_path):
    real = _real_dir(tmp_path)
    with pytest.raises(ValueError, match="outside the repository"):
        da.check_real(real, REPO / "results_da_real")
    with pytest.raises(ValueError, match="lacks dev_pairs.npz"):
        da.check_real(tmp_path / "nowhere", tmp_path / "results")
    da.check_real(real, tmp_path / "results")  # outside: accepted


def test_refusals_exit_2_before_anything_is_written(tmp_path, capsys):
    base = ["--results-dir", str(tmp_path / "r"), "--preset", "real"]
    for extra, message in ((["--methods", "shipped,magic"], "magic"), (["--real-dir", str(tmp_path / "nowhere")], "dev_pairs.npz")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(base + extra)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
