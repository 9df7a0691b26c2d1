"""PSNR and SSIM of the low-dose input and of denoisers, laid out as Table 1 of Huang et al.

Needs only torch, numpy and MONAI. Every number states its convention:

* ``full``: HU clipped to the full range [-1024, 3072], peak (data range) 4096 HU;
* ``window``: HU clipped to the abdominal window [-160, 240], peak 400 HU.

Images reach this module normalised by the bundle's preprocessing (``hu_window`` → [0, 1]) and are
mapped back to HU linearly, so the metrics do not depend on whether the files hold cm⁻¹ or HU.
Means are given ± the standard deviation over images (the seed's table says "mean±var"; we report the
standard deviation, which has the metric's unit).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.data import Dataset

from . import image_quality
from .input_checks import load_weights

__all__ = [
    "DEFAULT_CONVENTIONS",
    "WindowedOutput",
    "psnr",
    "ssim",
    "image_metrics",
    "evaluate_runs",
    "format_markdown",
]

logger = logging.getLogger(__name__)

#: name -> (low HU, high HU): clip range and, as high - low, the PSNR peak and SSIM data range.
DEFAULT_CONVENTIONS: dict[str, tuple[float, float]] = {"full": (-1024.0, 3072.0), "window": (-160.0, 240.0)}


class WindowedOutput:
    """Output transform for Ignite metrics: ``(pred, label)`` re-scaled from ``hu_window`` to a display window.

    Images normalised to [0, 1] over ``hu_window`` are mapped to HU, clipped to ``window`` and scaled to
    [0, 1] over it, so that ``PeakSignalToNoiseRatio(max_val=1.0)`` gives the windowed PSNR (peak =
    window width) and ``SSIMMetric(data_range=1.0)`` the windowed SSIM.

    Args:
        hu_window: ``[low, high]`` HU that [0, 1] spans (the bundle's ``hu_window``).
        window: ``[low, high]`` HU of the metric. Default [-160, 240].
        keys: output keys of prediction and label. Default ``("pred", "label")``.
    """

    def __init__(self, hu_window: Sequence[float], window: Sequence[float] = (-160.0, 240.0), keys=("pred", "label")):
        self.lo, self.hi = (float(v) for v in hu_window)
        self.w_lo, self.w_hi = (float(v) for v in window)
        if not (self.hi > self.lo and self.w_hi > self.w_lo):
            raise ValueError(f"WindowedOutput: windows must be increasing, got {hu_window!r} and {window!r}.")
        self.keys = tuple(keys)

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        hu = self.lo + x * (self.hi - self.lo)
        return (hu.clamp(self.w_lo, self.w_hi) - self.w_lo) / (self.w_hi - self.w_lo)

    def __call__(self, output):
        from monai.handlers import from_engine

        pred, label = from_engine(list(self.keys))(output)
        if isinstance(pred, torch.Tensor):
            return self._map(pred), self._map(label)
        return [self._map(p) for p in pred], [self._map(y) for y in label]


def psnr(pred_hu: torch.Tensor, label_hu: torch.Tensor, low: float, high: float) -> float:
    """PSNR in dB of HU images clipped to [low, high], peak ``high - low`` (``image_quality.psnr``: MONAI's metric)."""
    return image_quality.psnr(pred_hu.double().clamp(low, high), label_hu.double().clamp(low, high), high - low)


def ssim(pred_hu: torch.Tensor, label_hu: torch.Tensor, low: float, high: float) -> float:
    """SSIM (11×11 Gaussian window, σ 1.5) of 2-D HU images ``(1, 1, H, W)`` clipped to [low, high].

    ``image_quality.ssim``: MONAI's ``SSIMMetric`` convention computed in float64 (``SSIMMetric`` itself casts
    to float32), on the clipped images rescaled to [0, 1] (data range 1): the same SSIM as on HU with data
    range ``high - low``.
    """
    scale = lambda x: (x.double().clamp(low, high) - low) / (high - low)  # noqa: E731
    return image_quality.ssim(scale(pred_hu), scale(label_hu), 1.0)


def image_metrics(
    pred_hu: torch.Tensor, label_hu: torch.Tensor, conventions: Mapping[str, Sequence[float]] = DEFAULT_CONVENTIONS
) -> dict[str, float]:
    """``{"psnr_<convention>": dB, "ssim_<convention>": value}`` for one image pair ``(1, 1, H, W)`` in HU."""
    out = {}
    for name, (low, high) in conventions.items():
        out[f"psnr_{name}"] = psnr(pred_hu, label_hu, float(low), float(high))
        out[f"ssim_{name}"] = ssim(pred_hu, label_hu, float(low), float(high))
    return out


def _load_weights(network: torch.nn.Module, path: str, map_location) -> None:
    network.load_state_dict(load_weights(path, network, "CPCE-2D weights", map_location=map_location))


def _convention_label(name: str, low: float, high: float, peak: str = "peak") -> str:
    kind = {"full": "full range", "window": "window"}.get(name, f"{name} window")
    return f"{kind} [{low:g}, {high:g}] HU, {peak} {high - low:g} HU"


def evaluate_runs(
    runs: Sequence[Mapping],
    network: torch.nn.Module,
    transform,
    hu_window: Sequence[float],
    output_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    conventions: Mapping[str, Sequence[float]] = DEFAULT_CONVENTIONS,
    input_name: str = "LDCT",
) -> dict:
    """Evaluate the low-dose input and each checkpoint of each run; write Table-1-style CSV and Markdown.

    Args:
        runs: one mapping per direction: ``name`` (e.g. ``"S→R"``), ``data`` (items ``{"image", "label"}``
            of the target domain's test pairs) and ``checkpoints`` (``{method name: path or None}``, in
            column order; ``None`` or a missing file leaves the cell empty with a warning).
        network: the denoiser, weights loaded per checkpoint (``model.pt`` state dict, or a training
            checkpoint holding ``"model"``).
        transform: preprocessing giving ``image`` and ``label`` as ``(1, H, W)`` tensors in [0, 1] over
            ``hu_window``.
        hu_window: ``[low, high]`` HU that [0, 1] spans.
        output_dir: folder of ``metrics_per_image.csv``, ``table.csv`` and ``table.md``.
        device: device of the network.
        conventions: ``{name: (low HU, high HU)}``; default full range and the [-160, 240] window.
        input_name: column name of the unprocessed low-dose input. Default ``"LDCT"``.

    Returns:
        ``{"rows": [...], "markdown": str}`` with one row per (direction, method, metric).
    """
    lo_hu, hi_hu = (float(v) for v in hu_window)
    to_hu = lambda x: lo_hu + x * (hi_hu - lo_hu)  # noqa: E731
    os.makedirs(output_dir, exist_ok=True)
    device = torch.device(device)
    network = network.to(device).eval()
    per_image, summary, methods = [], [], [input_name]
    for run in runs:
        name, items = run["name"], list(run["data"])
        if not items:
            raise ValueError(f"evaluate_runs: run {name!r} has no test items.")
        ds = Dataset(items, transform)
        results: dict[str, list[dict]] = {input_name: []}
        labels, inputs = [], []
        for k in range(len(ds)):
            item = ds[k]
            inputs.append(torch.as_tensor(item["image"]).float()[None])
            labels.append(torch.as_tensor(item["label"]).float()[None])
            results[input_name].append(image_metrics(to_hu(inputs[-1]), to_hu(labels[-1]), conventions))
        for method, path in dict(run.get("checkpoints", {})).items():
            if method not in methods:
                methods.append(method)
            if path is None or not os.path.isfile(os.fspath(path)):
                logger.warning("evaluate_runs: %s / %s: no checkpoint at %r, cell left empty.", name, method, path)
                continue
            _load_weights(network, os.fspath(path), device)
            results[method] = []
            with torch.no_grad():
                for x, y in zip(inputs, labels):
                    pred = network(x.to(device)).cpu()
                    results[method].append(image_metrics(to_hu(pred), to_hu(y), conventions))
        for method, rows in results.items():
            for k, metrics in enumerate(rows):
                per_image.append({"direction": name, "method": method, "index": k, **metrics})
            for metric in rows[0]:
                values = np.array([r[metric] for r in rows], dtype=np.float64)
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                summary.append({"direction": name, "method": method, "metric": metric, "mean": float(values.mean()),
                                "std": std, "n_images": len(values)})
    _write_csv(os.path.join(output_dir, "metrics_per_image.csv"), per_image)
    _write_csv(os.path.join(output_dir, "table.csv"), summary)
    markdown = format_markdown(summary, [r["name"] for r in runs], methods, conventions)
    with open(os.path.join(output_dir, "table.md"), "w", encoding="utf-8") as f:
        f.write(markdown)
    logger.info("evaluate_runs: wrote %s\n%s", os.path.join(output_dir, "table.md"), markdown)
    return {"rows": summary, "markdown": markdown}


def _write_csv(path: str, rows: list[dict]) -> None:
    if not rows:
        return
    fields = list(rows[0])
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def format_markdown(
    summary: Sequence[Mapping],
    directions: Sequence[str],
    methods: Sequence[str],
    conventions: Mapping[str, Sequence[float]] = DEFAULT_CONVENTIONS,
) -> str:
    """Table 1 layout: one block per metric and convention, one row per direction, one column per method."""
    lookup = {(r["direction"], r["method"], r["metric"]): r for r in summary}
    lines = ["| | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for metric, unit, digits, peak in (("psnr", "PSNR (dB)", 2, "peak"), ("ssim", "SSIM", 4, "data range")):
        for conv, (low, high) in conventions.items():
            header = f"**{unit}, {_convention_label(conv, float(low), float(high), peak)}, mean ± std**"
            lines.append(f"| {header} |" + " |" * len(methods))
            for d in directions:
                cells = []
                for m in methods:
                    r = lookup.get((d, m, f"{metric}_{conv}"))
                    cells.append("–" if r is None else f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}")
                lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
