"""An image folder: every image under a root, or the rows of a CSV / JSONL captions file that
give each image a caption (and a label). Images are decoded by :mod:`dbksvd.data.images`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import DataFileError, ImageError, InputError, ParameterError
from ..images import decode_image
from .base import Item, ListDataset, SkipItem
from .parsers import read_captions
from .registry import register_dataset

__all__ = ["IMAGE_SUFFIXES", "FolderDataset"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def _scan_images(root: Path) -> list[str]:
    """Relative POSIX paths of every image file under ``root``, sorted."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for file in files:
            if os.path.splitext(file)[1].lower() in IMAGE_SUFFIXES:
                found.append(Path(folder, file).relative_to(root).as_posix())
    return sorted(found)


@register_dataset
class FolderDataset(ListDataset):
    """Images in a folder, optionally captioned (and labelled) by a CSV or JSONL file.

    Without a captions file: every image under ``root`` (recursive; suffixes in
    :data:`IMAGE_SUFFIXES`, any case), sorted by relative path, caption None.

    With one (``captions``: a path, tried from the working directory, then from ``root``; else
    ``root/captions.csv``, else ``root/captions.jsonl``): a CSV with
    header ``path,caption[,label]`` or JSONL objects with keys ``path``, ``caption`` [, ``label``];
    rows in file order; paths relative to ``root`` (absolute allowed). Rows are dropped and
    counted in ``skipped`` when the file is missing ("missing image"), the line is not UTF-8
    ("undecodable caption"), the caption is empty ("empty caption") or the row cannot be parsed
    ("malformed row"). Integer labels are kept; string labels become indices into the sorted
    distinct names (``label_names``).

    id: the path relative to ``root`` (POSIX); the 2nd, 3rd, ... row naming the same image gets
    ``"#2"``, ``"#3"``, ... appended. source: the full file path.
    """

    name = "folder"
    modality = "image"
    spec_argument = "root"
    spec_form = "folder:PATH"

    def __init__(self, root: str | os.PathLike, captions: str | os.PathLike | None = None):
        super().__init__()
        self.root = os.path.abspath(os.fspath(root))
        root_path = Path(self.root)
        if not root_path.is_dir():
            raise DataFileError(f"image folder {self.root} does not exist or is not a folder")
        self.captions_path = self._find_captions(root_path, captions)

        if self.captions_path is None:
            rows = [(relative, None, None) for relative in _scan_images(root_path)]
        else:
            rows = read_captions(Path(self.captions_path), self._count_skip)
        entries = []  # (id base, full path, caption, raw label)
        for path_text, caption, label in rows:
            full = Path(path_text) if os.path.isabs(path_text) else root_path / path_text
            if not full.is_file():
                self._count_skip("missing image")
                continue
            entries.append((self._relative_id(root_path, path_text), os.path.normpath(full), caption, label))
        if not entries:
            detail = f" (rows dropped: {self._dropped()})" if self.skipped else ""
            raise InputError(f"folder {self.root} has no usable images{detail}")

        labels = self._map_labels([label for _, _, _, label in entries])
        items, seen = [], {}
        for (base, full, caption, _), label in zip(entries, labels):
            seen[base] = seen.get(base, 0) + 1
            item_id = base if seen[base] == 1 else f"{base}#{seen[base]}"
            items.append(Item(id=item_id, source=full, caption=caption, label=label))
        self._set_items(items)

    @staticmethod
    def _find_captions(root: Path, captions) -> str | None:
        if captions is None:
            for default in ("captions.csv", "captions.jsonl"):
                if (root / default).is_file():
                    return str(root / default)
            return None
        path = Path(captions)
        if not path.is_absolute() and not path.exists():
            path = root / path
        if not path.is_file():
            raise DataFileError(f"captions file {captions} not found (also looked in {root})")
        if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
            raise ParameterError(f"captions file {path} must end in .csv or .jsonl")
        return os.path.abspath(path)

    @staticmethod
    def _relative_id(root: Path, path_text: str) -> str:
        if os.path.isabs(path_text):
            try:
                return Path(path_text).relative_to(root).as_posix()
            except ValueError:
                return Path(path_text).as_posix()
        return Path(os.path.normpath(path_text)).as_posix()

    def _map_labels(self, raw: list[Any]) -> list[int | None]:
        """Integer labels as they are; otherwise every label -> index of its name among the
        sorted distinct names (sets ``label_names``)."""
        present = [label for label in raw if label is not None]
        if all(isinstance(label, int) for label in present):
            return raw
        self.label_names = sorted({str(label) for label in present})
        index = {name: i for i, name in enumerate(self.label_names)}
        return [None if label is None else index[str(label)] for label in raw]

    def load(self, item: Item):
        """The image as an RGB PIL image, upright (EXIF orientation), fully decoded, alpha composited
        on white; SkipItem ("missing image: ...", "unreadable image: ...") when it cannot be."""
        path = self._items[self._index_of(item)].source
        try:
            return decode_image(path)
        except ImageError as exc:
            raise SkipItem(f"unreadable image: {exc.reason}") from None
        except DataFileError:  # the file is gone
            raise SkipItem(f"missing image: {path}") from None

    def spec(self) -> dict:
        return {
            **self._spec_head(self.root),
            "captions": self.captions_path,
            "label_names": self.label_names,
            "skipped": dict(self.skipped),
            "fingerprint": self._fingerprint(),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> FolderDataset:
        return cls(spec.get("path"), captions=spec.get("captions"))
