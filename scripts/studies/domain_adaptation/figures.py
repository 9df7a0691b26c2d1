"""Figures of the cross-domain study (the seed's Figures 2 and 3): one target test image per direction, every
method, in the seed's display window with a zoomed ROI. Pixels in, PNG out: the images come from :mod:`.study`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ldct_scripts.files import atomic_path

from .analysis import rmse_hu, roi_box
from .config import DISPLAY_HU

__all__ = ["examples_figure"]


def examples_figure(path, title: str, panels: Sequence[tuple[str, np.ndarray]], label_hu: np.ndarray,
                    display: Sequence[float] = DISPLAY_HU) -> Path:
    """Write a two-row figure: each panel in ``display`` with the ROI boxed (top), the ROI zoomed (bottom).

    Args:
        path: the PNG file (written at 110 dpi; same pixels in, same bytes out).
        title: the figure's title.
        panels: ``(title, image in HU)`` per column; a title starting with ``NDCT`` is the label (no RMSE shown).
        label_hu: the label in HU, that each panel's RMSE (HU) is computed against.
        display: ``[low, high]`` HU of the grey scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    r0, c0, size = roi_box(label_hu.shape[0])
    vmin, vmax = display
    fig, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 5.4), squeeze=False)
    for j, (name, hu) in enumerate(panels):
        axes[0, j].imshow(hu, cmap="gray", vmin=vmin, vmax=vmax)
        axes[0, j].add_patch(Rectangle((c0, r0), size, size, fill=False, edgecolor="yellow", linewidth=1.2))
        axes[0, j].set_title(name if name.startswith("NDCT") else f"{name}\nRMSE {rmse_hu(hu, label_hu):.1f} HU", fontsize=8)
        axes[1, j].imshow(hu[r0:r0 + size, c0:c0 + size], cmap="gray", vmin=vmin, vmax=vmax)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[1, 0].set_ylabel("ROI (yellow box)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # a killed run leaves no half-written figure
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
