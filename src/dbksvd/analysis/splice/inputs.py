"""What is spliced: reconstructions, which metrics a store's rows get, the encoder rebuilt
from the store's spec, and the stored rows of items."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ...errors import DataFileError, InputError, ParameterError

Reconstruct = Callable[[np.ndarray], np.ndarray]

#: Largest relative Frobenius difference between stored and re-captured activations.
MATCH_TOLERANCE = 0.02
#: Rows of a token/patch store sampled for neighbour retention.
NEIGHBOUR_ROWS = 5000
#: Neighbours per item in neighbour retention (docs/metrics.md).
NEIGHBOURS = 10
#: Windows per forward pass of a causal LM when the call does not say (its logits are large).
CAUSAL_BATCH = 8
#: Images per chunk of the head metrics.
HEAD_CHUNK = 256


def identity(rows: np.ndarray) -> np.ndarray:
    """The reconstruction that changes nothing (the hook check)."""
    return rows


def model_reconstruct(model: Any) -> Reconstruct:
    """``rows -> model.inverse_transform(model.transform(rows))`` as float32, for a fitted
    dictionary model (input space in, input space out)."""

    def reconstruct(rows: np.ndarray) -> np.ndarray:
        return np.asarray(model.inverse_transform(model.transform(rows)), dtype=np.float32)

    return reconstruct


# -- what can be spliced ----------------------------------------------------------------------


def _encoder_spec(store: Any, space: str) -> dict[str, Any]:
    if space not in store.manifest["spaces"]:
        raise ParameterError(f"{store.path}: no space {space!r}; the store has {', '.join(store.spaces)}")
    return dict(store.manifest["spaces"][space].get("encoder") or {})


def splice_family(store: Any, space: str) -> tuple[str | None, str]:
    """``(family, why)``: which splice metrics the rows of ``space`` get, from the store's
    granularity and encoder spec alone (nothing is loaded): ``"causal_lm"``, ``"sentence"``,
    ``"head"``, or None with the reason in ``why``."""
    spec = _encoder_spec(store, space)
    name = str(spec.get("name") or "?")
    granularity = store.granularity
    if granularity == "token":
        if name == "minilm":
            return "sentence", "minilm token rows: mean-pooled sentence embeddings"
        if name.startswith("hf:"):
            if spec.get("causal"):
                return "causal_lm", f"{name} is a causal LM: next-token predictions"
            return "sentence", f"{name} is not causal: mean-pooled sentence embeddings"
        return None, f"splice: unavailable because {name} token rows are not from a known text transformer"
    if name == "effnet-lite0" and (granularity == "item" or spec.get("output") == "feature_map"):
        return "head", "effnet-lite0: its ImageNet head after the global mean pool"
    if granularity == "patch":
        return None, (
            f"splice: unavailable because the patch tokens of {name} feed further transformer blocks "
            "and no classifier head dbksvd has (only effnet-lite0's feature map ends in one)"
        )
    return None, (
        f"splice: unavailable because the {space} rows of {name} are item embeddings with no network "
        "or classifier head after them (only effnet-lite0's pooled features have one)"
    )


def rebuild_encoder(spec: Mapping[str, Any], *, device: Any = None, batch_size: int | None = None) -> Any:
    """The encoder of a store space's encoder ``spec`` (``get_encoder`` with its name, layer,
    context, stride and keep_bos). An ``hf:`` model whose recorded folder exists is loaded from
    that folder (the name may hold a relative path)."""
    from ...encoders import get_encoder

    name = str(spec.get("name") or "")
    model = spec.get("model")
    if name.startswith("hf:") and isinstance(model, str) and os.path.isdir(model):
        name = f"hf:{model}"
    return get_encoder(
        name,
        device=device,
        layer=spec.get("layer"),
        batch_size=batch_size,
        context=spec.get("context"),
        stride=spec.get("stride"),
        keep_bos=bool(spec.get("keep_bos", False)),
    )


def _text_encoder(encoder: Any) -> Any:
    """The :class:`~dbksvd.encoders.hf.HFTextEncoder` inside ``encoder`` (minilm's ``inside()``)."""
    from ...encoders.hf import HFTextEncoder

    if isinstance(encoder, HFTextEncoder):
        return encoder
    inside = getattr(encoder, "inside", None)
    if inside is not None and getattr(encoder, "layer", None) is not None:
        return inside()
    raise ParameterError(f"{encoder!r} does not read a transformer's residual stream (give it a layer)")


def _check_spec(enc: Any, spec: Mapping[str, Any]) -> None:
    """The encoder's window and layer settings must equal the store's (DataFileError)."""
    mine = enc.token_spec()
    for key in ("layer", "context", "stride", "keep_bos"):
        if key in spec and spec[key] != mine.get(key):
            raise DataFileError(
                f"the store's tokens do not match the encoder {spec.get('name')}: the store has {key} {spec[key]!r}, "
                f"the encoder {mine.get(key)!r}"
            )
    if "causal" in spec and bool(spec["causal"]) != bool(mine.get("causal")):
        raise DataFileError(
            f"the store's tokens do not match the encoder {spec.get('name')}: the store says causal={spec['causal']}, "
            f"the model loads as causal={mine.get('causal')}"
        )


# -- rows of items ------------------------------------------------------------------------------


def check_items(store: Any, items: Any) -> np.ndarray:
    """``items`` as sorted unique int64 item indices of ``store`` (InputError when empty or out
    of range)."""
    idx = np.unique(np.asarray(items, dtype=np.int64).reshape(-1))
    if idx.size == 0:
        raise InputError("no items to score")
    if idx[0] < 0 or idx[-1] >= store.n_items:
        raise InputError(f"item indices must be in [0, {store.n_items}); got {int(idx[0])}..{int(idx[-1])}")
    return idx


class _ItemRows:
    """The store rows of each item (``rows(i)``: its row indices in row order)."""

    def __init__(self, store: Any):
        self.item_of_row = store.item_of_row()
        self.order = np.argsort(self.item_of_row, kind="stable")
        self.sorted = self.item_of_row[self.order]

    def rows(self, item: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.sorted, [item, item + 1])
        return self.order[lo:hi]

    def of(self, items: np.ndarray) -> np.ndarray:
        """Sorted row indices of ``items``."""
        return np.flatnonzero(np.isin(self.item_of_row, items))


def rows_of_items(store: Any, items: Any) -> np.ndarray:
    """Sorted store row indices of the given items (all rows of each)."""
    return _ItemRows(store).of(check_items(store, items))


def mean_activation(
    store: Any, space: str, items: Any, *, max_rows: int = 100_000, random_state: int = 0
) -> np.ndarray:
    """(d,) float64 mean of the stored rows of ``items`` in ``space`` (a seeded sample of
    ``max_rows`` of them when there are more): the ``mean_activation`` of the CE_mean
    ablation, from the training items."""
    rows = _sample(rows_of_items(store, items), max_rows, random_state)
    return np.asarray(store.space(space).take(rows), dtype=np.float64).mean(axis=0)


def _sample(rows: np.ndarray, cap: int, random_state: int) -> np.ndarray:
    if rows.size <= cap:
        return rows
    return np.sort(np.random.default_rng(random_state).choice(rows, size=cap, replace=False))


def _apply(fn: Reconstruct, rows: np.ndarray, name: str) -> np.ndarray:
    """``fn(rows)`` checked: same shape, finite; float32."""
    out = np.asarray(fn(np.ascontiguousarray(rows, dtype=np.float32)), dtype=np.float32)
    if out.shape != rows.shape:
        raise InputError(f"reconstruction {name!r} returned shape {out.shape} for rows of shape {rows.shape}")
    if not np.isfinite(out).all():
        raise InputError(f"reconstruction {name!r} returned NaN or inf")
    return out
