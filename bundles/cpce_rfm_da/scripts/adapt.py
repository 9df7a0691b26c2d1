"""Adapting the shipped denoiser to a user's scanner (``configs/adapt.json``): source pairs, and the mask report.

``configs/adapt.json`` layers on ``configs/train.json``: labelled source pairs from a
``python -m ldct_sim simulate`` output folder (``--source_dir``; simulated with the user's scanner profile),
unlabelled low-dose CT of the user's scanner (``--target_dir``: DICOM series or NIfTI in HU), training
from the shipped weights, model selection on the *source* validation pairs only. This module finds the
source pairs and writes the report that says whether the frequency mask adapts per domain.

Needs only torch, ignite and MONAI (no ``ldct_sim``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from ignite.engine import Events

__all__ = ["source_items", "target_items", "load_initial_weights", "log_to_file", "MaskReport"]


def _datalist_file(source_dir: str | os.PathLike) -> Path:
    """The ``datalist.json`` of a simulate output: ``source_dir`` itself or its single unit folder."""
    folder = Path(source_dir)
    if not str(source_dir) or not folder.is_dir():
        raise FileNotFoundError(
            f"adapt: `source_dir` {str(source_dir)!r} is not a folder; pass --source_dir with the output of "
            "`python -m ldct_sim simulate --input NORMAL_DOSE --profile PROFILE --out SRC`."
        )
    if (folder / "datalist.json").is_file():
        return folder / "datalist.json"
    found = sorted(folder.glob("*/datalist.json"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.parent.name for p in found)})"
        raise FileNotFoundError(
            f"adapt: {str(folder)!r} holds {what} simulated datasets (<unit>/datalist.json); pass the one to "
            "use, e.g. --source_dir SRC/<profile name>."
        )
    return found[0]


def source_items(source_dir: str | os.PathLike, split: str = "training", at_least: int = 0) -> list[dict]:
    """Labelled source pairs ``[{"image": low-dose, "label": normal-dose}, ...]`` of one split, absolute paths.

    Args:
        source_dir: a ``python -m ldct_sim simulate`` output (the folder with ``datalist.json``, or its parent
            when it holds exactly one unit folder). Images are linear attenuation in cm⁻¹.
        split: ``"training"`` (the pairs trained on) or ``"validation"`` (the pairs that select the model).
        at_least: repeat the list until it holds at least this many items (one random patch is drawn per
            item, so a few slices still give an epoch of many patches). Default 0: each pair once.

    Raises:
        FileNotFoundError: no (or more than one) datalist under ``source_dir``.
        ValueError: the split is empty: model selection on source pairs needs a validation split
            (simulate with ``--split`` giving it slices, e.g. ``--split 80 20 0``).
    """
    path = _datalist_file(source_dir)
    content = json.loads(path.read_text())
    items = content.get(split) or []
    if not items:
        raise ValueError(
            f"adapt: {str(path)!r} has no {split!r} pairs; the adapted model is selected on source validation "
            "pairs, so simulate with a validation split (e.g. `--split 80 20 0`, at least 2 input slices)."
        )
    base = path.parent
    pairs = [{"image": str(base / it["image"]), "label": str(base / it["label"])} for it in items]
    repeats = max(1, -(-int(at_least) // len(pairs)))
    return [dict(p) for _ in range(repeats) for p in pairs]


def log_to_file(run_dir: str | os.PathLike, name: str = "adapt.log") -> str:
    """Also write the run's log (every logger's INFO and above) to ``<run_dir>/<name>``; returns its path."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(os.fspath(run_dir), name)
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == os.path.abspath(path) for h in root.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
        root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)
    return path


def target_items(target_dir: str | os.PathLike, needed: bool = True) -> list[dict]:
    """Unlabelled target images ``[{"image": path}, ...]``: NIfTI files and DICOM series (one item each) under
    ``target_dir``, in HU. ``[]`` when the run uses no target (``needed=False``, e.g. ``--baseline true``).

    Raises:
        ValueError: the target is needed and ``target_dir`` is not given.
        FileNotFoundError: ``target_dir`` does not exist or holds no image.
    """
    if not needed:
        return []
    if not str(target_dir):
        raise ValueError(
            "adapt: pass --target_dir, a folder of your scanner's low-dose CT (DICOM series or NIfTI in HU); "
            "no full-dose partner is needed."
        )
    from .data import list_images

    return list_images(target_dir, group_dicom_series=True)


