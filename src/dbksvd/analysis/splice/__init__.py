"""Splice metrics (docs/metrics.md, "Splice metrics"): put a dictionary's reconstructions back
into the network at the layer they were captured from, run the rest of the network, and
compare with the clean run, on held-out items.

A reconstruction is any ``reconstruct(rows) -> rows``: ``(n, d)`` float32 activations in,
``(n, d)`` out (:func:`model_reconstruct` makes one of a fitted model). Which numbers a store
gets depends on what its rows are (:func:`splice_family`):

- **causal LMs** (token rows of an ``hf:`` causal LM): every window of every item is run
  clean, with the text tokens of the window replaced at the captured layer by their
  reconstruction, by zeros and (with ``mean_activation``) by a mean activation. The special
  tokens around a window (BOS) are never replaced and never scored. A position is scored
  when it is a text token and the next input token is a text token the window stores; its
  logits predict that token. So every token of an item but the first is predicted exactly
  once (when ``stride`` is less than the window's text tokens, as by default: the first
  token a later window stores is predicted from the context token before it). Every text
  token of a window is replaced, the context tokens a later window shares with the one
  before included, so no spliced prediction sees clean context.
  Keys: ``ce_clean``, ``ce_spliced``, ``ce_zero`` (nats, means over the scored positions),
  ``ce_loss_recovered`` = ``(ce_zero - ce_spliced) / (ce_zero - ce_clean)``, ``kl`` = mean
  ``KL(p_clean || p_spliced)``, ``positions_scored``, ``windows``; with a mean activation also
  ``ce_mean`` and ``ce_loss_recovered_mean``.
- **sentence encoders** (token rows of ``minilm`` or a non-causal ``hf:`` model): the sentence
  embedding is the mean of the final ``last_hidden_state`` over the window's attention-masked
  tokens (specials included), L2-normalised: all-MiniLM-L6-v2's own pipeline. Only items that
  fit in one window are scored (``items_scored``). Keys: ``sentence_cosine`` (mean cosine of
  spliced and clean embeddings), ``retrieval_recall_at_1`` and ``retrieval_recall_at_10``
  (each spliced embedding queries the clean embeddings of the scored items; its own is the
  answer; :func:`dbksvd.metrics.recall_at_k`).
- **image classifier heads** (effnet-lite0: the 7 x 7 positions of its last feature map, or
  its pooled features): the network after the captured activations is a global mean pool and
  a linear head (dropout is off in eval mode), so the spliced logits are exactly
  ``head(mean of the reconstructed rows of the image)`` (patches) or ``head(reconstruction)``
  (pooled); nothing is re-run. The clean logits are the head on the stored rows (equal to the
  network's logits up to the store's dtype). Keys: ``head_top1_agreement``, ``head_kl``,
  ``items_scored``.
- anything else (vit/clip patch tokens, sentence embeddings stored as items, ...): no splice;
  the result says why in ``splice_note``.

Every store also gets **neighbour retention** (:func:`dbksvd.metrics.neighbour_retention`,
k = 10) of the stored rows of the items: ``neighbour_retention``, ``neighbour_rows``; a store
with more than ``neighbour_rows`` (5,000) such rows (token and patch stores) uses a seeded
sample of them.

For the text families the encoder is rebuilt from the store's encoder spec and the store
is checked against it: the stored token positions of every item must equal those of the
encoder's windows, and the stored activations must match what it captures (relative
Frobenius difference at most :data:`MATCH_TOLERANCE`), or a :class:`DataFileError` says the
store's tokens do not match the encoder.

References (:func:`splice_references`): the identity (the hook check: CE loss recovered 1, KL
0, cosine 1, agreement 1, retention 1) and random directions of the same K and k
(:class:`dbksvd.models.RandomDictionary` fitted on training rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ... import metrics
from ...errors import InputError, ParameterError
from .head import _head_metrics
from .inputs import (
    CAUSAL_BATCH,
    NEIGHBOUR_ROWS,
    NEIGHBOURS,
    Reconstruct,
    _apply,
    _check_spec,
    _encoder_spec,
    _sample,
    _text_encoder,
    check_items,
    identity,
    mean_activation,
    model_reconstruct,
    rebuild_encoder,
    rows_of_items,
    splice_family,
)
from .text import _causal_metrics, _sentence_metrics, _TextJob, sentence_embeddings, spliced_sentence_embeddings

__all__ = [
    "identity",
    "mean_activation",
    "model_reconstruct",
    "model_splice_columns",
    "rebuild_encoder",
    "rows_of_items",
    "sentence_embeddings",
    "splice_family",
    "splice_metrics",
    "splice_reference_rows",
    "splice_references",
    "spliced_sentence_embeddings",
]

# -- the entry points ----------------------------------------------------------------------------


def splice_metrics(
    store: Any,
    space: str,
    reconstruct: Reconstruct | Mapping[str, Reconstruct],
    items: Any,
    *,
    mean_activation: Any = None,
    batch_size: int | None = None,
    device: Any = None,
    encoder: Any = None,
    neighbour_rows: int = NEIGHBOUR_ROWS,
    random_state: int = 0,
    show_progress: bool = False,
) -> dict[str, Any]:
    """The splice metrics (module docstring) of ``reconstruct`` on the held-out ``items`` (item
    indices of ``store``) of ``space``, plus neighbour retention.

    ``reconstruct``: ``(n, d) float32 -> (n, d)``, or a mapping ``{name: reconstruct}``; then
    the clean and ablated runs are shared and the result is ``{name: metrics}``.
    ``mean_activation`` (d,): the CE_mean ablation of causal LMs (e.g.
    :func:`mean_activation` of the training items; without it no ``ce_mean``).
    ``batch_size``: windows per forward pass (default 8 for causal LMs, the encoder's
    otherwise); ``device``: where the rebuilt model runs; ``encoder``: an already built
    encoder to use instead of rebuilding the store's (its settings are checked against the
    store's); ``neighbour_rows``, ``random_state``: the neighbour retention sample.

    A store whose rows cannot be spliced gets neighbour retention and ``splice_note`` (why).
    Raises DataFileError when the store's tokens do not match the encoder.
    """
    single = callable(reconstruct)
    fns: dict[str, Reconstruct] = {"": reconstruct} if single else dict(reconstruct)  # type: ignore[arg-type]
    if not fns or not all(callable(f) for f in fns.values()):
        raise ParameterError("reconstruct must be a function rows -> rows, or a non-empty mapping of them")
    items = check_items(store, items)
    spec = _encoder_spec(store, space)
    family, why = splice_family(store, space)
    d = int(store.manifest["spaces"][space]["dim"])
    mean = None
    if mean_activation is not None:
        mean = np.asarray(mean_activation, dtype=np.float32).reshape(-1)
        if mean.shape != (d,):
            raise InputError(f"mean_activation has {mean.size} values; the {space} rows have {d}")
    results: dict[str, dict[str, Any]] | str
    if family in ("causal_lm", "sentence"):
        enc = _text_encoder(encoder if encoder is not None else rebuild_encoder(spec, device=device))
        _check_spec(enc, spec)
        bs = batch_size or (CAUSAL_BATCH if family == "causal_lm" else enc.batch_size)
        job = _TextJob(enc, store, space, spec, items, fns, bs, show_progress)
        results = _causal_metrics(job, mean) if family == "causal_lm" else _sentence_metrics(job)
    elif family == "head":
        enc = encoder if encoder is not None else rebuild_encoder(spec, device=device)
        head = enc.head()
        if head is None:
            results = f"splice: unavailable because {enc.name} has no classifier head"
        else:
            results = _head_metrics(head, store, space, items, fns, show_progress)
    else:
        results = why
    if isinstance(results, str):
        results = {name: {"splice_note": results} for name in fns}
    rows = _sample(rows_of_items(store, items), neighbour_rows, random_state)
    X = np.asarray(store.space(space).take(rows), dtype=np.float32)
    for name, fn in fns.items():
        results[name]["neighbour_retention"] = metrics.neighbour_retention(X, _apply(fn, X, name), NEIGHBOURS)
        results[name]["neighbour_rows"] = int(rows.size)
    return results[""] if single else results


def model_splice_columns(
    model: Any, store: Any, space: str, items: Any, *, prefix: str = "splice_", **kwargs: Any
) -> dict[str, Any]:
    """:func:`splice_metrics` of a fitted dictionary model (:func:`model_reconstruct`) with
    every key prefixed (``splice_kl``, ``splice_neighbour_retention``, ...), for a row of the
    comparison report. ``kwargs`` go to :func:`splice_metrics`."""
    found = splice_metrics(store, space, model_reconstruct(model), items, **kwargs)
    return {f"{prefix}{k}": v for k, v in found.items()}


def splice_references(
    store: Any,
    space: str,
    items: Any,
    *,
    train_items: Any,
    n_atoms: int,
    n_nonzero: int | Sequence[int],
    mean_activation: Any = "train",
    max_train_rows: int = 100_000,
    random_state: int = 0,
    model_params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """The reference numbers of :func:`splice_metrics`: ``"identity"`` (the hook check) and
    ``"random-k{k}"`` for each ``k`` of ``n_nonzero``: a :class:`~dbksvd.models.RandomDictionary`
    of ``n_atoms`` atoms fitted on the stored rows of ``train_items`` (a seeded sample of
    ``max_train_rows`` when there are more; ``model_params``: its other parameters).
    ``mean_activation``: "train" (the default) for the mean of those rows, None for no CE_mean
    ablation, or a (d,) vector. ``kwargs`` go to :func:`splice_metrics`."""
    from ...models import RandomDictionary

    train_rows = _sample(rows_of_items(store, train_items), max_train_rows, random_state)
    X_train = np.asarray(store.space(space).take(train_rows), dtype=np.float32)
    if isinstance(mean_activation, str):
        if mean_activation != "train":
            raise ParameterError(f"mean_activation must be 'train', None or a vector; got {mean_activation!r}")
        mean_activation = X_train.astype(np.float64).mean(axis=0)
    ks = [n_nonzero] if isinstance(n_nonzero, (int, np.integer)) else list(n_nonzero)
    fns: dict[str, Reconstruct] = {"identity": identity}
    for k in ks:
        params = {"random_state": random_state, **(model_params or {})}
        fns[f"random-k{int(k)}"] = model_reconstruct(RandomDictionary(n_atoms, int(k), **params).fit(X_train))
    return splice_metrics(
        store, space, fns, items, mean_activation=mean_activation, random_state=random_state, **kwargs
    )


def splice_reference_rows(
    store: Any, space: str, items: Any, *, prefix: str = "splice_", **kwargs: Any
) -> list[dict[str, Any]]:
    """:func:`splice_references` as rows of the comparison report: ``{"method": "identity",
    "status": "ok", ...}`` and ``{"method": "random", "k": k, "coder": "omp", "status": "ok",
    ...}``, the metrics prefixed as in :func:`model_splice_columns`."""
    found = splice_references(store, space, items, **kwargs)
    rows = []
    for name, values in found.items():
        row: dict[str, Any] = {"method": "identity", "coder": "none", "status": "ok"}
        if name != "identity":
            coder = str((kwargs.get("model_params") or {}).get("coder", "omp"))
            row = {"method": "random", "k": int(name.rsplit("-k", 1)[1]), "coder": coder, "status": "ok"}
        row.update({f"{prefix}{k}": v for k, v in values.items()})
        rows.append(row)
    return rows
