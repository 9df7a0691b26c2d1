"""Provenance of a study's results: git commit, package versions, platform and command line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["study_provenance"]


def study_provenance(extra_packages: Sequence[str] = ("pytorch-ignite", "matplotlib", "tqdm", "fire")) -> dict:
    """:func:`ldct_sim.provenance.provenance` (git commit, package versions, Python, platform, time) plus
    ``extra_packages`` and the command line."""
    import importlib.metadata

    from ldct_sim.provenance import provenance

    prov = provenance()
    for dist in extra_packages:
        try:
            prov["packages"][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            prov["packages"][dist] = None
    prov["argv"] = [os.path.basename(sys.executable), *sys.argv]
    return prov
