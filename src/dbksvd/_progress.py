"""A progress bar (rate and ETA) on stderr, or nothing when disabled."""

from __future__ import annotations

import sys
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


def progress(total: int, desc: str, *, enabled: bool = True, unit: str = "it"):
    """A tqdm bar over ``total`` steps, or a silent stand-in when ``enabled`` is false."""
    if not enabled:
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
