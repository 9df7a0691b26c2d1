"""Pure functions of the cross-domain study: unit conversion, summaries, table rows and the sentences of the
report's readings, computed from the numbers (so they stay true for any run). No files, no subprocesses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .config import METHODS, REAL_METHODS, SEED

__all__ = ["to_hu", "summarize", "lookup", "select_rows", "reading", "seed_table", "roi_box", "rmse_hu",
           "bundle_name", "real_rows", "real_table", "seed_gain_db", "real_reading", "mask_lines"]


def to_hu(mu, mu_water: float) -> np.ndarray:
    """Linear attenuation (cm⁻¹) in Hounsfield units: ``(mu / mu_water - 1) · 1000``.

    Args:
        mu: attenuation in cm⁻¹.
        mu_water: water's attenuation in cm⁻¹ (``ldct_sim.mu_water()``: 60 keV).

    Example:
        >>> to_hu([0.0, 0.2, 0.4], 0.2).tolist()
        [-1000.0, 0.0, 1000.0]
    """
    return (np.asarray(mu, dtype=np.float64) / mu_water - 1.0) * 1000.0


def summarize(per_image: Sequence[Mapping[str, float]], direction: str, method: str) -> list[dict]:
    """One Table 1 row per metric: mean and sample SD (``ddof=1``; 0 for one image) over the images.

    Args:
        per_image: ``{metric: value}`` per test image, all with the same metrics.
        direction: the row's direction (``"S→R"``).
        method: the row's column (``"U-Net (extra)"``).
    """
    rows = []
    for metric in per_image[0]:
        values = np.array([m[metric] for m in per_image], dtype=np.float64)
        rows.append({"direction": direction, "method": method, "metric": metric, "mean": float(values.mean()),
                     "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0, "n_images": len(values)})
    return rows


def lookup(rows: Sequence[Mapping], direction: str, method: str, metric: str) -> Mapping | None:
    """The row of one cell, or ``None``.

    Args:
        rows: Table 1 rows (``direction``, ``method``, ``metric``, ``mean``, ...).
        direction: ``"S→R"`` or ``"R→S"``.
        method: the column.
        metric: ``psnr_full``, ...
    """
    return next((r for r in rows if r["direction"] == direction and r["method"] == method and r["metric"] == metric), None)


def select_rows(rows: Sequence[Mapping], directions: Sequence[str], columns: Sequence[str]) -> list[dict]:
    """The rows of the chosen directions (labels) and columns, in their order.

    Args:
        rows: Table 1 rows.
        directions: direction labels kept (``"S→R"``).
        columns: method columns kept.
    """
    return [dict(r) for r in rows if r["direction"] in directions and r["method"] in columns]


def reading(rows: Sequence[Mapping], directions: Sequence[str], methods: Sequence[str]) -> list[str]:
    """Plain sentences comparing adaptive alignment with plain CPCE on the target domain, whatever the sign.

    Args:
        rows: Table 1 rows.
        directions: direction labels (``"S→R"``), in order.
        methods: the run's method keys; without both ``baseline`` and ``adaptive`` there is nothing to compare.
    """
    lines = []
    if "baseline" not in methods or "adaptive" not in methods:
        return lines
    for d in directions:
        for metric in ("psnr_full", "psnr_window"):
            a = lookup(rows, d, METHODS["adaptive"][0], metric)
            b = lookup(rows, d, METHODS["baseline"][0], metric)
            x = lookup(rows, d, "LDCT", metric)
            if a is None or b is None or x is None:
                continue
            diff = a["mean"] - b["mean"]
            verdict = "higher than" if diff > 0 else "lower than" if diff < 0 else "equal to"
            lines.append(f"- {d}, {metric.replace('_', ' ')}: CPCE + adaptive RFM alignment {a['mean']:.2f} dB is "
                         f"{verdict} plain CPCE {b['mean']:.2f} dB ({diff:+.2f} dB; input {x['mean']:.2f} dB).")
    return lines


def seed_table(table1: Mapping = SEED["table1"]) -> str:
    """The seed's Table 1 as Markdown, its cells as printed.

    Args:
        table1: ``{metric: {direction: {"LDCT", "CPCE", "Ours"}}}`` (``seed.json``).
    """
    lines = ["| | LDCT | CPCE | CPCE + alignment (theirs) |", "|---|---|---|---|"]
    for metric, name in (("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
        lines.append(f"| **{name}, mean±var as printed** | | | |")
        for d in ("S→R", "R→S"):
            v = table1[metric][d]
            lines.append(f"| {d} | {v['LDCT']} | {v['CPCE']} | {v['Ours']} |")
    return "\n".join(lines)


def roi_box(n: int) -> tuple[int, int, int]:
    """``(row, column, side)`` of the zoomed ROI of an ``n × n`` image: central, a little right, with organ boundaries.

    Args:
        n: the image side in pixels.

    Example:
        >>> roi_box(48)
        (18, 21, 12)
    """
    size = max(8, n // 4)
    return n // 2 - size // 2, n // 2 + n // 16 - size // 2, size


def rmse_hu(image_hu, label_hu) -> float:
    """Root-mean-square difference of two images, in their unit (HU).

    Args:
        image_hu: the image.
        label_hu: the reference, same shape.
    """
    return float(np.sqrt(np.mean((np.asarray(image_hu) - np.asarray(label_hu)) ** 2)))


def bundle_name(method: str) -> str:
    """The bundle a real-target method runs (``unet_ldct`` or ``cpce_rfm_da``), as ``bench_real`` names its rows.

    Args:
        method: a key of ``REAL_METHODS``.
    """
    return "unet_ldct" if method == "unet" else "cpce_rfm_da"


def real_rows(results: Mapping[str, Sequence[Mapping]], methods: Sequence[str]) -> list[dict]:
    """The real-target table's rows from each method's ``bench_real`` rows, with the methods' names.

    Each method's own row (named after its bundle) is renamed to the method's table row; the other rows (the
    low-dose input) are kept once, from the first method.

    Args:
        results: ``{method: rows of its results.csv}``.
        methods: the methods, in order.
    """
    rows = []
    for method in methods:
        for r in results[method]:
            own = r["method"] == bundle_name(method)
            if own or method == methods[0]:
                rows.append({**r, "method": REAL_METHODS[method][0] if own else r["method"]})
    return rows


def _fmt(r: Mapping, key: str, digits: int) -> str:
    sd = r.get(f"{key}_sd") or ""
    return f"{float(r[f'{key}_mean']):.{digits}f}" + (f" ± {float(sd):.{digits}f}" if sd not in ("", "nan") else "")


def real_table(rows: Sequence[Mapping]) -> str:
    """Markdown: per kernel and method, body RMSE (HU) and its cut vs the input, body PSNR (dB), SSIM.

    Args:
        rows: :func:`real_rows` (``bench_real`` columns: ``kernel``, ``n_pairs``, ``rmse_body_mean``, ...).
    """
    lines = ["| Kernel | Pairs | Method | RMSE body (HU) | cut | PSNR body (dB) | SSIM body |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["kernel"], 0 if r["method"] == "low-dose input" else 1)):
        cut = float(r.get("rmse_body_cut_pct") or 0.0)
        lines.append(f"| {r['kernel']} | {r['n_pairs']} | {r['method']} | {_fmt(r, 'rmse_body', 1)} | "
                     f"{'' if r['method'] == 'low-dose input' else f'{cut:+.0f} %'} | {_fmt(r, 'psnr_body', 2)} | "
                     f"{_fmt(r, 'ssim_body', 4)} |")
    return "\n".join(lines)


def seed_gain_db(direction: str = "S→R", table1: Mapping = SEED["table1"]) -> float:
    """The PSNR gain of adaptive alignment over plain CPCE that seed B's Table 1 prints for a direction (dB).

    Args:
        direction: ``"S→R"`` (42.27 − 38.58 = 3.69 dB) or ``"R→S"`` (40.92 − 36.31 = 4.61 dB).
        table1: the seed's cells (``seed.json``), ``"mean±var"`` strings.
    """
    cells = table1["psnr"][direction]
    return float(cells["Ours"].split("±")[0]) - float(cells["CPCE"].split("±")[0])


def real_reading(rows: Sequence[Mapping], claim_db: float = SEED["s2r_gain_db"], direction: str = "S→R") -> list[str]:
    """Adaptive alignment against plain CPCE with the same budget, per kernel, whatever the sign.

    Args:
        rows: :func:`real_rows`.
        claim_db: the seed's claimed gain in this direction (dB).
        direction: the direction's name in the line.
    """
    out = []
    for kernel in sorted({r["kernel"] for r in rows}):
        by = {r["method"]: r for r in rows if r["kernel"] == kernel}
        a, b = by.get(REAL_METHODS["adaptive"][0]), by.get(REAL_METHODS["baseline"][0])
        if a and b:
            dp = float(a["psnr_body_mean"]) - float(b["psnr_body_mean"])
            dr = float(a["rmse_body_mean"]) - float(b["rmse_body_mean"])
            out.append(f"- {kernel}: adaptive RFM alignment vs plain CPCE, same source pairs and budget: "
                       f"{dp:+.2f} dB body PSNR, {dr:+.1f} HU body RMSE (seed B claims +{claim_db:.1f} dB {direction}).")
    return out


def mask_lines(report: Mapping) -> list[str]:
    """Whether the adaptive mask adapts, before and after, from the bundle's ``mask_report.json``.

    Args:
        report: ``{"before"|"after": {"source": {"mean": [...]}, "target": ..., "max_domain_gap", ...}}``.
    """
    lines = []
    for when in ("before", "after"):
        if when in report:
            e = report[when]
            lines.append(
                f"- {when} adaptation: mean keep-probability source {np.mean(e['source']['mean']):.3f}, target "
                f"{np.mean(e['target']['mean']):.3f}; largest gap between domains {e['max_domain_gap']:.3f}, "
                f"largest SD over images {e['max_sd_over_images']:.3f}: "
                f"{'adaptive' if e['adaptive_mask'] else 'not adaptive (the same mask for every image)'}.")
    return lines
