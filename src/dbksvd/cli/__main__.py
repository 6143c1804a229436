"""``python -m dbksvd.cli``: the ``dbksvd`` command."""

import sys

from . import main

sys.exit(main())
