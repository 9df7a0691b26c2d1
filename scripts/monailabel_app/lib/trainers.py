"""MONAI Label training task for a denoising bundle: labels are normal-dose images, not masks."""

from __future__ import annotations

import datetime
import logging
import math
import os
from typing import Any

import torch

from lib.bundles import model_files
from lib.compat import import_monailabel

from ldct_scripts.files import atomic_path

import_monailabel()

import monai.bundle  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException  # noqa: E402
from monailabel.tasks.train.bundle import BundleTrainTask  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["DenoiseBundleTrainTask", "EXPORT_NAME"]

#: weights file a training run leaves in the bundle's ``models/`` (a float32 state dict).
EXPORT_NAME = "model_finetuned.pt"
#: request options copied onto bundle keys of the same name (when the bundle has the key).
_PASSED = ("batch_size", "patch_size", "learning_rate", "input_unit", "num_workers")


def _choice(value: Any) -> Any:
    """A request value, or the first (default) entry when MONAI Label passes the option's list of choices."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


def _like(value: Any, default: Any) -> Any:
    """``value`` converted to the type of the bundle's ``default`` (MONAI Label sends strings and numbers)."""
    value = _choice(value) if not isinstance(default, (list, tuple)) else value
    if isinstance(default, bool):
        return str(value).lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, (list, tuple)):
        return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * len(default)
    return value


