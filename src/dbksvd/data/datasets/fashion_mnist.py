"""Fashion-MNIST (Zalando): 70,000 greyscale 28 x 28 clothing images in ten classes, read from
the IDX files Debian's dataset-fashion-mnist installs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import DataFileError, ParameterError
from ..images import pil
from .base import Dataset, Item, check_limit
from .idx import find_idx_file, read_idx_bytes, read_idx_images_header, read_idx_labels
from .registry import register_dataset

__all__ = ["DEFAULT_FASHION_MNIST_ROOT", "FASHION_MNIST_LABELS", "FashionMNIST"]

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
_FASHION_FILES = {"train": "train", "test": "t10k"}
_FASHION_HINT = "apt-get install dataset-fashion-mnist (or pass root)"


@register_dataset
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
    spec_form = "fashion-mnist"

    def __init__(self, root: str | os.PathLike | None = None, split: str = "all", limit: int | None = None):
        super().__init__()
        if split not in ("all", "train", "test"):
            raise ParameterError(f"split must be 'all', 'train' or 'test', got {split!r}")
        self.root = os.path.abspath(os.fspath(root if root is not None else DEFAULT_FASHION_MNIST_ROOT))
        self.split = split
        self.limit = check_limit(limit)
        if not os.path.isdir(self.root):
            raise DataFileError(f"Fashion-MNIST folder {self.root} not found; {_FASHION_HINT}")
        self.label_names = list(FASHION_MNIST_LABELS)
        self._splits: list[tuple[str, np.ndarray, Path, tuple[int, int]]] = []
        for part in ("train", "test") if split == "all" else (split,):
            stem = _FASHION_FILES[part]
            labels = read_idx_labels(
                find_idx_file(Path(self.root), f"{stem}-labels-idx1-ubyte", _FASHION_HINT), len(FASHION_MNIST_LABELS)
            )
            images_path = find_idx_file(Path(self.root), f"{stem}-images-idx3-ubyte", _FASHION_HINT)
            count, rows, cols = read_idx_images_header(images_path)
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
            data = read_idx_bytes(path)
            expected = 16 + len(labels) * rows * cols
            if len(data) != expected:
                raise DataFileError(f"Fashion-MNIST file {path} has {len(data)} bytes, expected {expected}")
            self._pixels[part] = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(len(labels), rows, cols)
        return self._pixels[part]

    def load(self, item: Item):
        """The item's image: RGB PIL image, 28 x 28 px."""
        Image = pil()
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

    @classmethod
    def from_spec(cls, spec: dict) -> FashionMNIST:
        return cls(spec.get("path"), split=spec.get("split", "all"), limit=spec.get("limit"))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pixels"] = {}  # re-decoded on demand rather than pickled
        return state
