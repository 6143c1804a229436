"""``python -m dbksvd``: the ``dbksvd`` command."""

import sys

from .cli import main

sys.exit(main())
