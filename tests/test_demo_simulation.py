"""The README's main job: ``python -m ldct_scripts.examples.demo_simulation`` at a tiny size."""

import json
from pathlib import Path

import numpy as np
import pytest

from ldct_scripts.examples import demo_simulation


def test_demo_writes_figure_and_provenance(tmp_path):
    demo_simulation.main(["--out", str(tmp_path), "--n-pixels", "64", "--n-views", "96", "--seed", "1"])
    png = tmp_path / "simulation.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "simulation.json").read_text())
    assert [r["resolution_um"] for r in record["results"]] == [62.5, 625.0]
    for r in record["results"]:
        assert r["geometry"]["n_pixels"] == 64 and r["geometry"]["n_views"] == 96
        assert np.isfinite(r["noise_std_hu_in_body"]) and r["noise_std_hu_in_body"] > 1.0
    assert record["results"][0]["input_i0"] == pytest.approx(3.6e4)
    assert set(record["git"]) >= {"commit", "dirty"}
    assert record["packages"]["ldct_sim"] and record["packages"]["torch"].startswith("2.")


def test_demo_rejects_unknown_resolution(tmp_path):
    with pytest.raises(ValueError, match="Unknown preset"):
        demo_simulation.main(["--out", str(tmp_path), "--resolutions", "100", "--n-pixels", "32"])
