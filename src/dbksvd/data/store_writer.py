"""Writing the on-disk embedding store (docs/store.md): :class:`StoreWriter` appends finished
shards (rows, their metadata and, for token and patch stores, the items) and resumes an
unfinished store. Reading is :mod:`dbksvd.data.store`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFileError, InputError, ParameterError
from ..io import atomic_path, write_json
from .store import (
    DEFAULT_SHARD_ROWS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    GRANULARITIES,
    INT_FIELDS,
    ITEM_FIELDS,
    ITEMS_DIR,
    MANIFEST,
    METADATA_DIR,
    ROW_FIELDS,
    is_store,
    read_manifest,
    shard_name,
)


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
