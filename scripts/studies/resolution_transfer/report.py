"""``report.md`` of the resolution-transfer study: the template ``report.md.in`` filled from the run's tables,
figures, markers and provenance, with readings computed from this run's numbers (so they stay true for any run)."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ldct_scripts.studies.engine import format_seconds, markdown_table, read_json, study_provenance, write_text

from .analysis import cell, spearman
from .config import ALL_RESOLUTIONS, SEED, Config, file_tag, pct

__all__ = ["FIGURES", "write_report", "crosstest_reading", "retrain_reading", "noise_reading"]

_TEMPLATE = Path(__file__).resolve().parent / "report.md.in"

#: Captions of the figures the report embeds, by template slot.
FIGURES = {
    "crosstest_heatmap": "The full matrix: PSNR against the labels and NRMSE against the self-test output.",
    "metrics_vs_training_resolution": "Metrics of the reported test sets against the training resolution "
    "(the seed's Figures 5 and 8; its Table 3 in grey on the right axis).",
    "examples": "One test slice per resolution: input, label and self-test output (the seed's Figures 3 and 6).",
    "retrain_curve": "Retraining (the seed's Figure 11): this run against the share of the target training set; the "
    "dashed line is the model before retraining; grey stars: the seed's abstract (its data, right axis).",
    "retrain_images": "A target test slice: self-test, before and after retraining, residuals against the self-test "
    "(the seed's Figure 10).",
    "noise_images": "Noise-only images (the seed's Figure 12).",
    "nps": "Radially averaged noise power spectra: absolute (left, mm⁻¹, with each system's Nyquist frequency) and "
    "normalised to unit variance against cycles per pixel (right): the texture.",
    "nps_2d": "2-D NPS (normalised, log scale): streaks show up as anisotropy.",
    "noise_sd_maps": "Per-pixel noise SD relative to the body centre: streaks and photon starvation at the edge of the "
    "body show up as bright bands.",
}
_READING = "**Reading (computed from this run):**\n\n"


def _md_body(tables: Path, name: str) -> str:
    """A table's Markdown file without its heading, or a note that the stage has not run."""
    path = tables / f"{name}.md"
    if not path.is_file():
        return "_not produced yet._\n"
    lines = path.read_text().splitlines()
    return "\n".join(lines[2:] if lines and lines[0].startswith("## ") else lines) + "\n"


def _markers(state_dir: Path, stage: str) -> dict[str, dict]:
    out = {}
    for p in sorted((state_dir / stage).glob("*.json")):
        m = read_json(p)
        if isinstance(m, dict) and "digest" in m:
            out[p.stem] = m
    return out


def _settings_table(c: Config, counts: Mapping) -> str:
    return markdown_table(["", "this run", "seed"], [
        ["data", f"{c.phantoms} generated abdominal phantoms" if c.phantoms else f"CT from `{c.source}`",
         "TCIA abdominal CT (pancreas-CT)"],
        ["systems", ", ".join(f"{r:g}" for r in c.resolutions) + " µm (Table 1 geometry and doses)",
         "62.5, 125, 250, 375, 500, 625 µm"],
        ["images", f"{c.n_pixels}² px, {c.n_views} views, strip forward model, ram-lak FBP, μ at 60 keV", "512², FBP, μ at 60 keV"],
        ["train / validation / test", "/".join(str(counts.get(s, "?")) for s in ("training", "validation", "test"))
         + " slices per resolution", "2,400 / 300 / 300"],
        ["training", f"{c.iterations} iterations, batch {c.batch_size} × {c.patch_size}² crops, Adam {c.learning_rate:g}, "
         f"×0.5 every {c.lr_decay_steps}, validation every {c.val_interval}, "
         + (f"early stopping after {c.early_stop_patience} validations without improvement"
            if c.early_stop_patience else "no early stopping") + ", best val_loss kept (batch, optimiser, "
         "schedule, early stopping and best-model selection are this project's choices)", "50,000 steps, MSE loss"],
        ["retraining", f"{c.retrain_source:g} µm model on {', '.join(pct(f) for f in c.fractions)} % of the "
         f"{c.retrain_target:g} µm training set, ≤ {c.finetune_iterations} iterations, validation every "
         f"{c.finetune_val_interval}, early stopping after {c.finetune_patience}", "5–30 %, 3,000–7,000 steps, early stopping"],
        ["seed", f"{c.seed}: phantoms, noise and splits (ldct_sim `derive_seed`), retraining subsets (`subset_seed`), "
         "`monai.utils.set_determinism`", "—"],
    ], "lll")


