"""Scripts of the ``cpce_rfm_da`` bundle: CPCE-2D, random frequency masks, losses and the domain-adaptation trainer.

Inference needs only ``networks``, ``data`` and ``inferers`` (torch and MONAI). ``domains`` (training data
simulation) imports ``ldct_sim`` and is therefore not imported here: use ``scripts.domains`` explicitly.
"""

from . import checkpoints, data, dicom_series, evaluate, frequency, handlers, helpers, inferers, input_checks, losses, networks, trainer, vgg

__all__ = ["checkpoints", "data", "dicom_series", "evaluate", "handlers", "frequency", "helpers", "inferers", "input_checks", "losses", "networks", "trainer", "vgg"]
