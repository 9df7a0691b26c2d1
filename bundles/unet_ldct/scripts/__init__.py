"""Code of the ``unet_ldct`` bundle: the network, inference, metrics, handlers and data helpers.

Inference needs only MONAI, PyTorch (and pytorch-ignite, which MONAI's engines use) besides this package.
"""

from . import data, dicom_series, handlers, inferers, input_checks, metrics, networks, transforms, utils
from .networks import LDCTUNet

__all__ = ["LDCTUNet", "data", "dicom_series", "handlers", "inferers", "input_checks", "metrics", "networks", "transforms", "utils"]
