"""``engine.tables``: CSV at full precision, Markdown tables, ``mean ± std`` cells."""

import math

from ldct_scripts.studies import engine as sc


def test_tables_csv_markdown_and_mean_std(tmp_path):
    csv_path, md_path = sc.write_table(tmp_path / "t", [{"a": 1.5, "b": math.nan, "c": "x"}], ["a", "b"], title="T")
    assert csv_path.read_text() == "a,b\n1.5,nan\n"
    assert md_path.read_text() == "## T\n\n| a | b |\n|---|---:|\n| 1.5 | nan |\n"
    assert sc.mean_std(37.171, 1.034) == "37.17 ± 1.03" and sc.mean_std(1.5e-6, math.nan, scientific=True) == "1.50e-06"
