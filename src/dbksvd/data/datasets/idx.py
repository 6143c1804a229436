"""Reading the IDX files MNIST-style datasets ship in (big-endian header, unsigned bytes), gzipped
or not. Messages name the file as a Fashion-MNIST file, the one dataset read from IDX."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ...errors import DataFileError
from .parsers import read_bytes

__all__ = ["find_idx_file", "read_idx_bytes", "read_idx_images_header", "read_idx_labels"]

_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_WHAT = "Fashion-MNIST file"


def find_idx_file(root: Path, stem: str, hint: str) -> Path:
    """``root/stem.gz``, else the uncompressed ``root/stem``; DataFileError ending in ``hint``."""
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataFileError(f"{_WHAT} {root / (stem + '.gz')} not found; {hint}")


def read_idx_bytes(path: Path) -> bytes:
    """The whole (decompressed) content of an IDX file."""
    raw = read_bytes(path, _WHAT)
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataFileError(f"{_WHAT} {path} is truncated or corrupt ({exc})") from None


def read_idx_labels(path: Path, n_classes: int) -> np.ndarray:
    """The labels (n,) uint8 of an IDX1 file, checked against its header and ``0 <= label < n_classes``."""
    data = read_idx_bytes(path)
    if len(data) < 8:
        raise DataFileError(f"{_WHAT} {path} is truncated ({len(data)} bytes)")
    magic, count = struct.unpack(">II", data[:8])
    if magic != _IDX_LABELS_MAGIC:
        raise DataFileError(f"{path} is not an IDX label file (magic {magic:#010x}, expected 0x00000801)")
    if len(data) != 8 + count:
        raise DataFileError(f"{_WHAT} {path} has {len(data) - 8} labels, its header says {count}")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if count and labels.max() >= n_classes:
        raise DataFileError(f"{_WHAT} {path} has a label {labels.max()} outside 0-{n_classes - 1}")
    return labels


def read_idx_images_header(path: Path) -> tuple[int, int, int]:
    """(count, rows, cols) of an IDX3 image file, read from its first 16 bytes; a gzip file is
    also checked for truncation through the size in its trailer (no full decompression)."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as stream:
            head = stream.read(16)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataFileError(f"{_WHAT} {path} is truncated or corrupt ({exc})") from None
    if len(head) < 16:
        raise DataFileError(f"{_WHAT} {path} is truncated ({len(head)} bytes)")
    magic, count, rows, cols = struct.unpack(">IIII", head)
    if magic != _IDX_IMAGES_MAGIC:
        raise DataFileError(f"{path} is not an IDX image file (magic {magic:#010x}, expected 0x00000803)")
    if rows == 0 or cols == 0:
        raise DataFileError(f"{_WHAT} {path} has empty {rows}x{cols} images")
    expected = 16 + count * rows * cols
    if path.suffix == ".gz":
        with open(path, "rb") as stream:
            stream.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", stream.read(4))[0]  # uncompressed size mod 2**32
        if stored != expected % 2**32:
            actual = len(read_idx_bytes(path))  # raises on a truncated stream
            if actual != expected:
                raise DataFileError(f"{_WHAT} {path} has {actual} bytes, its header implies {expected}")
    elif path.stat().st_size != expected:
        raise DataFileError(f"{_WHAT} {path} has {path.stat().st_size} bytes, its header implies {expected}")
    return count, rows, cols
