"""Code of the ``unet_ldct`` bundle: the network, inference, metrics, handlers and data helpers.

Inference needs only MONAI, PyTorch (and pytorch-ignite, which MONAI's engines use) besides this package.
"""

from . import checkpoints, data, dicom_series, handlers, helpers, inferers, input_checks, metrics, networks, transforms, utils
from .networks import LDCTUNet

__all__ = ["LDCTUNet", "checkpoints", "data", "dicom_series", "handlers", "helpers", "inferers", "input_checks", "metrics", "networks", "transforms", "utils"]
