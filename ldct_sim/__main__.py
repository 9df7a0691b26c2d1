"""``python -m ldct_sim``: see :mod:`ldct_sim.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
