"""The crops figure of :mod:`ldct_scripts.bench.bench_real`: per kernel, a crop of each method and of the full dose."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ldct_scripts.bench.real_metrics import INPUT, WINDOW_HU

__all__ = ["crops_figure"]


def _crop_box(mask: np.ndarray) -> tuple[slice, slice]:
    h, w = mask.shape
    side = max(min(h, w) // 3, min(h, w, 32))
    ys, xs = np.nonzero(mask)
    cy, cx = (int(ys.mean()), int(xs.mean())) if len(ys) else (h // 2, w // 2)
    y0 = min(max(cy - side // 2, 0), h - side)
    x0 = min(max(cx - side // 2, 0), w - side)
    return slice(y0, y0 + side), slice(x0, x0 + side)


def crops_figure(path: Path, crops: dict[str, dict]) -> Path:
    """One row per kernel: the crop of each method and of the full dose, [−160, 240] HU, with its body RMSE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernels = list(crops)
    cols = list(next(iter(crops.values()))["images"])
    fig, axes = plt.subplots(len(kernels), len(cols), figsize=(2.4 * len(cols), 2.8 * len(kernels) + 0.3), squeeze=False)
    for i, kernel in enumerate(kernels):
        c = crops[kernel]
        for j, col in enumerate(cols):
            ax = axes[i][j]
            ax.imshow(c["images"][col], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            label = col if col in (INPUT, "full dose") else col.replace(", best σ (oracle)", f" σ {c.get('sigma', 0):.2f}")
            rmse = c["rmse"].get(col)
            ax.set_title(label + (f"\n{rmse:.1f} HU" if rmse is not None else "\nreference"), fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{kernel}\n{c['name']}", fontsize=8)
    fig.suptitle("Crops, [−160, 240] HU; body RMSE vs full dose", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
