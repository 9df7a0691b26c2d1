"""Import a bundle's ``scripts`` package in tests, through the one helper (:mod:`ldct_scripts.bundle_import`).

Each bundle (as the model zoo requires) names its package ``scripts``; the repository's own orchestration
code is installed as ``ldct_scripts`` and imported normally.
"""

import importlib
import sys
from pathlib import Path

from ldct_scripts.bundle_import import activate_bundle_scripts, load_bundle_scripts

REPO = Path(__file__).resolve().parents[1]


def bundle_scripts(bundle: str):
    """The ``scripts`` package of ``bundles/<bundle>``, imported once as ``<bundle>_scripts``."""
    return load_bundle_scripts(REPO / "bundles" / bundle)


def bundle_scripts_as_scripts(bundle: str):
    """The ``scripts`` package of ``bundles/<bundle>`` imported under the name ``scripts`` itself.

    Needed where the bundle's configs name ``scripts.*`` (``ConfigWorkflow`` imports by that name); a
    previously loaded ``scripts`` from elsewhere is dropped from ``sys.modules`` first.
    """
    return activate_bundle_scripts(REPO / "bundles" / bundle, keep_on_path=False)


def repo_script(name: str, filename: str):
    """``ldct_scripts.<filename without .py>`` (the repository's ``scripts/<filename>``), also known as ``name``.

    Kept for tests of modules still at the top of ``scripts/``; new tests import ``ldct_scripts.…`` directly.
    """
    module = importlib.import_module("ldct_scripts." + Path(filename).with_suffix("").as_posix().replace("/", "."))
    sys.modules.setdefault(name, module)
    return module
