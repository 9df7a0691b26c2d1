"""Backwards-compatible shim: the study engine moved to :mod:`ldct_scripts.studies.engine`.

Kept for ``bench_real.py``, ``study_tools.py`` and ``domain_adaptation.py``, which import ``study_common``
until they move into ``scripts/studies/`` and ``scripts/bench/``. New code imports ``ldct_scripts.studies.engine``.
"""

from ldct_scripts.studies.engine import *  # noqa: F401,F403
from ldct_scripts.studies.engine import __all__ as _engine_all
from ldct_scripts.studies.engine.files import jsonable as _jsonable  # noqa: F401

__all__ = list(_engine_all)
