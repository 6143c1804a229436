"""Skip markers for tests that read the Debian data packages (``apt-get install`` names them),
and which of conftest.py's session fixtures reads which."""

from pathlib import Path

import pytest

from dbksvd.data.datasets import DEFAULT_EMOJI_FONT, DEFAULT_FASHION_MNIST_ROOT
from dbksvd.data.vocab import DEFAULT_WORDNET_DIR

FONT = Path(DEFAULT_EMOJI_FONT)
FASHION = Path(DEFAULT_FASHION_MNIST_ROOT)
WORDNET = Path(DEFAULT_WORDNET_DIR) / "index.noun"

needs_font = pytest.mark.skipif(
    not FONT.is_file(), reason=f"no emoji font at {FONT}: apt-get install fonts-noto-color-emoji"
)
needs_fashion = pytest.mark.skipif(
    not FASHION.is_dir(), reason=f"no Fashion-MNIST at {FASHION}: apt-get install dataset-fashion-mnist"
)
needs_wordnet = pytest.mark.skipif(
    not WORDNET.is_file(), reason=f"no WordNet at {WORDNET}: apt-get install wordnet-base"
)

#: conftest.py's session fixtures that embed a Debian dataset -> the data they need.
FIXTURE_NEEDS = {"fashion_store": needs_fashion, "emoji_store": needs_font, "emoji_run": needs_font}
