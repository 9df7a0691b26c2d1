"""VGG-19 feature layers in plain torch, with ImageNet weights read from a local file (no downloads).

The layers are numbered exactly as ``torchvision.models.vgg19().features`` (``features.0`` = conv1_1,
``features.34`` = conv5_4, ``features.35`` = relu5_4, ...), so a state dict saved from torchvision loads
unchanged. Make the file once on a machine with internet access::

    import torch, torchvision
    torch.save(torchvision.models.vgg19(weights="IMAGENET1K_V1").state_dict(), "vgg19_imagenet.pth")

Only the ``features.*`` entries are read (``classifier.*`` entries are ignored), so a file holding just
the feature layers works too.

References:
    Simonyan & Zisserman, "Very deep convolutional networks for large-scale image recognition", ICLR 2015.
    Johnson et al., "Perceptual losses for real-time style transfer and super-resolution", ECCV 2016.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "VGG19_CONFIG",
    "VGG19_LAYER_NAMES",
    "VGG19Features",
    "VGGPerceptualLoss",
    "load_vgg19_features",
    "torchvision_layout_state_dict",
]

#: Output channels of VGG-19's convolutions, "M" for 2×2 max pooling (torchvision's configuration "E").
VGG19_CONFIG: tuple = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"
)


def _layer_names() -> tuple[str, ...]:
    names, block, conv = [], 1, 1
    for v in VGG19_CONFIG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return tuple(names)


#: Name of every entry of ``features``, by index: ``("conv1_1", "relu1_1", "conv1_2", ...)``.
VGG19_LAYER_NAMES: tuple[str, ...] = _layer_names()

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHTS_HINT = (
    "Save torchvision's ImageNet weights once on a machine with internet access "
    "(`torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict(), 'vgg19_imagenet.pth')`) "
    "and give its path with `--vgg_weights /path/to/vgg19_imagenet.pth`, or disable the perceptual term "
    "with `--use_perceptual False`."
)


def _build_features(n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = 3
    for v in VGG19_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(prev, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            prev = v
    return nn.Sequential(*layers[:n_layers])


def load_vgg19_features(module: nn.Sequential, weights_path: str | os.PathLike) -> None:
    """Load the ``features.*`` entries of a torchvision-layout VGG-19 state dict into ``module`` (in place).

    Raises:
        FileNotFoundError: ``weights_path`` does not exist (the message says how to make the file).
        ValueError: the file lacks entries the truncated network needs, or their shapes differ.
    """
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"VGG-19 weights: the perceptual loss (equation 8) needs ImageNet VGG-19 weights, but {path!r} "
            f"does not exist. {_WEIGHTS_HINT}"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    wanted = module.state_dict()
    picked, missing = {}, []
    for key in wanted:
        full = f"features.{key}"
        if full in state:
            picked[key] = state[full]
        else:
            missing.append(full)
    if missing:
        raise ValueError(
            f"VGG-19 weights: {path!r} is not a torchvision-layout VGG-19 state dict; missing {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''}. {_WEIGHTS_HINT}"
        )
    for key, value in picked.items():
        if tuple(value.shape) != tuple(wanted[key].shape):
            raise ValueError(
                f"VGG-19 weights: entry 'features.{key}' of {path!r} has shape {tuple(value.shape)}, "
                f"expected {tuple(wanted[key].shape)} (is this VGG-19?)."
            )
    module.load_state_dict(picked, strict=True)


class VGG19Features(nn.Module):
    """Frozen VGG-19 feature extractor up to ``layer`` (inclusive), for images normalised to [0, 1].

    Single-channel input is repeated to 3 channels and standardised with the ImageNet mean and standard
    deviation (torchvision's convention for its weights).

    Args:
        weights_path: torchvision-layout state dict file (``features.0.weight`` ...). ``None`` keeps the
            random initialisation, which is only meant for tests; with ``require_weights=True`` (default)
            ``None`` raises.
        layer: last layer to keep, by name (``"relu5_4"``, default, as the CPCE reference; ``"relu2_2"``,
            ``"conv4_4"``, ...).
        require_weights: raise if no weights file is given. Default True.

    Raises:
        FileNotFoundError: weights required but missing.
        ValueError: unknown ``layer`` or an unusable weights file.

    Shapes:
        ``(B, 1 or 3, H, W)`` → ``(B, C_layer, H / 2^k, W / 2^k)`` with ``k`` pools before ``layer``.
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        layer: str = "relu5_4",
        require_weights: bool = True,
    ):
        super().__init__()
        if layer not in VGG19_LAYER_NAMES:
            raise ValueError(f"VGG19Features: unknown `layer` {layer!r}; expected one of {VGG19_LAYER_NAMES}.")
        self.layer = layer
        self.features = _build_features(VGG19_LAYER_NAMES.index(layer) + 1)
        if weights_path is None or weights_path == "":
            if require_weights:
                raise FileNotFoundError(
                    "VGG19Features: the perceptual loss (equation 8) needs ImageNet VGG-19 weights, but no "
                    f"weights file was given. {_WEIGHTS_HINT}"
                )
        else:
            load_vgg19_features(self.features, weights_path)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # noqa: D102 - frozen: always evaluation mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"VGG19Features: expected (B, 1 or 3, H, W), got shape {tuple(x.shape)}.")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std)


class VGGPerceptualLoss(nn.Module):
    """Equation 8 of Huang et al.: ``L_per = ‖vgg(y) − vgg(ŷ)‖²``, as a mean over feature elements.

    Args:
        weights_path: torchvision-layout VGG-19 state dict file; see :class:`VGG19Features`.
        layer: feature layer compared. Default ``"relu5_4"`` (the CPCE reference uses conv5_4 after ReLU).
        require_weights: see :class:`VGG19Features`. Default True.

    Shapes:
        ``forward(pred, target)`` on ``(B, 1, H, W)`` images in [0, 1] → scalar.
    """

    def __init__(
        self, weights_path: str | os.PathLike | None = None, layer: str = "relu5_4", require_weights: bool = True
    ):
        super().__init__()
        self.vgg = VGG19Features(weights_path, layer=layer, require_weights=require_weights)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.vgg(target)
        return torch.mean((self.vgg(pred) - target_features) ** 2)


def torchvision_layout_state_dict(features: nn.Sequential | Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """``{"features.<i>.<param>": tensor}`` for a feature stack (used by tests to write fake weights files)."""
    module = features if isinstance(features, nn.Sequential) else nn.Sequential(*features)
    return {f"features.{k}": v.detach().clone() for k, v in module.state_dict().items()}
