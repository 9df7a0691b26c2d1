"""Figures of the resolution-transfer study (matplotlib, Agg): each function draws one PNG from arrays and rows.

Images are μ in cm⁻¹, shown in the seed's windows. Every figure is written atomically
(:func:`ldct_scripts.files.atomic_path`) and is the same bytes for the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ldct_scripts.files import atomic_path

from .analysis import cell

__all__ = ["IMAGE_WINDOW", "RESIDUAL_WINDOW", "NOISE_WINDOW", "examples", "crosstest_row", "metrics_vs_resolution",
           "crosstest_heatmap", "retrain_curve", "retrain_images", "noise_images", "nps_curves", "nps_2d", "noise_sd_maps"]

IMAGE_WINDOW = (0.17, 0.26)  # cm^-1, the seed's Figures 3 and 6
RESIDUAL_WINDOW = (-0.007, 0.007)  # cm^-1, the seed's residual images
NOISE_WINDOW = (-0.026, 0.027)  # cm^-1, the seed's Figure 12
_WINDOWS = (f"images [{IMAGE_WINDOW[0]}, {IMAGE_WINDOW[1]}] cm⁻¹, "
            f"residuals [{RESIDUAL_WINDOW[0]}, {RESIDUAL_WINDOW[1]}] cm⁻¹")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder: Path, name: str) -> Path:
    path = Path(folder) / name
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def _show(ax, img, window, title) -> None:
    ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def examples(folder: Path, rows: Sequence[tuple], first_id: str) -> Path:
    """``examples.png``: input, label and self-test output at every resolution (the seed's Figures 3 and 6).

    Args:
        folder: the figures folder.
        rows: ``(resolution µm, input, label, self-test output)`` per resolution.
        first_id: the id of the test slice shown.
    """
    fig, axes = _plt().subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), squeeze=False)
    for row, (t, image, label, self_test) in zip(axes, rows):
        _show(row[0], image, IMAGE_WINDOW, f"{t:g} µm LDCT input")
        _show(row[1], label, IMAGE_WINDOW, f"{t:g} µm label (normal dose)")
        _show(row[2], self_test, IMAGE_WINDOW, f"{t:g} µm self-test output")
    fig.suptitle(f"Test slice {first_id}, window [{IMAGE_WINDOW[0]}, {IMAGE_WINDOW[1]}] cm⁻¹", fontsize=9)
    return _save(fig, folder, "examples.png")


def crosstest_row(folder: Path, name: str, t: float, sid: str, image, label, self_test, preds: Mapping[float, np.ndarray]) -> Path:
    """Every model's output on one test slice and its residual against the self-test (the seed's Figures 4 and 7).

    Args:
        folder: the figures folder.
        name: the file name.
        t: the test resolution (µm).
        sid: the slice's id.
        image: the LDCT input.
        label: the label.
        self_test: the self-test output.
        preds: ``{model resolution: output}``.
    """
    fig, axes = _plt().subplots(2, len(preds) + 1, figsize=(2.2 * (len(preds) + 1), 4.6), squeeze=False)
    _show(axes[0][0], image, IMAGE_WINDOW, "LDCT input")
    _show(axes[1][0], label, IMAGE_WINDOW, "label")
    for k, (m, pred) in enumerate(preds.items(), start=1):
        _show(axes[0][k], pred, IMAGE_WINDOW, f"{m:g} µm model" + (" (self)" if math.isclose(m, t) else ""))
        _show(axes[1][k], pred - self_test, RESIDUAL_WINDOW, f"{m:g} µm − self-test")
    fig.suptitle(f"{t:g} µm test slice {sid}: {_WINDOWS}", fontsize=9)
    return _save(fig, folder, name)


def _resolution_axis(ax, res, title: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks(res)
    ax.set_xticklabels([f"{r:g}" for r in res], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("training resolution (µm)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


def metrics_vs_resolution(folder: Path, cells, res: Sequence[float], report_rows: Sequence[float], seed: Mapping,
                          all_resolutions: Sequence[float]) -> Path:
    """Metrics of the reported test sets against the training resolution (the seed's Figures 5 and 8, Table 3).

    Args:
        folder: the figures folder.
        cells: the cross-test cells (``analysis.summarize_cells``).
        res: the study's resolutions (µm).
        report_rows: the test resolutions shown.
        seed: the seed's numbers (its Table 3 on a right axis).
        all_resolutions: the Table 1 systems (the seed's columns).
    """
    fig, axes = _plt().subplots(1, 4, figsize=(18, 4), layout="constrained")
    for t in report_rows:
        ys = {k: [cell(cells, t, m)[f"{k}_mean"] for m in res] for k in ("psnr_db", "residual_variance", "nrmse_percent", "ssim")}
        es = {k: [cell(cells, t, m)[f"{k}_std"] for m in res] for k in ys}
        for ax, k in zip(axes, ys):
            ax.errorbar(res, ys[k], yerr=[0 if not math.isfinite(v) else v for v in es[k]], marker="o", capsize=3,
                        label=f"{t:g} µm test set")
    twin = axes[0].twinx()
    for t, style in ((62.5, "s--"), (625.0, "^--")):
        if any(math.isclose(t, r) for r in report_rows):
            twin.plot(all_resolutions, [v for v, _ in seed["table3"][t]], style, color="0.6", mfc="none",
                      label=f"seed Table 3, {t:g} µm (right axis)")
    twin.set_ylabel("seed's PSNR (dB, its data)", color="0.4", fontsize=8)
    twin.legend(loc="lower right", fontsize=7)
    for ax, (title, unit) in zip(axes, (("PSNR vs label", "dB"), ("residual variance vs self-test", "cm⁻²"),
                                       ("NRMSE vs self-test", "%"), ("SSIM vs self-test", ""))):
        _resolution_axis(ax, res, title + (f" ({unit})" if unit else ""))
    axes[0].legend(loc="upper left", fontsize=7)
    return _save(fig, folder, "metrics_vs_training_resolution.png")


def crosstest_heatmap(folder: Path, cells, res: Sequence[float]) -> Path:
    """The full cross-test matrix as heat maps: PSNR against the labels, NRMSE against the self-test.

    Args:
        folder: the figures folder.
        cells: the cross-test cells.
        res: the study's resolutions (µm).
    """
    fig, axes = _plt().subplots(1, 2, figsize=(4.2 * 2 + 1, 0.55 * len(res) + 3), layout="constrained")
    for ax, key, title, fmt in ((axes[0], "psnr_db_mean", "PSNR vs label (dB)", "{:.1f}"),
                                (axes[1], "nrmse_percent_mean", "NRMSE vs self-test (%)", "{:.2f}")):
        mat = np.array([[cell(cells, t, m)[key] for m in res] for t in res])
        im = ax.imshow(mat, cmap="viridis")
        for i in range(len(res)):
            for j in range(len(res)):
                ax.text(j, i, fmt.format(mat[i, j]), ha="center", va="center", fontsize=7,
                        color="w" if mat[i, j] < np.nanmean(mat) else "k")
        ax.set_xticks(range(len(res)))
        ax.set_xticklabels([f"{r:g}" for r in res], fontsize=7)
        ax.set_yticks(range(len(res)))
        ax.set_yticklabels([f"{r:g}" for r in res], fontsize=7)
        ax.set_xlabel("model (training resolution, µm)")
        ax.set_ylabel("test set (µm)")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, folder, "crosstest_heatmap.png")


def retrain_curve(folder: Path, rows: Sequence[Mapping], src: float, tgt: float, seed: Mapping) -> Path:
    """Retraining against the share of the target training set (the seed's Figure 11), the seed's abstract beside.

    Args:
        folder: the figures folder.
        rows: the retraining table's rows (the first: before retraining).
        src: the retrained model's resolution (µm).
        tgt: the target resolution (µm).
        seed: the seed's numbers (``retrain``).
    """
    fr = [100 * r["fraction"] for r in rows[1:]]
    fig, axes = _plt().subplots(1, 4, figsize=(19, 4), layout="constrained")
    for ax, key, title in zip(axes, ("psnr_db", "residual_variance", "nrmse_percent", "ssim"),
                              ("PSNR vs label (dB)", "residual variance vs self-test (cm⁻²)", "NRMSE vs self-test (%)",
                               "SSIM vs self-test")):
        ax.errorbar([0.0] + fr, [r[f"{key}_mean"] for r in rows],
                    yerr=[0 if not math.isfinite(r[f"{key}_std"]) else r[f"{key}_std"] for r in rows],
                    marker="o", capsize=3, label=f"{src:g} µm model retrained (0 %: before)")
        ax.axhline(rows[0][f"{key}_mean"], color="C3", ls="--", lw=0.8, label="before retraining")
        ax.set_xlabel(f"share of the {tgt:g} µm training set (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        seed_key = {"nrmse_percent": "nrmse", "ssim": "ssim"}.get(key)
        if seed_key:
            twin = ax.twinx()
            before, after = seed["retrain"][seed_key]
            twin.plot([0, 100 * seed["retrain"]["fraction"]], [before, after], "*:", color="0.5", ms=10,
                      label="seed's abstract: before → after (right axis)")
            twin.set_ylabel(f"seed's {seed_key.upper()} (its data{', as printed' if seed_key == 'nrmse' else ''})",
                            color="0.4", fontsize=8)
            twin.legend(loc="center right", fontsize=7)
    axes[0].legend(fontsize=7)
    return _save(fig, folder, "retrain_curve.png")


def retrain_images(folder: Path, tgt: float, sid: str, ref, label, panels: Sequence[tuple[str, np.ndarray]]) -> Path:
    """A target test slice: self-test, before and after retraining, residuals against the self-test (Figure 10).

    Args:
        folder: the figures folder.
        tgt: the target resolution (µm).
        sid: the slice's id.
        ref: the self-test output.
        label: the label.
        panels: ``(title, output)`` of the model before retraining and of each retrained one.
    """
    fig, axes = _plt().subplots(2, len(panels) + 1, figsize=(2.2 * (len(panels) + 1), 4.6), squeeze=False)
    _show(axes[0][0], ref, IMAGE_WINDOW, f"{tgt:g} µm self-test")
    _show(axes[1][0], label, IMAGE_WINDOW, "label")
    for k, (title, img) in enumerate(panels, start=1):
        _show(axes[0][k], img, IMAGE_WINDOW, title)
        _show(axes[1][k], img - ref, RESIDUAL_WINDOW, "− self-test")
    fig.suptitle(f"{tgt:g} µm test slice {sid}: {_WINDOWS}", fontsize=9)
    return _save(fig, folder, "retrain_images.png")


def _grid(n: int) -> tuple[int, int]:
    ncol = min(6, n)
    return math.ceil(n / ncol), ncol


def _blank_rest(axes, used: int) -> None:
    for ax in list(axes.flat)[used:]:
        ax.axis("off")


def noise_images(folder: Path, examples_by_res: Mapping[float, np.ndarray]) -> Path:
    """One noise-only image per resolution (the seed's Figure 12).

    Args:
        folder: the figures folder.
        examples_by_res: ``{resolution µm: noise-only image (cm⁻¹)}``.
    """
    nrow, ncol = _grid(len(examples_by_res))
    fig, axes = _plt().subplots(nrow, ncol, figsize=(2.6 * ncol, 2.7 * nrow), squeeze=False)
    for ax, (r, img) in zip(axes.flat, examples_by_res.items()):
        _show(ax, img, NOISE_WINDOW, f"{r:g} µm noise only")
    _blank_rest(axes, len(examples_by_res))
    fig.suptitle(f"Noise-only images (input − noiseless), window [{NOISE_WINDOW[0]}, {NOISE_WINDOW[1]}] cm⁻¹ (the seed's Figure 12)",
                 fontsize=9)
    return _save(fig, folder, "noise_images.png")


def nps_curves(folder: Path, results: Mapping) -> Path:
    """Radially averaged NPS: absolute against mm⁻¹ (with Nyquist) and normalised against cycles per pixel.

    Args:
        folder: the figures folder.
        results: ``{resolution µm: radial_nps result}``.
    """
    from matplotlib.ticker import NullFormatter

    fig, axes = _plt().subplots(1, 2, figsize=(12, 4), layout="constrained")
    for k, (r, nps) in enumerate(results.items()):
        dx = r / 1000.0
        axes[0].loglog(nps.frequency_mm, nps.nps, "-", color=f"C{k}", label=f"{r:g} µm (Δx {dx:g} mm)")
        axes[0].axvline(nps.nyquist_mm, color=f"C{k}", ls=":", lw=0.8)
        axes[1].plot(nps.frequency_mm * dx, nps.nps / nps.integral / dx**2, "-", color=f"C{k}", label=f"{r:g} µm")
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    axes[0].yaxis.set_minor_formatter(NullFormatter())
    axes[0].set_xlabel("spatial frequency (mm⁻¹); dotted: Nyquist")
    axes[0].set_ylabel("NPS ((cm⁻¹)²·mm²)")
    axes[0].set_title("Radially averaged NPS", fontsize=9)
    axes[1].set_xlabel("spatial frequency (cycles per pixel)")
    axes[1].set_ylabel("NPS / (variance · Δx²)")
    axes[1].set_title("Noise texture: NPS normalised to unit variance", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _save(fig, folder, "nps.png")


def nps_2d(folder: Path, results: Mapping) -> Path:
    """2-D NPS per resolution (normalised, log scale): streaks show up as anisotropy.

    Args:
        folder: the figures folder.
        results: ``{resolution µm: radial_nps result}``.
    """
    nrow, ncol = _grid(len(results))
    fig, axes = _plt().subplots(nrow, ncol, figsize=(2.6 * ncol, 2.7 * nrow), squeeze=False)
    for ax, (r, nps) in zip(axes.flat, results.items()):
        dx = r / 1000.0
        ext = [nps.fx[0] * dx, nps.fx[-1] * dx, nps.fy[-1] * dx, nps.fy[0] * dx]
        ax.imshow(np.log10(np.maximum(nps.nps_2d / nps.integral / dx**2, 1e-6)), extent=ext, cmap="magma")
        ax.set_title(f"{r:g} µm 2-D NPS (log10)", fontsize=8)
        ax.set_xlabel("fx (cycles/px)", fontsize=7)
    _blank_rest(axes, len(results))
    return _save(fig, folder, "nps_2d.png")


def noise_sd_maps(folder: Path, sd_maps: Mapping[float, np.ndarray]) -> Path:
    """Per-pixel noise SD relative to the body centre, per resolution (where the noise is).

    Args:
        folder: the figures folder.
        sd_maps: ``{resolution µm: analysis.noise_sd_map map}``.
    """
    nrow, ncol = _grid(len(sd_maps))
    fig, axes = _plt().subplots(nrow, ncol, figsize=(2.6 * ncol, 2.9 * nrow), squeeze=False, layout="constrained")
    for ax, (r, sd) in zip(axes.flat, sd_maps.items()):
        im = ax.imshow(sd, cmap="inferno", vmin=0.0, vmax=2.5)
        ax.set_title(f"{r:g} µm noise SD / centre", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    _blank_rest(axes, len(sd_maps))
    fig.colorbar(im, ax=list(axes.flat), shrink=0.8)
    fig.suptitle("Per-pixel noise SD over all noise-only images, relative to the body centre (where the noise is)", fontsize=9)
    return _save(fig, folder, "noise_sd_maps.png")
