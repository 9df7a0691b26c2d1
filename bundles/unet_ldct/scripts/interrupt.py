# Generated from bundles/common/interrupt.py by `python bundles/common/sync.py`: edit it there, not here.
"""Ctrl-C during training: stop at the end of the iteration, save a resumable checkpoint, say how to resume.

Needs only ignite and the standard library.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from ignite.engine import Engine, Events

from .helpers import latest_checkpoint

__all__ = ["StopOnInterrupt", "exit_if_interrupted", "resume_command", "EXIT_INTERRUPTED"]

#: Exit status of a run stopped by Ctrl-C: 128 + SIGINT, the shell's convention.
EXIT_INTERRUPTED = 130

_pending_exit: int | None = None  # set by StopOnInterrupt.run when the run was interrupted


def exit_if_interrupted() -> None:
    """End the process with status 130 if a :class:`StopOnInterrupt` run was interrupted; else do nothing.

    The configs' last ``finalize`` step. A module function, so that the step instantiates nothing (a
    config merged on ``train.json`` that runs something else, such as ``evaluate.json``, keeps it).
    """
    global _pending_exit
    code, _pending_exit = _pending_exit, None
    if code is not None:
        raise SystemExit(code)


def resume_command(argv: Sequence[str] | None = None, resume_on: bool = True) -> str | None:
    """The command that resumes a ``python -m monai.bundle run ...`` training, or ``None`` if this is not one.

    It is the command that started this process (``sys.argv`` by default), with any ``--resume`` option
    removed, plus ``--resume true`` when the run had resuming off (``resume_on=False``).
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv or os.path.normpath(argv[0]).split(os.sep)[-2:] != ["bundle", "__main__.py"]:
        return None  # not started as `python -m monai.bundle` (the Python API, a test, a notebook)
    args, i = [], 1
    while i < len(argv):
        a = argv[i]
        if a == "--resume":
            i += 2
            continue
        if a.startswith("--resume="):
            i += 1
            continue
        args.append(a)
        i += 1
    if not resume_on:
        args += ["--resume", "true"]
    return shlex.join(["python", "-m", "monai.bundle", *args])


