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
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFileError, InputError, ParameterError
from ..io import atomic_path, read_format_json, write_json

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

    def columns(self, names: tuple[str, ...] | list[str], *, items: bool = False) -> dict[str, list | np.ndarray]:
        """Metadata columns over all shards, in order: per row (default) or, with
        ``items=True``, per item. Numeric fields come back as numpy arrays (``label`` as a
        list, since it may be null), strings as lists. An item store answers both with the
        same rows."""
        table = "rows" if not items and self.granularity != "item" else "items"
        fields = ITEM_FIELDS if table == "items" else ROW_FIELDS[self.granularity]
        unknown = [n for n in names if n not in fields]
        if unknown:
            raise ParameterError(
                f"{self.path}: no {'item' if table == 'items' else 'row'} field {unknown[0]!r}; it has {', '.join(fields)}"
            )
        parts = [self._read_metadata(table, i, list(names)) for i in range(len(self.manifest["shards"]))]
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

    def _read_metadata(self, table: str, index: int, names: list[str]) -> dict[str, Any]:
        """Columns ``names`` of shard ``index`` of ``metadata/`` (table "rows", or an item store's
        "items") or ``items/``; checked against the manifest's row or item count."""
        shard = self.manifest["shards"][index]
        folder = ITEMS_DIR if table == "items" and self.granularity != "item" else METADATA_DIR
        expected = shard["rows"] if folder == METADATA_DIR else shard["items"]
        if self.manifest["format_version"] == 1:
            return _read_jsonl_metadata(self.path / METADATA_DIR / f"{shard_name(index)}.jsonl", expected, names)
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


# -- writing ---------------------------------------------------------------------------------


