"""The U-Net bundle's copy of the shared input checks (bundles/common/input_checks.py)."""

import warnings

import pytest
import torch

from bundle_loading import bundle_scripts

S = bundle_scripts("unet_ldct")


def test_unit_check_refuses_the_wrong_unit():
    check_mu = S.input_checks.CheckIntensityUnitd("image", unit="mu")
    with pytest.raises(ValueError, match="look like Hounsfield units.*--input_unit hu"):
        check_mu({"image": torch.full((1, 8, 8), 40.0)})
    with pytest.raises(ValueError, match="look like attenuation.*--input_unit mu"):
        S.input_checks.CheckIntensityUnitd("image", unit="hu")({"image": torch.full((1, 8, 8), 0.2)})
    S.input_checks.CheckIntensityUnitd("image", unit="mu", check_unit="false")({"image": torch.full((1, 8, 8), 40.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_mu({"image": torch.full((1, 8, 8), 0.2)})
    with pytest.raises(ValueError, match="`unit` must be one of"):
        S.input_checks.CheckIntensityUnitd("image", unit="kev")
