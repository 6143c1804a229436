"""Texts to embed: the lines of a .txt file, a field of a .jsonl file, a column of a .parquet file."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataFileError, InputError, ParameterError
from .base import Item, ListDataset
from .parsers import read_jsonl_texts, read_parquet_texts, read_text_lines
from .registry import register_dataset

__all__ = ["TextsDataset"]

_TEXT_SUFFIXES = (".txt", ".text", "")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_PARQUET_SUFFIXES = (".parquet", ".pq")


@register_dataset
class TextsDataset(ListDataset):
    """Sentences from a .txt, .jsonl or .parquet file; ``load`` returns the text itself.

    - .txt: one text per line, stripped; blank lines skipped; lines that are not valid UTF-8 are
      skipped and counted ("undecodable text"). id ``"<stem>:<line number>"`` (1-based).
    - .jsonl: field ``column`` (default "text") of each line's object; unparsable lines or
      non-string fields are counted ("malformed line"), empty texts too ("empty text").
      id ``"<stem>:<line number>"``.
    - .parquet: column ``column``, which may be omitted when the file has exactly one string
      column; nulls and empty strings are counted ("empty text"). id ``"<stem>:<row index>"``
      (0-based). Needs pyarrow.

    caption: the text; source: ``"<file name>:<line or row>"``; no labels.
    """

    name = "texts"
    modality = "text"
    spec_argument = "path"
    spec_form = "texts:PATH"
    spec_usage = "texts:PATH[#column]"

    def __init__(self, path: str | os.PathLike, column: str | None = None):
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        file = Path(self.path)
        suffix = file.suffix.lower()
        if suffix not in _TEXT_SUFFIXES + _JSONL_SUFFIXES + _PARQUET_SUFFIXES:
            raise ParameterError(f"text file {file} must end in .txt, .jsonl or .parquet")
        if suffix in _TEXT_SUFFIXES and column is not None:
            raise ParameterError(f"a column ({column!r}) applies to .jsonl and .parquet files, not {file.name}")
        if not file.is_file():
            raise DataFileError(f"text file {file} does not exist")
        if suffix in _PARQUET_SUFFIXES:
            texts, self.column = read_parquet_texts(file, column, self._count_skip)
        elif suffix in _JSONL_SUFFIXES:
            self.column = column or "text"
            texts = read_jsonl_texts(file, self.column, self._count_skip)
        else:
            self.column = None
            texts = read_text_lines(file, self._count_skip)
        if not texts:
            raise InputError(
                f"text file {file} has no texts" + (f" (dropped: {self._dropped()})" if self.skipped else "")
            )
        self._set_items([Item(id=f"{file.stem}:{n}", source=f"{file.name}:{n}", caption=text) for n, text in texts])

    def load(self, item: Item) -> str:
        """The text of ``item``."""
        return self._items[self._index_of(item)].caption

    def spec(self) -> dict:
        return {
            **self._spec_head(self.path),
            "column": self.column,
            "skipped": dict(self.skipped),
            "fingerprint": self._fingerprint(),
        }

    @classmethod
    def spec_arguments(cls, argument: str) -> dict:
        """``"PATH"`` -> path; ``"PATH#column"`` -> path and column, unless PATH#column is itself a file."""
        if "#" in argument and not os.path.exists(argument):
            path, _, column = argument.rpartition("#")
            return {"path": path, "column": column or None}
        return {"path": argument}

    @classmethod
    def from_spec(cls, spec: dict) -> TextsDataset:
        return cls(spec.get("path"), column=spec.get("column"))
