"""Row sources: what the estimators read training and coding rows from.

An in-memory array, a memory-mapped ``.npy`` file and an on-disk embedding store
(:class:`dbksvd.data.store.StoreSpace`) all look the same to an estimator: a :class:`RowSource`
with a shape, a dtype, ordered chunks, shuffled batches for one pass, and a gather of chosen
rows. The store lives in a higher layer and satisfies the protocol by duck typing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .errors import InputError
from .validation import matrix_source


@runtime_checkable
class RowSource(Protocol):
    """Rows of an (n, d) matrix that may not fit in memory."""

    shape: tuple[int, int]
    dtype: Any

    def iter_chunks(self, rows: int) -> Iterator[Any]:
        """(≤ rows, d) blocks covering all rows once, in order."""

    def iter_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Any]:
        """(≤ batch_size, d) blocks covering all rows once, shuffled (one pass)."""

    def take(self, rows: np.ndarray) -> Any:
        """(len(rows), d): the rows with the given sorted indices."""

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance (recorded in a model's config)."""


class ArraySource:
    """A numpy array, memory map or torch tensor as a :class:`RowSource` (never copied whole)."""

    def __init__(self, X: Any, name: str = "X"):
        self.array = matrix_source(X, name)
        self.shape = tuple(self.array.shape)
        self.dtype = self.array.dtype

    def iter_chunks(self, rows: int) -> Iterator[Any]:
        for s in range(0, self.shape[0], rows):
            yield self.array[s : s + rows]

    def iter_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Any]:
        order = rng.permutation(self.shape[0])
        for s in range(0, self.shape[0], batch_size):
            yield self.take(np.sort(order[s : s + batch_size]))

    def take(self, rows: np.ndarray) -> Any:
        if isinstance(self.array, torch.Tensor):
            return self.array[torch.as_tensor(rows, device=self.array.device)]
        return self.array[rows]

    def describe(self) -> dict[str, Any]:
        return {"kind": "array", "shape": list(self.shape)}


def as_source(X: Any, name: str = "X") -> RowSource:
    """``X`` itself when it is a row source (e.g. a store space), else an :class:`ArraySource`."""
    if isinstance(X, RowSource) and not isinstance(X, (np.ndarray, torch.Tensor)):
        n, d = X.shape
        if n == 0 or d == 0:
            raise InputError(f"{name} is empty (shape {tuple(X.shape)})")
        return X
    return ArraySource(X, name)