class StopOnInterrupt:
    """Ctrl-C (SIGINT) during training stops it cleanly, with a resumable checkpoint and a one-line message.

    Use :meth:`run` as the config's ``run`` (``"$@train#interrupt.run(@train#trainer)"``) and
    :func:`exit_if_interrupted` as the last ``finalize`` step. While the trainer runs (in the main
    thread), the first Ctrl-C asks the trainer to stop after the iteration in progress (a validation in
    progress stops at its next image, its metrics discarded); the trainer then writes its resumable
    checkpoint at that iteration, so that no finished iteration is lost and the file holds a consistent
    state (never one taken half-way through an optimiser step). :meth:`run` then prints one line to
    stderr naming that checkpoint and the command that resumes from it, and :func:`exit_if_interrupted`
    ends the process with status 130, without a traceback. A second Ctrl-C stops at once: the message
    then names the newest checkpoint already on disk.

    With several processes (``torch.distributed``) the ranks agree on the stop each iteration (one
    all-reduce of a flag), so that all stop after the same iteration; validation then finishes first.
    Data-loader workers forked while the trainer runs ignore the signal (the main process decides).

    Args:
        checkpoint: what writes the resumable checkpoint at the iteration where training stopped: an object
            with ``save_now(engine) -> path`` (``checkpoints.TrainingCheckpoint``). ``None``: only report.
        ckpt_dir: folder of the resumable checkpoints, searched for the newest when none was written now.
        evaluators: validation engines the trainer runs; they stop at their next iteration too.
        resume: the run's ``resume`` setting; when false the resume command gains ``--resume true``.
        exit_code: exit status after an interrupt. Default 130.
    """

    def __init__(self, checkpoint=None, ckpt_dir: str | None = None, evaluators: Sequence[Engine] | Engine | None = None,
                 resume: bool = True, exit_code: int = EXIT_INTERRUPTED) -> None:
        if checkpoint is not None and not callable(getattr(checkpoint, "save_now", None)):
            raise TypeError(f"StopOnInterrupt: `checkpoint` must have save_now(engine), got {type(checkpoint).__name__}.")
        if isinstance(evaluators, Engine):
            evaluators = [evaluators]
        self.checkpoint = checkpoint
        self.ckpt_dir = None if ckpt_dir is None else os.fspath(ckpt_dir)
        self.evaluators = [e for e in (evaluators or []) if e is not None]
        self.resume = bool(resume)
        self.exit_code = int(exit_code)
        self.requested = False  # a stop was asked for (Ctrl-C seen)
        self.interrupted = False  # the run ended because of it
        self.saved_path: str | None = None  # the checkpoint written at the stop
        self.message: str | None = None
        self._attached: set[int] = set()
        self._pid = os.getpid()

    # ---- ignite wiring ----------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        if id(engine) in self._attached:
            return
        self._attached.add(id(engine))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._check)  # Ctrl-C during an end-of-epoch validation
        engine.add_event_handler(Events.TERMINATE, self._on_terminate)
        for ev in self.evaluators:
            ev.add_event_handler(Events.ITERATION_COMPLETED, self._check_evaluator)

    @staticmethod
    def _world_size() -> int:
        try:
            import torch.distributed as dist

            return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        except Exception:  # noqa: BLE001 - no usable torch.distributed: one process
            return 1

    def _check(self, engine: Engine) -> None:
        stop = self.requested
        if self._world_size() > 1:  # every rank must stop after the same iteration, or DDP hangs
            import ignite.distributed as idist

            stop = bool(idist.all_reduce(int(stop), op="MAX"))
        if stop:
            self.requested = True
            engine.terminate(skip_completed=True)

    def _check_evaluator(self, engine: Engine) -> None:
        if self.requested and self._world_size() == 1:  # several ranks: let validation finish in step
            engine.terminate(skip_completed=True)

    def _on_terminate(self, engine: Engine) -> None:
        if self.requested:  # not an early stop
            self.interrupted = True
            self.saved_path = self._save(engine)

    def _save(self, engine: Engine) -> str | None:
        path = None if self.checkpoint is None else self.checkpoint.save_now(engine)
        return None if path is None else os.fspath(path)

    # ---- the run --------------------------------------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:
        if os.getpid() != self._pid:  # a forked data-loader worker: the main process decides
            return
        if self.requested:  # the second Ctrl-C: stop at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write("\nCtrl-C: stopping after this iteration and saving a checkpoint (press Ctrl-C again to stop "
                         "at once).\n")
        sys.stderr.flush()

    def run(self, engine: Engine):
        """Run ``engine`` (``engine.run()``) with Ctrl-C handled as described above; returns its state."""
        self.attach(engine)
        self.requested = self.interrupted = False
        self.saved_path = self.message = None
        previous = None
        # Only the main thread may set handlers; a SIGINT ignored by the parent (a background job) stays ignored.
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._pid = os.getpid()
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        hide = _HideInterruptTraceback()
        handlers = _log_handlers()
        for h in handlers:
            h.addFilter(hide)
        try:
            engine.run()
        except KeyboardInterrupt:  # a second Ctrl-C
            self.requested = self.interrupted = True
        finally:
            for h in handlers:
                h.removeFilter(hide)
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self.interrupted:
            global _pending_exit
            _pending_exit = self.exit_code
            self.message = self._message(engine)
            sys.stderr.write("\n" + self.message + "\n")
            sys.stderr.flush()
        return engine.state

    def _message(self, engine: Engine) -> str:
        path = self.saved_path or latest_checkpoint(self.ckpt_dir)
        where = f"iteration {engine.state.iteration} (epoch {engine.state.epoch})"
        cmd = resume_command(resume_on=self.resume)
        if self._world_size() > 1:
            how = "run the same torchrun command again" + ("" if self.resume else " with --resume true")
        elif cmd is not None:
            how = f"run: {cmd}"
        else:
            how = "start the same workflow again" + (" (resume is on)" if self.resume else " with resume set to true")
        if path is None:
            return f"Training interrupted at {where}; no checkpoint was saved yet, so a new run starts from the beginning."
        return f"Training interrupted at {where}; last checkpoint: {os.path.abspath(path)}; to resume from it, {how}"


def _log_handlers() -> list[logging.Handler]:
    """Every handler of every logger (MONAI's StatsHandler logs through its own, not the root's)."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    out: list[logging.Handler] = []
    for lg in loggers:
        out.extend(h for h in lg.handlers if h not in out)
    return out


class _HideInterruptTraceback(logging.Filter):
    """Drops log records that carry a ``KeyboardInterrupt`` traceback (MONAI's StatsHandler logs every
    exception of an engine) or report it (ignite's "terminating due to exception" line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[0] if record.exc_info else None
        if exc is not None and issubclass(exc, KeyboardInterrupt):
            return False
        msg = str(record.msg)
        return not (record.name.startswith("ignite.") and "terminating due to exception" in msg and msg.rstrip().endswith(":"))
