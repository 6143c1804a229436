"""Thread-safe lazy loading: :class:`locked_cached_property`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class locked_cached_property(Generic[T]):
    """``functools.cached_property`` that computes the value once even when several threads
    ask for it at the same time: it is computed holding the instance's ``load_lock`` (a
    ``threading.RLock`` the class provides; objects that share one load one part at a time,
    and a part's computation may read other parts), and the threads that waited get that value.
    Once computed, the value is an ordinary instance attribute, so reads take no lock. A
    computation that raises caches nothing: the next read tries again.

    (``functools.cached_property`` takes no lock since Python 3.12, so two requests could each
    load the same model; before 3.12 it took one lock for all instances of the class.)
    """

    def __init__(self, func: Callable[[Any], T]):
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        values = obj.__dict__
        # once computed, the instance attribute shadows this (non-data) descriptor and Python
        # never calls __get__ again; this check serves the threads that waited for the value
        if self.name in values:
            return values[self.name]
        with obj.load_lock:
            if self.name not in values:
                values[self.name] = self.func(obj)
            return values[self.name]