def _figure(figs: list[str], used: set[str], name: str, caption: str) -> str:
    if name not in figs:
        return ""
    used.add(name)
    return f"![{caption}](figures/{name})\n\n*{caption}*\n"


def _time_table(state_dir: Path) -> str:
    rows = []
    for stage in ("data", "train", "crosstest", "retrain", "noise"):
        for name, m in _markers(state_dir, stage).items():
            rows.append([f"{stage}/{name}", format_seconds(m.get("seconds")), m.get("finished", "")])
    return markdown_table(["unit", "time", "finished"], rows) if rows else "_none yet._\n"


def write_report(root: Path, c: Config, peak_cm: float) -> tuple[dict, str]:
    """Fill ``report.md.in`` and write ``<root>/report.md``; returns the unit's outputs and a note.

    Args:
        root: the results folder (``tables/``, ``figures/``, ``state/`` under it).
        c: the run's settings.
        peak_cm: the PSNR peak (cm⁻¹), named in the text.
    """
    tables, figures = root / "tables", root / "figures"
    prov = study_provenance()
    git = prov["git"]
    figs = sorted(p.name for p in figures.glob("*.png")) if figures.is_dir() else []
    used: set[str] = set()
    data = _markers(root / "state", "data")
    values = {
        "preset": c.preset, "timestamp": prov["timestamp"], "commit": git.get("commit"),
        "dirty": " (with uncommitted changes)" if git.get("dirty") else "",
        "settings_table": _settings_table(c, next(iter(data.values()))["outputs"]["counts"] if data else {}),
        "versions": ", ".join(f"{k} {v}" for k, v in prov["packages"].items() if v), "python": prov["python"],
        "platform": prov["platform"], "argv": " ".join(prov["argv"]), "peak_cm": f"{peak_cm:.4f}",
        "seed_train_time": SEED["train_time"], "time_table": _time_table(root / "state"),
        "reading_crosstest": crosstest_reading(read_json(tables / "crosstest_summary.json")),
        "reading_retrain": retrain_reading(read_json(tables / "retrain_summary.json")),
        "reading_noise": noise_reading(read_json(tables / "nps_summary.json"), c.n_pixels),
    }
    for name in ("crosstest_psnr", "seed_table3_comparison", "crosstest_vs_selftest", "retrain", "nps_summary"):
        values[f"table_{name}"] = _md_body(tables, name)
    for name, caption in FIGURES.items():
        values[f"fig_{name}"] = _figure(figs, used, f"{name}.png", caption)
    values["fig_crosstest_rows"] = "\n".join(
        _figure(figs, used, f"crosstest_{file_tag(t)}.png", f"{t:g} µm test slice denoised by every model, and the residuals "
                "against the self-test output (the seed's Figures 4 and 7).") for t in c.report_rows)
    missing = [f for f in figs if f not in used]
    values["other_figures"] = ("## Other figures\n\n" + "".join(f"![{f}](figures/{f})\n\n" for f in missing)) if missing else ""
    text = string.Template(_TEMPLATE.read_text(encoding="utf-8")).substitute(values)
    path = write_text(root / "report.md", re.sub(r"\n{3,}", "\n\n", text).strip() + "\n")
    return {"files": [str(path)], "figures": sorted(used | set(missing))}, f"{len(figs)} figures"


def crosstest_reading(s) -> str:
    """Per reported test set: the self-test's PSNR gain, the best model, the spread, and (three or more other
    models) how the residual variance grows with the resolution gap; the seed's numbers beside.

    Args:
        s: ``tables/crosstest_summary.json`` (``cells``, ``resolutions``, ``report_rows``), or ``None``.
    """
    if not isinstance(s, dict):
        return ""
    cells = s["cells"]
    res = [float(r) for r in s["resolutions"]]
    out = []
    for t in [float(r) for r in s["report_rows"]]:
        row = {m: cell(cells, t, m) for m in res}
        best = max(res, key=lambda m: row[m]["psnr_db_mean"])
        spread = max(v["psnr_db_mean"] for v in row.values()) - min(v["psnr_db_mean"] for v in row.values())
        gain = row[t]["psnr_db_mean"] - row[t]["psnr_input_db_mean"]
        line = (f"* {t:g} µm test set: the self-test model changes PSNR by {gain:+.2f} dB from the LDCT input's; the best "
                f"model is the {best:g} µm one{' (the self-test)' if math.isclose(best, t) else ''}; the models span "
                f"{spread:.2f} dB")
        seed_row = SEED["table3"].get(t)
        if seed_row:
            seed_spread = max(v for v, _ in seed_row) - min(v for v, _ in seed_row)
            seed_best = ALL_RESOLUTIONS[int(np.argmax([v for v, _ in seed_row]))]
            line += f" (seed: best {seed_best:g} µm, span {seed_spread:.2f} dB)"
        others = [m for m in res if not math.isclose(m, t)]
        if len(others) >= 3:
            gap = [abs(math.log(m / t)) for m in others]
            rv = [row[m]["residual_variance_mean"] for m in others]
            line += (f"; residual variance against the self-test vs the resolution gap |log(model/test)|: "
                     f"Spearman ρ = {spearman(gap, rv):+.2f} (the seed: it grows with the gap)")
        out.append(line + ".")
    return _READING + "\n".join(out) + "\n" if out else ""


