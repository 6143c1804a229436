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

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import metrics
from .._progress import progress
from ..errors import DataFileError, InputError, ParameterError

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
    from ..encoders import get_encoder

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
    from ..encoders.hf import HFTextEncoder

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


# -- text windows of the items ------------------------------------------------------------------


@dataclass
class _Window:
    item: int
    window: Any  # TextWindow
    stored: np.ndarray  # global store rows of window.rows, in order


def _item_windows(enc: Any, store: Any, items: np.ndarray, spec: Mapping[str, Any]) -> list[list[_Window]]:
    """Each item's windows, checked against the store's token positions (DataFileError)."""
    captions = store.columns(["caption"], items=True)["caption"]
    position = store.columns(["position"])["position"]
    by_item = _ItemRows(store)
    out = []
    for i in items:
        text = captions[int(i)]
        if not isinstance(text, str) or not text:
            raise DataFileError(f"{store.path}: item {int(i)} has no text, so it cannot be run through the model")
        windows = enc.windows(text)
        rows = by_item.rows(int(i))
        expected = [p for w in windows for p in w.positions]
        if len(expected) != rows.size or not np.array_equal(position[rows], expected):
            raise DataFileError(
                f"the store's tokens do not match the encoder {spec.get('name')}: item {int(i)} has {rows.size} "
                f"stored rows, the encoder's windows hold {len(expected)} (another tokenizer, context or keep_bos?)"
            )
        cuts = np.cumsum([len(w.rows) for w in windows])[:-1]
        out.append([_Window(int(i), w, r) for w, r in zip(windows, np.split(rows, cuts))])
    return out


def _batches(windows: list[_Window], batch_size: int) -> Iterator[list[_Window]]:
    order = sorted(range(len(windows)), key=lambda j: len(windows[j].window.input_ids))
    for s in range(0, len(order), batch_size):
        yield [windows[j] for j in order[s : s + batch_size]]


class _MatchCheck:
    """Accumulates ``‖captured - stored‖²`` and ``‖stored‖²`` over the checked rows."""

    def __init__(self, store: Any, space: str, spec: Mapping[str, Any]):
        self.space, self.spec = store.space(space), spec
        self.diff = self.norm = 0.0

    def add(self, hidden: torch.Tensor, batch: list[_Window]) -> None:
        captured = np.concatenate([hidden[b, w.window.rows].float().cpu().numpy() for b, w in enumerate(batch)])
        rows = np.concatenate([w.stored for w in batch])
        order = np.argsort(rows)
        stored = np.empty_like(captured)
        stored[order] = self.space.take(rows[order])
        self.diff += float(np.square(captured.astype(np.float64) - stored).sum())
        self.norm += float(np.square(stored.astype(np.float64)).sum())

    def check(self) -> None:
        rel = (self.diff / self.norm) ** 0.5 if self.norm > 0 else (0.0 if self.diff == 0 else float("inf"))
        if rel > MATCH_TOLERANCE:
            raise DataFileError(
                f"the store's tokens do not match the encoder {self.spec.get('name')}: the stored activations differ "
                f"from what it captures at layer {self.spec.get('layer')} by {rel:.3g} (relative); "
                "another model or layer?"
            )


class _Batch:
    """One padded batch of windows on the device, with its text-token mask."""

    def __init__(self, enc: Any, batch: list[_Window]):
        from ..encoders.activations import pad_windows

        tok = enc.tokenizer()
        prefix, suffix = enc.frame()
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids, mask = pad_windows([w.window for w in batch], pad)
        self.ids, self.mask = ids.to(enc.device), mask.to(enc.device)
        B, T = ids.shape
        lengths = torch.tensor([len(w.window.input_ids) for w in batch])
        j = torch.arange(T)[None, :]
        # text tokens: after the prefix, before the suffix (and the padding)
        self.body = ((j >= len(prefix)) & (j < (lengths - len(suffix))[:, None])).to(enc.device)
        self.n_prefix, self.n_suffix, self.lengths = len(prefix), len(suffix), lengths


def _replacing(site: Any, body: torch.Tensor, values: torch.Tensor):
    """A context in which the site's text tokens are replaced by ``values`` (B, T, d)."""

    def fn(hidden: torch.Tensor) -> torch.Tensor:
        return torch.where(body[..., None], values.to(hidden.dtype), hidden)

    return site.replace(fn)


