"""Networks of the cross-domain denoiser: CPCE-2D, the discriminators and the variational mask encoder.

All modules take and return ``(B, C, H, W)`` float tensors. Images enter the denoiser normalised to
[0, 1] over the bundle's ``hu_window`` (see ``configs/train.json``).

References:
    Shan et al., "3-D convolutional encoder-decoder network for low-dose CT via transfer learning from a
    2-D trained network", IEEE TMI 37(6), 2018 (CPCE-2D; the authors' TensorFlow code names it ``CPCE_2D``).
    Huang et al., "Cross domain low-dose CT image denoising with semantic information alignment".
    Kingma & Welling, "Auto-encoding variational Bayes", ICLR 2014.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["CPCE2D", "Discriminator", "VariationalMaskEncoder"]


class CPCE2D(nn.Module):
    """Conveying-path-based convolutional encoder-decoder, 2-D (Shan et al. 2018), exactly as ``CPCE_2D``.

    Encoder: four 3×3 convolutions with ``channels`` (32) filters, valid padding, no bias, each followed by
    ReLU. Decoder: three 3×3 transposed convolutions with ``channels`` filters; each output is concatenated
    with the pre-activation output of the mirrored convolution (the conveying path: conv3, conv2, conv1),
    passed through ReLU, a 1×1 convolution back to ``channels`` and ReLU. A last 3×3 transposed convolution
    to ``out_channels`` and a ReLU give the output. No bias anywhere; Xavier-uniform initialisation as in
    the reference code. With the defaults it has 62,016 parameters.

    ``residual=True`` is this project's own option, not the seed's: the input is added to the last transposed
    convolution and the final ReLU applies to that sum, ``ReLU(x + deconv8(...))``, so the network learns the
    negative noise image and the output stays ≥ 0 (−1024 HU on the bundle's scale) as before. It adds no
    parameters, so the same state dict loads either way; weights trained one way give wrong images the other.

    Because every valid 3×3 convolution trims one pixel per side and every transposed one adds it back,
    the output has the input's spatial size for any input of at least 9 × 9 pixels.

    Args:
        in_channels: input channels. Default 1.
        out_channels: output channels. Default 1.
        channels: filters per layer. Default 32.
        residual: add the input to the output (needs ``in_channels == out_channels``). Default ``False``,
            the seed's network; the shipped weights (0.5.0 on) are residual.

    Raises:
        ValueError: a channel count that is not a positive integer, or ``residual`` with
            ``in_channels != out_channels``.

    Shapes:
        ``forward(x)``: ``(B, in_channels, H, W)`` → ``(B, out_channels, H, W)``, ``H, W >= 9``.
        ``forward_with_features(x)`` returns ``(output, features)`` with the encoder's last activation
        ``(B, channels, H - 8, W - 8)``, the representation used for semantic alignment. Both methods are
        TorchScript-compatible (``monai.bundle ckpt_export``).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, channels: int = 32, residual: bool = False):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CPCE2D: `{name}` must be a positive integer, got {value!r}.")
        if residual and in_channels != out_channels:
            raise ValueError(f"CPCE2D: `residual` needs in_channels == out_channels, got {in_channels} and {out_channels}.")
        self.residual = bool(residual)
        c = channels
        self.conv1 = nn.Conv2d(in_channels, c, 3, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, bias=False)
        self.conv3 = nn.Conv2d(c, c, 3, bias=False)
        self.conv4 = nn.Conv2d(c, c, 3, bias=False)
        self.deconv5 = nn.ConvTranspose2d(c, c, 3, bias=False)
        self.transpose1 = nn.Conv2d(2 * c, c, 1, bias=False)
        self.deconv6 = nn.ConvTranspose2d(c, c, 3, bias=False)
        self.transpose2 = nn.Conv2d(2 * c, c, 1, bias=False)
        self.deconv7 = nn.ConvTranspose2d(c, c, 3, bias=False)
        self.transpose3 = nn.Conv2d(2 * c, c, 1, bias=False)
        self.deconv8 = nn.ConvTranspose2d(c, out_channels, 3, bias=False)
        self.relu = nn.ReLU()
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(x)[0]

    @torch.jit.export
    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(denoised image, encoder features)``: the output and the last encoder activation."""
        if x.ndim != 4 or x.shape[-1] < 9 or x.shape[-2] < 9:
            raise ValueError(f"CPCE2D: expected input (B, C, H, W) with H, W >= 9, got shape {list(x.shape)}.")
        c1 = self.conv1(x)
        c2 = self.conv2(self.relu(c1))
        c3 = self.conv3(self.relu(c2))
        features = self.relu(self.conv4(self.relu(c3)))
        y = self.deconv5(features)
        y = self.relu(self.transpose1(self.relu(torch.cat([c3, y], dim=1))))
        y = self.deconv6(y)
        y = self.relu(self.transpose2(self.relu(torch.cat([c2, y], dim=1))))
        y = self.deconv7(y)
        y = self.relu(self.transpose3(self.relu(torch.cat([c1, y], dim=1))))
        y = self.deconv8(y)
        if self.residual:
            y = y + x
        return self.relu(y), features


def _positive_ints(where: str, name: str, values) -> tuple[int, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{where}: `{name}` must be a non-empty sequence of positive integers, got {values!r}.")
    return values


class Discriminator(nn.Module):
    """Convolutional real/fake (or source/target) critic, size-agnostic, returning one logit per image.

    The layout follows the discriminator of the CPCE authors' code (3×3 convolutions 64-64-128-128-256-256,
    stride 2 on every second one, leaky ReLU 0.2, a 1024-unit dense layer and one output), with global
    average pooling before the dense layers so that any input size works.

    Args:
        in_channels: input channels (1 for images, the CPCE width, 32, for features). Default 1.
        channels: filters of the convolutions. Default (64, 64, 128, 128, 256, 256).
        strides: strides of the convolutions, same length as ``channels``. Default (1, 2, 1, 2, 1, 2).
        hidden: units of the dense layer. Default 1024.

    Shapes:
        ``(B, in_channels, H, W)`` → logits ``(B, 1)`` (no sigmoid; use ``BCEWithLogits``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (64, 64, 128, 128, 256, 256),
        strides: Sequence[int] = (1, 2, 1, 2, 1, 2),
        hidden: int = 1024,
    ):
        super().__init__()
        channels = _positive_ints("Discriminator", "channels", channels)
        strides = _positive_ints("Discriminator", "strides", strides)
        if len(strides) != len(channels):
            raise ValueError(
                f"Discriminator: `strides` must have one entry per convolution ({len(channels)}), got {len(strides)}."
            )
        layers: list[nn.Module] = []
        prev = int(in_channels)
        for c, s in zip(channels, strides):
            layers += [nn.Conv2d(prev, c, 3, stride=s, padding=1), nn.LeakyReLU(0.2)]
            prev = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class VariationalMaskEncoder(nn.Module):
    """Variational encoder of an image into keep-logits of the adaptive frequency mask (Huang et al.).

    A strided convolutional encoder and global average pooling give the mean and log-variance of a
    ``latent_dim``-dimensional Gaussian ``q(z | x)``; ``z`` is drawn with the reparameterisation trick in
    training (``z = μ + σ·ε``) and set to ``μ`` in evaluation mode; a small MLP decodes ``z`` into one
    keep-logit per radial frequency bin (``n_bins`` bins over the normalised radius [0, 1]).

    Args:
        in_channels: image channels. Default 1.
        channels: filters of the stride-2 convolutions. Default (16, 32, 64).
        latent_dim: size of ``z``. Default 16.
        n_bins: radial bins of the keep-probability profile. Default 16.
        hidden: units of the decoder's hidden layer. Default 64.
        init_keep_logit: initial bias of the decoder's output, i.e. the keep-logit every bin starts near.
            Default 0 (keep-probability 0.5).

    Shapes:
        ``(B, in_channels, H, W)`` → ``(bin_logits (B, n_bins), mu (B, latent_dim), logvar (B, latent_dim))``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64),
        latent_dim: int = 16,
        n_bins: int = 16,
        hidden: int = 64,
        init_keep_logit: float = 0.0,
    ):
        super().__init__()
        channels = _positive_ints("VariationalMaskEncoder", "channels", channels)
        for name, value in (("latent_dim", latent_dim), ("n_bins", n_bins), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VariationalMaskEncoder: `{name}` must be a positive integer, got {value!r}.")
        layers: list[nn.Module] = []
        prev = int(in_channels)
        for c in channels:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            prev = c
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.to_mu = nn.Linear(prev, latent_dim)
        self.to_logvar = nn.Linear(prev, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_bins))
        nn.init.constant_(self.decoder[-1].bias, float(init_keep_logit))
        self.latent_dim = latent_dim
        self.n_bins = n_bins

    def forward(self, x: torch.Tensor):
        h = self.encoder(x)
        mu, logvar = self.to_mu(h), self.to_logvar(h).clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar
