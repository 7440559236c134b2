"""``python -m cavmae_lite ...``: the ``cavmae-lite`` command."""

import sys

from .cli import main

sys.exit(main())
