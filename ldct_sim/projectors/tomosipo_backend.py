"""tomosipo projector (optional; used only when ``import tomosipo`` works).

tomosipo is not in the package registry and always builds ASTRA's CUDA 3-D projector, so it needs a
GPU. The 2-D fan beam is modelled as a one-row cone beam with a detector row as tall as a pixel.
"""

from __future__ import annotations

import torch
from monai.utils import optional_import

from ..geometry import FanBeamGeometry
from .base import Projector, ProjectorModel

ts, has_tomosipo = optional_import("tomosipo")

__all__ = ["TomosipoProjector", "has_tomosipo", "TOMOSIPO_HINT"]

TOMOSIPO_HINT = (
    "backend='tomosipo' needs the optional package tomosipo (not on PyPI: install it from its "
    "repository, with ASTRA's CUDA build and a GPU), or choose backend='astra' or 'torch'."
)


class TomosipoProjector(Projector):
    """Fan-beam ray transform through tomosipo (GPU only); line model only.

    Raises:
        ValueError: ``model="strip"`` (not implemented here).
        ImportError: tomosipo is not installed.
    """

    backend = "tomosipo"

    def __init__(self, geometry: FanBeamGeometry, model: ProjectorModel = "line"):
        if not has_tomosipo:
            raise ImportError(TOMOSIPO_HINT)
        if model == "strip":  # tomosipo has no strip model: it would project rays through element centres
            raise ValueError(
                "TomosipoProjector: the 'strip' model is not implemented for tomosipo (it would silently use "
                "the line model); use model='line', or backend='torch' or 'astra' for the strip model."
            )
        super().__init__(geometry, model)
        g = geometry
        dx = g.pixel_size_mm
        vol = ts.volume(shape=(1, g.n_pixels, g.n_pixels), size=(dx, g.fov_mm, g.fov_mm))
        # tomosipo's cone: detector (height, width) = (v, u); source at -src_orig_dist along its axis.
        pg = ts.cone(
            angles=g.angles,
            shape=(1, g.n_det),
            size=(dx * g.magnification, g.n_det * g.det_pixel_mm),
            src_orig_dist=g.sod_mm,
            src_det_dist=g.sdd_mm,
        )
        self._op = ts.operator(vol, pg)

    def _forward(self, mu: torch.Tensor) -> torch.Tensor:
        lead = mu.shape[:-2]
        flat = mu.reshape(-1, 1, *mu.shape[-2:]).float().cuda()
        out = torch.stack([self._op(v)[0] for v in flat])  # (N, n_views, n_det)
        return (out / 10.0).reshape(*lead, *self.range_shape).to(mu)

    def _backward(self, sino: torch.Tensor) -> torch.Tensor:
        lead = sino.shape[:-2]
        flat = sino.reshape(-1, 1, *sino.shape[-2:]).float().cuda()
        out = torch.stack([self._op.T(v)[0] for v in flat])
        return (out / 10.0).reshape(*lead, *self.domain_shape).to(sino)


