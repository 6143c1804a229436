"""The on-disk embedding store: fixed-size, memory-mappable shards plus columnar metadata.

The format is documented in ``docs/store.md``. In short::

    STORE/
      manifest.json                 what the store holds; lists only finished shards
      metadata/shard-00000.parquet  one row per store row (item stores: id, caption, label,
                                    source; token/patch stores: item, position, token, span, ...)
      items/shard-00000.parquet     token/patch stores only: one row per item (its text once)
      image/shard-00000.npy         (rows, d_image) float16 or float32, one file per space
      text/shard-00000.npy          (rows, d_text), row-aligned with image/

A *space* is one embedding of every row (``image``: the images through an image encoder,
``text``: the captions or texts through a text encoder). A row is one item (``granularity``
``item``), or one token of a text or one patch of an image (``token``, ``patch``): then an
item has many rows, which may cross a shard boundary. Every shard holds ``shard_rows`` rows
except the last. A shard's files are written under temporary names and renamed, then the
manifest is replaced atomically, so an interrupted run leaves only finished shards and a
rerun resumes after them (:class:`StoreWriter`).

Reading: :class:`EmbeddingStore` checks the manifest and every shard's header and size;
:meth:`EmbeddingStore.space` gives a :class:`StoreSpace`, a row source that estimators fit
on without loading it whole. Metadata is read column by column (:meth:`EmbeddingStore.columns`,
:meth:`EmbeddingStore.item_of_row`), never as one Python object per row. Format 1 stores
(JSON-lines metadata, item rows only) still open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFileError, InputError, ParameterError
from ..io import read_format_json

FORMAT = "dbksvd-store"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
METADATA_DIR = "metadata"
ITEMS_DIR = "items"
DTYPES = ("float16", "float32")
DEFAULT_SHARD_ROWS = 4096
#: What one row is: a whole item, one token of a text, or one patch of an image.
GRANULARITIES = ("item", "token", "patch")
#: The fields of an item (a row of an item store; a row of ``items/`` in a token/patch store).
ITEM_FIELDS = ("id", "caption", "label", "source")
METADATA_FIELDS = ITEM_FIELDS  # (format 1 name)
#: The per-row fields of token and patch stores: ``item`` is the item's index in the store
#: (the row of ``items/``), ``position`` the token index in the item's token sequence (special
#: tokens not counted) or the patch index ``patch_row * grid + patch_col``; ``char_start`` /
#: ``char_end`` the token's span in the item's text (Python string indices).
ROW_FIELDS = {
    "item": ITEM_FIELDS,
    "token": ("item", "position", "token", "char_start", "char_end"),
    "patch": ("item", "position", "patch_row", "patch_col"),
}
#: Fields read back as int64 numpy arrays (``label`` stays a list: it may be null).
INT_FIELDS = ("item", "position", "patch_row", "patch_col", "char_start", "char_end")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder with a store manifest."""
    return (Path(path) / MANIFEST).is_file()


# -- reading ---------------------------------------------------------------------------------


def open_rows(path: str | os.PathLike, *, key: str | None = None, space: str | None = None) -> Any:
    """Rows to fit or code: one space of a store folder, or an array file (see
    :func:`dbksvd.io.load_array`; ``.npy`` comes back memory-mapped)."""
    if is_store(path):
        if key is not None:
            raise ParameterError(f"{path} is a store; --key applies to .npz/.safetensors files (use --space)")
        return EmbeddingStore(path).space(space)
    if space is not None:
        raise ParameterError(f"{path} is not a store folder, so --space does not apply")
    from ..io import load_array

    return load_array(path, key)


class EmbeddingStore:
    """A store folder opened for reading; every shard is checked against the manifest.

    ``require_complete``: refuse a store whose embedding run has not finished (the default;
    an unfinished store would silently train on part of the data).
    """

    def __init__(self, path: str | os.PathLike, *, require_complete: bool = True):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        m = self.manifest
        if require_complete and not m["complete"]:
            raise DataFileError(
                f"{self.path}: the store is incomplete ({m['count']} rows in {len(m['shards'])} shards so far); "
                "rerun the same `dbksvd embed` command to finish it"
            )
        self.count: int = m["count"]
        self.shard_rows: int = m["shard_rows"]
        self._offsets = np.cumsum([0] + [s["rows"] for s in m["shards"]])
        for name in m["spaces"]:
            for i in range(len(m["shards"])):
                self._open_shard(name, i)  # header and size checks up front

    @property
    def spaces(self) -> list[str]:
        return list(self.manifest["spaces"])

    @property
    def dataset(self) -> dict[str, Any]:
        return self.manifest["dataset"]

    @property
    def label_names(self) -> list[str] | None:
        return self.manifest.get("label_names")

    def default_space(self) -> str:
        """``image`` when present, else the only (or first) space."""
        return "image" if "image" in self.manifest["spaces"] else self.spaces[0]

    def space(self, name: str | None = None) -> StoreSpace:
        """The rows of one space as a :class:`StoreSpace` (a row source)."""
        name = name or self.default_space()
        if name not in self.manifest["spaces"]:
            raise ParameterError(f"{self.path}: no space {name!r}; the store has {', '.join(self.spaces)}")
        return StoreSpace(self, name)

    @property
    def granularity(self) -> str:
        """``item``, ``token`` or ``patch``: what one row is."""
        return self.manifest["granularity"]

    @property
    def n_items(self) -> int:
        """Items with at least one row (= rows for an item store)."""
        return self.manifest["n_items"]

    def metadata(self) -> list[dict[str, Any]]:
        """One dict per row (id, caption, label, source), in row order: item stores only (a
        token or patch store has millions of rows: read :meth:`columns` instead)."""
        if self.granularity != "item":
            raise ParameterError(
                f"{self.path} is a {self.granularity} store ({self.count} rows); its metadata is read by column"
            )
        cols = self.columns(ITEM_FIELDS)
        return [dict(zip(ITEM_FIELDS, values)) for values in zip(*(cols[f] for f in ITEM_FIELDS))]

    def columns(
        self, names: tuple[str, ...] | list[str], *, items: bool = False, rows: np.ndarray | None = None
    ) -> dict[str, list | np.ndarray]:
        """Metadata columns over all shards, in order: per row (default) or, with
        ``items=True``, per item. Numeric fields come back as numpy arrays (``label`` as a
        list, since it may be null), strings as lists. An item store answers both with the
        same rows. ``rows``: sorted row (or, with ``items``, item) indices to read, e.g. a
        sample of a store too large for a Python string per row; default all."""
        table = "rows" if not items and self.granularity != "item" else "items"
        fields = ITEM_FIELDS if table == "items" else ROW_FIELDS[self.granularity]
        unknown = [n for n in names if n not in fields]
        if unknown:
            raise ParameterError(
                f"{self.path}: no {'item' if table == 'items' else 'row'} field {unknown[0]!r}; it has {', '.join(fields)}"
            )
        shards = self.manifest["shards"]
        if rows is None:
            picks = [None] * len(shards)
        else:
            rows = np.asarray(rows, dtype=np.int64)
            sizes = [s["items"] if table == "items" and self.granularity != "item" else s["rows"] for s in shards]
            offsets = np.cumsum([0] + sizes)
            if rows.size and (rows[0] < 0 or rows[-1] >= offsets[-1] or np.any(np.diff(rows) < 0)):
                raise InputError(f"metadata indices must be sorted and within 0..{offsets[-1] - 1}")
            bounds = np.searchsorted(rows, offsets)
            picks = [rows[bounds[i] : bounds[i + 1]] - offsets[i] for i in range(len(shards))]
        parts = [
            self._read_metadata(table, i, list(names), pick)
            for i, pick in enumerate(picks)
            if pick is None or pick.size
        ]
        out: dict[str, list | np.ndarray] = {}
        for name in names:
            chunks = [p[name] for p in parts]
            if name in INT_FIELDS:
                out[name] = np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)
            else:
                out[name] = [v for chunk in chunks for v in chunk]
        return out

    def item_of_row(self) -> np.ndarray:
        """(count,) int64: the item index of every row (``arange`` for an item store)."""
        if self.granularity == "item":
            return np.arange(self.count, dtype=np.int64)
        return self.columns(("item",))["item"]

    def _read_metadata(
        self, table: str, index: int, names: list[str], pick: np.ndarray | None = None
    ) -> dict[str, Any]:
        """Columns ``names`` of shard ``index`` of ``metadata/`` (table "rows", or an item store's
        "items") or ``items/``; checked against the manifest's row or item count. ``pick``:
        the shard-local rows to return (default all)."""
        shard = self.manifest["shards"][index]
        folder = ITEMS_DIR if table == "items" and self.granularity != "item" else METADATA_DIR
        expected = shard["rows"] if folder == METADATA_DIR else shard["items"]
        if self.manifest["format_version"] == 1:
            data = _read_jsonl_metadata(self.path / METADATA_DIR / f"{shard_name(index)}.jsonl", expected, names)
            return data if pick is None else {k: [v[i] for i in pick] for k, v in data.items()}
        path = self.path / folder / f"{shard_name(index)}.parquet"
        import pyarrow.parquet as pq

        try:
            data = pq.read_table(path, columns=names)
        except FileNotFoundError:
            raise DataFileError(f"{path}: missing metadata shard") from None
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for damaged files
            raise DataFileError(f"{path}: corrupt metadata shard ({' '.join(str(exc).split())[:100]})") from None
        if data.num_rows != expected:
            raise DataFileError(f"{path}: {data.num_rows} metadata rows but the manifest says {expected}")
        if pick is not None:
            data = data.take(pick)
        return {
            name: (data.column(name).to_numpy() if name in INT_FIELDS else data.column(name).to_pylist())
            for name in names
        }

    def _shard_path(self, space: str, index: int) -> Path:
        return self.path / space / f"{shard_name(index)}.npy"

    def _open_shard(self, space: str, index: int) -> np.ndarray:
        """Shard ``index`` of ``space``, memory-mapped read-only, checked against the manifest."""
        path = self._shard_path(space, index)
        rows = self.manifest["shards"][index]["rows"]
        info = self.manifest["spaces"][space]
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DataFileError(f"{path}: missing shard (the manifest lists {len(self.manifest['shards'])})") from None
        except (ValueError, OSError, EOFError) as exc:
            why = (
                "truncated" if "length" in str(exc) or "size" in str(exc) or isinstance(exc, EOFError) else "unreadable"
            )
            raise DataFileError(f"{path}: {why} shard ({' '.join(str(exc).split())[:120]})") from None
        if arr.ndim != 2 or arr.shape[1] != info["dim"]:
            raise DataFileError(f"{path}: shape {arr.shape} does not match the store's dimension {info['dim']}")
        if arr.shape[0] != rows:
            raise DataFileError(f"{path}: {arr.shape[0]} rows but the manifest says {rows} (mismatched shard size)")
        if str(arr.dtype) != info["dtype"]:
            raise DataFileError(f"{path}: dtype {arr.dtype} but the manifest says {info['dtype']}")
        return arr


class StoreSpace:
    """One space of a store as a row source: ``shape`` (n, d), ``dtype``, ordered chunks,
    shuffled batches and row gathers, each touching one shard at a time (so the resident
    memory stays near one batch, however large the store)."""

    def __init__(self, store: EmbeddingStore, name: str):
        self.store = store
        self.name = name
        info = store.manifest["spaces"][name]
        self.shape = (store.count, int(info["dim"]))
        self.dtype = np.dtype(info["dtype"])
        self.encoder = info.get("encoder", {})

    def __len__(self) -> int:
        return self.shape[0]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "store",
            "name": f"store {self.store.path} ({self.name} space)",
            "store": str(self.store.path),
            "space": self.name,
            "encoder": self.encoder.get("name"),
            "granularity": self.store.granularity,
            "layer": self.encoder.get("layer"),
            "dataset": self.store.dataset.get("name"),
            "rows": self.shape[0],
        }

    def _n_shards(self) -> int:
        return len(self.store.manifest["shards"])

    def _read(self, index: int, rows: np.ndarray | None = None) -> np.ndarray:
        """A copy of shard ``index`` (or some of its rows); the mapping is closed at once."""
        mm = self.store._open_shard(self.name, index)
        try:
            return np.array(mm if rows is None else mm[rows])
        finally:
            del mm

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        """(≤ rows, d) blocks in row order, not crossing more shards than needed."""
        buf: list[np.ndarray] = []
        have = 0
        for i in range(self._n_shards()):
            part = self._read(i)
            while part.shape[0]:
                take = min(rows - have, part.shape[0])
                buf.append(part[:take])
                have += take
                part = part[take:]
                if have == rows:
                    yield np.concatenate(buf) if len(buf) > 1 else buf[0]
                    buf, have = [], 0
        if have:
            yield np.concatenate(buf) if len(buf) > 1 else buf[0]

    def iter_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """One shuffled pass: shards in random order, each batch drawn at random from a pool
        of the rows read so far (at least ``batch_size`` of them); every row exactly once.

        Memory: one pool of ``batch_size + shard_rows`` rows, filled in place, plus the batch.
        """
        d, shard_rows = self.shape[1], self.store.shard_rows
        pool = np.empty((batch_size + shard_rows, d), dtype=self.dtype)
        have = 0
        for i in rng.permutation(self._n_shards()):
            mm = self.store._open_shard(self.name, int(i))
            pool[have : have + mm.shape[0]] = mm
            have += mm.shape[0]
            del mm
            while have >= batch_size:
                order = rng.permutation(have)
                yield pool[np.sort(order[:batch_size])]
                rest = np.sort(order[batch_size:])
                pool[: rest.size] = pool[rest]  # (the gather copies first)
                have = rest.size
        if have:
            yield pool[rng.permutation(have)]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), d) rows with the given sorted global indices."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows[0] < 0 or rows[-1] >= self.shape[0]):
            raise InputError(f"row indices out of range for {self.shape[0]} rows")
        offsets = self.store._offsets
        out = np.empty((rows.size, self.shape[1]), dtype=self.dtype)
        shard_of = np.searchsorted(offsets, rows, side="right") - 1
        for i in np.unique(shard_of):
            sel = shard_of == i
            out[sel] = self._read(int(i), rows[sel] - offsets[i])
        return out

    def to_numpy(self) -> np.ndarray:
        """All rows (n, d) in memory (for stores that fit)."""
        return next(self.iter_chunks(self.shape[0]))


