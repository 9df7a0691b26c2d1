"""Pure-PyTorch fan-beam projector: batched, differentiable, on CPU or GPU.

The forward projection is ray-driven: each ray from the source to a detector element is sampled
every half pixel with bilinear interpolation (``torch.nn.functional.grid_sample``) and summed. Model
``"strip"`` averages :data:`STRIP_SUBRAYS` rays spread over each element's width. The adjoint ``A.T``
is the exact transpose of that sampling, obtained from autograd, so gradients through ``A`` are
``A.T`` of the incoming gradient (and vice versa).

We write this ourselves (rather than call tomosipo or ASTRA through torch) because those need
ASTRA's CUDA build; this one runs anywhere torch does and keeps the whole chain differentiable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..geometry import FanBeamGeometry
from .base import Projector, ProjectorModel

__all__ = ["TorchProjector", "STRIP_SUBRAYS", "SAMPLES_PER_PIXEL"]

#: Sub-rays per detector element for the ``"strip"`` model.
STRIP_SUBRAYS = 4
#: Samples per pixel length along each ray.
SAMPLES_PER_PIXEL = 2


def _chunk_elements(device: torch.device) -> int:
    """Interpolated samples to hold at once: ~0.5 GiB of float32 on CPU, ~4 GiB on a GPU."""
    return 1 << (27 if device.type == "cuda" else 25)


class TorchProjector(Projector):
    """Fan-beam ray transform in PyTorch.

    Args:
        geometry: the scan.
        model: ``"line"`` (one ray per element) or ``"strip"`` (:data:`STRIP_SUBRAYS` per element).
        samples_per_pixel: ray samples per pixel length. Default :data:`SAMPLES_PER_PIXEL`.
    """

    backend = "torch"

    def __init__(self, geometry: FanBeamGeometry, model: ProjectorModel = "line", samples_per_pixel: int = SAMPLES_PER_PIXEL):
        super().__init__(geometry, model)
        if int(samples_per_pixel) < 1:
            raise ValueError(f"TorchProjector: `samples_per_pixel` must be >= 1, got {samples_per_pixel!r}.")
        self.samples_per_pixel = int(samples_per_pixel)
        self.subrays = STRIP_SUBRAYS if model == "strip" else 1
        g = geometry
        self._step_mm = g.pixel_size_mm / self.samples_per_pixel
        self._n_samples = int(math.ceil(2 * g.fov_radius_mm / self._step_mm)) + 1
        k = self.subrays
        # sub-ray offsets across one element, at the centres of k equal parts of its width
        offsets = (torch.arange(k, dtype=torch.float64) + 0.5) / k - 0.5
        u = torch.as_tensor(g.det_positions_mm)[:, None] + offsets[None, :] * g.det_pixel_mm
        self._u_mm = u.reshape(-1)  # (n_det * k,)
        self._angles = torch.as_tensor(g.angles)

    def _grid(self, angles: torch.Tensor, device, dtype) -> torch.Tensor:
        """Normalised sampling points for ``grid_sample``: (1, n_angles * n_rays, n_samples, 2)."""
        g = self.geometry
        sin, cos = torch.sin(angles)[:, None], torch.cos(angles)[:, None]
        u = self._u_mm[None, :]
        src_x, src_y = g.sod_mm * sin, -g.sod_mm * cos
        det_x, det_y = -g.odd_mm * sin + u * cos, g.odd_mm * cos + u * sin
        dx, dy = det_x - src_x, det_y - src_y
        norm = torch.sqrt(dx * dx + dy * dy)
        dx, dy = dx / norm, dy / norm
        t_mid = -(src_x * dx + src_y * dy)  # closest approach of the ray to the rotation axis
        j = torch.arange(self._n_samples, dtype=torch.float64) - (self._n_samples - 1) / 2.0
        t = t_mid[..., None] + j * self._step_mm
        half = 0.5 * g.fov_mm
        px = (src_x[..., None] + t * dx[..., None]) / half
        py = -(src_y[..., None] + t * dy[..., None]) / half
        grid = torch.stack((px, py), dim=-1).reshape(1, -1, self._n_samples, 2)
        return grid.to(device=device, dtype=dtype)

    def _forward(self, mu: torch.Tensor) -> torch.Tensor:
        lead = mu.shape[:-2]
        n_img = max(1, math.prod(lead))
        img = mu.reshape(1, n_img, *mu.shape[-2:])
        rays_per_view = self._u_mm.numel()
        per_view = n_img * rays_per_view * self._n_samples
        views_per_chunk = max(1, _chunk_elements(mu.device) // per_view)
        out = []
        for start in range(0, self.geometry.n_views, views_per_chunk):
            grid = self._grid(self._angles[start : start + views_per_chunk], mu.device, mu.dtype)
            samples = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out.append(samples.sum(-1).reshape(n_img, -1, self.geometry.n_det, self.subrays).mean(-1))
        sino = torch.cat(out, dim=1) * (self._step_mm / 10.0)  # path length in cm
        return sino.reshape(*lead, *self.range_shape)

    def _backward(self, sino: torch.Tensor) -> torch.Tensor:
        # The adjoint of a linear map is the vector-Jacobian product of the map at any point.
        x = torch.zeros(*sino.shape[:-2], *self.domain_shape, device=sino.device, dtype=sino.dtype, requires_grad=True)
        with torch.enable_grad():
            y = self._forward(x)
            (grad,) = torch.autograd.grad(y, x, grad_outputs=sino, create_graph=sino.requires_grad)
        return grad
