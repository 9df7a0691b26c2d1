"""``ldct_scripts``: the repository's orchestration code (``scripts/`` installed under a name of its own).

The bundles each name their package ``scripts`` (as the model zoo requires), so this folder is installed by
``pyproject.toml`` as ``ldct_scripts`` and its modules import each other as ``ldct_scripts.…``. Run them as
modules, e.g. ``python -m ldct_scripts.examples.demo_simulation --out demo``.

Folders, by job: ``studies/`` (the study engine and the studies), ``zoo/`` (verify, package, export to ONNX),
``bench/`` (benchmarks), ``examples/``, ``deploy_app/`` (MONAI Deploy) and ``monailabel_app/`` (MONAI Label,
loaded by MONAI Label from its folder). :mod:`ldct_scripts.bundle_import` is the one way to import a bundle's
own ``scripts`` package.
"""

from pathlib import Path


def _repository() -> Path:
    """The clone this package runs from (``pip install -e .``), else the working folder (a wheel install, run
    from a clone or a folder holding ``bundles/``)."""
    clone = Path(__file__).resolve().parents[1]
    return clone if (clone / "bundles").is_dir() else Path.cwd()


#: The repository root: the default home of ``bundles/`` and ``dist/``.
REPO = _repository()
#: Where the bundles live in the repository.
BUNDLES_DIR = REPO / "bundles"
