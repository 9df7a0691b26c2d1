"""MONAI Deploy App SDK application of the LDCT bundles: DICOM CT series in, denoised DICOM CT series out.

Run ``python -m ldct_scripts.deploy_app --bundle bundles/unet_ldct -i DICOM_DIR -o OUT_DIR``; see README.md.
"""