def retrain_reading(s) -> str:
    """NRMSE and SSIM before and after retraining near the seed's fraction, beside the seed's abstract.

    Args:
        s: ``tables/retrain_summary.json`` (``rows``: before, then one per fraction), or ``None``.
    """
    if not isinstance(s, dict) or len(s.get("rows", [])) < 2:
        return ""
    before, after = s["rows"][0], s["rows"][1:]
    near = min(after, key=lambda r: abs(r["fraction"] - SEED["retrain"]["fraction"]))
    best = min(after, key=lambda r: r["nrmse_percent_mean"])
    sn, ss = SEED["retrain"]["nrmse"], SEED["retrain"]["ssim"]

    def rel(a, b):
        return 100.0 * (b - a) / a if a else math.nan

    lines = [
        f"* NRMSE against the self-test: {before['nrmse_percent_mean']:.3g} % before → {near['nrmse_percent_mean']:.3g} % "
        f"after retraining on {pct(near['fraction'])} % ({rel(before['nrmse_percent_mean'], near['nrmse_percent_mean']):+.0f} %); "
        f"seed's abstract: {sn[0]} → {sn[1]} ({rel(*sn):+.0f} %).",
        f"* SSIM against the self-test: {before['ssim_mean']:.4f} → {near['ssim_mean']:.4f} "
        f"({rel(before['ssim_mean'], near['ssim_mean']):+.1f} %); seed: {ss[0]} → {ss[1]} ({rel(*ss):+.1f} %).",
        f"* Lowest NRMSE at {pct(best['fraction'])} % of the target training set ({best['n_images']} images).",
        "* The seed's NRMSE is printed as a fraction (0.1898) although its equation 5 multiplies by 100; this run "
        "reports percent, so compare relative changes.",
    ]
    return _READING + "\n".join(lines) + "\n"


def noise_reading(s, n_pixels: int) -> str:
    """Noise level, texture spread and edge-to-centre noise per resolution.

    Args:
        s: ``tables/nps_summary.json`` (``rows``), or ``None``.
        n_pixels: the image side (pixels), named in the text.
    """
    if not isinstance(s, dict) or not s.get("rows"):
        return ""
    rows = s["rows"]
    freqs = [r["mean_frequency_cycles_per_pixel"] for r in rows]
    spread = 100.0 * (max(freqs) / min(freqs) - 1.0)
    sds = ", ".join(f"{r['resolution_um']:g} µm {r['noise_std_hu']:.0f} HU" for r in rows)
    ratios = ", ".join(f"{r['resolution_um']:g} µm {r['sd_outer_over_centre']:.2f}" for r in rows)
    lines = [f"* Noise SD in the central ROIs: {sds} (the seed chose its Table 1 doses for comparable SNRs at 512²; "
             f"at {n_pixels}² the objects are smaller in millimetres and the levels may drift apart).",
             f"* NPS-weighted mean frequency in cycles per pixel: {', '.join(f'{r:.3f}' for r in freqs)}: the noise "
             f"texture on the pixel grid differs by {spread:.1f} % between the systems."]
    if spread < 5.0:
        lines.append("* Table 1 scales the source and detector distances and the detector pitch with Δx, so in pixel "
                     "units the systems are one scanner and the central noise texture is the same; what a model trained at "
                     "one resolution meets at another is a different noise *level* and a different *distribution* of "
                     "noise over the object (the seed's edge streaks), rather than a different grain.")
    lines.append(f"* Noise SD in the outer band of the body over the centre: {ratios} (above 1: more noise at the edge).")
    return _READING + "\n".join(lines) + "\n"
