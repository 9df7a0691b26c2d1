"""The U-Net bundle's utils (bundles/unet_ldct/scripts/utils.py): epochs, weights export."""

import pytest
import torch

from bundle_loading import bundle_scripts

S = bundle_scripts("unet_ldct")


def test_epochs_for_requires_a_whole_number_of_validation_intervals():
    assert S.utils.epochs_for(50000, 1000) == 50
    with pytest.raises(ValueError, match=r"`num_iterations` \(2500\) must be a multiple of the validation interval \(1000\)"):
        S.utils.epochs_for(2500, 1000)
    with pytest.raises(ValueError, match="`epoch_length` must be a positive integer"):
        S.utils.epochs_for(10, 0)


def test_fp16_export_loads_into_the_float32_network_and_fits_the_zoo_limit(tmp_path):
    torch.manual_seed(0)
    net = S.networks.LDCTUNet()
    src, dst = tmp_path / "ckpt.pt", tmp_path / "model.pt"
    torch.save({"model": net.state_dict(), "optimizer": {}}, src)
    S.utils.export_state_dict(str(src), str(dst))
    assert dst.stat().st_size < 25e6  # the model zoo's limit for committed files
    sd = torch.load(dst, weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values())
    other = S.networks.LDCTUNet()
    other.load_state_dict(sd)
    assert next(other.parameters()).dtype == torch.float32
    for a, b in zip(net.parameters(), other.parameters()):
        torch.testing.assert_close(b, a.half().float())