def read_manifest(path: Path) -> dict[str, Any]:
    """The checked manifest of the store at ``path``."""
    mpath = path / MANIFEST
    if not path.is_dir():
        raise DataFileError(f"{path}: no such store folder")
    if not mpath.is_file():
        raise DataFileError(f"{path}: not an embedding store ({MANIFEST} is missing)")
    m = read_format_json(mpath, FORMAT, FORMAT_VERSION, "embedding store manifest")
    try:
        spaces, shards = m["spaces"], m["shards"]
        assert isinstance(spaces, dict) and spaces and isinstance(shards, list)
        for info in spaces.values():
            assert int(info["dim"]) > 0 and info["dtype"] in DTYPES
        assert all(int(s["rows"]) > 0 for s in shards)
        assert int(m["shard_rows"]) > 0 and isinstance(m["complete"], bool)
        assert all(int(s["rows"]) == int(m["shard_rows"]) for s in shards[:-1])
        m["count"] = sum(int(s["rows"]) for s in shards)
        m.setdefault("granularity", "item")  # format 1 stores hold item rows only
        assert m["granularity"] in GRANULARITIES
        if m["granularity"] == "item":
            for s in shards:
                s.setdefault("items", s["rows"])
        m["n_items"] = sum(int(s["items"]) for s in shards)
    except (KeyError, TypeError, ValueError, AssertionError):
        raise DataFileError(
            f"{mpath}: missing or inconsistent fields (spaces, shards, shard_rows, complete, granularity)"
        ) from None
    if m["complete"] and not shards:
        raise DataFileError(f"{path}: the store holds no rows")
    return m


def _read_jsonl_metadata(path: Path, expected: int, names: list[str]) -> dict[str, list]:
    """Columns of a format 1 metadata shard (one JSON object per line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        part = [json.loads(line) for line in lines if line]
    except FileNotFoundError:
        raise DataFileError(f"{path}: missing metadata shard") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataFileError(f"{path}: corrupt metadata shard") from None
    if len(part) != expected:
        raise DataFileError(f"{path}: {len(part)} metadata rows but the manifest says {expected}")
    return {name: [row.get(name) for row in part] for name in names}


# the writer lives in its own module; it stays importable from here
from .store_writer import StoreWriter as StoreWriter  # noqa: E402
