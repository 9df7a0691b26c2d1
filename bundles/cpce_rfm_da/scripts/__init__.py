"""Scripts of the ``cpce_rfm_da`` bundle: CPCE-2D, random frequency masks, losses and the domain-adaptation trainer.

Inference needs only ``networks``, ``data`` and ``inferers`` (torch and MONAI). ``domains`` (training data
simulation) imports ``ldct_sim`` and is therefore not imported here: use ``scripts.domains`` explicitly.
"""

from . import data, dicom_series, evaluate, frequency, handlers, inferers, input_checks, losses, networks, trainer, vgg

__all__ = ["data", "dicom_series", "evaluate", "handlers", "frequency", "inferers", "input_checks", "losses", "networks", "trainer", "vgg"]
