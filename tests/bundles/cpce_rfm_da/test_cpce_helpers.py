"""The CPCE bundle's copy of the shared helpers (bundles/common/helpers.py)."""

from __future__ import annotations

import math

import pytest


def test_as_bool_reads_switches_strictly(S):
    assert S.helpers.as_bool("False") is False and S.helpers.as_bool("yes") is True and S.helpers.as_bool(True) is True
    with pytest.raises(ValueError, match="`value` must be true or false, got .flase."):
        S.helpers.as_bool("flase")


def test_intensity_range_maps_the_hu_window_to_each_unit(S):
    assert S.helpers.intensity_range([-1024, 3072], "hu") == [-1024.0, 3072.0]
    lo, hi = S.helpers.intensity_range([-1000, 0], "mu", mu_water=0.2059)
    assert lo == 0.0 and math.isclose(hi, 0.2059)
    with pytest.raises(ValueError, match="`input_unit` must be one of \\('mu', 'hu'\\)"):
        S.helpers.intensity_range([-1000, 0], "kev")


def test_require_file_names_what_is_missing(S, tmp_path):
    with pytest.raises(FileNotFoundError, match="CPCE-2D weights: .* does not exist. Train first"):
        S.helpers.require_file(tmp_path / "model.pt", "CPCE-2D weights", "Train first.")
    (tmp_path / "model.pt").write_bytes(b"")
    assert S.helpers.require_file(tmp_path / "model.pt") == str(tmp_path / "model.pt")
