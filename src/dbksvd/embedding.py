"""Embed a dataset into an on-disk store, resumably.

Images go through the image encoder (space ``image``); captions, where the dataset has them,
through a text encoder (space ``text``): the image encoder itself when it has a text tower
(CLIP), else MiniLM. A text dataset gives one ``text`` space. Items are read, encoded and
written shard by shard; an interrupted run keeps every finished shard, and rerunning the same
call resumes after them with no row lost or duplicated. Single unreadable items are skipped
and counted in the manifest; they never stop the run.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from ._progress import progress
from .data.datasets import Dataset, SkipItem
from .data.store import DEFAULT_SHARD_ROWS, EmbeddingStore, StoreWriter
from .errors import ParameterError

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
) -> EmbeddingStore:
    """Embed ``dataset`` into the store at ``out`` (created, resumed, or reused when complete).

    ``encoder``: a :class:`dbksvd.encoders.Encoder` for the dataset's modality;
    ``text_encoder``: for captions of an image dataset (default: ``encoder`` when it embeds
    text, else ``minilm``); ``captions=False`` skips the captions. Returns the finished store.
    """
    if batch_size <= 0:
        raise ParameterError(f"batch_size must be positive, got {batch_size}")
    spaces = _plan_spaces(dataset, encoder, text_encoder, captions)
    writer = StoreWriter(
        out,
        dataset=dataset.spec(),
        dtype=dtype,
        shard_rows=shard_rows,
        label_names=dataset.label_names,
        spaces={name: {"encoder": enc.spec(), "dim": enc.dim(modality)} for name, (enc, modality, _) in spaces.items()},
    )
    if writer.complete:
        return EmbeddingStore(out)
    try:
        _fill(dataset, writer, spaces, batch_size, show_progress)
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
