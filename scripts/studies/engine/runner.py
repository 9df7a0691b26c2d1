"""Running a study's commands: a subprocess logged to a file, and the ``monai.bundle run`` argument list."""

from __future__ import annotations

import codecs
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ldct_scripts.cli import parse_kebab

from .errors import StudyError

__all__ = ["run_logged", "bundle_command", "run_study"]


def _split_lines(buffer: str) -> tuple[list[str], str]:
    """Complete lines of ``buffer`` (split on ``\\n`` and on the ``\\r`` of progress bars) and the rest."""
    parts = buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return parts[:-1], parts[-1]


def run_logged(
    argv: Sequence[str],
    log_path,
    *,
    cwd=None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 40,
) -> float:
    """Run ``argv``, appending its stdout and stderr (merged) to ``log_path``; returns the seconds it took.

    The log gets a header with the time, folder and command, so a resumed unit's log shows every
    attempt. On Linux the child is killed when the study dies (``prctl(PR_SET_PDEATHSIG)``), so a
    restarted study never races an orphaned training.

    Args:
        argv: the command.
        log_path: the log file (appended to; parents created).
        cwd: the command's working folder; default this process's.
        env: the command's environment; default this process's.
        on_line: called with each output line (``\\r``-separated progress updates count as lines) as it arrives.
        tail_lines: how many last lines an error message quotes.

    Raises:
        StudyError: the command is not found or exits with a non-zero status; the message holds the
            command, the status, the log's path and its last ``tail_lines`` lines.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(a) for a in argv]
    started = time.time()
    tail: list[str] = []
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} cwd={cwd or os.getcwd()}\n===== $ "
                  + " ".join(_quote(a) for a in argv) + "\n")
        log.flush()
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=dict(env) if env is not None else None, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        except OSError as err:
            raise StudyError(f"could not start {argv[0]!r}: {err}") from err
        buffer = ""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = proc.stdout.fileno()
        try:
            while True:
                data = os.read(fd, 65536)  # returns what the pipe holds: lines reach on_line as they come
                chunk = decoder.decode(data, final=not data)
                if not data:
                    break
                log.write(chunk)
                log.flush()
                lines, buffer = _split_lines(buffer + chunk)
                for line in lines:
                    if line.strip():
                        tail = (tail + [line])[-tail_lines:]
                        if on_line is not None:
                            on_line(line)
            if buffer.strip():
                tail = (tail + [buffer])[-tail_lines:]
                if on_line is not None:
                    on_line(buffer)
            proc.stdout.close()
            rc = proc.wait()
        except BaseException:
            proc.kill()  # our own child: do not leave it running when we are interrupted
            proc.wait()
            raise
        log.write(("\n" if buffer else "") + f"===== exit status {rc} after {time.time() - started:.1f} s\n")
    if rc != 0:
        raise StudyError(
            f"command failed with exit status {rc}: {' '.join(_quote(a) for a in argv)}\n"
            f"log: {log_path}\n--- last lines ---\n" + "\n".join(tail)
        )
    return time.time() - started


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this child when the study dies, even by ``kill -9``: a restarted study must not
    meet an orphaned training still writing into the same folder (``prctl(PR_SET_PDEATHSIG)``)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort; without it a killed study may leave its child running
        pass


def _quote(arg: str) -> str:
    return shlex.quote(arg)


def _override_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def bundle_command(config_files: Sequence, overrides: Mapping[str, object], python: str = sys.executable) -> list[str]:
    """``python -m monai.bundle run`` arguments for ``config_files`` (merged in order) and ``overrides``.

    Args:
        config_files: config paths; several are passed as a list, which ``monai.bundle`` merges in order.
        overrides: ``{key: value}`` passed as ``--key value``; ``None`` values are left out, booleans become
            ``true``/``false`` (the U-Net bundle's configs read them with ``to_bool``).

    Example:
        >>> bundle_command(["configs/train.json"], {"resolution": 62.5, "amp": False, "device": None}, python="python")
        ['python', '-m', 'monai.bundle', 'run', '--config_file', 'configs/train.json', '--resolution', '62.5', '--amp', 'false']
    """
    files = [str(f) for f in config_files]
    spec = files[0] if len(files) == 1 else "[" + ",".join(repr(f) for f in files) + "]"
    argv = [python, "-m", "monai.bundle", "run", "--config_file", spec]
    for key, value in overrides.items():
        if value is not None:
            argv += [f"--{key}", _override_value(value)]
    return argv


def run_study(study) -> int:
    """Run ``study.run()`` as a command line does; returns its exit status.

    ``kill PID`` (SIGTERM) stops it like Ctrl-C: the running bundle command gets the signal too and saves its
    checkpoint. Status 0 on success (the report's path is logged when ``study.root/report.md`` exists), 1 when
    a unit failed (:class:`StudyError`), 130 when interrupted; finished units are kept either way.

    Args:
        study: an object with ``run()`` and a ``root`` folder (a study of :mod:`ldct_scripts.studies`).
    """
    log = logging.getLogger("study")

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        study.run()
    except StudyError as err:
        log.error("study stopped: %s", err)
        log.error("fix the cause and run the same command again: finished units are kept.")
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; run the same command again to continue (finished units are kept; an interrupted "
                  "training resumes from its last checkpoint).")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = Path(study.root) / "report.md"
    if report.is_file():
        log.info("report at %s", report)
    return 0


def study_main(build_parser: Callable, resolve_config: Callable, make_study: Callable, argv: Sequence[str] | None = None) -> int:
    """A study's command line: parse (``--kebab-case``, old ``--snake_case`` read too), resolve, run.

    Returns :func:`run_study`'s status; options that ``resolve_config`` rejects (``ValueError``) exit with
    status 2 through ``parser.error`` before anything is written.

    Args:
        build_parser: returns the study's ``argparse.ArgumentParser``.
        resolve_config: parsed arguments to the study's config (raises ``ValueError`` on bad options).
        make_study: the config to the study object to run.
        argv: the arguments; default ``sys.argv[1:]``.
    """
    parser = build_parser()
    args = parse_kebab(parser, argv)
    try:
        config = resolve_config(args)
    except ValueError as err:
        parser.error(str(err))
    return run_study(make_study(config))
