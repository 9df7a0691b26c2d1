"""Dictionary transform of the evaluation config: a reference model's prediction."""

from __future__ import annotations

import logging

import torch
from monai.config import KeysCollection
from monai.inferers import Inferer, SimpleInferer
from monai.transforms import MapTransform

from .input_checks import load_weights

__all__ = ["PredictReferenced"]

logger = logging.getLogger(__name__)


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
            state = load_weights(checkpoint, network, "reference U-Net weights", map_location=map_location)
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
