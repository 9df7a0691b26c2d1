"""``python -m ldct_scripts.studies.domain_adaptation --results-dir DIR --preset smoke|small|real|paper ...``."""

import sys

from .cli import main

sys.exit(main())
