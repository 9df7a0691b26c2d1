"""Start MONAI Label's server with this app: ``monailabel start_server --app scripts/monailabel_app ...``.

Usage (any ``monailabel start_server`` option may follow; ``--app`` defaults to this folder)::

    python scripts/monailabel_app/server.py --studies /data/ldct_studies --conf bundles unet_ldct,cpce_rfm_da

The plain ``monailabel start_server`` command fails here at import: the server imports
``monailabel.datastore.utils.convert``, which needs ``pydicom_seg`` (unusable with pydicom 3). This
launcher applies ``lib.compat.import_monailabel`` first and then runs MONAI Label's own command line in
the same process; nothing else differs.
"""

from __future__ import annotations

import os
import sys

APP_DIR = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> None:
    """Run ``monailabel start_server --app <this folder> <argv>`` after the import fix.

    Args:
        argv: ``monailabel start_server`` options; default ``sys.argv[1:]``.
    """
    from ldct_scripts.bundle_import import folder_on_path

    argv = list(sys.argv[1:] if argv is None else argv)
    with folder_on_path(APP_DIR):  # MONAI Label imports the app's `lib` from its folder; the fix must come first
        from lib.compat import import_monailabel

        import_monailabel()
    from monailabel.main import Main

    if not {"-a", "--app"} & set(argv):
        argv = ["--app", APP_DIR, *argv]
    sys.argv = ["monailabel", "start_server", *argv]
    Main().run()


if __name__ == "__main__":
    main()
