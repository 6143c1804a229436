"""What every dataset is: :class:`Item` records listed up front, one payload loaded at a time.

- ``items(start)`` yields :class:`Item` records in a fixed order; ``start`` skips the first
  items without touching their payloads (resuming an interrupted embedding run).
- ``load(item)`` returns the payload (a PIL ``RGB`` image for ``modality == "image"``, a
  ``str`` for ``modality == "text"``) or raises :class:`SkipItem` when that one item is unusable
  (missing, truncated, not an image); the caller records the reason and goes on.
- Problems with the dataset as a whole (missing font or IDX file, corrupt file, no usable items)
  raise :class:`~dbksvd.errors.DataFileError` / :class:`~dbksvd.errors.InputError` at
  construction.
- ``skipped`` counts the rows dropped while listing, by reason.
- ``spec()`` is a JSON-able, deterministic description for a run manifest, and
  ``from_spec(spec)`` rebuilds the dataset from it.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ...errors import ParameterError

__all__ = ["Dataset", "Item", "SkipItem", "check_limit"]

# Bumped whenever a dataset's listing or rendering changes, so old manifests stop matching.
SPEC_VERSION = 1
EXTRA_HINT = "pip install 'dbksvd[embed]'"


class SkipItem(Exception):
    """One item cannot be loaded; ``str(exc)`` is the short reason ("unreadable image: ...")."""


@dataclass(frozen=True)
class Item:
    """One entry of a dataset: its identity and metadata, not its payload."""

    id: str  # unique within the dataset, stable across runs
    source: str  # where it came from: a file path, "U+1F600", "train:123", "file.txt:17"
    caption: str | None = None
    label: int | None = None


class Dataset(abc.ABC):
    """Base class: a fixed, ordered list of items and a loader for one item's payload.

    Subclasses set ``name``, ``modality`` and ``label_names`` and implement ``__len__``,
    ``_item(i)`` (the i-th :class:`Item`, cheap), ``load``, ``spec`` and ``from_spec``.

    How ``get_dataset`` names a family (see :mod:`.registry`): ``spec_argument`` is the
    constructor parameter that the part after ``name:`` fills (None: the name stands alone),
    ``spec_form`` the form listed in ``DATASET_NAMES`` and ``spec_usage`` the form shown in
    error messages.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = "image"  # "image": load() -> PIL.Image.Image (RGB); "text": load() -> str
    label_names: list[str] | None = None
    spec_argument: ClassVar[str | None] = None
    spec_form: ClassVar[str] = ""
    spec_usage: ClassVar[str] = ""

    def __init__(self) -> None:
        self.skipped: dict[str, int] = {}

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of items."""

    @abc.abstractmethod
    def _item(self, index: int) -> Item:
        """The i-th item (cheap: no payload is read)."""

    def items(self, start: int = 0) -> Iterator[Item]:
        """The items in their fixed order, skipping the first ``start`` (payloads untouched)."""
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
            raise ParameterError(f"start must be a non-negative integer, got {start!r}")
        return (self._item(i) for i in range(int(start), len(self)))

    @abc.abstractmethod
    def load(self, item: Item) -> Any:
        """The payload of ``item``; raises :class:`SkipItem` when this one item is unusable."""

    @abc.abstractmethod
    def spec(self) -> dict:
        """JSON-able, deterministic description: name, path, count, version, parameters."""

    @classmethod
    def from_spec(cls, spec: dict) -> Dataset:
        """The dataset ``spec`` (a ``spec()`` of this family, read from a manifest) describes."""
        raise ParameterError(f"a {cls.name or cls.__name__} dataset cannot be rebuilt from its spec")

    @classmethod
    def spec_arguments(cls, argument: str) -> dict[str, Any]:
        """The constructor arguments that ``"<name>:<argument>"`` stands for."""
        return {cls.spec_argument: argument}

    def _fingerprint(self) -> str:
        """16 hex digits of SHA-256 over every item's id, caption and label, in order."""
        digest = hashlib.sha256()
        for item in self.items():
            digest.update(json.dumps([item.id, item.caption, item.label]).encode())
            digest.update(b"\n")
        return digest.hexdigest()[:16]

    def _spec_head(self, path: Any) -> dict:
        """The keys every dataset's spec starts with: name, path, count, format version."""
        return {"name": self.name, "path": path, "count": len(self), "version": SPEC_VERSION}

    def _count_skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _dropped(self) -> str:
        """The listing's skip counts as "2 missing image, 1 malformed row" ("" when none)."""
        return ", ".join(f"{count} {reason}" for reason, count in self.skipped.items())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self)} items>"


class ListDataset(Dataset):
    """A dataset whose items are all held in ``self._items`` (a list built at construction)."""

    _items: list[Item]

    def __len__(self) -> int:
        return len(self._items)

    def _item(self, index: int) -> Item:
        return self._items[index]

    def _index_of(self, item: Item) -> int:
        index = self._positions.get(item.id) if isinstance(item, Item) else None
        if index is None:
            raise ParameterError(f"{item!r} is not an item of the {self.name} dataset")
        return index

    def _set_items(self, items: list[Item]) -> None:
        self._items = items
        self._positions = {item.id: i for i, item in enumerate(items)}


def check_limit(limit: Any) -> int | None:
    """``limit`` (the first items to keep) as an int, or None for all; ParameterError otherwise."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ParameterError(f"limit must be a positive integer or None, got {limit!r}")
    return int(limit)
