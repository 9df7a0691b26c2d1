"""What the cross-test, retraining and noise stages derive once their units have run: the images are read
from the run's files, the numbers come from :mod:`.analysis`, the files from :mod:`.tables` and :mod:`.figures`.

Each function is a unit's work: it returns the unit's outputs (``files`` are checked on re-runs) and a note.
"""

from __future__ import annotations

import numpy as np

from ldct_scripts.studies.engine import StudyError, fingerprint, read_json, write_json, write_table
from ldct_sim import mu_water

from . import analysis, figures, tables
from .config import ALL_RESOLUTIONS, SEED, file_tag, pct

__all__ = ["crosstest_outputs", "retrain_outputs", "noise_outputs"]


def _cell_rows(study, test_res: float, model_res: float, markers: dict) -> list[dict]:
    """Per-image metrics of one model on one test set, cached under ``crosstest/metrics``."""
    M = study.metrics
    key = fingerprint([markers[model_res]["digest"], markers[test_res]["digest"], "v2", M.DEFAULT_PEAK_CM])
    cache = study.root / "crosstest" / "metrics" / f"model_{file_tag(model_res)}__test_{file_tag(test_res)}.json"
    cached = read_json(cache)
    if isinstance(cached, dict) and cached.get("key") == key:
        return cached["rows"]
    rows = [analysis.cross_row(test_res, model_res, e["id"], study.load(e["image"]), study.pred(markers[model_res], test_res, e["id"]),
                               study.pred(markers[test_res], test_res, e["id"]), study.load(e["label"]), M)
            for e in study.items(test_res, "test")]
    write_json(cache, {"key": key, "rows": rows})
    return rows


def _crosstest_figures(study, cells, markers) -> list:
    res, folder = study.cfg.resolutions, study.figures
    rows = []
    for t in res:
        e = study.items(t, "test")[0]
        rows.append((t, study.load(e["image"]), study.load(e["label"]), study.pred(markers[t], t, e["id"])))
    out = [figures.examples(folder, rows, study.items(res[0], "test")[0]["id"])]
    for t in study.cfg.report_rows:
        e = study.items(t, "test")[0]
        preds = {m: study.pred(markers[m], t, e["id"]) for m in res}
        out.append(figures.crosstest_row(folder, f"crosstest_{file_tag(t)}.png", t, e["id"], study.load(e["image"]),
                                         study.load(e["label"]), study.pred(markers[t], t, e["id"]), preds))
    out.append(figures.metrics_vs_resolution(folder, cells, res, study.cfg.report_rows, SEED, ALL_RESOLUTIONS))
    out.append(figures.crosstest_heatmap(folder, cells, res))
    return out


def crosstest_outputs(study, markers: dict) -> tuple[dict, str]:
    """Per-image metrics of every model on every test set, the cross-test tables and figures.

    Args:
        study: the :class:`~.study.ResolutionTransferStudy`.
        markers: ``{model resolution: inference marker}``.
    """
    res = study.cfg.resolutions
    rows = [r for t in res for m in res for r in _cell_rows(study, t, m, markers)]
    write_table(study.root / "crosstest" / "per_image", rows, ["test_um", "model_um", "id", *analysis.METRICS])
    cells = analysis.summarize_cells(rows, res, study.metrics)
    summary = {"cells": cells, "resolutions": list(res), "report_rows": list(study.cfg.report_rows)}
    write_json(study.tables / "crosstest_summary.json", summary)
    files = tables.write_crosstest_tables(study.tables, cells, res, study.metrics.DEFAULT_PEAK_CM)
    files += _crosstest_figures(study, cells, markers)
    return {"files": [str(f) for f in files], "summary": str(study.tables / "crosstest_summary.json")}, f"{len(rows)} image pairs"


