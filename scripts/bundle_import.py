"""The one way to import a bundle's own ``scripts`` package.

Every bundle names its package ``scripts``, as the model zoo requires (its configs say ``scripts.networks``,
...). Two bundles can therefore not both be imported under that name in one process, and the name must not
stand for anything else. Everything in this repository that imports a bundle's code goes through this
module, which keeps the ``sys.path`` and ``sys.modules`` handling in one place:

* :func:`load_bundle_scripts` / :func:`load_bundle_module`: the package under a private name
  (``<bundle>_scripts``), side by side with other bundles, for reusing a bundle's code (metrics, networks).
* :func:`activate_bundle_scripts`: the package under the name ``scripts`` itself, for code that runs the
  bundle's configs (``ConfigWorkflow``, a TorchScript's stored configs, MONAI Label's bundle tasks).
* :func:`bundle_scripts_on_path`: the same for the duration of a ``with`` block, restoring what was there.

:func:`folder_on_path` serves the one other loader convention in this repository: MONAI Label's app folder
(``scripts/monailabel_app``) imports its own ``lib`` package as a top-level name. No other module edits
``sys.path``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

__all__ = ["load_bundle_scripts", "load_bundle_module", "activate_bundle_scripts", "bundle_scripts_on_path", "folder_on_path"]


def _scripts_folder(bundle_dir: str | os.PathLike) -> Path:
    folder = Path(bundle_dir).resolve() / "scripts"
    if not (folder / "__init__.py").is_file():
        raise FileNotFoundError(f"{folder / '__init__.py'} does not exist: {str(bundle_dir)!r} is not a bundle with a scripts package.")
    return folder


def _loaded_from(module: ModuleType | None, folder: Path) -> bool:
    """Whether ``module`` is the package in ``folder``."""
    paths = list(getattr(module, "__path__", None) or [])
    return bool(paths) and Path(paths[0]).resolve() == folder


def load_bundle_scripts(bundle_dir: str | os.PathLike, name: str | None = None) -> ModuleType:
    """A bundle's ``scripts`` package, imported once under a private name.

    Args:
        bundle_dir: the bundle's root folder (the one holding ``configs/`` and ``scripts/``).
        name: the module name; default ``<bundle folder name>_scripts`` (e.g. ``unet_ldct_scripts``), or that
            name plus a digest of the path when a bundle of the same folder name elsewhere holds it.

    Returns:
        The package; its modules import each other relatively (``from .metrics import ...``), so
        ``import_module(f"{package.__name__}.networks")`` works as ``scripts.networks`` would.

    Raises:
        FileNotFoundError: ``bundle_dir`` has no ``scripts/__init__.py``.
    """
    folder = _scripts_folder(bundle_dir)
    if name is None:
        name = f"{folder.parent.name}_scripts"
        if name in sys.modules and not _loaded_from(sys.modules[name], folder):
            name += "_" + hashlib.sha1(str(folder).encode()).hexdigest()[:8]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def load_bundle_module(bundle_dir: str | os.PathLike, module: str) -> ModuleType:
    """One module of a bundle's ``scripts`` package (e.g. ``"metrics"``), under the private package name.

    Args:
        bundle_dir: the bundle's root folder.
        module: the module's name inside ``scripts/`` (dotted for subpackages).
    """
    return importlib.import_module(f"{load_bundle_scripts(bundle_dir).__name__}.{module}")


def _scripts_modules() -> dict[str, ModuleType]:
    return {n: m for n, m in sys.modules.items() if n == "scripts" or n.startswith("scripts.")}


def activate_bundle_scripts(bundle_dir: str | os.PathLike, keep_on_path: bool = True) -> ModuleType:
    """Make a bundle's ``scripts`` package the one imported as ``scripts`` (for code that runs its configs).

    A ``scripts`` package imported from elsewhere is dropped from ``sys.modules`` first; the bundle's own,
    once imported, is kept.

    Args:
        bundle_dir: the bundle's root folder.
        keep_on_path: leave the bundle root first on ``sys.path`` afterwards (as ``monai.bundle`` runs a
            bundle from its folder), for code that imports ``scripts`` again after someone dropped it;
            ``False`` removes it once the package is imported.

    Returns:
        ``sys.modules["scripts"]``, the bundle's package.
    """
    folder = _scripts_folder(bundle_dir)
    root = str(folder.parent)
    if not _loaded_from(sys.modules.get("scripts"), folder):
        for name in _scripts_modules():
            del sys.modules[name]
    with contextlib.suppress(ValueError):
        sys.path.remove(root)
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    try:
        return importlib.import_module("scripts")
    finally:
        if not keep_on_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(root)


@contextlib.contextmanager
def bundle_scripts_on_path(bundle_dir: str | os.PathLike) -> Iterator[ModuleType]:
    """Within the block, ``import scripts`` finds the bundle's package; what was there before is restored.

    Args:
        bundle_dir: the bundle's root folder.

    Yields:
        The bundle's ``scripts`` package.
    """
    saved = _scripts_modules()
    root = str(Path(bundle_dir).resolve())
    on_path = root in sys.path
    for name in saved:
        del sys.modules[name]
    try:
        yield activate_bundle_scripts(bundle_dir)
    finally:
        if not on_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(root)
        for name in _scripts_modules():
            del sys.modules[name]
        sys.modules.update(saved)


@contextlib.contextmanager
def folder_on_path(folder: str | os.PathLike) -> Iterator[None]:
    """Within the block, top-level imports search ``folder`` first; it is taken off ``sys.path`` afterwards
    unless it was there before. Modules imported meanwhile stay imported.

    Args:
        folder: a folder holding top-level modules or packages (MONAI Label's app folder with ``lib/``).
    """
    entry = str(Path(folder).resolve())
    if entry in sys.path:
        yield
        return
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
