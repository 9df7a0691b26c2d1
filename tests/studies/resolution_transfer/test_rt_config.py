"""The resolution-transfer study's options: presets (``presets.json``) and the seed's numbers (``seed.json``),
checked overrides whose errors name the option, the old spellings, a split ``ldct_sim`` keeps stable."""

import re

import pytest

from ldct_scripts.studies import resolution_transfer as rt
from ldct_scripts.studies.resolution_transfer import config


def _config(tmp_path, *extra):
    args = rt.build_parser().parse_args(["--results-dir", str(tmp_path), "--preset", "smoke", *extra])
    return rt.resolve_config(args)


def test_presets_resolve_to_the_seed_proportions_and_sizes(tmp_path):
    paper = _config(tmp_path, "--preset", "paper")
    assert (paper.phantoms, paper.n_pixels, paper.iterations, paper.batch_size, paper.patch_size) == (3000, 512, 50000, 4, 512)
    assert paper.resolutions == rt.ALL_RESOLUTIONS and paper.fractions == (0.05, 0.10, 0.15, 0.20, 0.25, 0.30)
    assert paper.lr_decay_steps == 20000 and paper.finetune_iterations == 7000  # the bundle's own defaults
    assert [round(s / sum(paper.split), 12) for s in paper.split] == [0.8, 0.1, 0.1]  # 2400:300:300
    small = _config(tmp_path, "--preset", "small", "--n-pixels", "96", "--iterations", "300", "--fractions", "0.2,0.1")
    assert small.n_pixels == 96 and small.iterations == 300 and small.lr_decay_steps == 120 and small.fractions == (0.1, 0.2)
    smoke = _config(tmp_path, "--stages", "report,data", "--resolutions", "625,62.5")
    assert smoke.stages == ("data", "report") and smoke.resolutions == (62.5, 625.0) and smoke.report_rows == (62.5, 625.0)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--stages", "data,plot"], "--stages"),
        (["--resolutions", "100"], "not a Table 1 system"),
        (["--iterations", "5", "--val-interval", "2"], "multiple of `--val-interval`"),
        (["--patch-size", "64"], "must not exceed `--n-pixels`"),
        (["--fractions", "0.5,1.5"], "--fractions"),
        (["--n-test", "0"], "positive integers"),
        (["--early-stop-patience", "-1"], "`--early-stop-patience` must be a non-negative integer"),
        (["--source", "/no/such/folder"], "does not exist"),
    ],
)
def test_bad_options_name_the_option(tmp_path, extra, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _config(tmp_path, *extra)


def test_the_old_snake_case_spellings_are_still_read(tmp_path, capsys):
    from ldct_scripts.cli import parse_kebab

    args = parse_kebab(rt.build_parser(), ["--results_dir", str(tmp_path), "--n_pixels", "48", "--preset=small"])
    assert (args.results_dir, args.n_pixels, args.preset) == (str(tmp_path), 48, "small")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    with pytest.raises(SystemExit) as exit_:
        rt.main(["--results_dir", str(afile)])
    assert exit_.value.code == 2 and f"argument --results-dir: {str(afile)!r} is a file" in capsys.readouterr().err
    assert "--n_pixels" not in rt.build_parser().format_help()  # one spelling shown: --n-pixels


def test_split_counts_become_proportions_ldct_sim_keeps_stable():
    from ldct_sim.dataset import DatasetConfig

    for counts in [(8, 2, 2), (80, 10, 10), (7, 3, 3), (2400, 300, 300)]:
        split = rt.stable_split(counts)
        a = DatasetConfig(resolutions=(625,), split=split)
        b = DatasetConfig(resolutions=(625,), split=a.split)  # what `ldct_sim datalist` rebuilds from the inventory
        assert a.fingerprint(625) == b.fingerprint(625)
        assert [round(s * sum(counts)) for s in a.split] == list(counts)


def test_presets_and_seed_numbers_are_data_files():
    assert config.PRESETS["smoke"]["resolutions"] == (62.5, 625.0) and config.PRESETS["paper"]["threads"] is None
    assert set(config.PRESETS) == {"smoke", "small", "paper"}
    assert config.SEED["table3"][625.0][0] == (37.06, 1.01) and config.SEED["retrain"]["nrmse"] == (0.1898, 0.1263)
    assert config.SEED["retrain_steps"][0.3] == 7000 and config.ALL_RESOLUTIONS == (62.5, 125.0, 250.0, 375.0, 500.0, 625.0)
