"""Provenance of a study's results: git commit, package versions, platform and command line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["study_provenance", "command_line"]


def study_provenance(extra_packages: Sequence[str] = ("pytorch-ignite", "matplotlib", "tqdm", "fire")) -> dict:
    """:func:`ldct_sim.provenance.provenance` (git commit, package versions, Python, platform, time) plus
    ``extra_packages`` and the command line (:func:`command_line`).

    Args:
        extra_packages: distributions whose versions are added (``None`` when not installed).
    """
    import importlib.metadata

    from ldct_sim.provenance import provenance

    prov = provenance()
    for dist in extra_packages:
        try:
            prov["packages"][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            prov["packages"][dist] = None
    prov["argv"] = command_line()
    return prov


def command_line() -> list[str]:
    """This process's command as typed: ``python -m <module> ...`` for a module run with ``-m`` (whose
    ``sys.argv[0]`` is the file's full path), else ``python <script> ...``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    python = os.path.basename(sys.executable)
    if spec is not None and spec.name:
        return [python, "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    return [python, *sys.argv]
