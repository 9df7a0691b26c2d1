"""MONAI Label adapter for the LDCT denoising bundles (``bundles/unet_ldct``, ``bundles/cpce_rfm_da``).

``lib`` is the package name MONAI Label gives an app's own code (its loader puts the app folder on
``sys.path`` and reloads ``lib`` with ``main.py``), as in its ``monaibundle`` sample app.
"""
