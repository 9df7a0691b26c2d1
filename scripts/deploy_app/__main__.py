"""``python scripts/deploy_app --bundle BUNDLE -i DICOM_DIR -o OUT_DIR``: the same as ``app.py`` (see there)."""

from app import cli  # run as a folder, this folder is first on sys.path

cli()
