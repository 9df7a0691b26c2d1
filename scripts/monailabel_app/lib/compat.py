"""Import MONAI Label 0.8.5 without torchvision and without a working ``pydicom_seg``.

This project installs ``monailabel`` with ``--no-deps`` beside the CPU build of torch (a plain install
pulls torchvision and a CUDA torch). Two of its module-level imports then cannot be satisfied, though
neither is used by the bundle tasks, the local datastore or the server:

* ``monailabel.transform.post`` (imported by ``BundleInferTask``) does ``from torchvision.utils import
  make_grid, save_image``, which only its pathology/DeepEdit image dumps call;
* ``monailabel.datastore.utils.convert`` (imported by ``MONAILabelApp`` and the server) does ``import
  pydicom_seg``, used only to write and read DICOM SEG. pydicom-seg 0.4.1 needs ``pydicom<3`` and
  ``numpy<2`` and fails to import with pydicom 3, which this project (and dicomweb-client) use.

:func:`import_monailabel` imports those two modules with a stand-in for each missing package that
raises a clear ``ImportError`` when one of its functions is actually called. The stand-ins are in
``sys.modules`` only while these two modules execute (their own dependencies are imported first, so
nothing else can see them), and only when the real package cannot be imported. Hand-written because
MONAI Label offers no switch for these imports.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

__all__ = ["import_monailabel", "missing_packages"]

_MESSAGES = {
    "torchvision": "torchvision is not installed (this project keeps the CPU build of torch without it); "
    "MONAI Label's image-dump helpers that need it are not used by the denoising bundles.",
    "pydicom_seg": "DICOM SEG needs pydicom-seg, which does not work with pydicom 3; the denoising bundles "
    "return images (NIfTI), never DICOM SEG.",
}
#: what each shimmed monailabel module imports before the missing package (imported first, for real).
_PRELOAD = {
    "monailabel.transform.post": ("nibabel", "numpy", "skimage.measure", "torch", "monai.config", "monai.data",
                                  "monai.transforms", "monai.utils", "shapely.geometry",
                                  "monailabel.utils.others.label_colors"),
    "monailabel.datastore.utils.convert": ("numpy", "pydicom", "SimpleITK", "monai.transforms",
                                           "pydicom.filereader", "monailabel.datastore.utils.colors",
                                           "monailabel.transform.writer", "monailabel.utils.others.generic"),
}
_NEEDS = {"monailabel.transform.post": "torchvision", "monailabel.datastore.utils.convert": "pydicom_seg"}


def _importable(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        importlib.import_module(name)
    except Exception:  # pydicom_seg 0.4.1 with pydicom 3 raises ModuleNotFoundError for a pydicom module
        return False
    return True


def missing_packages() -> list[str]:
    """The packages of :data:`_MESSAGES` that cannot be imported here (and get stand-ins)."""
    return [name for name in _MESSAGES if not _importable(name)]


def _unavailable(package: str, what: str):
    def call(*args, **kwargs):
        raise ImportError(f"{what}: {_MESSAGES[package]}")

    call.__name__ = what.rsplit(".", 1)[-1]
    return call


class _StandIn(types.ModuleType):
    """A module whose attributes are functions that raise ``ImportError`` with the reason."""

    def __init__(self, name: str, package: str) -> None:
        super().__init__(name, f"stand-in for the missing {package} (see lib/compat.py)")
        self.__path__: list[str] = []  # a package, so that ``from torchvision.utils import ...`` resolves
        self._package = package

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _unavailable(self._package, f"{self.__name__}.{attr}")


@contextlib.contextmanager
def _stand_ins(package: str, submodules: tuple[str, ...] = ()):
    names = (package, *(f"{package}.{s}" for s in submodules))
    added = [n for n in names if n not in sys.modules]
    for n in added:
        sys.modules[n] = _StandIn(n, package)
    try:
        yield
    finally:
        for n in added:
            sys.modules.pop(n, None)


def import_monailabel() -> None:
    """Import the two monailabel modules that need torchvision / pydicom_seg, with stand-ins if missing.

    Call it before importing ``monailabel.tasks.infer.bundle``, ``monailabel.interfaces.app`` or
    ``monailabel.app``; calling it again does nothing.

    Raises:
        ImportError: monailabel itself, or one of the packages of the ``label`` extra, is missing.
    """
    for module, package in _NEEDS.items():
        if module in sys.modules:
            continue
        if _importable(package):
            importlib.import_module(module)
            continue
        for dep in _PRELOAD[module]:
            importlib.import_module(dep)
        with _stand_ins(package, ("utils",) if package == "torchvision" else ()):
            importlib.import_module(module)
