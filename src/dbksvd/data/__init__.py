"""Data: the built-in datasets, the on-disk embedding store, and the planted synthetic problem.

Datasets yield items (id, image or text, caption, label); ``images`` is the one decoder of
image files and uploads; the store keeps their embeddings in memory-mappable shards
(``docs/store.md``); vocabularies hold the candidate phrases that describe atoms.
"""

from .datasets import (
    DATASET_NAMES,
    Dataset,
    EmojiDataset,
    FashionMNIST,
    FolderDataset,
    Item,
    SkipItem,
    TextsDataset,
    dataset_from_spec,
    get_dataset,
)
from .images import decode_image
from .store import EmbeddingStore, StoreSpace, is_store, open_rows
from .store_writer import StoreWriter
from .synthetic import SparseProblem, make_sparse_problem
from .vocab import VOCABULARY_NAMES, Vocabulary, load_vocabulary

__all__ = [
    "DATASET_NAMES",
    "Dataset",
    "EmojiDataset",
    "FashionMNIST",
    "FolderDataset",
    "Item",
    "SkipItem",
    "TextsDataset",
    "dataset_from_spec",
    "get_dataset",
    "decode_image",
    "EmbeddingStore",
    "StoreSpace",
    "StoreWriter",
    "is_store",
    "open_rows",
    "SparseProblem",
    "make_sparse_problem",
    "VOCABULARY_NAMES",
    "Vocabulary",
    "load_vocabulary",
]
