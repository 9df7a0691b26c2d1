"""The study's command line: parse, resolve, run, and exit with a status that says what happened."""

from __future__ import annotations

from ldct_scripts.studies.engine import study_main

from .config import build_parser, resolve_config
from .real import RealTargetStudy
from .study import DomainAdaptationStudy

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the study; returns 0 on success, 1 when a unit failed, 2 on bad options, 130 when interrupted.

    Bad options (an unknown stage, direction or method; a missing ``--vgg-weights`` or real folder; with
    ``--preset real``, a results folder inside the repository) stop it with exit status 2 before anything is written.

    Args:
        argv: the arguments (``--kebab-case``; the old ``--snake_case`` spellings are read too); default ``sys.argv[1:]``.
    """
    return study_main(build_parser, resolve_config,
                      lambda config: (RealTargetStudy if config.real else DomainAdaptationStudy)(config), argv)
