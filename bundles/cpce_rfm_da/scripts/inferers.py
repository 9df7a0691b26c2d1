"""Inference of CPCE-2D on 2-D images or, slice by slice, on volumes: ``slice_inference.SlicewiseInferer``.

CPCE-2D's four valid 3×3 convolutions trim 4 pixels per side and its transposed convolutions add them back
from partial sums, so without a margin a uniform water slice (0 HU) comes out with border pixels down to
-887 HU; 8 pixels (``configs/inference.json``), the network's receptive radius, keep it within 1 HU of 0.
"""

from .slice_inference import SlicewiseInferer, pad_margin

__all__ = ["SlicewiseInferer", "pad_margin"]
