"""Fan-beam projector backends behind one protocol (:class:`~ldct_sim.projectors.base.Projector`).

``get_projector(geometry, backend, model)`` returns a cached projector:

* ``"torch"`` (the default, :data:`DEFAULT_BACKEND`): pure PyTorch, Joseph's method as a sparse matrix
  built once per geometry (:mod:`ldct_sim.projectors.torch_backend`), batched and differentiable, CPU or
  GPU. Once its matrix is built (or read from the disk cache) it projects a 512² slice far faster than
  ASTRA's CPU projectors, hence the default.
* ``"astra"``: ASTRA Toolbox, CPU ``line_fanflat`` (strip model: sub-rays averaged) or its CUDA algorithms.
* ``"tomosipo"``: tomosipo (optional, GPU only, line model only), when importable.
"""

from __future__ import annotations

from functools import lru_cache

from ..geometry import FanBeamGeometry
from .base import PROJECTOR_MODELS, Projector, ProjectorModel

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Projector", "ProjectorModel", "PROJECTOR_MODELS", "get_projector", "available_backends"]

BACKENDS = ("astra", "torch", "tomosipo")
#: The backend used when none is named: the sparse-matrix torch projector (issue 11 measured it 10× or
#: more faster than ASTRA's CPU projectors per 512² slice, once its matrix is built or cached).
DEFAULT_BACKEND = "torch"


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; expected one of {BACKENDS}.")
    return backend


def available_backends() -> list[str]:
    """The backends that can run here (ASTRA importable; tomosipo importable)."""
    from .astra_backend import has_astra
    from .tomosipo_backend import has_tomosipo

    return [b for b, ok in (("astra", has_astra), ("torch", True), ("tomosipo", has_tomosipo)) if ok]


@lru_cache(maxsize=32)
def get_projector(geometry: FanBeamGeometry, backend: str = DEFAULT_BACKEND, model: ProjectorModel = "line") -> Projector:
    """The projector of ``geometry`` for ``backend`` and discretisation ``model`` (cached).

    Raises:
        ValueError: unknown backend or model.
        ImportError: the backend's package is not installed (with the command that installs it).
    """
    check_backend(backend)
    if backend == "astra":
        from .astra_backend import AstraProjector

        return AstraProjector(geometry, model)
    if backend == "torch":
        from .torch_backend import TorchProjector

        return TorchProjector(geometry, model)
    from .tomosipo_backend import TomosipoProjector

    return TomosipoProjector(geometry, model)
