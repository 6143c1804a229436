"""dbksvd._lazy.locked_cached_property: computed once however many threads ask at once, read
without the lock after, nothing cached when the computation raises."""

import threading
import time

import pytest

from dbksvd._lazy import locked_cached_property


class Parts:
    def __init__(self, fail: int = 0):
        self.load_lock = threading.RLock()
        self.calls = 0
        self.fail = fail

    @locked_cached_property
    def value(self) -> list[int]:
        """A part that takes a while to load."""
        self.calls += 1
        if self.calls <= self.fail:
            raise OSError("not yet")
        time.sleep(0.05)  # long enough for every thread below to arrive while it loads
        return [self.calls]

    @locked_cached_property
    def derived(self) -> int:
        return self.value[0] + 1  # a part that reads another under the same (reentrant) lock


def test_loaded_once_when_many_threads_ask_at_once():
    parts = Parts()
    barrier = threading.Barrier(8)
    seen = []

    def ask():
        barrier.wait()
        seen.append(parts.value)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert parts.calls == 1 and len(seen) == 8 and all(v is seen[0] for v in seen)
    assert parts.derived == 2 and parts.calls == 1
    assert "value" in vars(parts)  # an instance attribute now: reads never reach the descriptor
    assert Parts.value.__doc__ == "A part that takes a while to load."


def test_a_failed_load_is_not_cached():
    parts = Parts(fail=1)
    with pytest.raises(OSError):
        _ = parts.value
    assert "value" not in vars(parts)
    assert parts.value == [2] and parts.calls == 2
