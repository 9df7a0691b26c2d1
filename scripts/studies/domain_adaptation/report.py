"""``report.md`` of the cross-domain study: the templates ``report.md.in`` (two simulated domains) and
``report_real.md.in`` (``--preset real``) filled from the run's tables, figures and provenance, with readings
computed from this run's numbers (:mod:`.analysis`)."""

from __future__ import annotations

import csv
import json
import string
from pathlib import Path

from ldct_scripts.studies.engine import read_json, study_provenance, write_text

from . import analysis
from .config import CPCE_BUNDLE, DIRECTIONS, PROFILE, R2S_PATIENT, SELECTION_RULE

__all__ = ["write_report", "write_real_report", "fill"]

_HERE = Path(__file__).resolve().parent


def fill(template: str, values: dict) -> str:
    """A template of this package (``report.md.in``) with its ``${slots}`` filled.

    Args:
        template: the template's file name.
        values: ``{slot: text}``; every slot must be given.
    """
    return string.Template((_HERE / template).read_text(encoding="utf-8")).substitute(values)


def _common(study) -> dict:
    """The slots both reports share: commit, command line, settings and versions."""
    prov = study_provenance()
    git = prov.get("git", {})
    settings = {k: v for k, v in study.cfg.to_dict().items() if k != "stages"}
    return {"commit": git.get("commit"), "dirty": " (with uncommitted changes)" if git.get("dirty") else "",
            "argv": " ".join(prov["argv"]), "preset": study.cfg.preset,
            "settings": json.dumps({"settings": settings, "versions": prov}, indent=1, default=str)}


def _table_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [dict(r, mean=float(r["mean"]), std=float(r["std"])) for r in csv.DictReader(f)]


def write_report(study) -> tuple[dict, str]:
    """Fill ``report.md.in`` and write ``<results>/report.md``; returns the unit's outputs and a note.

    Args:
        study: the :class:`~.study.DomainAdaptationStudy` (``tables/table1.*`` and ``figures/`` of its run).
    """
    c = study.cfg
    marker = read_json(study.state_dir / "figures" / "examples.json")
    figures = [Path(p) for p in marker["outputs"]["files"]] if isinstance(marker, dict) else \
        sorted(study.figures.glob("examples_*.png"))
    rows = _table_rows(study.tables / "table1.csv")
    reading = analysis.reading(rows, [DIRECTIONS[d] for d in c.directions], c.methods)
    perceptual = (f"on (VGG-19 weights from {c.vgg_weights})." if c.vgg_weights else
                  "off (no local VGG-19 weights given; `--vgg-weights FILE` turns it on).")
    text = fill("report.md.in", {
        **_common(study), "table": (study.tables / "table1.md").read_text(encoding="utf-8").rstrip("\n") + "\n",
        "perceptual": perceptual, "seed_table": analysis.seed_table(),
        "reading": "\n".join(reading or ["- (needs both the baseline and the adaptive method)"]),
        "figures": "\n".join(f"![{p.stem}](figures/{p.name})" for p in figures)})
    path = write_text(study.root / "report.md", text)
    return {"files": [str(path)]}, str(path)


#: Per direction of the real-target study: the section's title and the note under its table.
_REAL_SECTIONS = {
    "s2r": ("S→R on the 15 shared real pairs (scored against their full-dose partners)",
            "Mean ± SD over the pairs of each kernel; body = full dose > −500 HU; PSNR peak 4096 HU "
            "(`ldct_scripts.bench.bench_real`). The L291 and L333 pairs (kernel unknown) are the only target patients "
            "whose normal-dose images the shipped weights saw as simulator input; L506 is unseen by every model."),
    "r2s": ("R→S on the simulated pairs of L067 and L109 (scored against their labels)",
            "Mean ± SD over the simulated pairs, in HU, scored the same way (`bench_real --kernel B30f`). The shipped "
            "weights saw these patients' normal-dose slices as simulator input (other noise draws); the real source "
            "patient's anatomy never reaches the test."),
}


def _r2s_split(study) -> str:
    """``"N training and M validation pairs"`` of the R→S source, read from its datalist."""
    datalist = read_json(study.data_dir / "real_source" / "datalist.json") if hasattr(study, "data_dir") else None
    if not isinstance(datalist, dict):
        return "(not written yet)"
    return f"{len(datalist.get('training', []))} training and {len(datalist.get('validation', []))} validation pairs"


def _real_section(study, direction: str, rows: list[dict]) -> str:
    """One direction's table, reading and mask report."""
    mask = read_json(study.root / "runs" / f"{direction}_adaptive" / "mask_report.json")
    title, note = _REAL_SECTIONS[direction]
    label = DIRECTIONS[direction]
    reading = analysis.real_reading(rows, analysis.seed_gain_db(label), label)
    return fill("report_real_direction.md.in", {
        "title": title, "table": analysis.real_table(rows), "note": note,
        "reading": "\n".join(reading or ["- (needs both the baseline and the adaptive method)"]),
        "mask": "\n".join((analysis.mask_lines(mask) if isinstance(mask, dict) else []) or ["- (no adaptive run)"])})


def write_real_report(study, rows: dict[str, list[dict]]) -> tuple[dict, str]:
    """Fill ``report_real.md.in`` and write ``<results>/report.md``; returns the unit's outputs and a note.

    Args:
        study: the :class:`~.real.RealTargetStudy`.
        rows: ``{direction: the table's rows}`` (:func:`.analysis.real_rows`), in the order of the sections.
    """
    c = study.cfg
    adapt = json.loads((CPCE_BUNDLE / "configs" / "adapt.json").read_text(encoding="utf-8"))  # the weights the runs used
    text = fill("report_real.md.in", {
        "lambda_adv": f"{adapt['lambda_adv']:g}", "lambda_align": f"{adapt['lambda_align']:g}",
        **_common(study), "selection_rule": SELECTION_RULE, "profile": PROFILE, "max_epochs": c.max_epochs,
        "patches_per_epoch": c.patches_per_epoch, "patch_size": c.patch_size, "batch_size": c.batch_size,
        "n_views": c.n_views, "r2s_patient": R2S_PATIENT, "r2s_split": _r2s_split(study),
        "sections": "\n".join(_real_section(study, d, r) for d, r in rows.items())})
    path = write_text(study.root / "report.md", text)
    return {"files": [str(path)]}, str(path)
