"""One style for the project's command lines: ``--kebab-case`` options, as ``python -m ldct_sim`` has.

The study runners used ``--snake_case`` before; :func:`parse_kebab` still reads those spellings (they are
not shown in ``--help``), so old commands keep working. Bundle overrides are config keys, not options, and
are never rewritten.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["kebab_argv", "parse_kebab"]


def kebab_argv(argv: Sequence[str], known: Sequence[str]) -> list[str]:
    """``argv`` with ``--snake_case`` option names spelled ``--kebab-case`` where that spelling is known.

    Args:
        argv: the command-line arguments (without the program name).
        known: the parser's option strings (``--results-dir``, ...).

    Example:
        >>> kebab_argv(["--results_dir", "r", "--n_pixels=96", "--x_y"], ["--results-dir", "--n-pixels"])
        ['--results-dir', 'r', '--n-pixels=96', '--x_y']
    """
    known = set(known)
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        kebab = name.replace("_", "-")
        out.append(kebab + eq + value if name.startswith("--") and "_" in name and kebab in known else arg)
    return out


def parse_kebab(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, reading the old ``--snake_case`` spellings of its ``--kebab-case`` options.

    Args:
        parser: a parser whose options are spelled ``--kebab-case``.
        argv: the arguments; default ``sys.argv[1:]``.
    """
    import sys

    known = [s for action in parser._actions for s in action.option_strings]  # argparse has no public list
    return parser.parse_args(kebab_argv(sys.argv[1:] if argv is None else argv, known))
