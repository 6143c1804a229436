"""Measuring a piece of work: wall time and peak resident memory (a sampling thread)."""

from __future__ import annotations

import threading
import time


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux /proc), or None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakRSS:
    """``with PeakRSS() as m: ...`` then ``m.peak`` (bytes, highest VmRSS seen every
    ``interval`` s), ``m.start`` (RSS on entry), ``m.extra`` (peak - start) and ``m.seconds``."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self.start, self.seconds = interval, 0, 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        r = rss_bytes()
        if r is not None and r > self.peak:
            self.peak = r

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakRSS:
        self.start = rss_bytes() or 0
        self.peak = self.start
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = time.perf_counter() - self._t0

    @property
    def extra(self) -> int:
        return max(0, self.peak - self.start)
