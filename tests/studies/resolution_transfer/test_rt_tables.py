"""The resolution-transfer study's tables: CSV columns and the Markdown text."""

from ldct_scripts.studies.resolution_transfer import analysis, tables


def test_retrain_table_text(tmp_path):
    keys = {f"{k}_{s}": 1.0 for k in analysis.RETRAIN_METRICS for s in ("mean", "std")}
    rows = [{"fraction": 0.0, "n_images": 0, "model": "625 µm model (before)", "iterations": None, "best_iteration": None,
             "n": 2, **keys},
            {"fraction": 0.25, "n_images": 2, "model": "retrained, 25 %", "iterations": 2, "best_iteration": 2, "n": 2, **keys}]
    csv_path, md_path = tables.write_retrain_table(tmp_path, rows, 625.0, 62.5)
    assert csv_path.read_text().splitlines()[2].startswith("0.25,2,\"retrained, 25 %\",2,2,2,1.0,")
    md = md_path.read_text()
    assert "| 0 % | 0 | 625 µm model (before) | — | 1.00 ± 1.00 | 1.00e+00 ± 1.00e+00 | 1.000 ± 1.000 |" in md
