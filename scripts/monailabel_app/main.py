"""MONAI Label app serving the LDCT denoising bundles (structure of MONAI Label's ``monaibundle`` sample app).

Start the server with ``python scripts/monailabel_app/server.py --studies DIR [--conf bundles unet_ldct,...]``
(``server.py`` runs ``monailabel start_server --app scripts/monailabel_app`` after one import fix; see
``lib/compat.py``), or train without a server, as the server's own training subprocess does::

    MONAI_LABEL_APP_CONF='{"bundles": "unet_ldct"}' python -m monailabel.interfaces.utils.app \
        -a scripts/monailabel_app -s DIR -m train -r '{"model": "unet_ldct", "max_epochs": 5}'

(``-m infer`` of that command is broken in monailabel 0.8.5 itself: it unpacks the app's result dict as
a pair. Use the server's ``POST /infer/<model>``.)

``--conf`` keys: ``bundles`` (comma-separated bundle folders or names in ``bundles_dir``; default both
bundles of this repository, copied to ``<app>/model/``), ``bundles_dir`` (default the repository's
``bundles/``), ``input_unit`` (``mu`` or ``hu``: the unit of the studies' images; default each bundle's),
``skip_trainers`` (``true`` serves inference only), ``preload``.
"""

from __future__ import annotations

import logging
from typing import Dict

from lib.compat import import_monailabel

import_monailabel()  # before anything imports monailabel.interfaces.app (it needs pydicom_seg)

import monailabel  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferTask  # noqa: E402
from monailabel.interfaces.tasks.strategy import Strategy  # noqa: E402
from monailabel.interfaces.tasks.train import TrainTask  # noqa: E402
from monailabel.tasks.activelearning.first import First  # noqa: E402
from monailabel.tasks.activelearning.random import Random  # noqa: E402
from monailabel.utils.others.generic import strtobool  # noqa: E402

from lib.bundles import resolve_bundles  # noqa: E402
from lib.infers import DenoiseBundleInferTask  # noqa: E402
from lib.trainers import DenoiseBundleTrainTask  # noqa: E402

logger = logging.getLogger(__name__)


class LDCTDenoisingApp(MONAILabelApp):
    """Inference (denoised image in the input's unit) and fine-tuning on {low-dose, normal-dose} pairs.

    The datastore is MONAI Label's: low-dose images in the studies folder, the normal-dose image of
    each in ``labels/final/`` under the same name (the "final label" of that image).
    """

    def __init__(self, app_dir, studies, conf):
        self.models = resolve_bundles(app_dir, conf)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"LDCT denoising bundles ({monailabel.__version__})",
            description="Low-dose CT denoising with the unet_ldct and cpce_rfm_da MONAI bundles",
            version=monailabel.__version__,
        )

    def init_infers(self) -> Dict[str, InferTask]:
        infers: Dict[str, InferTask] = {}
        for name, path in self.models.items():
            task = DenoiseBundleInferTask(path, self.conf)
            if task.is_valid():
                logger.info(f"+++ Adding Inferer:: {name} => {path}")
                infers[name] = task
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        trainers: Dict[str, TrainTask] = {}
        if strtobool(self.conf.get("skip_trainers", "false")):
            return trainers
        for name, path in self.models.items():
            task = DenoiseBundleTrainTask(path, self.conf)
            if task.is_valid():
                logger.info(f"+++ Adding Trainer:: {name} => {path}")
                trainers[name] = task
        return trainers

    def init_strategies(self) -> Dict[str, Strategy]:
        return {"random": Random(), "first": First()}
