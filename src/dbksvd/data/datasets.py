"""Datasets to embed: emoji glyphs, Fashion-MNIST, an image folder with captions, text files.

Every dataset lists its items up front (cheap: ids, captions, labels) and loads one payload at a
time: a PIL ``RGB`` image for ``modality == "image"``, a ``str`` for ``modality == "text"``.

- ``items(start)`` yields :class:`Item` records in a fixed order; ``start`` skips the first
  items without touching their payloads (resuming an interrupted embedding run).
- ``load(item)`` returns the payload or raises :class:`SkipItem` when that one item is unusable
  (missing, truncated, not an image); the caller records the reason and goes on.
- Problems with the dataset as a whole (missing font or IDX file, corrupt file, no usable items)
  raise :class:`~dbksvd.errors.DataFileError` / :class:`~dbksvd.errors.InputError` at
  construction.
- ``skipped`` counts the rows dropped while listing, by reason.
- ``spec()`` is a JSON-able, deterministic description for a run manifest.

Pillow, fontTools and pyarrow are imported only when a dataset needs them.
"""

from __future__ import annotations

import abc
import codecs
import csv
import gzip
import hashlib
import inspect
import json
import os
import re
import struct
import unicodedata
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFileError, InputError, MissingDependencyError, ParameterError

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "EmojiDataset",
    "FASHION_MNIST_LABELS",
    "FashionMNIST",
    "FolderDataset",
    "IMAGE_SUFFIXES",
    "Item",
    "SkipItem",
    "TextsDataset",
    "get_dataset",
]

DATASET_NAMES = ("emoji", "fashion-mnist", "folder:PATH", "texts:PATH")

DEFAULT_EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
DEFAULT_FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# Bumped whenever a dataset's listing or rendering changes, so old manifests stop matching.
_SPEC_VERSION = 1
_EXTRA_HINT = "pip install 'dbksvd[embed]'"


class SkipItem(Exception):
    """One item cannot be loaded; ``str(exc)`` is the short reason ("unreadable image: ...")."""


@dataclass(frozen=True)
class Item:
    """One entry of a dataset: its identity and metadata, not its payload."""

    id: str  # unique within the dataset, stable across runs
    source: str  # where it came from: a file path, "U+1F600", "train:123", "file.txt:17"
    caption: str | None = None
    label: int | None = None


# ---------------------------------------------------------------------------------------------
# base class and small helpers


class Dataset(abc.ABC):
    """Base class: a fixed, ordered list of items and a loader for one item's payload.

    Subclasses set ``name``, ``modality`` and ``label_names`` and implement ``__len__``,
    ``_item(i)`` (the i-th :class:`Item`, cheap), ``load`` and ``spec``.
    """

    name: str = ""
    modality: str = "image"  # "image": load() -> PIL.Image.Image (RGB); "text": load() -> str
    label_names: list[str] | None = None

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

    def _fingerprint(self) -> str:
        """16 hex digits of SHA-256 over every item's id, caption and label, in order."""
        digest = hashlib.sha256()
        for item in self.items():
            digest.update(json.dumps([item.id, item.caption, item.label]).encode())
            digest.update(b"\n")
        return digest.hexdigest()[:16]

    def _spec_head(self, path: Any) -> dict:
        """The keys every dataset's spec starts with: name, path, count, format version."""
        return {"name": self.name, "path": path, "count": len(self), "version": _SPEC_VERSION}

    def _count_skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _json_lines(self, lines: list[tuple[int, str, bool]], undecodable: str) -> Iterator[tuple[int, Any]]:
        """(line number, parsed JSON or None when malformed) for each non-blank line of a
        JSONL file; lines that are not valid UTF-8 are counted as ``undecodable``."""
        for number, text, valid in lines:
            if not valid:
                self._count_skip(undecodable)
            elif text.strip():
                try:
                    yield number, json.loads(text)
                except ValueError:
                    yield number, None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self)} items>"


class _ListDataset(Dataset):
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


def _check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ParameterError(f"limit must be a positive integer or None, got {limit!r}")
    return int(limit)


