"""One run per results folder: an exclusive lock on ``<folder>/.lock`` (the ``filelock`` package)."""

from __future__ import annotations

from pathlib import Path

import filelock

from .errors import StudyError

__all__ = ["ResultsLock"]


class ResultsLock:
    """An exclusive lock on a results folder (``<folder>/.lock``), so two runs never write into one folder at once.

    ``filelock.FileLock`` locks with ``flock`` on POSIX (``msvcrt`` on Windows), which the operating system
    releases when the process ends, however it ends. The lock is not waited for: a second run stops at once.

    Args:
        folder: the results folder (created when missing).

    Raises:
        StudyError: another process (or another ``ResultsLock`` in this one) holds the lock, on entering the
            ``with`` block.
    """

    def __init__(self, folder):
        self.path = Path(folder) / ".lock"
        self._lock = filelock.FileLock(self.path, timeout=0)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise StudyError(f"another run is using {self.path.parent} (it holds {self.path}); wait for it or stop it.") from None
        return self

    def __exit__(self, *exc):
        self._lock.release()
        return False
