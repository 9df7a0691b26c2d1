"""Import a bundle's ``scripts`` package under a private name, for tests.

Each bundle (as the model zoo requires) names its package ``scripts``, and so does the repository's
top-level folder; importing them by that name in one test process would let one shadow the other.
"""

import importlib
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bundle_scripts(bundle: str):
    """The ``scripts`` package of ``bundles/<bundle>``, imported once as ``<bundle>_scripts``."""
    name = f"{bundle}_scripts"
    if name not in sys.modules:
        folder = REPO / "bundles" / bundle / "scripts"
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def bundle_scripts_as_scripts(bundle: str):
    """The ``scripts`` package of ``bundles/<bundle>`` imported under the name ``scripts`` itself.

    Needed where the bundle's configs name ``scripts.*`` (``ConfigWorkflow`` imports by that name); a
    previously loaded ``scripts`` from elsewhere is dropped from ``sys.modules`` first.
    """
    folder = REPO / "bundles" / bundle
    mod = sys.modules.get("scripts")
    if mod is None or not str(getattr(mod, "__file__", "") or "").startswith(str(folder)):
        for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
            del sys.modules[name]
        sys.path.insert(0, str(folder))
        try:
            importlib.import_module("scripts")
        finally:
            sys.path.remove(str(folder))
    return sys.modules["scripts"]


def repo_script(name: str, filename: str):
    """The repository's ``scripts/<filename>`` as module ``name``, loaded by path once: the bundles' own
    ``scripts`` packages would shadow the top-level folder as a package."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / filename)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
