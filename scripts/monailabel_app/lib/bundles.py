"""Where the app finds its bundles, and which weights file of a bundle is current."""

from __future__ import annotations

import logging
import os
import shutil

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUNDLES", "resolve_bundles", "model_files"]

#: the repository's bundles, served when ``--conf bundles`` is not given.
DEFAULT_BUNDLES = "unet_ldct,cpce_rfm_da"
#: left out when a bundle is copied into the app: run outputs and caches.
_IGNORE = shutil.ignore_patterns("runs", "eval", "logs", "__pycache__", "*.pyc")


def resolve_bundles(app_dir: str, conf: dict) -> dict[str, str]:
    """Bundle folders to serve, by model name (the folder's name).

    ``conf["bundles"]`` is a comma-separated list (default :data:`DEFAULT_BUNDLES`). Each entry is either

    * a path to a bundle folder (absolute, or relative to the working directory): served in place, so
      training writes its runs and exported weights into that folder; or
    * the name of a folder in ``conf["bundles_dir"]`` (default: this repository's ``bundles/``): copied
      once to ``<app_dir>/model/<name>``, where MONAI Label keeps the bundles it downloads, and served
      from there, so that training never touches the repository's bundle. Delete that copy to pick up
      newer weights from the repository.

    No bundle is ever downloaded.

    Args:
        app_dir: the app folder (copies go to ``<app_dir>/model/<name>``).
        conf: the server's ``--conf`` settings (``bundles``, ...).

    Raises:
        FileNotFoundError: an entry that is neither a bundle folder nor a bundle name in ``bundles_dir``.
    """
    names = [b.strip() for b in str(conf.get("bundles") or DEFAULT_BUNDLES).split(",") if b.strip()]
    bundles_dir = conf.get("bundles_dir") or os.path.join(app_dir, os.pardir, os.pardir, "bundles")
    models: dict[str, str] = {}
    for entry in names:
        if os.path.isfile(os.path.join(entry, "configs", "metadata.json")):
            path = os.path.realpath(entry)
        else:
            path = os.path.join(app_dir, "model", entry)
            source = os.path.realpath(os.path.join(bundles_dir, entry))
            if not os.path.isdir(path):
                if not os.path.isfile(os.path.join(source, "configs", "metadata.json")):
                    raise FileNotFoundError(
                        f"Bundle {entry!r}: not a bundle folder (no configs/metadata.json) and not in {source!r}. "
                        "Pass --conf bundles with bundle folder paths or names of folders in --conf bundles_dir."
                    )
                logger.info(f"Copying bundle {source} to {path}")
                shutil.copytree(source, path, ignore=_IGNORE)
            path = os.path.realpath(path)
        models[os.path.basename(path)] = path
    logger.info(f"Bundles: {models}")
    return models


def model_files(bundle: str) -> list[str]:
    """File names of ``<bundle>/models/*.pt``, newest first (the first is what a request uses by default).

    Args:
        bundle: the bundle folder.
    """
    folder = os.path.join(bundle, "models")
    names = [n for n in os.listdir(folder) if n.endswith(".pt")] if os.path.isdir(folder) else []
    return sorted(names, key=lambda n: (-os.path.getmtime(os.path.join(folder, n)), len(n)))