def _pil():
    """``PIL.Image`` (imported on first use)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError(f"image datasets need Pillow ({exc}); {_EXTRA_HINT}") from None
    return Image


def _decode_lines(data: bytes) -> list[tuple[int, str, bool]]:
    """Split ``data`` into (1-based line number, text without line end, valid) with strict
    UTF-8; an invalid line has ``valid`` False and its text decoded with U+FFFD replacements.
    A leading BOM is dropped."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append((number, raw.decode("utf-8"), True))
        except UnicodeDecodeError:
            lines.append((number, raw.decode("utf-8", "replace"), False))
    return lines


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise DataFileError(f"cannot read {what} {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# emoji


_EMOJI_FONT_SIZE = 109  # the only pixel size of Noto Color Emoji's bitmap strike
_EXCLUDED_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # controls, format, spaces


def _excluded_codepoint(cp: int) -> bool:
    """Code points that are not an emoji on their own: spaces and controls, keycap bases,
    variation selectors, ZWJ, skin-tone modifiers, regional indicators, tag characters."""
    return (
        unicodedata.category(chr(cp)) in _EXCLUDED_CATEGORIES
        or chr(cp) in "0123456789#*"
        or 0xFE00 <= cp <= 0xFE0F
        or cp == 0x200D
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0x1F1E6 <= cp <= 0x1F1FF
        or 0xE0020 <= cp <= 0xE007F
    )


def _render_glyph(font, char: str):
    """``char`` drawn in colour on a transparent canvas, cropped to its alpha bbox (RGBA), or
    None when the glyph draws nothing."""
    Image = _pil()
    from PIL import ImageDraw

    left, top, right, bottom = font.getbbox(char)
    pad = 8  # room for anti-aliasing outside the nominal bbox
    width, height = max(right - left, 1) + 2 * pad, max(bottom - top, 1) + 2 * pad
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad - left, pad - top), char, font=font, fill=(0, 0, 0, 255), embedded_color=True)
    bbox = canvas.getchannel("A").getbbox()
    return None if bbox is None else canvas.crop(bbox)


def _open_font(path: str):
    try:
        from PIL import ImageFont
    except ImportError:
        _pil()  # raises MissingDependencyError
    try:
        return ImageFont.truetype(path, _EMOJI_FONT_SIZE)
    except OSError as exc:
        raise DataFileError(f"cannot open emoji font {path} at {_EMOJI_FONT_SIZE} px: {exc}") from None


@lru_cache(maxsize=4)
def _emoji_listing(path: str, mtime_ns: int, file_size: int) -> tuple[tuple, tuple, str]:
    """The font's emoji as ((code point, lower-case name), ...) in code-point order, the listing's
    skip counts as ((reason, count), ...), and the font revision. Cached per file version.

    A glyph counts as empty when a colour-bitmap (CBLC) font has no bitmap for it; fonts without
    a CBLC table are checked by rendering every glyph (slower)."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError as exc:
        raise MissingDependencyError(f"the emoji dataset needs fontTools ({exc}); {_EXTRA_HINT}") from None
    try:
        with open(path, "rb") as stream, TTFont(stream, lazy=True) as font:  # our handle: closed on errors too
            cmap = font.getBestCmap() or {}
            revision = f"{float(font['head'].fontRevision):.3f}"
            with_bitmap = None
            if "CBLC" in font:
                with_bitmap = set()
                for strike in font["CBLC"].strikes:
                    for subtable in strike.indexSubTables:
                        with_bitmap.update(subtable.names)
    except MissingDependencyError:
        raise
    except Exception as exc:  # fontTools raises many types on a damaged or non-font file
        raise DataFileError(f"cannot read emoji font {path}: {type(exc).__name__}: {exc}") from None

    skipped: dict[str, int] = {}
    candidates = []
    for cp in sorted(cmap):
        name = unicodedata.name(chr(cp), None)
        if name is None:
            skipped["no unicode name"] = skipped.get("no unicode name", 0) + 1
        elif not _excluded_codepoint(cp):
            candidates.append((cp, name.lower(), cmap[cp]))

    pil_font = _open_font(path) if with_bitmap is None else None
    entries = []
    for cp, caption, glyph_name in candidates:
        if with_bitmap is not None:
            empty = glyph_name not in with_bitmap
        else:
            empty = _render_glyph(pil_font, chr(cp)) is None
        if empty:
            skipped["empty glyph"] = skipped.get("empty glyph", 0) + 1
        else:
            entries.append((cp, caption))
    return tuple(entries), tuple(skipped.items()), revision


def _parse_codepoint(value: Any) -> int:
    """An int, "U+1F600" / "1F600" or a one-character string -> the code point."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if len(value) == 1:
            return ord(value)
        match = re.fullmatch(r"(?:[Uu]\+)?([0-9A-Fa-f]{1,6})", value.strip())
        if match:
            return int(match.group(1), 16)
    raise ParameterError(f"cannot read {value!r} as a code point (use an int, 'U+1F600' or the character)")


