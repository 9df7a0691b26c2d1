"""The CPCE bundle's copy of the shared input checks (bundles/common/input_checks.py)."""

from __future__ import annotations

import pytest
import torch


def test_check_intensity_unit_refuses_the_wrong_unit(S, recwarn):
    mu = {"image": torch.full((1, 8, 8), 0.2)}
    hu = {"image": torch.linspace(-1000, 1000, 64).reshape(1, 8, 8)}
    S.input_checks.CheckIntensityUnitd("image", "mu")(mu)
    S.input_checks.CheckIntensityUnitd("image", "hu")(hu)
    assert len(recwarn) == 0
    with pytest.raises(ValueError, match="pass --input_unit hu"):
        S.input_checks.CheckIntensityUnitd("image", "mu")(hu)
    with pytest.raises(ValueError, match="pass --input_unit mu"):
        S.input_checks.CheckIntensityUnitd("image", "hu")(mu)
    with pytest.raises(ValueError, match="`unit` must be one of"):
        S.input_checks.CheckIntensityUnitd("image", "kelvin")
