"""``python -m ldct_scripts.studies.resolution_transfer --results-dir DIR --preset smoke|small|paper ...``."""

import sys

from .cli import main

sys.exit(main())
