"""Tables of a study: CSV (full precision) and GitHub Markdown, and ``mean ± std`` cells."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .files import write_text

__all__ = ["mean_std", "markdown_table", "write_table"]


def mean_std(mean: float, std: float | None = None, digits: int = 2, scientific: bool = False) -> str:
    """``"37.17 ± 1.03"`` (or ``"1.2e-05 ± 3.4e-06"``); ``"—"`` for a missing mean; no ``±`` part without a finite std.

    Args:
        mean: the mean, or ``None``/NaN.
        std: the standard deviation, or ``None``/NaN.
        digits: digits after the point.
        scientific: ``e`` notation.
    """
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    fmt = (lambda v: f"{v:.{digits}e}") if scientific else (lambda v: f"{v:.{digits}f}")
    if std is None or not math.isfinite(std):
        return fmt(mean)
    return f"{fmt(mean)} ± {fmt(std)}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    """A GitHub Markdown table (``|`` in cells escaped).

    Args:
        header: column titles.
        rows: rows of cells (any ``str``-able values).
        align: one of ``l``/``r``/``c`` per column; default first left, rest right.
    """
    header = [str(h) for h in header]
    align = align or ("l" + "r" * (len(header) - 1))
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule[a] for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(stem, rows: Sequence[Mapping], columns: Sequence[str], markdown: str | None = None,
                title: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` (``columns`` of ``rows``; floats at full precision) and ``<stem>.md``.

    Args:
        stem: path without extension.
        rows: dicts holding at least ``columns``.
        columns: CSV columns, in order.
        markdown: the Markdown body; default a table of the CSV's columns.
        title: a heading line for the Markdown file.

    Returns:
        The two paths.
    """
    stem = Path(stem)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    csv_path = write_text(stem.with_suffix(".csv"), buf.getvalue())
    body = markdown if markdown is not None else markdown_table(columns, [[_md_value(r.get(k)) for k in columns] for r in rows])
    md_path = write_text(stem.with_suffix(".md"), (f"## {title}\n\n" if title else "") + body)
    return csv_path, md_path


def _csv_value(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return "" if v is None else v


def _md_value(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
