"""Dictionary transforms used by the configs: a unit sanity check and a reference model's prediction."""

from __future__ import annotations

import logging
import warnings

import torch
from monai.config import KeysCollection
from monai.inferers import Inferer, SimpleInferer
from monai.transforms import MapTransform

from .utils import UNITS

__all__ = ["CheckIntensityUnitd", "PredictReferenced"]

logger = logging.getLogger(__name__)


class CheckIntensityUnitd(MapTransform):
    """Warn when an image's values do not look like the declared unit.

    Attenuation images in cm⁻¹ lie within about [-0.1, 5] (air 0, water 0.21, bone < 1); HU images
    span hundreds to thousands. A 99th percentile above 10 in ``"mu"`` mode, or a whole image within
    [-1, 10] in ``"hu"`` mode, gives a ``UserWarning`` with the fix. Data pass through unchanged.

    Args:
        keys: keys of the images to check.
        unit: the declared unit, ``"mu"`` or ``"hu"``.
        allow_missing_keys: don't raise for missing keys.

    Raises:
        ValueError: an unknown unit.
    """

    def __init__(self, keys: KeysCollection, unit: str = "mu", allow_missing_keys: bool = False) -> None:
        if not isinstance(unit, str) or unit.lower() not in UNITS:
            raise ValueError(f"CheckIntensityUnitd: `unit` must be one of {UNITS}, got {unit!r}.")
        super().__init__(keys, allow_missing_keys)
        self.unit = unit.lower()

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key]).detach().float().flatten()
            name = getattr(d[key], "meta", {}).get("filename_or_obj", key)
            if img.numel() == 0:
                continue
            if img.numel() > 1_000_000:
                img = img[:: img.numel() // 1_000_000 + 1]
            hi, lo = float(torch.quantile(img, 0.99)), float(img.min())
            if self.unit == "mu" and hi > 10.0:
                warnings.warn(
                    f"{name}: values up to {hi:.0f} look like Hounsfield units, but the input unit is 'mu' "
                    "(attenuation in cm^-1); pass --input_unit hu.",
                    stacklevel=2,
                )
            elif self.unit == "hu" and lo > -1.0 and hi < 10.0:
                warnings.warn(
                    f"{name}: values within [{lo:.3g}, {hi:.3g}] look like attenuation in cm^-1, but the input unit "
                    "is 'hu'; pass --input_unit mu.",
                    stacklevel=2,
                )
        return d


class PredictReferenced(MapTransform):
    """Add a reference network's output for ``keys`` under ``output_key`` (the study's "self-test" image).

    Used in evaluation postprocessing, on one decollated item whose image is already on the device in
    the network's intensity scale. With ``checkpoint=None`` the transform does nothing, so a config can
    keep it in place and switch it on with one override.

    Args:
        keys: the input image key (one key).
        network: the reference network (same architecture as the evaluated one, or any 2-D denoiser).
        checkpoint: path of the reference weights (a state dict, or a dict holding it under ``"model"``),
            or ``None`` to disable the transform.
        output_key: where to store the reference image. Default ``"reference"``.
        inferer: how to run the network; default ``SimpleInferer``.
        map_location: ``torch.load`` map location for the weights. Default ``"cpu"``.

    Raises:
        ValueError: more than one key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        network: torch.nn.Module,
        checkpoint: str | None = None,
        output_key: str = "reference",
        inferer: Inferer | None = None,
        map_location: str | torch.device = "cpu",
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(f"PredictReferenced: expects exactly one input key, got {self.keys!r}.")
        self.network = network
        self.checkpoint = checkpoint
        self.output_key = output_key
        self.inferer = inferer or SimpleInferer()
        if checkpoint is not None:
            state = torch.load(checkpoint, map_location=map_location, weights_only=True)
            if "model" in state and isinstance(state["model"], dict):
                state = state["model"]
            network.load_state_dict(state)
            network.eval()
            logger.info(f"PredictReferenced: reference network loaded from {checkpoint}.")

    def __call__(self, data):
        if self.checkpoint is None:
            return data
        d = dict(data)
        img = d[self.keys[0]]
        device = next(self.network.parameters()).device
        with torch.no_grad():
            out = self.inferer(img[None].to(device), self.network)
        d[self.output_key] = out[0]
        return d
