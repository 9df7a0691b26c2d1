"""``ldct_scripts.cli``: the project's command lines are ``--kebab-case``; the old ``--snake_case`` spellings of
the same options are still read (not shown in ``--help``), and nothing else is rewritten."""

import argparse

import pytest

from ldct_scripts.cli import kebab_argv, parse_kebab


def test_only_known_options_are_respelled():
    known = ["--results-dir", "--n-pixels"]
    argv = ["--results_dir", "r_1", "--n_pixels=96", "--other_opt", "x", "--config_file", "a_b.json", "-n_x"]
    assert kebab_argv(argv, known) == ["--results-dir", "r_1", "--n-pixels=96", "--other_opt", "x", "--config_file",
                                       "a_b.json", "-n_x"]


def test_parse_kebab_reads_both_spellings_and_refuses_unknown_ones(capsys):
    p = argparse.ArgumentParser()
    p.add_argument("--output-dir")
    p.add_argument("--check-shape", type=int, nargs="+", action="append")
    args = parse_kebab(p, ["--output_dir", "o", "--check_shape", "1", "2", "--check-shape", "3"])
    assert args.output_dir == "o" and args.check_shape == [[1, 2], [3]]
    with pytest.raises(SystemExit):
        parse_kebab(p, ["--no_such_option", "1"])
    assert "unrecognized arguments: --no_such_option" in capsys.readouterr().err
