"""``python -m wattsight``: the same as the ``wattsight`` command."""

import sys

from .cli import main

sys.exit(main())