def retrain_outputs(study, src: float, tgt: float, base: dict, markers: dict) -> tuple[dict, str]:
    """The retraining table and figures: the source model before and after fine-tuning on each fraction.

    Args:
        study: the :class:`~.study.ResolutionTransferStudy`.
        src: the retrained model's resolution (µm).
        tgt: the target resolution (µm).
        base: ``{resolution: cross-test inference marker}`` of ``src`` (before) and ``tgt`` (the self-test).
        markers: ``{fraction: (fine-tune marker, inference marker)}``.
    """
    items = study.items(tgt, "test")

    def scores(pred_of) -> dict:
        per_image = [analysis.compare(pred_of(e["id"]), study.load(e["label"]), study.pred(base[tgt], tgt, e["id"]), study.metrics)
                     for e in items]
        return analysis.retrain_summary(per_image, study.metrics)

    rows = [{"fraction": 0.0, "n_images": 0, "model": f"{src:g} µm model (before)", "iterations": None, "best_iteration": None,
             **scores(lambda sid: study.pred(base[src], tgt, sid))}]
    for f, (ft, inf) in markers.items():
        o = ft["outputs"]
        rows.append({"fraction": f, "n_images": o.get("n_images"), "model": f"retrained, {pct(f)} %",
                     "iterations": o.get("last_iteration"), "best_iteration": o.get("best_iteration"),
                     **scores(lambda sid, inf=inf: study.pred(inf, tgt, sid))})
    files = tables.write_retrain_table(study.tables, rows, src, tgt)
    summary = {"source_um": src, "target_um": tgt, "rows": rows,
               "self_test_psnr": scores(lambda sid: study.pred(base[tgt], tgt, sid))["psnr_db_mean"]}
    write_json(study.tables / "retrain_summary.json", summary)
    files.append(figures.retrain_curve(study.figures, rows, src, tgt, SEED))
    e = items[0]
    panels = [(f"{src:g} µm model (before)", study.pred(base[src], tgt, e["id"]))]
    panels += [(f"retrained, {pct(f)} %", study.pred(inf, tgt, e["id"])) for f, (_, inf) in markers.items()]
    files.append(figures.retrain_images(study.figures, tgt, e["id"], study.pred(base[tgt], tgt, e["id"]), study.load(e["label"]), panels))
    return {"files": [str(f) for f in files], "summary": str(study.tables / "retrain_summary.json")}, f"{len(rows)} rows"


def _noise_of(study, r: float, mu_w: float):
    """NPS, example image, SD map and table rows of one resolution."""
    from ldct_sim.noise_power import extract_rois, radial_nps

    c = study.cfg
    splits = ("training", "validation", "test") if c.nps_split == "all" else (c.nps_split,)
    items = sorted((e for s in splits for e in study.items(r, s)), key=lambda e: e["id"])[: c.nps_max_images]
    if not items:
        raise StudyError(f"noise: no {c.nps_split} images at {r:g} µm.")
    rois, power, body = [], 0.0, 0.0
    for e in items:
        noise = study.load(e["noise"])
        rois.append(extract_rois(noise, c.nps_roi, grid=c.nps_grid))
        power = power + noise**2  # the noise is zero-mean: the ensemble mean of n² is the per-pixel variance
        body = body + (study.load(e["label"]) > 0.5 * mu_w)
    example = study.load(next(e for e in study.items(r, "test") or items)["noise"])
    nps = radial_nps(np.concatenate(rois), r / 1000.0)
    sd_map, outer_ratio = analysis.noise_sd_map(power / len(items), body / len(items))
    row = analysis.nps_summary_row(r, nps, len(items), c.nps_roi, outer_ratio, mu_w)
    return nps, example, sd_map, row


def noise_outputs(study) -> tuple[dict, str]:
    """Noise level, texture (NPS) and where the noise is, per resolution: tables and figures.

    Args:
        study: the :class:`~.study.ResolutionTransferStudy`.
    """
    mu_w = mu_water()  # cm⁻¹ at 60 keV, the energy ldct_sim simulated at
    results, examples, sd_maps, summary, curves = {}, {}, {}, [], []
    for r in study.cfg.resolutions:
        results[r], examples[r], sd_maps[r], row = _noise_of(study, r, mu_w)
        summary.append(row)
        curves += analysis.nps_curve_rows(r, results[r])
    files = tables.write_nps_tables(study.tables, summary, curves, study.cfg.nps_grid, study.cfg.nps_roi)
    write_json(study.tables / "nps_summary.json", {"rows": summary})
    folder = study.figures
    files += [figures.noise_images(folder, examples), figures.nps_curves(folder, results), figures.nps_2d(folder, results),
              figures.noise_sd_maps(folder, sd_maps)]
    return {"files": [str(f) for f in files], "summary": str(study.tables / "nps_summary.json")}, f"{len(summary)} resolutions"