class StoreWriter:
    """Appends shards to a store, resuming an unfinished one.

    ``spaces``: ``{name: {"encoder": {...}, "dim": d}}``; ``granularity``: what a row is
    (:data:`GRANULARITIES`). ``settings`` (dataset spec, dtype, shard_rows, spaces,
    granularity) must equal those of an existing unfinished store, otherwise resuming would
    mix two different embeddings (a :class:`ParameterError` says which setting differs).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dataset: dict[str, Any],
        spaces: dict[str, dict[str, Any]],
        dtype: str = "float16",
        shard_rows: int = DEFAULT_SHARD_ROWS,
        label_names: list[str] | None = None,
        granularity: str = "item",
        extra: dict[str, Any] | None = None,
    ):
        if dtype not in DTYPES:
            raise ParameterError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        if not isinstance(shard_rows, int) or shard_rows <= 0:
            raise ParameterError(f"shard_rows must be a positive integer, got {shard_rows!r}")
        if granularity not in GRANULARITIES:
            raise ParameterError(f"granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
        self.path = Path(path)
        self.created = False
        fresh = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "granularity": granularity,
            "spaces": {
                name: {"encoder": info["encoder"], "dim": int(info["dim"]), "dtype": dtype}
                for name, info in spaces.items()
            },
            "shard_rows": shard_rows,
            "label_names": label_names,
            # what was done to the stored vectors: nothing beyond the encoders' own output
            # (their input preprocessing is in each space's encoder spec); every model keeps
            # its own preprocessing (centring, normalising, scaling) in its config
            "preprocessing": {"kind": "none"},
            "item_fields": list(ITEM_FIELDS),
            "row_fields": list(ROW_FIELDS[granularity]),
            "shards": [],
            "count": 0,
            "n_items": 0,
            "complete": False,
            "skipped": {},
            **(extra or {}),
        }
        if is_store(self.path):
            old = read_manifest(self.path)
            if old["format_version"] < FORMAT_VERSION and not old["complete"]:
                raise ParameterError(
                    f"{self.path} is an unfinished store of format {old['format_version']}; "
                    "finish it with the dbksvd that started it, or delete it"
                )
            for key in ("granularity", "dataset", "spaces", "shard_rows"):
                if json.dumps(old[key], sort_keys=True) != json.dumps(fresh[key], sort_keys=True):
                    raise ParameterError(
                        f"{self.path} already holds a store made with different {key}; "
                        "use another --out folder or delete it"
                    )
            self.manifest = old
        else:
            if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
                raise DataFileError(f"{self.path} exists and is not an embedding store; choose another output")
            self.path.mkdir(parents=True, exist_ok=True)
            self.created = True
            self.manifest = fresh
            self._write_manifest()
        if not self.complete:
            self._remove_unlisted()

    @property
    def granularity(self) -> str:
        return self.manifest["granularity"]

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def next_item(self) -> int:
        """Dataset position of the first item not wholly in a finished shard."""
        shards = self.manifest["shards"]
        return int(shards[-1]["next_item"]) if shards else 0

    @property
    def next_item_row(self) -> int:
        """Rows of item :attr:`next_item` already in finished shards (it crosses a shard
        boundary; always 0 in an item store)."""
        shards = self.manifest["shards"]
        return int(shards[-1].get("next_item_row", 0)) if shards else 0

    @property
    def count(self) -> int:
        return sum(s["rows"] for s in self.manifest["shards"])

    @property
    def n_items(self) -> int:
        """Items written so far (the index the next new item gets)."""
        return sum(s["items"] for s in self.manifest["shards"])

    def add_shard(
        self,
        arrays: dict[str, np.ndarray],
        metadata: list[dict[str, Any]] | dict[str, Any],
        *,
        next_item: int,
        next_item_row: int = 0,
        items: list[dict[str, Any]] | None = None,
        skipped: dict[str, int] | None = None,
    ) -> None:
        """Write one finished shard.

        ``metadata``: an item store's rows as dicts with :data:`ITEM_FIELDS`; a token or patch
        store's rows as ``{field: (rows,) values}`` with its :data:`ROW_FIELDS`, plus ``items``,
        the items whose first row is in this shard (dicts with :data:`ITEM_FIELDS`).
        ``next_item`` / ``next_item_row``: where to resume after this shard (dataset position,
        rows of that item already written); ``skipped``: items skipped while filling it, by
        reason (added to the totals).
        """
        m = self.manifest
        row_fields = ROW_FIELDS[self.granularity]
        if self.granularity == "item":
            items = list(metadata)
            n = len(items)
            rows_table = None
        else:
            n = len(metadata["item"])
            items = list(items or [])
            missing = [f for f in row_fields if f not in metadata]
            if missing:
                raise InputError(f"{self.granularity} rows lack the field(s) {', '.join(missing)}")
            if any(len(metadata[f]) != n for f in row_fields):
                raise InputError(f"{self.granularity} row fields differ in length")
            rows_table = {f: metadata[f] for f in row_fields}
        if n == 0:
            return
        if m["shards"] and m["shards"][-1]["rows"] != m["shard_rows"]:
            raise ParameterError("only the last shard may be shorter than shard_rows")
        index = len(m["shards"])
        name = shard_name(index)
        for space, info in m["spaces"].items():
            arr = np.ascontiguousarray(arrays[space], dtype=info["dtype"])
            if arr.shape != (n, info["dim"]):
                raise InputError(f"{space} embeddings have shape {arr.shape}; expected ({n}, {info['dim']})")
            if not np.isfinite(arr).all():
                raise InputError(f"{space} embeddings of {name} contain NaN or inf (overflow in {info['dtype']}?)")
            with atomic_path(self.path / space / f"{name}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
        item_columns = {f: [row.get(f) for row in items] for f in ITEM_FIELDS}
        if rows_table is None:
            _write_parquet(self.path / METADATA_DIR / f"{name}.parquet", item_columns)
        else:
            _write_parquet(self.path / ITEMS_DIR / f"{name}.parquet", item_columns)
            _write_parquet(self.path / METADATA_DIR / f"{name}.parquet", rows_table)
        entry = {"rows": n, "items": len(items), "next_item": int(next_item)}
        if self.granularity != "item":
            entry["next_item_row"] = int(next_item_row)
        m["shards"].append(entry)
        m["count"] = self.count
        m["n_items"] = self.n_items
        for reason, c in (skipped or {}).items():
            m["skipped"][reason] = m["skipped"].get(reason, 0) + int(c)
        self._write_manifest()

    def finish(self, skipped: dict[str, int] | None = None) -> None:
        """Mark the store complete (``skipped``: items dropped before embedding, by reason)."""
        if not self.manifest["shards"]:
            raise InputError("no item could be embedded; the store would be empty")
        for reason, c in (skipped or {}).items():
            self.manifest["skipped"][reason] = self.manifest["skipped"].get(reason, 0) + int(c)
        self.manifest["complete"] = True
        self._write_manifest()

    def discard_if_empty(self) -> None:
        """Remove the folder when this writer created it and no shard was finished."""
        if self.created and not self.manifest["shards"]:
            shutil.rmtree(self.path, ignore_errors=True)

    def _write_manifest(self) -> None:
        write_json(self.path / MANIFEST, self.manifest)

    def _folders(self) -> list[str]:
        extra = [ITEMS_DIR] if self.granularity != "item" else []
        return [*self.manifest["spaces"], METADATA_DIR, *extra]

    def _remove_unlisted(self) -> None:
        """Delete shard files of an interrupted shard (not in the manifest) and temp files."""
        listed = {shard_name(i) for i in range(len(self.manifest["shards"]))}
        for sub in self._folders():
            folder = self.path / sub
            if not folder.is_dir():
                folder.mkdir(parents=True)
                continue
            for f in folder.iterdir():
                if f.name.split(".")[0] not in listed:
                    f.unlink()


def _arrow_type(field: str):
    """The parquet type of a metadata field: int64 for indices and labels (labels may be
    null), string otherwise (nullable)."""
    import pyarrow as pa

    return pa.int64() if field in (*INT_FIELDS, "label") else pa.string()


def _write_parquet(path: Path, columns: dict[str, Any]) -> None:
    """``columns`` (field -> values) as one parquet file, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({f: pa.array(_plain(v), type=_arrow_type(f)) for f, v in columns.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _plain(values: Any) -> Any:
    return values.tolist() if isinstance(values, np.ndarray) and values.dtype.kind in "iu" else values


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
