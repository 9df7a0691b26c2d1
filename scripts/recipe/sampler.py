"""Random training patches of the ``simulate`` draws (moved out of :mod:`.train_real_recipe`, issue 14).

:class:`PatchSampler` yields ``(anatomy + scaled noise, anatomy)`` pairs in HU; ``train_real_recipe``
imports it back, so ``train_real_recipe.PatchSampler`` keeps working.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["PatchSampler"]


def _guess_kernel(text: str) -> str:
    """``"sharp"``, ``"smooth"`` or ``""`` from a kernel name or slice id (B30f smooth, D45f sharp)."""
    t = text.lower()
    if "sharp" in t or "d45" in t:
        return "sharp"
    if "smooth" in t or "b30" in t:
        return "smooth"
    return ""


class PatchSampler:
    """Random training pairs ``(anatomy + scaled noise, anatomy)`` in HU from the ``simulate`` draws.

    Args:
        data: folder written by ``simulate`` (several with ``os.pathsep``).
        patch: patch side in pixels.
        i0_range: dose range ``(low, high)`` in photons per element per view at 1152 views; drawn
            log-uniform; the noise image (made at ``i0_ref``) is scaled by ``sqrt(i0_ref / I0)``.
        intensity_jitter: gain ``g`` on ``HU + 1000`` drawn in ``1 ± intensity_jitter``.
        kernels: keep only these filters (``None``: all).
        seed: seed of every draw.
        exclude_patients: patient ids whose draws are left out.
        noise_shift: the noise patch is taken up to this many pixels off the anatomy patch.
        presmooth: ``{source kernel: σ in pixels}``: a Gaussian blur of the anatomy (label and input alike)
            of draws made from slices of that kernel (``"sharp"``, ``"smooth"``, ``""`` for unknown),
            e.g. ``{"sharp": 0.8}``: a sharp-kernel normal-dose
            slice carries much noise of its own, which as label teaches the network that fine texture
            is unpredictable (it then blurs edges).
    """

    def __init__(self, data: str, patch: int, i0_range, intensity_jitter: float = 0.05, kernels=None, seed: int = 0,
                 exclude_patients=(), noise_shift: int = 8, presmooth: dict | None = None):
        self.images, self.noise, self.i0_ref, self.draw_kernel, self.patients = [], [], [], [], []
        self.data, self.kernels, self.exclude, self.files = data, kernels, set(exclude_patients), set()
        self.presmooth = dict(presmooth or {})
        self.rescan()
        if not self.images:
            raise SystemExit(f"train: no simulated draws in {data!r} (run `simulate` first).")
        self.patch = patch
        self.log_i0 = (math.log(i0_range[0]), math.log(i0_range[1]))
        self.jitter = intensity_jitter
        self.shift = noise_shift
        self.gen = torch.Generator().manual_seed(seed)

    def rescan(self) -> int:
        """Load the draws not loaded yet (``simulate`` may still be writing them); returns how many."""
        n = 0
        for folder in str(self.data).split(os.pathsep):
            # every finished draw (a simulate run still going, or stopped early, has no manifest yet)
            for f in sorted(Path(folder).glob("[0-9]*_[0-9]*.npz")):
                if str(f) in self.files:
                    continue
                self.files.add(str(f))
                with np.load(f) as d:
                    patient = str(d["patient"]) if "patient" in d.files else ""
                    if patient in self.exclude:
                        continue
                    image = d["image_hu"].astype(np.float32)
                    source_kernel = str(d["source_kernel"]) if "source_kernel" in d.files else _guess_kernel(str(d["source"]) if "source" in d.files else "")
                    sigma = self.presmooth.get(source_kernel, 0.0)
                    if sigma > 0:
                        from scipy.ndimage import gaussian_filter

                        image = gaussian_filter(image, sigma).astype(np.float32)
                    img = torch.from_numpy(image)
                    for k, kern in enumerate(d["kernels"]):
                        if self.kernels and str(kern) not in self.kernels:
                            continue
                        self.images.append(img)
                        self.noise.append(torch.from_numpy(d["noise_hu"][k]))
                        self.i0_ref.append(float(d["i0_ref"]) if "i0_ref" in d.files else 1e5)
                        self.draw_kernel.append(str(kern))
                        self.patients.append(patient)
                        n += 1
        return n

    def _u(self, lo=0.0, hi=1.0) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.gen))

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low_dose, label)`` in HU, each ``(batch, 1, patch, patch)``; ``last_noise_sd`` then holds each
        patch's noise SD in HU."""
        xs, ys, sds = [], [], []
        p = self.patch
        for _ in range(batch):
            i = int(torch.randint(len(self.images), (), generator=self.gen))
            img, noise = self.images[i], self.noise[i]
            h, w = img.shape
            for _try in range(20):  # a patch mostly inside the body
                r, c = int(torch.randint(h - p + 1, (), generator=self.gen)), int(torch.randint(w - p + 1, (), generator=self.gen))
                y = img[r:r + p, c:c + p]
                if (y > -500).float().mean() > 0.5:
                    break
            # the noise patch may sit a few pixels off the anatomy patch: new (anatomy, noise) combinations,
            # with the noise level still the one of this place (it varies slowly across the body)
            rn = min(max(r + int(torch.randint(-self.shift, self.shift + 1, (), generator=self.gen)), 0), h - p)
            cn = min(max(c + int(torch.randint(-self.shift, self.shift + 1, (), generator=self.gen)), 0), w - p)
            n = noise[rn:rn + p, cn:cn + p].float()
            scale = math.sqrt(self.i0_ref[i] / math.exp(self._u(*self.log_i0)))
            sign = 1.0 if self._u() < 0.5 else -1.0
            gain = self._u(1 - self.jitter, 1 + self.jitter)
            y = (y + 1000.0) * gain - 1000.0
            pair = torch.stack([y, n * (scale * sign)])
            k = int(torch.randint(4, (), generator=self.gen))
            pair = torch.rot90(pair, k, (1, 2))
            if self._u() < 0.5:
                pair = pair.flip(2)
            y, n = pair[0], pair[1]
            xs.append((y + n).clamp_min(-1024.0))  # real images are stored from -1024 HU up
            ys.append(y)
            sds.append(float(n.std()))
        self.last_noise_sd = torch.tensor(sds)
        return torch.stack(xs)[:, None], torch.stack(ys)[:, None]