def _spliced_values(hidden: torch.Tensor, body: torch.Tensor, fn: Reconstruct, name: str) -> torch.Tensor:
    values = torch.zeros_like(hidden)
    rows = hidden[body].float().cpu().numpy()
    values[body] = torch.from_numpy(_apply(fn, rows, name)).to(device=hidden.device, dtype=hidden.dtype)
    return values


def _forward(model: Any, batch: _Batch, causal: bool) -> Any:
    kwargs: dict[str, Any] = {"input_ids": batch.ids, "attention_mask": batch.mask}
    if causal:
        kwargs["use_cache"] = False
    return model(**kwargs)


# -- causal LMs ----------------------------------------------------------------------------------


@dataclass
class _TextJob:
    """What a text family's metrics need: the encoder, the store space and its spec, the items,
    the reconstructions, windows per forward pass."""

    enc: Any
    store: Any
    space: str
    spec: Mapping[str, Any]
    items: np.ndarray
    fns: Mapping[str, Reconstruct]
    batch_size: int
    show_progress: bool


def _causal_metrics(job: _TextJob, mean: np.ndarray | None) -> dict[str, dict[str, Any]]:
    enc, store, space, spec, items, fns = job.enc, job.store, job.space, job.spec, job.items, job.fns
    batch_size, show_progress = job.batch_size, job.show_progress
    windows = [w for ws in _item_windows(enc, store, items, spec) for w in ws]
    model = enc.model()
    site = enc.site(model)
    check = _MatchCheck(store, space, spec)
    ablations = {"zero": None} if mean is None else {"zero": None, "mean": mean}
    ce = {name: 0.0 for name in [*fns, *ablations]}
    ce_clean, kl = 0.0, {name: 0.0 for name in fns}
    n_scored = 0
    bar = progress(len(windows), "splice", enabled=show_progress, unit="window")
    try:
        for part in _batches(windows, batch_size):
            batch = _Batch(enc, part)
            B, T = batch.ids.shape
            scored = torch.zeros((B, T), dtype=torch.bool)
            for b, w in enumerate(part):
                for j in w.window.rows:  # the position before a stored token predicts it
                    if j - 1 >= batch.n_prefix:
                        scored[b, j - 1] = True
            scored = scored.to(enc.device)
            targets = torch.roll(batch.ids, -1, dims=1)[scored]
            with torch.inference_mode():
                with site.capture(stop=False) as seen:
                    clean_logits = _forward(model, batch, True).logits[scored]
                hidden = seen[0]
                check.add(hidden, part)
                n_scored += int(scored.sum())
                ce_clean += float(metrics.cross_entropy(clean_logits, targets).sum())
                runs: dict[str, torch.Tensor] = {
                    name: _spliced_values(hidden, batch.body, fn, name) for name, fn in fns.items()
                }
                for name, value in ablations.items():
                    fill = torch.zeros_like(hidden)
                    if value is not None:
                        fill[:] = torch.as_tensor(value, dtype=hidden.dtype, device=hidden.device)
                    runs[name] = fill
                for name, values in runs.items():
                    with _replacing(site, batch.body, values):
                        logits = _forward(model, batch, True).logits[scored]
                    ce[name] += float(metrics.cross_entropy(logits, targets).sum())
                    if name in kl:
                        kl[name] += float(metrics.kl_divergence(clean_logits, logits).sum())
                    del logits
            bar.update(len(part))
    finally:
        bar.close()
    check.check()
    if n_scored == 0:
        raise InputError("no position to score: every window holds a single text token")
    clean = ce_clean / n_scored
    zero = ce["zero"] / n_scored
    out: dict[str, dict[str, Any]] = {}
    for name in fns:
        spliced = ce[name] / n_scored
        res = {
            "ce_clean": clean,
            "ce_spliced": spliced,
            "ce_zero": zero,
            "ce_loss_recovered": metrics.loss_recovered(clean, spliced, zero),
            "kl": kl[name] / n_scored,
            "positions_scored": n_scored,
            "windows": len(windows),
        }
        if mean is not None:
            res["ce_mean"] = ce["mean"] / n_scored
            res["ce_loss_recovered_mean"] = metrics.loss_recovered(clean, spliced, res["ce_mean"])
        out[name] = res
    return out


