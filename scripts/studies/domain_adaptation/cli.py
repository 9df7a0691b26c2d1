"""The study's command line: parse, resolve, run, and exit with a status that says what happened."""

from __future__ import annotations

import logging
import signal

from ldct_scripts.cli import parse_kebab
from ldct_scripts.studies.engine import StudyError

from .config import build_parser, resolve_config
from .real import RealTargetStudy
from .study import DomainAdaptationStudy

__all__ = ["main"]

log = logging.getLogger("study")


def main(argv: list[str] | None = None) -> int:
    """Run the study; returns 0 on success, 1 when a unit failed, 2 on bad options, 130 when interrupted.

    Bad options (an unknown stage, direction or method; a missing ``--vgg-weights`` or real folder; with
    ``--preset real``, a results folder inside the repository) stop it with exit status 2 before anything is written.

    Args:
        argv: the arguments (``--kebab-case``; the old ``--snake_case`` spellings are read too); default ``sys.argv[1:]``.
    """
    parser = build_parser()
    args = parse_kebab(parser, argv)
    try:
        config = resolve_config(args)
    except ValueError as err:
        parser.error(str(err))
    study = (RealTargetStudy if config.real else DomainAdaptationStudy)(config)

    def _terminate(signum, frame):  # `kill PID`: stop the running bundle command too, then exit
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        study.run()
    except StudyError as err:
        log.error("study stopped: %s", err)
        log.error("fix the cause and run the same command again: finished units are kept.")
        return 1
    except KeyboardInterrupt:  # the running bundle command got the Ctrl-C too, and saved its checkpoint
        log.error("interrupted; run the same command again to continue (finished units are kept; an interrupted "
                  "training resumes from its last checkpoint).")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("report at %s", study.root / "report.md")
    return 0
