"""Splicing into text transformers: the items' windows checked against the store, causal-LM
cross-entropy and KL, sentence-embedding cosine and retrieval."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ... import metrics
from ..._progress import progress
from ...errors import DataFileError, InputError
from .inputs import MATCH_TOLERANCE, Reconstruct, _apply, _ItemRows, _text_encoder

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
        from ...encoders.activations import pad_windows

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
