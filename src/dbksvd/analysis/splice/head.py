"""Splicing before a linear classifier head (effnet-lite0): the head on the mean of each
image's reconstructed rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ... import metrics
from ..._progress import progress
from ...errors import DataFileError
from .inputs import HEAD_CHUNK, Reconstruct, _apply, _encoder_spec, _ItemRows

# -- classifier heads ----------------------------------------------------------------------------


def _head_logits(rows: np.ndarray, group: int, W: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Logits (n, C) float64 of the head on the mean of each run of ``group`` rows (the
    positions of one image; 1 for pooled rows)."""
    A = rows.astype(np.float64)
    return A.reshape(A.shape[0] // group, group, -1).mean(axis=1) @ W.T + bias


def _head_metrics(
    head: Any, store: Any, space: str, items: np.ndarray, fns: Mapping[str, Reconstruct], show_progress: bool
) -> dict[str, dict[str, Any]]:
    W = np.asarray(head.weight, dtype=np.float64)
    bias = np.asarray(head.bias, dtype=np.float64)
    source = store.space(space)
    spec = _encoder_spec(store, space)
    patches = store.granularity == "patch"
    if patches:
        grid = spec.get("grid") or [7, 7]
        per = int(np.prod(grid))
        by_item = _ItemRows(store)
        position = store.columns(["position"])["position"]
    agree = {name: 0.0 for name in fns}
    kl = {name: 0.0 for name in fns}
    bar = progress(len(items), "splice", enabled=show_progress, unit="img")
    try:
        for s in range(0, len(items), HEAD_CHUNK):
            chunk = items[s : s + HEAD_CHUNK]
            if patches:
                groups = [by_item.rows(int(i)) for i in chunk]
                for i, g in zip(chunk, groups):
                    if g.size != per or not np.array_equal(position[g], np.arange(per)):
                        raise DataFileError(
                            f"{store.path}: image {int(i)} has {g.size} patch rows; the feature map has {per} positions"
                        )
                rows = np.concatenate(groups)  # items in order, each its positions in order
            else:
                rows = chunk
            X = np.asarray(source.take(rows), dtype=np.float32)
            group = per if patches else 1
            clean = _head_logits(X, group, W, bias)
            for name, fn in fns.items():
                other = _head_logits(_apply(fn, X, name), group, W, bias)
                agree[name] += metrics.top1_agreement(clean, other) * len(chunk)
                kl[name] += float(metrics.kl_divergence(clean, other).sum())
            bar.update(len(chunk))
    finally:
        bar.close()
    n = len(items)
    return {name: {"head_top1_agreement": agree[name] / n, "head_kl": kl[name] / n, "items_scored": n} for name in fns}
