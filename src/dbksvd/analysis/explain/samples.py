"""The rows an explanation of a token or patch store reads: a sample of whole items, and
what every sampled row stands for.

A token or patch store has many rows per item (millions in all), so its atoms are described
on a seeded sample of whole items (:func:`sample_rows`) with at most ``max_rows`` rows: whole
items, so that every sampled token has its neighbours (its context) and every sampled patch
the rest of its image. Each sampled row gets the text its descriptions are scored against
(its *caption*):

* a token: its context window, the item's text from ``window`` tokens before it to
  ``window`` tokens after it (the item's text is read once per item), and its *word* (the
  whole word the token is part of: ``buttocks`` for ``##ocks``); the explanation embeds the
  two and compares descriptions with their mean, so that a description may name what the
  token is or what surrounds it. Without texts in the store: the token string alone;
* a patch: the caption of its image.

:meth:`RowSample.context` gives the evidence a person reads for one top row: for a token the
surrounding tokens with the atom's coefficient on each (Neuronpedia-style), for a patch the
atom's coefficient on every patch of the image (a heatmap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...coding import SparseCodes
from ...errors import InputError

#: Tokens on each side of a top token shown in its context (the display, not the caption).
CONTEXT_TOKENS = 12
#: Marks of subword pieces and word starts that tokenizers put in their token strings.
_TOKEN_MARKS = ("##", "Ġ", "▁", "Ċ")


def token_text(token: str) -> str:
    """A tokenizer's token string as a reader writes it (``Ġthe`` -> ``the``, ``##ing`` -> ``ing``)."""
    for mark in _TOKEN_MARKS:
        token = token.replace(mark, " " if mark in ("Ġ", "▁") else "")
    return token.strip()


@dataclass
class RowSample:
    """A sample of whole items of a token or patch store (``n`` rows, ``m`` items).

    ``rows`` (n,) int64: the store rows, sorted; ``item`` (n,) int64: each row's item (store
    item index); ``position`` (n,) int64: token index or patch index; ``starts`` (m + 1,):
    where each sampled item's rows begin in the sample; ``ids`` / ``captions`` (n,): each row's
    id (``"<item id>@<position>"``, patches ``"<item id>@<row>,<col>"``) and caption (above);
    ``texts`` (m,): the sampled items' texts (token stores; None where absent); ``pieces``
    (n,): per token the text from the end of the token before it to its own end, so that an
    item's pieces joined give its text (the token string where the text is absent); ``grid``
    (rows, cols) of a patch store; ``patch_row`` / ``patch_col`` (n,) for patches.
    """

    granularity: str
    rows: np.ndarray
    item: np.ndarray
    position: np.ndarray
    starts: np.ndarray
    ids: list[str]
    captions: list[str | None]
    item_ids: list[str]
    texts: list[str | None] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    grid: tuple[int, int] | None = None
    patch_row: np.ndarray | None = None
    patch_col: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def has_texts(self) -> bool:
        return any(t is not None for t in self.texts)

    def item_slice(self, i: int) -> slice:
        """The sample rows of the row ``i``'s item."""
        j = int(np.searchsorted(self.starts, i, side="right")) - 1
        return slice(int(self.starts[j]), int(self.starts[j + 1]))

    def context(self, i: int, atom: int, codes: SparseCodes) -> dict[str, Any]:
        """The evidence a person reads for sample row ``i`` and ``atom`` (codes of the whole
        sample): ``item`` and ``position``, then for a token ``context`` (``tokens``: pieces
        around it, ``coefs``: the atom's coefficient on each, ``focus``: the row's place in
        them), for a patch ``patch`` (``row``, ``col``) and ``grid`` (the atom's coefficient
        on every patch of the image, rows x cols; 0 where not stored)."""
        span = self.item_slice(i)
        out: dict[str, Any] = {"item": int(self.item[i]), "position": int(self.position[i])}
        if self.granularity == "token":
            lo, hi = max(span.start, i - CONTEXT_TOKENS), min(span.stop, i + CONTEXT_TOKENS + 1)
            out["context"] = {
                "tokens": self.pieces[lo:hi],
                "coefs": _atom_coefs(codes, lo, hi, atom).tolist(),
                "focus": i - lo,
            }
        else:
            rows, cols = self.grid
            grid = np.zeros((rows, cols))
            coefs = _atom_coefs(codes, span.start, span.stop, atom)
            r, c = self.patch_row[span], self.patch_col[span]
            ok = r >= 0  # a class token has no place in the grid
            grid[r[ok], c[ok]] = coefs[ok]
            out["patch"] = {"row": int(self.patch_row[i]), "col": int(self.patch_col[i])}
            out["grid"] = np.round(grid, 5).tolist()
        return out


def _atom_coefs(codes: SparseCodes, lo: int, hi: int, atom: int) -> np.ndarray:
    """(hi - lo,) the coefficient of ``atom`` on sample rows lo..hi-1 (0 where it is not used)."""
    idx = codes.indices[lo:hi].cpu().numpy()
    val = codes.values[lo:hi].cpu().numpy().astype(np.float64)
    return np.where(idx == atom, val, 0.0).sum(axis=1)


