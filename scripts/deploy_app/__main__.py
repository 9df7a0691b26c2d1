"""``python -m ldct_scripts.deploy_app --bundle BUNDLE -i DICOM_DIR -o OUT_DIR``: runs ``app.cli`` (see ``app.py``)."""

from ldct_scripts.deploy_app.app import cli

cli()