# -- sentence encoders ---------------------------------------------------------------------------


def sentence_embeddings(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
    """``(B, T, d)`` final hidden states and ``(B, T)`` mask -> ``(B, d)`` float64 unit rows:
    the mean over the masked tokens, L2-normalised (sentence-transformers' mean pooling and
    Normalize)."""
    m = attention_mask.to(last_hidden_state.dtype)[..., None]
    pooled = (last_hidden_state * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)
    return metrics.unit_rows(pooled.double().cpu().numpy())


def _run_sentences(
    enc: Any,
    windows: list[_Window],
    fns: Mapping[str, Reconstruct],
    batch_size: int,
    check: _MatchCheck | None = None,
    show_progress: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Clean ``(n, d)`` and spliced ``{name: (n, d)}`` sentence embeddings of single windows,
    in the order of ``windows``."""
    model = enc.model()
    site = enc.site(model)
    d = enc.dim("text")
    clean = np.zeros((len(windows), d))
    spliced = {name: np.zeros((len(windows), d)) for name in fns}
    index = {id(w): j for j, w in enumerate(windows)}
    bar = progress(len(windows), "splice", enabled=show_progress, unit="text")
    try:
        for part in _batches(windows, batch_size):
            batch = _Batch(enc, part)
            at = [index[id(w)] for w in part]
            with torch.inference_mode():
                with site.capture(stop=False) as seen:
                    clean[at] = sentence_embeddings(_forward(model, batch, False).last_hidden_state, batch.mask)
                hidden = seen[0]
                if check is not None:
                    check.add(hidden, part)
                for name, fn in fns.items():
                    with _replacing(site, batch.body, _spliced_values(hidden, batch.body, fn, name)):
                        out = _forward(model, batch, False).last_hidden_state
                    spliced[name][at] = sentence_embeddings(out, batch.mask)
            bar.update(len(part))
    finally:
        bar.close()
    return clean, spliced


def spliced_sentence_embeddings(
    encoder: Any, texts: Sequence[str], reconstruct: Reconstruct | None = None, *, batch_size: int | None = None
) -> np.ndarray:
    """``(n, d)`` float64 unit sentence embeddings of ``texts`` (each must fit in one window)
    through a non-causal text transformer (``minilm`` with a layer, ``hf:``) with the text
    tokens replaced by ``reconstruct`` at the encoder's layer; None: the clean embeddings
    (for minilm equal to ``get_encoder("minilm").encode_texts``)."""
    enc = _text_encoder(encoder)
    windows = []
    for i, text in enumerate(texts):
        ws = enc.windows(text)
        if len(ws) != 1:
            raise InputError(f"texts[{i}] needs {len(ws)} windows of {enc.window()[0]} tokens; it must fit in one")
        windows.append(_Window(i, ws[0], np.zeros(0, np.int64)))
    fns = {} if reconstruct is None else {"spliced": reconstruct}
    clean, spliced = _run_sentences(enc, windows, fns, batch_size or enc.batch_size)
    return clean if reconstruct is None else spliced["spliced"]


def _sentence_metrics(job: _TextJob) -> dict[str, dict[str, Any]] | str:
    enc, store, space, spec, items, fns = job.enc, job.store, job.space, job.spec, job.items, job.fns
    per_item = _item_windows(enc, store, items, spec)
    windows = [ws[0] for ws in per_item if len(ws) == 1]
    if not windows:
        return (
            f"splice: unavailable because none of the {len(items)} items fits in one window "
            f"of {spec.get('context')} tokens"
        )
    check = _MatchCheck(store, space, spec)
    E, spliced = _run_sentences(enc, windows, fns, job.batch_size, check, job.show_progress)
    check.check()
    targets = np.arange(E.shape[0])
    result = {}
    for name, Eh in spliced.items():
        recall = metrics.recall_at_k(Eh @ E.T, targets, ks=(1, 10))
        result[name] = {
            "sentence_cosine": metrics.cosine(E, Eh),
            "retrieval_recall_at_1": recall["recall@1"],
            "retrieval_recall_at_10": recall["recall@10"],
            "items_scored": int(E.shape[0]),
        }
    return result


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
    from ..models import RandomDictionary

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
