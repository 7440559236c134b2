"""``python -m cavmae_lite.cli ...`` (torchrun ``-m cavmae_lite.cli pretrain ...`` too)."""

import sys

from .main import main

sys.exit(main())