class EmojiDataset(_ListDataset):
    """Every single-code-point emoji of a colour font, rendered on a white square.

    Items: id and source ``"U+1F600"``, caption the Unicode name in lower case
    ("grinning face"), no label; listed in code-point order. The list depends on the font and on
    the Unicode version of Python's ``unicodedata`` (code points it cannot name are dropped).

    ``load`` returns a ``size`` x ``size`` RGB image: the glyph cropped to its drawn pixels,
    centred on white, shrunk with LANCZOS only when it exceeds ``size`` minus a 5 % margin on
    each side (Noto glyphs are at most 136 x 128 px, so none is shrunk at the default 160).
    Rendering is deterministic for a given font, Pillow and FreeType.

    ``codepoints`` (ints, "U+1F600" strings or characters; kept in the given order) or ``limit``
    (the first ``limit`` emoji) select a subset.
    """

    name = "emoji"
    modality = "image"

    def __init__(
        self,
        font_path: str | os.PathLike | None = None,
        size: int = 160,
        *,
        codepoints: Sequence[int | str] | None = None,
        limit: int | None = None,
    ):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
            raise ParameterError(f"size must be an integer >= 8 (pixels), got {size!r}")
        self.size = int(size)
        self.limit = _check_limit(limit)
        self.font_path = os.path.abspath(os.fspath(font_path if font_path is not None else DEFAULT_EMOJI_FONT))
        try:
            stat = os.stat(self.font_path)
        except OSError:
            raise DataFileError(
                f"emoji font {self.font_path} not found; apt-get install fonts-noto-color-emoji (or pass font_path)"
            ) from None
        entries, skipped, self.font_revision = _emoji_listing(self.font_path, stat.st_mtime_ns, stat.st_size)
        self.skipped = dict(skipped)

        self.codepoints = None
        if codepoints is not None:
            captions = dict(entries)
            wanted = [_parse_codepoint(value) for value in codepoints]
            unknown = [f"U+{cp:04X}" for cp in wanted if cp not in captions]
            if unknown:
                raise ParameterError(f"not single-code-point emoji of {self.font_path}: {', '.join(unknown[:10])}")
            if len(set(wanted)) != len(wanted):
                raise ParameterError("codepoints contains duplicates")
            entries = tuple((cp, captions[cp]) for cp in wanted)
            self.codepoints = wanted
        if self.limit is not None:
            entries = entries[: self.limit]
        if not entries:
            raise InputError(f"the font {self.font_path} has no usable emoji")
        self._set_items([Item(id=f"U+{cp:04X}", source=f"U+{cp:04X}", caption=caption) for cp, caption in entries])
        self._font = None

    def load(self, item: Item):
        """The emoji as a ``size`` x ``size`` RGB PIL image (glyph centred on white)."""
        self._index_of(item)
        if self._font is None:
            self._font = _open_font(self.font_path)
        glyph = _render_glyph(self._font, chr(int(item.id[2:], 16)))
        if glyph is None:
            raise SkipItem("empty glyph")
        return self._compose(glyph)

    def _compose(self, glyph):
        Image = _pil()
        margin = max(1, self.size // 20)
        fit = self.size - 2 * margin
        width, height = glyph.size
        if max(width, height) > fit:
            scale = fit / max(width, height)
            new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
            glyph = glyph.resize(new_size, Image.Resampling.LANCZOS)  # premultiplied alpha inside Pillow
        canvas = Image.new("RGBA", (self.size, self.size), (255, 255, 255, 255))
        canvas.alpha_composite(glyph, dest=((self.size - glyph.width) // 2, (self.size - glyph.height) // 2))
        return canvas.convert("RGB")

    def spec(self) -> dict:
        return {
            **self._spec_head(self.font_path),
            "size": self.size,
            "limit": self.limit,
            "codepoints": None if self.codepoints is None else [f"U+{cp:04X}" for cp in self.codepoints],
            "font_revision": self.font_revision,
            "unicode_version": unicodedata.unidata_version,
            "fingerprint": self._fingerprint(),
        }

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_font"] = None  # FreeType handles do not pickle; reopened on demand
        return state


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST


_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_FASHION_FILES = {"train": "train", "test": "t10k"}
_FASHION_HINT = "apt-get install dataset-fashion-mnist (or pass root)"


def _idx_file(root: Path, stem: str) -> Path:
    """``root/stem.gz``, else the uncompressed ``root/stem``."""
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataFileError(f"Fashion-MNIST file {root / (stem + '.gz')} not found; {_FASHION_HINT}")


def _read_idx_bytes(path: Path) -> bytes:
    """The whole (decompressed) content of an IDX file."""
    raw = _read_bytes(path, "Fashion-MNIST file")
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataFileError(f"Fashion-MNIST file {path} is truncated or corrupt ({exc})") from None


def _read_idx_labels(path: Path) -> np.ndarray:
    """The labels (n,) uint8 of an IDX1 file, checked against its header."""
    data = _read_idx_bytes(path)
    if len(data) < 8:
        raise DataFileError(f"Fashion-MNIST file {path} is truncated ({len(data)} bytes)")
    magic, count = struct.unpack(">II", data[:8])
    if magic != _IDX_LABELS_MAGIC:
        raise DataFileError(f"{path} is not an IDX label file (magic {magic:#010x}, expected 0x00000801)")
    if len(data) != 8 + count:
        raise DataFileError(f"Fashion-MNIST file {path} has {len(data) - 8} labels, its header says {count}")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if count and labels.max() >= len(FASHION_MNIST_LABELS):
        raise DataFileError(f"Fashion-MNIST file {path} has a label {labels.max()} outside 0-9")
    return labels


def _idx_images_header(path: Path) -> tuple[int, int, int]:
    """(count, rows, cols) of an IDX3 image file, read from its first 16 bytes; a gzip file is
    also checked for truncation through the size in its trailer (no full decompression)."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as stream:
            head = stream.read(16)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataFileError(f"Fashion-MNIST file {path} is truncated or corrupt ({exc})") from None
    if len(head) < 16:
        raise DataFileError(f"Fashion-MNIST file {path} is truncated ({len(head)} bytes)")
    magic, count, rows, cols = struct.unpack(">IIII", head)
    if magic != _IDX_IMAGES_MAGIC:
        raise DataFileError(f"{path} is not an IDX image file (magic {magic:#010x}, expected 0x00000803)")
    if rows == 0 or cols == 0:
        raise DataFileError(f"Fashion-MNIST file {path} has empty {rows}x{cols} images")
    expected = 16 + count * rows * cols
    if path.suffix == ".gz":
        with open(path, "rb") as stream:
            stream.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", stream.read(4))[0]  # uncompressed size mod 2**32
        if stored != expected % 2**32:
            actual = len(_read_idx_bytes(path))  # raises on a truncated stream
            if actual != expected:
                raise DataFileError(f"Fashion-MNIST file {path} has {actual} bytes, its header implies {expected}")
    elif path.stat().st_size != expected:
        raise DataFileError(f"Fashion-MNIST file {path} has {path.stat().st_size} bytes, its header implies {expected}")
    return count, rows, cols


class FashionMNIST(Dataset):
    """Zalando's Fashion-MNIST: 60,000 train + 10,000 test greyscale 28 x 28 clothing images.

    Read from the IDX files in ``root`` (``train-images-idx3-ubyte.gz`` etc., gzipped or not).
    ``split`` is "all" (train, then test), "train" or "test"; ``limit`` keeps the first items.
    Items: id ``"train-00000"``, source ``"train:0"``, caption the class name, label the class
    index (``label_names`` = :data:`FASHION_MNIST_LABELS`). ``load`` returns the 28 x 28 image
    as RGB (grey replicated, no resizing). A split's pixels are decompressed on its first load
    (about 0.3 s for train) and kept, 47 MB for train.
    """

    name = "fashion-mnist"
    modality = "image"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "all", limit: int | None = None):
        super().__init__()
        if split not in ("all", "train", "test"):
            raise ParameterError(f"split must be 'all', 'train' or 'test', got {split!r}")
        self.root = os.path.abspath(os.fspath(root if root is not None else DEFAULT_FASHION_MNIST_ROOT))
        self.split = split
        self.limit = _check_limit(limit)
        if not os.path.isdir(self.root):
            raise DataFileError(f"Fashion-MNIST folder {self.root} not found; {_FASHION_HINT}")
        self.label_names = list(FASHION_MNIST_LABELS)
        self._splits: list[tuple[str, np.ndarray, Path, tuple[int, int]]] = []
        for part in ("train", "test") if split == "all" else (split,):
            stem = _FASHION_FILES[part]
            labels = _read_idx_labels(_idx_file(Path(self.root), f"{stem}-labels-idx1-ubyte"))
            images_path = _idx_file(Path(self.root), f"{stem}-images-idx3-ubyte")
            count, rows, cols = _idx_images_header(images_path)
            if count != len(labels):
                raise DataFileError(f"{images_path} holds {count} images but its label file {len(labels)} labels")
            self._splits.append((part, labels, images_path, (rows, cols)))
        total = sum(len(labels) for _, labels, _, _ in self._splits)
        self._len = total if self.limit is None else min(total, self.limit)
        self._pixels: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self._len

    def _item(self, index: int) -> Item:
        for part, labels, _, _ in self._splits:
            if index < len(labels):
                label = int(labels[index])
                return Item(
                    id=f"{part}-{index:05d}", source=f"{part}:{index}", caption=FASHION_MNIST_LABELS[label], label=label
                )
            index -= len(labels)
        raise IndexError(index)

    def _images(self, part: str) -> np.ndarray:
        """The split's pixels, (n, rows, cols) uint8, decompressed once and cached."""
        if part not in self._pixels:
            _, labels, path, (rows, cols) = next(s for s in self._splits if s[0] == part)
            data = _read_idx_bytes(path)
            expected = 16 + len(labels) * rows * cols
            if len(data) != expected:
                raise DataFileError(f"Fashion-MNIST file {path} has {len(data)} bytes, expected {expected}")
            self._pixels[part] = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(len(labels), rows, cols)
        return self._pixels[part]

    def load(self, item: Item):
        """The item's image: RGB PIL image, 28 x 28 px."""
        Image = _pil()
        part, _, number = item.id.partition("-") if isinstance(item, Item) else ("", "", "")
        index = int(number) if number.isdigit() else -1
        if part not in (s[0] for s in self._splits) or not 0 <= index < len(self._images(part)):
            raise ParameterError(f"{item!r} is not an item of the {self.name} dataset")
        return Image.fromarray(self._images(part)[index]).convert("RGB")

    def spec(self) -> dict:
        return {
            **self._spec_head(self.root),
            "split": self.split,
            "limit": self.limit,
            "fingerprint": self._fingerprint(),
        }

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pixels"] = {}  # re-decoded on demand rather than pickled
        return state


# ---------------------------------------------------------------------------------------------
# image folder


def _image_to_rgb(image):
    """Any PIL image -> RGB; transparent pixels are composited on white, 16-bit grey scaled."""
    Image = _pil()
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def _open_image(path: Path):
    """Decode the whole image at ``path`` into an RGB PIL image (EXIF orientation applied);
    raises :class:`SkipItem` when it is missing or cannot be decoded."""
    Image = _pil()
    from PIL import ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decodes every pixel: truncated data fails here
                image = ImageOps.exif_transpose(image)
                return _image_to_rgb(image)
    except FileNotFoundError:
        raise SkipItem(f"missing image: {path}") from None
    except MemoryError:
        raise
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        message = " ".join(str(exc).split())[:200]
        raise SkipItem(f"unreadable image: {type(exc).__name__}: {message}") from None


def _scan_images(root: Path) -> list[str]:
    """Relative POSIX paths of every image file under ``root``, sorted."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for file in files:
            if os.path.splitext(file)[1].lower() in IMAGE_SUFFIXES:
                found.append(Path(folder, file).relative_to(root).as_posix())
    return sorted(found)


_INT_LABEL = re.compile(r"[+-]?\d+")


class FolderDataset(_ListDataset):
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
            rows = self._read_captions(Path(self.captions_path))
        entries = []  # (id base, full path, caption, raw label)
        for path_text, caption, label in rows:
            full = Path(path_text) if os.path.isabs(path_text) else root_path / path_text
            if not full.is_file():
                self._count_skip("missing image")
                continue
            entries.append((self._relative_id(root_path, path_text), os.path.normpath(full), caption, label))
        if not entries:
            dropped = ", ".join(f"{count} {reason}" for reason, count in self.skipped.items())
            detail = f" (rows dropped: {dropped})" if dropped else ""
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

    def _read_captions(self, path: Path) -> list[tuple[str, str, Any]]:
        """(path text, caption, raw label or None) for every usable row, in file order."""
        lines = _decode_lines(_read_bytes(path, "captions file"))
        if path.suffix.lower() == ".csv":
            return self._read_csv(path, lines)
        return self._read_jsonl(path, lines)

    def _read_csv(self, path: Path, lines: list[tuple[int, str, bool]]) -> list[tuple[str, str, Any]]:
        undecodable = {number for number, _, valid in lines if not valid}
        reader = csv.reader(text + "\n" for _, text, _ in lines)
        header, rows = None, []
        while True:
            first_line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:  # e.g. an unterminated quote: the rest of the file is lost
                self._count_skip("malformed row")
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if header is None:
                header = [name.strip().lower() for name in row]
                missing = [name for name in ("path", "caption") if name not in header]
                if missing:
                    raise DataFileError(
                        f"captions file {path} lacks the column(s) {', '.join(missing)} (header: {','.join(row)[:200]})"
                    )
                continue
            if any(number in undecodable for number in range(first_line, reader.line_num + 1)):
                self._count_skip("undecodable caption")
            elif len(row) != len(header):
                self._count_skip("malformed row")
            else:
                record = dict(zip(header, row))
                label = record.get("label", "").strip() or None
                if label is not None and _INT_LABEL.fullmatch(label):
                    label = int(label)
                self._keep_row(rows, record["path"].strip(), record["caption"], label)
        if header is None:
            raise DataFileError(f"captions file {path} is empty: it needs a header path,caption[,label]")
        return rows

    def _read_jsonl(self, path: Path, lines: list[tuple[int, str, bool]]) -> list[tuple[str, str, Any]]:
        rows, keys_seen, objects = [], set(), 0
        for _, record in self._json_lines(lines, "undecodable caption"):
            if not isinstance(record, dict):
                self._count_skip("malformed row")
                continue
            objects += 1
            keys_seen.update(record)
            path_value, caption, label = record.get("path"), record.get("caption"), record.get("label")
            if (
                not isinstance(path_value, str)
                or "caption" not in record
                or not isinstance(caption, (str, type(None)))
                or isinstance(label, bool)
                or not isinstance(label, (int, str, type(None)))
            ):
                self._count_skip("malformed row")
                continue
            if isinstance(label, str):
                label = label.strip() or None
            self._keep_row(rows, path_value.strip(), caption or "", label)
        missing = [name for name in ("path", "caption") if name not in keys_seen]
        if objects and missing:
            raise DataFileError(f"captions file {path} has no {' or '.join(missing)} field in any row")
        return rows

    def _keep_row(self, rows: list, path_text: str, caption: str, label: Any) -> None:
        if not path_text:
            self._count_skip("malformed row")
        elif not caption.strip():
            self._count_skip("empty caption")
        else:
            rows.append((path_text, caption.strip(), label))

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
        """The image as an RGB PIL image (full decode checked; alpha composited on white)."""
        return _open_image(Path(self._items[self._index_of(item)].source))

    def spec(self) -> dict:
        return {
            **self._spec_head(self.root),
            "captions": self.captions_path,
            "label_names": self.label_names,
            "skipped": dict(self.skipped),
            "fingerprint": self._fingerprint(),
        }


# ---------------------------------------------------------------------------------------------
# texts


_TEXT_SUFFIXES = (".txt", ".text", "")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_PARQUET_SUFFIXES = (".parquet", ".pq")


class TextsDataset(_ListDataset):
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
            texts, self.column = self._read_parquet(file, column)
        elif suffix in _JSONL_SUFFIXES:
            self.column = column or "text"
            texts = self._read_jsonl(file, self.column)
        else:
            self.column = None
            texts = self._read_txt(file)
        if not texts:
            dropped = ", ".join(f"{count} {reason}" for reason, count in self.skipped.items())
            raise InputError(f"text file {file} has no texts" + (f" (dropped: {dropped})" if dropped else ""))
        self._set_items([Item(id=f"{file.stem}:{n}", source=f"{file.name}:{n}", caption=text) for n, text in texts])

    def _read_txt(self, file: Path) -> list[tuple[int, str]]:
        texts = []
        for number, text, valid in _decode_lines(_read_bytes(file, "text file")):
            if not valid:
                self._count_skip("undecodable text")
            elif text.strip():
                texts.append((number, text.strip()))
        return texts

    def _read_jsonl(self, file: Path, column: str) -> list[tuple[int, str]]:
        texts = []
        for number, record in self._json_lines(_decode_lines(_read_bytes(file, "text file")), "undecodable text"):
            value = record.get(column) if isinstance(record, dict) else None
            if not isinstance(value, str):
                self._count_skip("malformed line")
            elif not value.strip():
                self._count_skip("empty text")
            else:
                texts.append((number, value.strip()))
        return texts

    def _read_parquet(self, file: Path, column: str | None) -> tuple[list[tuple[int, str]], str]:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise MissingDependencyError(f"reading {file.name} needs pyarrow ({exc}); {_EXTRA_HINT}") from None
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowException) as exc:
            raise DataFileError(f"cannot read parquet file {file}: {exc}") from None
        is_string = {f.name: pa.types.is_string(f.type) or pa.types.is_large_string(f.type) for f in schema}
        if column is None:
            candidates = [name for name, ok in is_string.items() if ok]
            if len(candidates) != 1:
                raise ParameterError(
                    f"{file.name} has {len(candidates)} string columns ({', '.join(candidates)[:200]}); "
                    "name one, e.g. texts:PATH#column"
                )
            column = candidates[0]
        elif column not in is_string:
            raise DataFileError(f"parquet file {file} has no column {column!r} (columns: {', '.join(is_string)[:200]})")
        elif not is_string[column]:
            raise DataFileError(f"column {column!r} of {file} is not a string column ({schema.field(column).type})")
        try:
            values = pq.read_table(file, columns=[column]).column(column).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise DataFileError(f"cannot read column {column!r} of {file}: {exc}") from None
        texts = []
        for row, value in enumerate(values):
            if value is None or not value.strip():
                self._count_skip("empty text")
            else:
                texts.append((row, value.strip()))
        return texts, column

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


# ---------------------------------------------------------------------------------------------
# by name


def get_dataset(spec: str, **options) -> Dataset:
    """The dataset named by ``spec``: "emoji", "fashion-mnist", "folder:PATH" or
    "texts:PATH" / "texts:PATH#column"; ``options`` go to its constructor
    (e.g. ``get_dataset("emoji", size=224, limit=100)``)."""
    choices = "emoji, fashion-mnist, folder:PATH, texts:PATH[#column]"
    if not isinstance(spec, str):
        raise ParameterError(f"dataset must be a string, one of {choices}; got {spec!r}")
    kind, colon, argument = spec.strip().partition(":")
    arguments: dict[str, Any] = {}
    if kind == "emoji" and not colon:
        cls = EmojiDataset
    elif kind == "fashion-mnist" and not colon:
        cls = FashionMNIST
    elif kind == "folder" and argument:
        cls, arguments = FolderDataset, {"root": argument}
    elif kind == "texts" and argument:
        cls, arguments = TextsDataset, {"path": argument}
        if "#" in argument and not os.path.exists(argument):
            path, _, column = argument.rpartition("#")
            arguments = {"path": path, "column": column or None}
    else:
        raise ParameterError(f"unknown dataset {spec!r}; choose one of {choices}")
    clash = sorted(set(arguments) & set(options))
    if clash:
        raise ParameterError(f"{', '.join(clash)} given both in {spec!r} and as an option")
    try:
        inspect.signature(cls).bind(**arguments, **options)
    except TypeError as exc:
        raise ParameterError(f"bad option for dataset {kind}: {exc}") from None
    return cls(**arguments, **options)


def dataset_from_spec(spec: dict) -> Dataset:
    """The dataset a store was embedded from, rebuilt from its manifest's ``dataset`` entry
    (``spec()`` of the dataset), e.g. to load an item's image again for display. Raises
    DataFileError when the data it names is gone (a moved font or folder)."""
    if not isinstance(spec, dict):
        raise ParameterError(f"a dataset spec must be a dict, got {type(spec).__name__}")
    name = spec.get("name")
    if name == "emoji":
        return EmojiDataset(
            spec.get("path"), spec.get("size", 160), codepoints=spec.get("codepoints"), limit=spec.get("limit")
        )
    if name == "fashion-mnist":
        return FashionMNIST(spec.get("path"), split=spec.get("split", "all"), limit=spec.get("limit"))
    if name == "folder":
        return FolderDataset(spec.get("path"), captions=spec.get("captions"))
    if name == "texts":
        return TextsDataset(spec.get("path"), column=spec.get("column"))
    raise ParameterError(f"unknown dataset {name!r} in the spec; choose one of emoji, fashion-mnist, folder, texts")
