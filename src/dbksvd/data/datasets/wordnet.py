"""The glosses of WordNet's noun synsets (about 82,000 English definitions, Debian
``wordnet-base``): a real text corpus offline, of over a million tokens."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataFileError, MissingDependencyError
from .base import Item, ListDataset, check_limit
from .registry import register_dataset

__all__ = ["WordNetGlosses"]


@register_dataset
class WordNetGlosses(ListDataset):
    """``"wordnet-glosses"``: one text per noun synset of ``data.noun``, its gloss (the
    definition and its examples, as WordNet writes them), in file order.

    id ``"<first lemma>.n.<offset>"``; caption: the gloss; source ``"data.noun:<offset>"``; no
    labels. ``root``: the folder holding ``data.noun`` (default ``$WORDNET_DIR``, else
    /usr/share/wordnet); ``limit``: the first ``limit`` synsets.
    """

    name = "wordnet-glosses"
    modality = "text"

    def __init__(self, root: str | os.PathLike | None = None, limit: int | None = None):
        super().__init__()
        from ..vocab import DEFAULT_WORDNET_DIR

        self.root = os.path.abspath(os.fspath(root or os.environ.get("WORDNET_DIR") or DEFAULT_WORDNET_DIR))
        self.limit = check_limit(limit)
        path = Path(self.root) / "data.noun"
        if not path.is_file():
            raise MissingDependencyError(f"WordNet not found at {path}: apt-get install wordnet-base")
        items: list[Item] = []
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if raw.startswith(b"  ") or not raw.strip():
                    continue  # the license header
                try:
                    head, _, gloss = raw.decode("utf-8").partition(" | ")
                    fields = head.split()
                    offset, lemma = fields[0], fields[4]
                except (UnicodeDecodeError, IndexError):
                    raise DataFileError(f"{path} line {number} is not a synset entry") from None
                if gloss.strip():
                    items.append(Item(id=f"{lemma}.n.{offset}", caption=gloss.strip(), source=f"data.noun:{offset}"))
                if self.limit is not None and len(items) == self.limit:
                    break
        self._set_items(items)

    def load(self, item: Item) -> str:
        """The gloss of ``item``."""
        return self._items[self._index_of(item)].caption

    def spec(self) -> dict:
        return {**self._spec_head(self.root), "limit": self.limit, "fingerprint": self._fingerprint()}

    @classmethod
    def from_spec(cls, spec: dict) -> WordNetGlosses:
        return cls(spec.get("path"), limit=spec.get("limit"))
