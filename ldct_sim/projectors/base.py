"""The projector protocol every backend implements.

A projector is the discrete fan-beam ray transform ``A`` of one :class:`~ldct_sim.geometry.FanBeamGeometry`:
it maps attenuation images ``mu`` in cm⁻¹, shaped ``(..., n_pixels, n_pixels)``, to dimensionless line
integrals ``∫ mu dl`` (path length in cm), shaped ``(..., n_views, n_det)``. Any leading batch and
channel dimensions are kept. ``A.T`` is its adjoint (the unweighted backprojection).

Backends share the geometry conventions written in :mod:`ldct_sim.geometry`; what differs is the
discretisation (``model``): ``"line"`` integrates along the ray through each detector element's
centre, ``"strip"`` over the element's whole width (a finer model of a real detector). The FBP of
:mod:`ldct_sim.fbp` uses neither: it has its own pixel-driven, distance-weighted backprojector.
"""

from __future__ import annotations

import abc
from typing import Literal

import numpy as np
import torch

from ..geometry import FanBeamGeometry

__all__ = ["Projector", "ProjectorModel", "as_tensor_image", "restore_type"]

ProjectorModel = Literal["line", "strip"]
PROJECTOR_MODELS = ("line", "strip")


def as_tensor_image(x, where: str, trailing: tuple[int, int]) -> tuple[torch.Tensor, bool]:
    """Convert a numpy array or tensor to a float tensor and check its last two dimensions.

    Returns the tensor and whether the input was numpy (so that the output can match it).
    """
    was_numpy = isinstance(x, np.ndarray)
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{where}: expected a numpy array or torch tensor, got {type(x).__name__}.")
    t = torch.as_tensor(x)
    if t.ndim < 2 or tuple(t.shape[-2:]) != tuple(trailing):
        raise ValueError(f"{where}: expected an array shaped (..., {trailing[0]}, {trailing[1]}), got {tuple(t.shape)}.")
    if not t.is_floating_point():
        t = t.float()
    return t, was_numpy


def restore_type(t: torch.Tensor, was_numpy: bool):
    return t.detach().cpu().numpy() if was_numpy else t


class Projector(abc.ABC):
    """Fan-beam ray transform of one geometry: ``A(mu)`` forward, ``A.T(sino)`` adjoint.

    Args:
        geometry: the scan.
        model: ``"line"`` (ray through the element centre) or ``"strip"`` (integrated over the
            element width).
    """

    backend: str = ""

    def __init__(self, geometry: FanBeamGeometry, model: ProjectorModel = "line"):
        if not isinstance(geometry, FanBeamGeometry):
            raise TypeError(f"{type(self).__name__}: `geometry` must be a FanBeamGeometry, got {type(geometry).__name__}.")
        if model not in PROJECTOR_MODELS:
            raise ValueError(f"Unknown projector model {model!r}; expected one of {PROJECTOR_MODELS}.")
        self.geometry = geometry
        self.model = model
        self._adjoint = None

    @property
    def domain_shape(self) -> tuple[int, int]:
        return self.geometry.image_shape

    @property
    def range_shape(self) -> tuple[int, int]:
        return self.geometry.sinogram_shape

    def __call__(self, mu):
        """Forward-project ``mu`` (cm⁻¹, ``(..., H, W)``) to line integrals ``(..., n_views, n_det)``."""
        t, was_numpy = as_tensor_image(mu, f"{type(self).__name__}", self.domain_shape)
        return restore_type(self._forward(t), was_numpy)

    def backproject(self, sino):
        """Adjoint ``Aᵀ``: ``(..., n_views, n_det)`` to ``(..., H, W)``."""
        t, was_numpy = as_tensor_image(sino, f"{type(self).__name__}.T", self.range_shape)
        return restore_type(self._backward(t), was_numpy)

    @property
    def T(self) -> _Adjoint:
        if self._adjoint is None:
            self._adjoint = _Adjoint(self)
        return self._adjoint

    @abc.abstractmethod
    def _forward(self, mu: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _backward(self, sino: torch.Tensor) -> torch.Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.geometry!r}, model={self.model!r})"


class _Adjoint:
    """``A.T``: calling it backprojects; its ``.T`` is ``A`` again."""

    def __init__(self, op: Projector):
        self._op = op

    @property
    def domain_shape(self):
        return self._op.range_shape

    @property
    def range_shape(self):
        return self._op.domain_shape

    @property
    def T(self) -> Projector:
        return self._op

    def __call__(self, sino):
        return self._op.backproject(sino)
