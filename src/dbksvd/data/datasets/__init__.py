"""Datasets to embed: emoji glyphs, Fashion-MNIST, an image folder with captions, text files,
WordNet's noun glosses.

Every dataset lists its items up front (cheap: ids, captions, labels) and loads one payload at a
time: a PIL ``RGB`` image for ``modality == "image"``, a ``str`` for ``modality == "text"``
(the contract is in :mod:`.base`).

Modules: :mod:`.base` (``Item``, ``SkipItem``, ``Dataset``), one per family (:mod:`.emoji`,
:mod:`.fashion_mnist`, :mod:`.folder`, :mod:`.texts`, :mod:`.wordnet`), the file readers apart from them
(:mod:`.parsers` for text, JSON lines, captions files and parquet; :mod:`.idx` for IDX files),
and :mod:`.registry`, where each family registers its name for :func:`get_dataset` and
:func:`dataset_from_spec`. Images are decoded by :mod:`dbksvd.data.images`.

Pillow, fontTools and pyarrow are imported only when a dataset needs them.
"""

from .base import Dataset, Item, SkipItem

# The families register themselves on import, in this order (that of DATASET_NAMES).
from .emoji import DEFAULT_EMOJI_FONT, EmojiDataset
from .fashion_mnist import DEFAULT_FASHION_MNIST_ROOT, FASHION_MNIST_LABELS, FashionMNIST
from .folder import IMAGE_SUFFIXES, FolderDataset
from .registry import dataset_from_spec, dataset_names, get_dataset, register_dataset
from .texts import TextsDataset
from .wordnet import WordNetGlosses

#: The spec forms ``get_dataset`` accepts: ("emoji", "fashion-mnist", "folder:PATH", "texts:PATH").
DATASET_NAMES = dataset_names()

__all__ = [
    "DATASET_NAMES",
    "DEFAULT_EMOJI_FONT",
    "DEFAULT_FASHION_MNIST_ROOT",
    "Dataset",
    "EmojiDataset",
    "FASHION_MNIST_LABELS",
    "FashionMNIST",
    "FolderDataset",
    "IMAGE_SUFFIXES",
    "Item",
    "SkipItem",
    "TextsDataset",
    "WordNetGlosses",
    "dataset_from_spec",
    "get_dataset",
    "register_dataset",
]