def load_initial_weights(network: torch.nn.Module, path: str, map_location="cpu") -> torch.nn.Module:
    """Load the weights adaptation starts from (default the shipped ``models/model.pt``) into ``network``.

    A checkpoint in the run folder, when resuming, is loaded afterwards and wins.

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"adapt: no initial weights at {path!r}; pass --init_weights PATH (a models/model.pt).")
    state = torch.load(path, map_location=map_location, weights_only=True)
    network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    logging.getLogger("adapt").info("adapt: starting from %s", path)
    return network


class MaskReport:
    """Whether the adaptive frequency mask adapts: its keep-probability per radial bin, per domain.

    When training starts and when it completes, the mask encoder (in evaluation mode: the mean latent) is
    run on ``n_images`` source low-dose and target images of the training dataset; the mean and the SD
    over images of the keep-probability in each of the encoder's radial bins are written to
    ``<out_dir>/mask_report.json`` (``before``/``after`` × ``source``/``target``), with the largest
    between-domain gap and the largest within-domain SD. A mask that is the same for every image (SD ≈ 0,
    gap ≈ 0) is not adaptive: the encoder has collapsed to its prior.

    Args:
        rfm: the :class:`~scripts.frequency.AdaptiveRFM` (anything else: the report says so and stops).
        dataset: a :class:`~scripts.data.CrossDomainDataset` (items with ``image`` and ``target``).
        out_dir: folder of ``mask_report.json``.
        n_images: images per domain. Default 16.
        device: where the encoder runs.
    """

    def __init__(self, rfm, dataset, out_dir: str, n_images: int = 16, device="cpu"):
        self.rfm, self.dataset, self.out_dir = rfm, dataset, Path(out_dir)
        self.n_images, self.device = int(n_images), device
        self.report: dict = {}

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, self._measure, "before")
        engine.add_event_handler(Events.COMPLETED, self._measure, "after")

    def _images(self, key: str) -> torch.Tensor:
        n = min(self.n_images, len(self.dataset))
        return torch.stack([torch.as_tensor(self.dataset[i][key]) for i in range(n)]).to(self.device)

    @torch.no_grad()
    def _measure(self, engine, when: str) -> None:
        encoder = getattr(self.rfm, "encoder", None)
        if encoder is None or not getattr(self.dataset, "target_data", True):
            why = "rfm_mode is not 'adaptive'" if encoder is None else "no target images (--baseline true)"
            self.report = {"adaptive_mask": False, "note": f"no adaptive mask trained in this run ({why})."}
            self._write()
            return
        was_training = encoder.training
        encoder.eval()
        entry = {}
        for domain, key in (("source", "image"), ("target", "target")):
            probs = torch.sigmoid(encoder(self._images(key).float())[0])  # (N, n_bins)
            entry[domain] = {"mean": probs.mean(0).tolist(), "sd_over_images": probs.std(0, unbiased=False).tolist()}
        encoder.train(was_training)
        src, tgt = torch.tensor(entry["source"]["mean"]), torch.tensor(entry["target"]["mean"])
        entry["max_domain_gap"] = float((src - tgt).abs().max())
        entry["max_sd_over_images"] = float(max(max(entry[d]["sd_over_images"]) for d in ("source", "target")))
        self.report[when] = entry
        # adaptive: the mask differs between images or between domains by more than 2 points of probability
        entry["adaptive_mask"] = bool(entry["max_sd_over_images"] > 0.02 or entry["max_domain_gap"] > 0.02)
        n_bins = len(entry["source"]["mean"])
        self.report["bin_centres_normalised_radius"] = [i / max(n_bins - 1, 1) for i in range(n_bins)]
        self.report["keep_radius"] = float(getattr(self.rfm, "keep_radius", 0.0))
        self._write()
        logging.getLogger("adapt").info(
            "mask report (%s): keep-probability source %.3f, target %.3f (mean over bins); largest gap %.3f, "
            "largest SD over images %.3f", when, float(src.mean()), float(tgt.mean()), entry["max_domain_gap"],
            entry["max_sd_over_images"])

    def _write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / ".mask_report.json.tmp"
        tmp.write_text(json.dumps(self.report, indent=1))
        os.replace(tmp, self.out_dir / "mask_report.json")
