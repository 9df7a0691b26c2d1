"""Fan-beam projector backends behind one protocol (:class:`~ldct_sim.projectors.base.Projector`).

``get_projector(geometry, backend, model)`` returns a cached projector:

* ``"astra"``: ASTRA Toolbox, CPU ``line_fanflat`` (strip model: sub-rays averaged) or its CUDA algorithms.
* ``"torch"``: pure PyTorch, batched and differentiable, CPU or GPU.
* ``"tomosipo"``: tomosipo (optional, GPU only), when importable.
"""

from __future__ import annotations

from functools import lru_cache

from ..geometry import FanBeamGeometry
from .base import PROJECTOR_MODELS, Projector, ProjectorModel

__all__ = ["BACKENDS", "Projector", "ProjectorModel", "PROJECTOR_MODELS", "get_projector", "available_backends"]

BACKENDS = ("astra", "torch", "tomosipo")


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
def get_projector(geometry: FanBeamGeometry, backend: str = "astra", model: ProjectorModel = "line") -> Projector:
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
