"""Expensive test fixtures built once per test session, also across pytest-xdist workers."""

import os
import shutil
from pathlib import Path


def once_per_session(tmp_path_factory, name: str, make) -> Path:
    """``make(folder)`` once per test session, also across pytest-xdist workers (shared folder + file lock)."""
    from filelock import FileLock  # a dependency of torch

    base = tmp_path_factory.getbasetemp()
    base = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = base / name
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".done").touch()
    return folder
