"""Provenance of outputs: the code version, package versions and time that made them.

Every file set that :mod:`ldct_sim` writes records :func:`provenance` so that a result can be traced to
the commit and environment that produced it.

Example:
    >>> from ldct_sim.provenance import provenance
    >>> sorted(provenance())
    ['git', 'packages', 'platform', 'python', 'timestamp']
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys

__all__ = ["provenance", "git_info", "package_versions"]

#: Distributions whose versions are recorded (distribution name -> import name for a fallback).
PACKAGES = {
    "torch": "torch",
    "monai": "monai",
    "numpy": "numpy",
    "astra-toolbox": "astra",
    "nibabel": "nibabel",
    "pydicom": "pydicom",
    "scipy": "scipy",
    "xraylib": "xraylib",
}


def _git(args: list[str], cwd: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(path: str | None = None) -> dict:
    """The git commit of the repository holding ``path`` (default: this package).

    Returns:
        ``{"commit": <sha or "unknown">, "dirty": <bool or None>}``; ``dirty`` is True when tracked files
        have uncommitted changes (the outputs may not be reproducible from the commit alone).
    """
    cwd = path or os.path.dirname(os.path.abspath(__file__))
    commit = _git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return {"commit": "unknown", "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions() -> dict:
    """Versions of ldct_sim and the packages its outputs depend on; ``None`` for a missing package."""
    from . import __version__

    versions = {"ldct_sim": __version__}
    for dist, module in PACKAGES.items():
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            mod = sys.modules.get(module)
            versions[dist] = getattr(mod, "__version__", None) if mod else None
    return versions


def provenance() -> dict:
    """Plain-JSON provenance: git commit, package versions, Python, platform and a UTC timestamp."""
    return {
        "git": git_info(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
