"""MONAI Label inference task for a denoising bundle: the result is an image, not a label mask."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Callable, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged, SaveImage

from lib.bundles import model_files
from lib.compat import import_monailabel

import_monailabel()

from monailabel.interfaces.exception import MONAILabelError, MONAILabelException  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferType  # noqa: E402
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: E402
from monailabel.utils.others.generic import file_ext  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["DenoiseBundleInferTask", "UNITS"]

#: intensity units the bundles take (their ``input_unit``): attenuation in cm^-1, or HU.
UNITS = ("mu", "hu")


def _choice(value: Any) -> Any:
    """A request value, or the first (default) entry when MONAI Label passes the option's list of choices."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


class DenoiseBundleInferTask(BundleInferTask):
    """``BundleInferTask`` for a bundle whose output is a denoised image in the input's unit.

    What MONAI Label's stock task does with our bundles, and what this changes:

    * stock runs the bundle's ``preprocessing``, ``inferer`` and ``postprocessing`` (minus
      ``SaveImaged``), so values are already right: float32 in the input's unit. Here too.
    * stock announces a segmentation model with one label (the output channel's name in the metadata's
      ``channel_def``); here the type is ``others`` and there are no labels.
    * stock keeps the channel axis of a 2-D slice and writes a (1, H, W) volume whose voxel sizes are
      shifted by one axis; here the result is written as the bundle's own ``SaveImaged`` writes it, with
      the input's shape and affine (2-D slices and 3-D volumes alike). Stock also resizes with
      nearest-neighbour interpolation when shapes differ (``Restored``); our bundles keep the input's
      size, so nothing is resized here.
    * a client's ``result_dtype`` (for example ``uint8`` for label maps) is ignored: the result is always
      float32 NIfTI, since casting would destroy HU or cm^-1 values.
    * the bundle's ``metadata.json`` is read into the config as ``_meta_`` (as ``monai.bundle run`` does),
      and its loader keeps ``image_only=True`` (stock sets it false, which a loader that returns
      MetaTensors does not expect).
    * ``input_unit`` is a per-request option (``"mu"``: cm^-1, ``"hu"``: Hounsfield units; default from
      ``conf["input_unit"]``, else the bundle's; always ``"hu"`` for DICOM input), set into the bundle
      config before its transforms are built, so the output comes back in the same unit.
    * the weights file used by default is the newest ``models/*.pt`` (a fine-tune's export after
      :class:`lib.trainers.DenoiseBundleTrainTask` has run), not always ``model.pt``;
      ``model_filename`` in a request still picks one.

    Args:
        path: the bundle folder.
        conf: the app's configuration (``--conf`` pairs of ``monailabel start_server``).
        kwargs: passed to ``BundleInferTask`` (``type`` defaults to ``others``).
    """

    def __init__(self, path: str, conf: dict, **kwargs: Any) -> None:
        kwargs.setdefault("type", InferType.OTHERS)
        kwargs.setdefault("add_post_restore", False)  # see the class docstring: no nearest-neighbour resize
        super().__init__(path, conf, **kwargs)
        if not self.valid:
            return
        self.labels = []  # an image, not classes (stock lists the metadata's channel_def as labels)
        bundle_unit = self.bundle_config.get("input_unit", "mu")
        default = str(conf.get("input_unit") or bundle_unit).lower()
        if default not in UNITS:
            raise ValueError(f"input_unit must be one of {UNITS}, got {default!r} (--conf input_unit).")
        self._config["input_unit"] = [default] + [u for u in UNITS if u != default]

    def config(self) -> dict[str, Any]:
        if self.valid:
            self._config["model_filename"] = model_files(self.bundle_path)  # newest first: a fine-tune just written
        return self._config

    def __call__(self, request, callbacks=None):
        self.config()  # the request's defaults are copied from _config
        return super().__call__(request, callbacks)

    def _set_unit(self, data) -> None:
        data = data or {}
        unit = str(_choice(data.get("input_unit") or self._config["input_unit"])).lower()
        image = data.get("image")
        if isinstance(image, str) and (os.path.isdir(image) or image.lower().endswith(".dcm")):
            unit = "hu"  # DICOM CT: the loader applies RescaleSlope/Intercept, so values are HU
        if unit not in UNITS:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"input_unit must be one of {UNITS}, got {unit!r}")
        if "input_unit" in self.bundle_config.config and self.bundle_config["input_unit"] != unit:
            self.bundle_config["input_unit"] = unit
            self.bundle_config.parse(reset=True)  # rebuild the items that depend on @input_unit

    def _load_bundle_config(self, path, config):
        parser = super()._load_bundle_config(path, config)
        # `monai.bundle run` reads metadata.json as `_meta_` (--meta_file); configs may refer to it.
        parser.read_meta(os.path.join(path, "configs", self.const.metadata_json()))
        return parser

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        self._set_unit(data)
        pre = list(super().pre_transforms(data))
        # Stock sets image_only=False on every LoadImaged (to get an `image_meta_dict`); the bundles' loader
        # (a LoadImaged subclass) returns MetaTensors, whose meta this task reads, so keep image_only=True.
        for t in pre:
            loader = getattr(t, "load_image_d", t)
            if isinstance(loader, LoadImaged):
                loader._loader.image_only = True
        return pre

    def writer(self, data: dict[str, Any], extension=None, dtype=None):
        """Write the prediction as float32 NIfTI with the input image's geometry, as the bundle's ``SaveImaged``.

        MONAI's ``SaveImage`` (no resampling) on the channel-first prediction with the input's metadata;
        monailabel's ``Writer`` is not used: its ITK branch writes 2-D results as (1, H, W) volumes and
        its NIfTI branch fails on MONAI 1.6 (it asks a resampling writer for ``original_affine=None``).
        """
        image, pred = data[self.input_key], data[self.output_label_key]
        meta = dict(image.meta) if isinstance(image, MetaTensor) else dict(data.get(f"{self.input_key}_meta_dict", {}))
        pred = MetaTensor(pred.as_tensor() if isinstance(pred, MetaTensor) else torch.as_tensor(pred), meta=meta)
        ext = extension or data.get("result_extension") or file_ext(data.get("image_path") or "")
        ext = ext if ext in (".nii", ".nii.gz") else ".nii.gz"
        with tempfile.NamedTemporaryFile(suffix=ext, delete=False) as f:
            output_file = f.name
        save = SaveImage(output_ext=ext, output_dtype=np.float32, resample=False, separate_folder=False, print_log=False)
        save(pred, filename=output_file[: -len(ext)])
        logger.info(f"Denoised image {tuple(pred.shape[1:])} written to {output_file}")
        return output_file, data.get(self.output_json_key, {})
