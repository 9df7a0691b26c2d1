"""Tables of the resolution-transfer study: ``tables/<name>.csv`` (full precision) and ``.md`` (the report's text)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ldct_scripts.studies.engine import markdown_table, mean_std, write_table

from .analysis import RETRAIN_METRICS, cell, seed_comparison
from .config import ALL_RESOLUTIONS, SEED, pct

__all__ = ["write_crosstest_tables", "write_retrain_table", "write_nps_tables"]


def _psnr_table(tables: Path, cells, res: Sequence[float], peak_cm: float) -> list[Path]:
    header = ["test set \\ model"] + [f"{m:g} µm" for m in res] + ["LDCT input"]
    md_rows = []
    for t in res:
        row = [f"{t:g} µm"] + [mean_std(cell(cells, t, m)["psnr_db_mean"], cell(cells, t, m)["psnr_db_std"]) for m in res]
        first = cell(cells, t, res[0])
        md_rows.append(row + [mean_std(first["psnr_input_db_mean"], first["psnr_input_db_std"])])
    md = ("PSNR (dB) against the normal-dose labels, mean ± SD over the test images (fixed peak 2·μ_water = "
          f"{peak_cm:.4f} cm⁻¹, i.e. +1000 HU, μ in cm⁻¹; the seed's Table 3).\n\n" + markdown_table(header, md_rows))
    return list(write_table(tables / "crosstest_psnr", cells,
                            ["test_um", "model_um", "n", "psnr_db_mean", "psnr_db_std", "psnr_input_db_mean",
                             "psnr_input_db_std"], md, "Cross-test PSNR"))


def _vs_selftest_table(tables: Path, cells, res: Sequence[float]) -> list[Path]:
    header = ["test set \\ model"] + [f"{m:g} µm" for m in res]
    parts = []
    for key, title, fmt in (("residual_variance", "Residual variance vs self-test (cm⁻²)", dict(digits=2, scientific=True)),
                            ("nrmse_percent", "NRMSE vs self-test (%)", dict(digits=3)),
                            ("ssim", "SSIM vs self-test", dict(digits=4))):
        rows = [[f"{t:g} µm"] + [mean_std(cell(cells, t, m)[f"{key}_mean"], cell(cells, t, m)[f"{key}_std"], **fmt)
                                 for m in res] for t in res]
        parts.append(f"### {title}\n\n" + markdown_table(header, rows))
    md = ("Cross-test outputs against the self-test output (the model trained at the test resolution), "
          "mean ± SD over the test images (the seed's Figures 5 and 8). Rows: test set; columns: training resolution.\n\n"
          + "\n".join(parts))
    return list(write_table(tables / "crosstest_vs_selftest", cells,
                            ["test_um", "model_um", "n"] + [f"{k}_{s}" for k in ("residual_variance", "nrmse_percent", "ssim")
                                                            for s in ("mean", "std")], md, "Cross-test against the self-test"))


def _seed_table(tables: Path, cells, res: Sequence[float]) -> list[Path]:
    comp = seed_comparison(cells, res, SEED, ALL_RESOLUTIONS)
    if not comp:
        return []
    md_rows = [[f"{r['test_um']:g} µm", f"{r['model_um']:g} µm", mean_std(r["seed_psnr_mean"], r["seed_psnr_std"]),
                mean_std(r["psnr_mean"], r["psnr_std"]) if r["psnr_mean"] is not None else "not run"] for r in comp]
    not_run = [m for m in ALL_RESOLUTIONS if not any(math.isclose(m, r) for r in res)]
    note = (f" Models at {', '.join(f'{m:g}' for m in not_run)} µm were not trained in this run (it trains "
            f"{', '.join(f'{r:g}' for r in res)} µm): their cells say \"not run\" here and are empty in "
            "`seed_table3_comparison.csv`." if not_run else "")
    md = ("PSNR (dB), the seed's Table 3 (its 300 TCIA test images per resolution, 512², 50,000 steps) beside this run. "
          "The absolute values depend on the data, the peak convention and the training length; compare trends "
          "along a row, not numbers." + note + "\n\n"
          + markdown_table(["test set", "model", "seed (Table 3)", "this run"], md_rows))
    return list(write_table(tables / "seed_table3_comparison", comp,
                            ["test_um", "model_um", "seed_psnr_mean", "seed_psnr_std", "psnr_mean", "psnr_std"], md,
                            "Seed Table 3 beside this run"))


def write_crosstest_tables(tables: Path, cells: Sequence[Mapping], res: Sequence[float], peak_cm: float) -> list[Path]:
    """``crosstest_psnr`` (Table 3), ``crosstest_vs_selftest`` (Figures 5 and 8) and ``seed_table3_comparison``.

    Args:
        tables: the tables folder.
        cells: the cross-test cells (``analysis.summarize_cells``).
        res: the study's resolutions (µm).
        peak_cm: the PSNR peak (cm⁻¹), named in the text.

    Returns:
        The files written (CSV and Markdown of each table).
    """
    return _psnr_table(tables, cells, res, peak_cm) + _vs_selftest_table(tables, cells, res) + _seed_table(tables, cells, res)


def write_retrain_table(tables: Path, rows: Sequence[Mapping], src: float, tgt: float) -> list[Path]:
    """``retrain``: the source model before and after fine-tuning on each fraction (the seed's Figure 11).

    Args:
        tables: the tables folder.
        rows: one row per model (the first: before retraining) with the ``analysis.retrain_summary`` columns.
        src: the retrained model's resolution (µm).
        tgt: the target resolution (µm).
    """
    cols = ["fraction", "n_images", "model", "iterations", "best_iteration", "n"] + [
        f"{k}_{s}" for k in RETRAIN_METRICS for s in ("mean", "std")]
    md_rows = [[f"{pct(r['fraction'])} %", r["n_images"], r["model"], r["iterations"] if r["iterations"] is not None else "—",
                mean_std(r["psnr_db_mean"], r["psnr_db_std"]),
                mean_std(r["residual_variance_mean"], r["residual_variance_std"], scientific=True),
                mean_std(r["nrmse_percent_mean"], r["nrmse_percent_std"], 3), mean_std(r["ssim_mean"], r["ssim_std"], 4)]
               for r in rows]
    md = (f"The {src:g} µm model fine-tuned on fractions of the {tgt:g} µm training set (`finetune.json`, early stopping), "
          f"tested on the {tgt:g} µm test set: PSNR against the labels; residual variance, NRMSE and SSIM against the "
          f"{tgt:g} µm self-test output (the seed's Figure 11). Mean ± SD over the test images.\n\n"
          + markdown_table(["fraction", "images", "model", "iterations run", "PSNR (dB)", "residual variance (cm⁻²)",
                            "NRMSE (%)", "SSIM"], md_rows))
    return list(write_table(tables / "retrain", rows, cols, md, "Retraining"))


def write_nps_tables(tables: Path, summary: Sequence[Mapping], curves: Sequence[Mapping], grid: int, roi: int) -> list[Path]:
    """``nps_summary`` (noise level, texture and where the noise is, per resolution) and ``nps_curves``.

    Args:
        tables: the tables folder.
        summary: ``analysis.nps_summary_row`` rows.
        curves: ``analysis.nps_curve_rows`` rows of every resolution.
        grid: NPS ROIs per side.
        roi: the ROI side (pixels).
    """
    md = ("Noise-only images (input − noiseless reconstruction, μ in cm⁻¹), central ROIs "
          f"({grid}×{grid} ROIs of {roi}² px per image over the central half). NPS = Δx·Δy/(Nx·Ny)·"
          "⟨|DFT(ROI − mean)|²⟩ in (cm⁻¹)²·mm², radially averaged; its integral equals the noise variance. The mean "
          "frequency is the NPS-weighted mean radial frequency (higher: finer noise grain); in cycles per pixel it "
          "compares textures across pixel sizes. The last column measures where the noise is: the per-pixel noise SD "
          "(over all images) in the outer band of the body (the outer 1/16 of the image side inside the region that is "
          "body in every image) over that in its centre; streaks at the edge raise it.\n\n"
          + markdown_table(["resolution", "pixel (mm)", "images", "ROIs", "noise SD (cm⁻¹)", "noise SD (HU)",
                            "mean f (mm⁻¹)", "mean f (cycles/px)", "peak f (cycles/px)", "Nyquist (mm⁻¹)",
                            "SD outer / centre"],
                           [[f"{s['resolution_um']:g} µm", f"{s['pixel_mm']:g}", s["n_images"], s["n_rois"],
                             f"{s['noise_std_cm']:.4g}", f"{s['noise_std_hu']:.1f}", f"{s['mean_frequency_mm']:.3g}",
                             f"{s['mean_frequency_cycles_per_pixel']:.3f}", f"{s['peak_frequency_cycles_per_pixel']:.3f}",
                             f"{s['nyquist_mm']:.3g}", f"{s['sd_outer_over_centre']:.2f}"] for s in summary]))
    files = list(write_table(tables / "nps_summary", summary, list(summary[0]), md, "Noise texture"))
    return files + list(write_table(tables / "nps_curves", curves, list(curves[0])))
