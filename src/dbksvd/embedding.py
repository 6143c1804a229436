"""Embed a dataset into an on-disk store, resumably.

Images go through the image encoder (space ``image``); captions, where the dataset has them,
through a text encoder (space ``text``): the image encoder itself when it has a text tower
(CLIP), else MiniLM. A text dataset gives one ``text`` space. Items are read, encoded and
written shard by shard; an interrupted run keeps every finished shard, and rerunning the same
call resumes after them with no row lost or duplicated. Single unreadable items are skipped
and counted in the manifest; they never stop the run.

Per token or patch (``granularity="token"`` / ``"patch"``): every text becomes one row per
token (the residual stream at the encoder's layer), every image one row per patch or
feature-map position; one space (``text`` or ``image``), the items' captions and texts stored
once per item. An item's rows may cross a shard boundary; the manifest records how many rows
of the item were finished, so a resumed run re-encodes that item and keeps only the rest.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import numpy as np

from ._progress import progress
from .data.datasets import Dataset, SkipItem
from .data.store import DEFAULT_SHARD_ROWS, GRANULARITIES, ROW_FIELDS, EmbeddingStore
from .data.store_writer import StoreWriter
from .errors import InputError, ParameterError

#: Skipped items listed by id in the manifest (the counts cover all of them).
MAX_SKIP_EXAMPLES = 20


def embed_dataset(
    dataset: Dataset,
    out: str | os.PathLike,
    encoder: Any,
    *,
    text_encoder: Any = None,
    dtype: str = "float16",
    shard_rows: int = DEFAULT_SHARD_ROWS,
    batch_size: int = 64,
    captions: bool = True,
    show_progress: bool = True,
    granularity: str = "item",
    class_token: bool = False,
) -> EmbeddingStore:
    """Embed ``dataset`` into the store at ``out`` (created, resumed, or reused when complete).

    ``encoder``: a :class:`dbksvd.encoders.Encoder` for the dataset's modality;
    ``text_encoder``: for captions of an image dataset (default: ``encoder`` when it embeds
    text, else ``minilm``); ``captions=False`` skips the captions. ``granularity``: ``item``
    (one row per item), ``token`` (text datasets: one row per token) or ``patch`` (image
    datasets: one row per patch; ``class_token`` adds a vision transformer's class token).
    Returns the finished store.
    """
    if batch_size <= 0:
        raise ParameterError(f"batch_size must be positive, got {batch_size}")
    if granularity not in GRANULARITIES:
        raise ParameterError(f"granularity must be one of {', '.join(GRANULARITIES)}; got {granularity!r}")
    if granularity == "item":
        plan = _plan_spaces(dataset, encoder, text_encoder, captions)
        spaces = {name: {"encoder": enc.spec(), "dim": enc.dim(modality)} for name, (enc, modality, _) in plan.items()}

        def fill(writer: StoreWriter) -> None:
            _fill(dataset, writer, plan, batch_size, show_progress)
    else:
        modality, spec = _plan_rows(dataset, encoder, granularity, class_token)
        spaces = {modality: {"encoder": spec, "dim": spec["dims"][modality]}}

        def fill(writer: StoreWriter) -> None:
            _fill_rows(dataset, writer, encoder, modality, class_token, batch_size, show_progress)

    writer = StoreWriter(
        out,
        dataset=dataset.spec(),
        dtype=dtype,
        shard_rows=shard_rows,
        label_names=dataset.label_names,
        granularity=granularity,
        spaces=spaces,
    )
    if writer.complete:
        return EmbeddingStore(out)
    try:
        fill(writer)
        writer.finish(skipped=dataset.skipped)
    except BaseException:
        writer.discard_if_empty()  # a store with no finished shard is not worth resuming
        raise
    return EmbeddingStore(out)


def _plan_spaces(dataset: Dataset, encoder: Any, text_encoder: Any, captions: bool) -> dict[str, tuple[Any, str, str]]:
    """``{space: (encoder, modality, field)}``; field is what gets encoded: payload or caption."""
    if dataset.modality not in encoder.modalities:
        raise ParameterError(
            f"encoder {encoder.name} cannot embed {dataset.modality}s (it embeds {', '.join(encoder.modalities)}); "
            f"the {dataset.name} dataset needs an {dataset.modality} encoder"
        )
    if dataset.modality == "text":
        return {"text": (encoder, "text", "payload")}
    spaces = {"image": (encoder, "image", "payload")}
    first = next(iter(dataset.items()), None)
    if captions and first is not None and first.caption is not None:
        if text_encoder is None:
            if "text" in encoder.modalities:
                text_encoder = encoder
            else:
                from .encoders import get_encoder

                text_encoder = get_encoder("minilm", device=getattr(encoder, "device", None))
        if "text" not in text_encoder.modalities:
            raise ParameterError(f"text encoder {text_encoder.name} cannot embed text")
        spaces["text"] = (text_encoder, "text", "caption")
    return spaces


def _fill(
    dataset: Dataset, writer: StoreWriter, spaces: dict[str, tuple[Any, str, str]], batch_size: int, show_progress: bool
) -> None:
    shard_rows = writer.manifest["shard_rows"]
    pos = writer.next_item
    bar = progress(len(dataset), "embed", enabled=show_progress, unit="item")
    bar.update(pos)
    done: dict[str, list[np.ndarray]] = {name: [] for name in spaces}
    meta: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    examples = writer.manifest.setdefault("skipped_examples", [])
    batch: list[tuple[Any, Any]] = []

    def encode_batch() -> None:
        for name, (enc, modality, field) in spaces.items():
            inputs = [payload if field == "payload" else item.caption for item, payload in batch]
            out = enc.encode_images(inputs) if modality == "image" else enc.encode_texts(inputs)
            done[name].append(np.asarray(out, dtype=np.float32))
        meta.extend({"id": it.id, "caption": it.caption, "label": it.label, "source": it.source} for it, _ in batch)
        batch.clear()

    def write_shard() -> None:
        writer.add_shard(
            {name: np.concatenate(parts) for name, parts in done.items()}, meta, next_item=pos, skipped=dict(skipped)
        )
        for parts in done.values():
            parts.clear()
        meta.clear()
        skipped.clear()
        bar.set_postfix(rows=writer.count, shards=len(writer.manifest["shards"]))

    try:
        for item in dataset.items(start=pos):
            pos += 1
            bar.update(1)
            try:
                batch.append((item, dataset.load(item)))
            except SkipItem as exc:
                reason = str(exc) or "unreadable item"
                skipped[reason.split(":")[0]] += 1
                if len(examples) < MAX_SKIP_EXAMPLES:
                    examples.append({"id": item.id, "reason": reason[:200]})
                continue
            if len(batch) == batch_size or len(meta) + len(batch) == shard_rows:
                encode_batch()
            if len(meta) == shard_rows:
                write_shard()
        if batch:
            encode_batch()
        if meta or skipped:
            if meta:
                write_shard()
            else:  # items skipped after the last full shard still count
                for reason, c in skipped.items():
                    writer.manifest["skipped"][reason] = writer.manifest["skipped"].get(reason, 0) + c
    finally:
        bar.close()


# -- per token or patch ---------------------------------------------------------------------


def _plan_rows(dataset: Dataset, encoder: Any, granularity: str, class_token: bool) -> tuple[str, dict[str, Any]]:
    """``(space, encoder spec)`` of a token or patch store, or a ParameterError naming what
    does not fit (a text encoder with --patches, an image dataset with --tokens, ...)."""
    modality = "text" if granularity == "token" else "image"
    if granularity not in getattr(encoder, "granularities", ("item",)):
        raise ParameterError(str(encoder._no_granularity(granularity)))
    if dataset.modality != modality:
        flag = "--tokens" if granularity == "token" else "--patches"
        article = "a" if modality == "text" else "an"
        raise ParameterError(f"{flag} needs {article} {modality} dataset; {dataset.name} holds {dataset.modality}s")
    return modality, encoder.token_spec() if granularity == "token" else encoder.patch_spec(class_token)


class _RowBuffer:
    """Rows waiting for a shard: per item, its dataset position, global item index, the
    index of its first buffered row within the item, its row arrays and (until written) its
    record."""

    def __init__(self, fields: tuple[str, ...]):
        self.fields = fields
        self.chunks: list[dict[str, Any]] = []
        self.rows = 0

    def add(self, pos: int, index: int, first: int, columns: dict[str, Any], record: dict | None) -> None:
        n = len(columns["rows"])
        if n:
            self.chunks.append({"pos": pos, "index": index, "first": first, "cols": columns, "record": record})
            self.rows += n

    def take(self, n: int) -> tuple[np.ndarray, dict[str, Any], list[dict], int, int]:
        """The first ``n`` rows: (rows, row fields, item records starting here, next_item,
        next_item_row)."""
        rows, cols, items = [], {f: [] for f in self.fields}, []
        left, next_item, next_row = n, None, 0
        while left:
            c = self.chunks[0]
            have = len(c["cols"]["rows"])
            k = min(left, have)
            rows.append(c["cols"]["rows"][:k])
            for f in self.fields:
                cols[f].append(c["cols"][f][:k] if f != "item" else np.full(k, c["index"], np.int64))
            if c["record"] is not None:
                items.append(c["record"])
                c["record"] = None
            left -= k
            if k == have:
                self.chunks.pop(0)
                next_item, next_row = c["pos"] + 1, 0
            else:
                c["cols"] = {f: v[k:] for f, v in c["cols"].items()}
                c["first"] += k
                next_item, next_row = c["pos"], c["first"]
        self.rows -= n
        joined = {f: (np.concatenate(v) if f != "token" else [t for part in v for t in part]) for f, v in cols.items()}
        return np.concatenate(rows), joined, items, int(next_item), int(next_row)


def _fill_rows(
    dataset: Dataset,
    writer: StoreWriter,
    encoder: Any,
    modality: str,
    class_token: bool,
    batch_size: int,
    show_progress: bool,
) -> None:
    fields = ROW_FIELDS[writer.granularity]
    shard_rows = writer.manifest["shard_rows"]
    pos = resume_pos = writer.next_item
    resume_row = writer.next_item_row  # rows of item resume_pos already in the store
    next_index = writer.n_items  # the store index of the next new item
    buf = _RowBuffer(fields)
    skipped: list[tuple[int, str]] = []
    examples = writer.manifest.setdefault("skipped_examples", [])
    unit = "tokens" if modality == "text" else "patches"
    bar = progress(len(dataset), "embed", enabled=show_progress, unit="item")
    bar.update(pos)
    start_rows, start_time = writer.count, time.perf_counter()
    batch: list[tuple[int, Any, Any]] = []

    def flush(final: bool) -> None:
        while buf.rows >= shard_rows or (final and buf.rows):
            rows, cols, items, next_item, next_row = buf.take(min(shard_rows, buf.rows))
            counts = Counter(reason for p, reason in skipped if p < next_item)
            skipped[:] = [(p, r) for p, r in skipped if p >= next_item]
            writer.add_shard(
                {modality: rows}, cols, items=items, next_item=next_item, next_item_row=next_row, skipped=dict(counts)
            )
        rate = (writer.count + buf.rows - start_rows) / max(1e-9, time.perf_counter() - start_time)
        bar.set_postfix(**{unit: writer.count + buf.rows, f"{unit}_per_s": f"{rate:,.0f}"})

    def encode_batch() -> None:
        nonlocal next_index
        payloads = [payload for _, _, payload in batch]
        if modality == "text":
            got = encoder.encode_tokens(payloads)
        else:
            got = encoder.encode_patches(payloads, class_token=class_token)
        columns = {"rows": got.rows, **{f: getattr(got, f) for f in fields if f != "item"}}
        bounds = np.searchsorted(np.asarray(got.item), np.arange(len(batch) + 1))
        for j, (p, item, _) in enumerate(batch):
            first = resume_row if p == resume_pos else 0
            lo, hi = int(bounds[j]) + first, int(bounds[j + 1])
            cols = {f: v[lo:hi] for f, v in columns.items()}
            if first:  # the item that crossed the last finished shard: its record is written
                buf.add(p, writer.n_items - 1, first, cols, None)
                continue
            record = {"id": item.id, "caption": item.caption, "label": item.label, "source": item.source}
            buf.add(p, next_index, 0, cols, record)
            next_index += 1
        batch.clear()

    try:
        for item in dataset.items(start=pos):
            bar.update(1)
            try:
                payload = dataset.load(item)
                if modality == "text" and not payload.strip():
                    raise SkipItem("empty text")
            except SkipItem as exc:
                reason = str(exc) or "unreadable item"
                skipped.append((pos, reason.split(":")[0]))
                if len(examples) < MAX_SKIP_EXAMPLES:
                    examples.append({"id": item.id, "reason": reason[:200]})
                pos += 1
                continue
            batch.append((pos, item, payload))
            pos += 1
            if len(batch) == batch_size:
                encode_batch()
                flush(final=False)
        if batch:
            encode_batch()
        flush(final=True)
        if not writer.manifest["shards"]:
            raise InputError("no item could be embedded; the store would be empty")
        for _, reason in skipped:
            writer.manifest["skipped"][reason] = writer.manifest["skipped"].get(reason, 0) + 1
    finally:
        bar.close()
