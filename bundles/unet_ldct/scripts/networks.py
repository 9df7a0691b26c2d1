"""The U-Net of Zhang et al. (QIMS 2024), section "The U-Net", in PyTorch.

Shapes are ``(batch, channels, height, width)``. The network is two-dimensional: volumes are
denoised slice by slice (see :class:`scripts.inferers.SliceInferer2D`).
"""

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LDCTUNet", "DOWNSAMPLING_FACTOR", "PAD_MODES"]

#: Four 2×2 poolings: each input side must be a multiple of 2**4 (or be padded to one).
DOWNSAMPLING_FACTOR = 16
#: ``pad_mode`` values; ``None`` refuses inputs whose sides are not multiples of 16.
PAD_MODES = (None, "reflect", "replicate", "constant")


def _conv(in_channels: int, out_channels: int, negative_slope: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.LeakyReLU(negative_slope)
    )


class _Up(nn.Module):
    """3×3 transposed convolution (stride 2), concatenation with the skip, two 3×3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float):
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.LeakyReLU(negative_slope),
        )
        self.convs = nn.Sequential(
            _conv(2 * out_channels, out_channels, negative_slope), _conv(out_channels, out_channels, negative_slope)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class LDCTUNet(nn.Module):
    """The seed paper's U-Net for low-dose CT denoising: 24 weight layers, no normalisation.

    Contracting branch: 11 convolutions (3×3, padding 1) with 32, 32, 32 | 64, 64 | 128, 128 |
    256, 256 | 512, 512 channels, 2×2 max pooling (stride 2) between the five levels. Expansive
    branch: 13 layers; at each of four levels a 3×3 transposed convolution with stride 2 (256, 128,
    64, 32 channels), concatenation with the contracting branch's output of the same size, and two
    3×3 convolutions with as many channels; then a 1×1 convolution to ``out_channels``. Every layer
    but the last is followed by a Leaky ReLU. With biases and one input and output channel this is
    8,639,169 parameters. The output is the denoised image itself (no residual connection), in the
    same intensity scale as the input; ``residual=True`` (this project's own option, not the seed's)
    adds the input to the 1×1 convolution's output, so the network learns the negative noise image.

    Args:
        in_channels: input channels. Default 1.
        out_channels: output channels. Default 1.
        negative_slope: slope of the Leaky ReLU for negative inputs, >= 0. Default 0.2.
        pad_mode: what to do with a height or width that is not a multiple of 16. ``None`` (default)
            raises ``ValueError``; ``"reflect"``, ``"replicate"`` or ``"constant"`` (zeros) pad the
            input symmetrically up to the next multiple of 16 with that ``torch.nn.functional.pad``
            mode and crop the output back to the input's size. ``"reflect"`` needs each side > 8.
        residual: add the input to the output (needs ``in_channels == out_channels``). Default ``False``,
            the seed's network.

    Raises:
        ValueError: a channel count < 1, a negative slope, an unknown ``pad_mode``, or ``residual``
            with ``in_channels != out_channels``.

    Example:
        >>> net = LDCTUNet()
        >>> sum(p.numel() for p in net.parameters())
        8639169
        >>> net(torch.zeros(2, 1, 32, 48)).shape
        torch.Size([2, 1, 32, 48])
    """

    pad_mode: Optional[str]
    divisor: int
    residual: bool

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        negative_slope: float = 0.2,
        pad_mode: Optional[str] = None,
        residual: bool = False,
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LDCTUNet: `{name}` must be a positive integer, got {value!r}.")
        if not float(negative_slope) >= 0.0:
            raise ValueError(f"LDCTUNet: `negative_slope` must be >= 0, got {negative_slope!r}.")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"LDCTUNet: unknown `pad_mode` {pad_mode!r}; expected one of {PAD_MODES}.")
        if residual and in_channels != out_channels:
            raise ValueError(
                f"LDCTUNet: `residual` needs in_channels == out_channels, got {in_channels} and {out_channels}."
            )
        self.pad_mode = pad_mode
        self.residual = bool(residual)
        self.divisor = DOWNSAMPLING_FACTOR
        s = float(negative_slope)
        self.negative_slope = s
        self.down = nn.ModuleList(
            [
                nn.Sequential(_conv(in_channels, 32, s), _conv(32, 32, s), _conv(32, 32, s)),
                nn.Sequential(_conv(32, 64, s), _conv(64, 64, s)),
                nn.Sequential(_conv(64, 128, s), _conv(128, 128, s)),
                nn.Sequential(_conv(128, 256, s), _conv(256, 256, s)),
                nn.Sequential(_conv(256, 512, s), _conv(512, 512, s)),
            ]
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.up = nn.ModuleList([_Up(512, 256, s), _Up(256, 128, s), _Up(128, 64, s), _Up(64, 32, s)])
        self.head = nn.Conv2d(32, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` of shape ``(B, in_channels, H, W)``; returns ``(B, out_channels, H, W)``."""
        if x.dim() != 4:
            raise ValueError(
                "LDCTUNet: expected a (batch, channel, height, width) input, got " + str(x.dim()) + " dimensions."
            )
        h, w = x.shape[-2], x.shape[-1]
        k = self.divisor
        ph = (k - h % k) % k
        pw = (k - w % k) % k
        padded = ph > 0 or pw > 0
        if padded:
            mode = self.pad_mode
            if mode is None:
                raise ValueError(
                    "LDCTUNet: input height and width must be multiples of 16, got "
                    + str(h) + "x" + str(w)
                    + "; crop or pad the image, or build the network with pad_mode='reflect'."
                )
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode=mode)
        inputs = x
        skips: List[torch.Tensor] = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for i, up in enumerate(self.up):
            x = up(x, skips[3 - i])
        x = self.head(x)
        if self.residual:
            x = x + inputs
        if padded:
            x = x[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        return x