def sample_items(store: Any, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole items of ``store`` in a seeded random order while their rows total at most
    ``max_rows`` (at least one item): the chosen item indices, sorted, and the store's item
    boundaries ((n_items + 1,) first rows)."""
    item_of_row = store.item_of_row()
    bounds = np.searchsorted(item_of_row, np.arange(store.n_items + 1))
    counts = np.diff(bounds)
    order = np.random.default_rng(seed).permutation(store.n_items)
    fits = np.cumsum(counts[order]) <= max_rows
    fits[:1] = True
    return np.sort(order[fits]), bounds


def sample_rows(store: Any, max_rows: int, seed: int, window: int) -> RowSample:
    """A :class:`RowSample` of ``store`` (granularity token or patch): whole items, at most
    ``max_rows`` rows (one item at least), chosen with ``seed``; ``window`` tokens on each side
    of a token make its caption."""
    if store.granularity not in ("token", "patch"):
        raise InputError(f"{store.path} is an {store.granularity} store: it needs no row sample")
    items, bounds = sample_items(store, max_rows, seed)
    rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in items])
    counts = bounds[items + 1] - bounds[items]
    starts = np.concatenate([[0], np.cumsum(counts)])
    meta = store.columns(("id", "caption"), items=True, rows=items)
    item_ids, item_captions = meta["id"], meta["caption"]
    owner = np.repeat(np.arange(len(items)), counts)  # sampled item of each sample row
    if store.granularity == "token":
        cols = store.columns(("item", "position", "token", "char_start", "char_end"), rows=rows)
        sample = RowSample(
            "token", rows, cols["item"], cols["position"], starts, [], [], item_ids, texts=list(item_captions)
        )
        _token_captions(sample, owner, cols, window)
    else:
        cols = store.columns(("item", "position", "patch_row", "patch_col"), rows=rows)
        space = store.manifest["spaces"][store.default_space()]
        grid = space["encoder"].get("grid") or [int(cols["patch_row"].max()) + 1, int(cols["patch_col"].max()) + 1]
        sample = RowSample(
            "patch",
            rows,
            cols["item"],
            cols["position"],
            starts,
            [f"{item_ids[o]}@{r},{c}" for o, r, c in zip(owner, cols["patch_row"], cols["patch_col"])],
            [item_captions[o] or None for o in owner],
            item_ids,
            grid=(int(grid[0]), int(grid[-1])) if isinstance(grid, list) else (int(grid), int(grid)),
            patch_row=cols["patch_row"],
            patch_col=cols["patch_col"],
        )
        if not any(item_captions):
            sample.notes.append("the store's images have no captions: patch descriptions cannot be scored")
    return sample


def _token_captions(sample: RowSample, owner: np.ndarray, cols: dict[str, Any], window: int) -> None:
    """Fill ``sample``'s token ids, pieces and captions (context windows, else token strings)."""
    start, end, tokens = cols["char_start"], cols["char_end"], cols["token"]
    sample.ids = [f"{sample.item_ids[o]}@{p}" for o, p in zip(owner, sample.position)]
    if not sample.has_texts:
        sample.pieces = [token_text(t) for t in tokens]
        sample.words = list(sample.pieces)
        sample.captions = [p or None for p in sample.pieces]
        sample.notes.append(
            "the store holds no texts: token atoms are described and scored from token strings only, without context"
        )
        return
    for j in range(len(sample.starts) - 1):
        lo, hi = int(sample.starts[j]), int(sample.starts[j + 1])
        text = sample.texts[j]
        if text is None:  # this item alone has no text: its token strings
            pieces = [token_text(t) for t in tokens[lo:hi]]
            sample.pieces.extend(pieces)
            sample.words.extend(pieces)
            sample.captions.extend(p or None for p in pieces)
            continue
        s, e = start[lo:hi], end[lo:hi]
        begin = np.concatenate([[0], e[:-1]]) if hi > lo else s  # a piece takes the gap before it
        sample.pieces.extend(text[b:c] for b, c in zip(begin, e))
        sample.words.extend(_word(text, int(a), int(b)) for a, b in zip(s, e))
        n = hi - lo
        for t in range(n):
            a, b = max(0, t - window), min(n - 1, t + window)
            sample.captions.append(" ".join(text[s[a] : e[b]].split()) or None)


def _word(text: str, start: int, end: int) -> str:
    """The whole word around ``text[start:end]`` (letters and digits on both sides); the span
    itself when it is punctuation."""
    a, b = start, end
    while a > 0 and text[a - 1].isalnum() and text[a:end][:1].isalnum():
        a -= 1
    while b < len(text) and text[b].isalnum() and text[start:b][-1:].isalnum():
        b += 1
    return text[a:b].strip() or text[start:end]