class DenoiseBundleTrainTask(BundleTrainTask):
    """``BundleTrainTask`` for a denoising bundle, fine-tuning from the bundle's current weights.

    MONAI Label's datastore gives ``{image, label}`` pairs: an image of the studies folder and the
    file of the same name in ``labels/final``. For denoising the image is the low-dose scan and the
    "label" is the normal-dose scan of the same slice or volume, a float image in the same unit, which
    the bundles' training configs already expect; nothing in the datastore requires a mask.

    What the stock task does with our bundles, and what this changes:

    * stock overrides ``train#dataset#data`` and ``validate#dataset#data`` with the pairs: kept. An
      empty validation split (few pairs) is replaced by the training pairs, since the bundles keep the
      best model by validation loss.
    * stock sets ``train#trainer#max_epochs``. The U-Net bundle counts iterations: an Ignite epoch of
      its trainer is one validation interval. Here ``max_epochs`` passes over the training pairs become
      ``num_iterations`` = max_epochs x ceil(pairs / batch_size), validated and saved once per pass
      (``num_iterations`` in the request sets the count directly, rounded up to whole passes). Bundles
      that count epochs (CPCE) get ``max_epochs`` as stock does.
    * stock adds a ``CheckpointLoader`` of ``models/<model_filename>`` to the train handlers. The U-Net
      bundle's ``finetune.json`` does this itself (``pretrained_ckpt``, with early stopping), so when a
      bundle has ``finetune.json`` it is merged after ``train.json`` and given the weights instead;
      ``pretrained: false`` trains from scratch with ``train.json`` alone.
    * each run writes into ``<bundle>/runs/monailabel/<run_id>_<time>/`` with ``resume`` off (a finished
      earlier run must not be resumed), then exports its best weights to ``models/model_finetuned.pt``,
      the file :class:`lib.infers.DenoiseBundleInferTask` uses next (newest first).
    * ``batch_size``, ``patch_size``, ``learning_rate``, ``input_unit`` (default ``--conf input_unit``)
      and ``num_workers`` are request options mapped onto the bundle keys of the same name.
    * CPCE + RFM (``baseline`` in the config): the datastore's images without a final label are the
      unlabelled target domain of the alignment; with none, the plain CPCE baseline is trained. The
      VGG perceptual loss is on only when its weights file exists (``vgg_weights``, never downloaded).
    * single device only: multi-GPU requests run on one device (use the bundle's own ``torchrun``
      command for several GPUs).

    Args:
        path: the bundle folder.
        conf: the app's configuration (``--conf`` pairs).
        kwargs: passed to ``BundleTrainTask``.
    """

    def __init__(self, path: str, conf: dict, **kwargs: Any) -> None:
        super().__init__(path, conf, **kwargs)
        if not self.valid:
            return
        finetune = os.path.join(path, "configs", "finetune.json")
        self.finetune_config_path = finetune if os.path.isfile(finetune) else None
        self._request: dict = {}
        self._datastore: Datastore | None = None
        self._pretrained: str | None = None
        self._run_dir: str | None = None

    def config(self) -> dict[str, Any]:
        c = super().config()
        c["multi_gpu"] = False
        c["model_filename"] = model_files(self.bundle_path)
        c["num_iterations"] = 0  # 0: max_epochs passes over the training pairs
        for key in _PASSED:
            if key in self.bundle_config.config:
                value = self.bundle_config.config[key]
                if key == "num_workers":
                    value = 0
                if key == "input_unit":
                    value = str(self.conf.get("input_unit") or value).lower()
                    value = [value] + [u for u in ("mu", "hu") if u != value]
                c[key] = value
        return c

    def __call__(self, request, datastore: Datastore):
        request = dict(request)
        request["multi_gpu"] = request["force_multi_gpu"] = False
        if self.conf.get("input_unit") and not request.get("input_unit"):
            request["input_unit"] = self.conf["input_unit"]  # the studies' unit (--conf input_unit)
        self._request, self._datastore, self._pretrained, self._run_dir = request, datastore, None, None
        super().__call__(request, datastore)
        exported = self._export()
        logger.info(f"Fine-tuned weights: {exported}")
        return {"model": exported, "run_dir": self._run_dir}

    def _fetch_datalist(self, request, datastore: Datastore):
        datalist = super()._fetch_datalist(request, datastore)
        if not datalist:
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                "No {image, label} pairs: put each normal-dose image in <studies>/labels/final/ under the name "
                "of its low-dose image in <studies>/.",
            )
        return datalist

    def _partition_datalist(self, datalist, request, shuffle=False):
        train, val = super()._partition_datalist(datalist, request, shuffle=shuffle)
        if val is not None and len(val) == 0:
            logger.warning("Validation split is empty: validating on the training pairs.")
            val = list(train)
        return train, val

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        pretrained = _like(pretrained, True)
        if not pretrained or not os.path.isfile(model_pytorch):
            logger.info("Training from scratch" + ("" if not pretrained else f": {model_pytorch} not found"))
            return
        if self.finetune_config_path:
            self._pretrained = model_pytorch  # finetune.json loads it (pretrained_ckpt)
        else:
            super()._load_checkpoint(model_pytorch, pretrained, train_handlers)

    def _config_files(self) -> list[str]:
        if self._pretrained and self.finetune_config_path:
            return [self.bundle_config_path, self.finetune_config_path]
        return [self.bundle_config_path]

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        config, request = self.bundle_config.config, self._request
        run_id = request.get("run_id", "run")
        stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
        self._run_dir = os.path.join(self.bundle_path, "runs", "monailabel", f"{run_id}_{stamp}")
        overrides["output_dir"] = self._run_dir
        if "ckpt_dir" in config:
            overrides["ckpt_dir"] = os.path.join(self._run_dir, "checkpoints")
        if "resume" in config:
            overrides["resume"] = False
        for key in _PASSED:
            if key in config and request.get(key) is not None:
                overrides[key] = _like(request[key], config[key])
        if self._pretrained:
            overrides["pretrained_ckpt"] = self._pretrained

        max_epochs = int(overrides.pop(self.const.key_train_trainer_max_epochs()))
        if "num_iterations" in config:  # the U-Net bundle: iterations, one validation per pass
            n_train = len(overrides[self.const.key_train_dataset_data()])
            batch = int(overrides.get("batch_size", config.get("batch_size", 1)))
            per_pass = math.ceil(n_train / batch)
            n_iter = int(_choice(request.get("num_iterations") or 0)) or max_epochs * per_pass
            overrides["num_iterations"] = math.ceil(n_iter / per_pass) * per_pass
            overrides["val_interval"] = overrides["save_interval"] = per_pass
        elif "max_epochs" in config:
            overrides["max_epochs"] = max_epochs
        else:
            overrides[self.const.key_train_trainer_max_epochs()] = max_epochs

        if "baseline" in config and "train#target_data" in self.bundle_config:  # CPCE + RFM
            target = self._unlabelled_images()
            overrides["baseline"] = not target
            if target:
                overrides["train#target_data"] = target
            if "use_perceptual" in config:
                vgg = self.bundle_config.get_parsed_content("vgg_weights", instantiate=False) if "vgg_weights" in config else None
                overrides["use_perceptual"] = bool(vgg) and os.path.isfile(str(vgg))
        logger.info(f"Overrides: { {k: v for k, v in overrides.items() if 'dataset#data' not in k} }")
        return overrides

    def _unlabelled_images(self) -> list[dict[str, str]]:
        if self._datastore is None:
            return []
        uris = [self._datastore.get_image_uri(i) for i in self._datastore.get_unlabeled_images()]
        return [{"image": u} for u in uris if u and os.path.isfile(u)]

    def run_single_gpu(self, request, overrides):
        monai.bundle.run(
            run_id=request.get("run_id", "run"),
            init_id=None,
            final_id=None,
            meta_file=self.bundle_metadata_path,
            config_file=self._config_files(),
            **overrides,
        )

    def _export(self) -> str:
        """Copy the run's best (else final) weights to ``models/model_finetuned.pt`` as a float32 state dict."""
        ckpt_dir = os.path.join(self._run_dir, "checkpoints")
        for name in ("model.pt", "model_final.pt"):
            src = os.path.join(ckpt_dir, name)
            if os.path.isfile(src):
                break
        else:
            raise MONAILabelException(MONAILabelError.APP_ERROR, f"Training wrote no model.pt in {ckpt_dir}")
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
        state = ckpt.get("model", ckpt)
        dst = os.path.join(self.bundle_path, "models", EXPORT_NAME)
        with atomic_path(dst) as tmp:  # a concurrent inference never reads a half-written file
            torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, tmp)
        return dst
