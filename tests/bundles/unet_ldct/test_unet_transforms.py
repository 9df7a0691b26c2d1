"""The U-Net bundle's transforms (bundles/unet_ldct/scripts/transforms.py)."""

import torch

from bundle_loading import bundle_scripts

S = bundle_scripts("unet_ldct")


def test_predict_reference_loads_weights_and_is_off_without_them(tmp_path):
    torch.manual_seed(0)
    ref_net = S.networks.LDCTUNet()
    torch.save(ref_net.state_dict(), tmp_path / "ref.pt")
    fresh = S.networks.LDCTUNet()
    x = torch.rand(1, 16, 16)
    t = S.transforms.PredictReferenced("image", fresh, checkpoint=str(tmp_path / "ref.pt"))
    with torch.no_grad():
        torch.testing.assert_close(t({"image": x})["reference"], ref_net.eval()(x[None])[0])
    assert "reference" not in S.transforms.PredictReferenced("image", fresh, checkpoint=None)({"image": x})
