"""Import a bundle's ``scripts`` package under a private name, for tests.

Each bundle (as the model zoo requires) names its package ``scripts``, and so does the repository's
top-level folder; importing them by that name in one test process would let one shadow the other.
"""

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
