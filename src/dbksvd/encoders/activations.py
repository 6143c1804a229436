"""Activations inside a transformer, per token or patch: where the residual stream is read
(capture) and written (splice), and how texts become the model's input windows.

The *residual stream after block L* is hidden state ``L`` in the Hugging Face numbering:
``0`` is the embedding output (the input of block 0), ``L`` the output of block ``L - 1``, and
``n_layers`` the output of the last block, before any final layernorm. :class:`ResidualSite`
reads and replaces exactly that tensor with a forward hook, so capture and splice always see
the same activations (``output_hidden_states`` would not: GPT-2's last hidden state is
layer-normed).

Texts longer than the context are split into overlapping windows (:func:`text_windows`):
window ``w`` holds body tokens ``[w · stride, w · stride + body)``, and owns the tokens after
the previous window's end, so every token is captured exactly once, with at least
``body - stride`` tokens of left context beyond the first window. Special tokens (BOS, CLS,
SEP) frame every window; they are not stored, except the first window's BOS/CLS with
``keep_bos``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InputError, ModelFormatError, ParameterError


class _StopForward(Exception):
    """Raised by a capture hook to skip the blocks after the captured layer."""


def transformer_blocks(module: torch.nn.Module, n_layers: int) -> torch.nn.ModuleList:
    """The ``ModuleList`` of the ``n_layers`` blocks of a transformer (``encoder.layer`` of
    BERT, ``h`` of GPT-2, ``layers`` of Llama/Gemma/GPT-NeoX, ``encoder.layers`` of CLIP's
    vision tower): the first module list of that length."""
    for _, child in module.named_modules():
        if isinstance(child, torch.nn.ModuleList) and len(child) == n_layers:
            return child
    raise ModelFormatError(f"{type(module).__name__}: no list of {n_layers} transformer blocks found")


def check_layer(layer: int, n_layers: int, name: str) -> int:
    """``layer`` (negative counts from the last hidden state) as an index in ``0..n_layers``;
    a ParameterError names the model's layer count."""
    n = n_layers + 1
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise ParameterError(f"layer must be an integer (negative counts from the last); got {layer!r}")
    if not -n <= layer < n:
        raise ParameterError(
            f"layer {layer} is out of range for {name}: it has {n} hidden states "
            f"(embeddings + {n_layers} blocks), so layer must be in {-n}..{n - 1}"
        )
    return int(layer) % n


class ResidualSite:
    """Hidden state ``layer`` (``0..n_layers``) of the blocks ``blocks``: read it with
    :meth:`capture`, overwrite it with :meth:`replace`."""

    def __init__(self, blocks: torch.nn.ModuleList, layer: int):
        self.blocks, self.layer = blocks, layer

    def _hook(self, fn: Callable[[torch.Tensor], torch.Tensor | None]):
        """Register ``fn(hidden) -> new hidden or None`` at the site; returns the handle."""
        if self.layer == 0:  # the input of block 0

            def pre(module, args, kwargs):
                if args:
                    new = fn(args[0])
                    return None if new is None else ((new, *args[1:]), kwargs)
                new = fn(kwargs["hidden_states"])
                return None if new is None else (args, {**kwargs, "hidden_states": new})

            return self.blocks[0].register_forward_pre_hook(pre, with_kwargs=True)

        def post(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            new = fn(hidden)
            if new is None:
                return None
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return self.blocks[self.layer - 1].register_forward_hook(post)

    @contextlib.contextmanager
    def capture(self, *, stop: bool = True) -> Iterator[list[torch.Tensor]]:
        """Inside, each forward pass appends the site's ``(batch, seq, d)`` tensor to the
        yielded list; ``stop``: end the pass there (call :meth:`run` to swallow the stop)."""
        seen: list[torch.Tensor] = []

        def fn(hidden: torch.Tensor) -> None:
            seen.append(hidden.detach())
            if stop:
                raise _StopForward

        handle = self._hook(fn)
        try:
            yield seen
        finally:
            handle.remove()

    @contextlib.contextmanager
    def replace(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
        """Inside, the site's tensor is replaced by ``fn(hidden)`` (same shape) in every pass."""
        handle = self._hook(fn)
        try:
            yield
        finally:
            handle.remove()

    @staticmethod
    def run(forward: Callable[..., object], *args, **kwargs) -> object:
        """``forward(*args, **kwargs)``, with a capture's early stop swallowed (None then)."""
        try:
            return forward(*args, **kwargs)
        except _StopForward:
            return None


# -- text windows ------------------------------------------------------------------------------


@dataclass
class TextWindow:
    """One model input cut from a text.

    ``input_ids``: the window's token ids, special tokens included; ``rows``: indices into
    ``input_ids`` of the tokens this window stores (owned body tokens, and the BOS/CLS with
    ``keep_bos`` in the first window); ``positions``: their index in the text's token sequence
    (-1 for the BOS/CLS); ``spans``: their ``(start, end)`` character spans in the text;
    ``tokens``: their strings.
    """

    input_ids: list[int]
    rows: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids a tokenizer puts before and after a text (``[CLS]``, ``[SEP]``;
    ``<bos>``). A tokenizer that adds none but has a BOS token gets it as prefix, as SAELens
    prepends BOS to the residual stream of GPT-2-style models."""
    probe = "a b"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            prefix, suffix = list(full[:start]), list(full[start + len(bare) :])
            break
    else:  # a tokenizer that rewrites the text when adding specials: treat as none
        prefix, suffix = [], []
    if not prefix and getattr(tokenizer, "bos_token_id", None) is not None:
        prefix = [int(tokenizer.bos_token_id)]
    return prefix, suffix


def text_windows(
    tokenizer, text: str, *, context: int, stride: int, keep_bos: bool, frame: tuple[list[int], list[int]]
) -> list[TextWindow]:
    """The windows of ``text`` (see the module docstring); ``context`` counts every input
    token, specials included. InputError for a text with no tokens."""
    prefix, suffix = frame
    body = context - len(prefix) - len(suffix)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(map(int, o)) for o in enc["offset_mapping"]]
    if not ids:
        raise InputError(f"text {text[:40]!r} has no tokens")
    strings = tokenizer.convert_ids_to_tokens(ids)
    windows: list[TextWindow] = []
    done, start = 0, 0
    while done < len(ids):
        end = min(len(ids), start + body)
        w = TextWindow(input_ids=[*prefix, *ids[start:end], *suffix])
        if keep_bos and not windows and prefix:
            w.rows.append(0)
            w.positions.append(-1)
            w.spans.append((0, 0))
            w.tokens.append(tokenizer.convert_ids_to_tokens([prefix[0]])[0])
        for p in range(done, end):
            w.rows.append(len(prefix) + p - start)
            w.positions.append(p)
            w.spans.append(offsets[p])
            w.tokens.append(strings[p])
        windows.append(w)
        done, start = end, start + stride
    return windows


def check_window(context: int, stride: int | None, frame: tuple[list[int], list[int]], max_context: int, name: str):
    """``(context, stride)`` checked against the model: ``context`` at most ``max_context``
    and room for at least one body token; ``stride`` (default half the body) in
    ``1..body``, so that no token is skipped."""
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 1:
        raise ParameterError(f"context must be a positive integer; got {context!r}")
    if context > max_context:
        raise ParameterError(f"context {context} exceeds {name}'s {max_context} positions")
    body = context - len(frame[0]) - len(frame[1])
    if body < 1:
        raise ParameterError(f"context {context} leaves no room for text beside {name}'s special tokens")
    if stride is None:
        stride = max(1, body // 2)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= body:
        raise ParameterError(
            f"stride must be in 1..{body} (the context {context} minus special tokens), so that no token is skipped; "
            f"got {stride!r}"
        )
    return int(context), int(stride)


@dataclass
class TokenRows:
    """The residual stream of some texts at every stored token.

    ``rows`` (N, d) float32; ``item`` (N,) int64 the text's index in the call;
    ``position`` (N,) token index in the text (-1: BOS/CLS); ``char_start``, ``char_end``
    (N,) int64 character spans; ``token`` N token strings.
    """

    rows: np.ndarray
    item: np.ndarray
    position: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray
    token: list[str]

    def __len__(self) -> int:
        return self.rows.shape[0]


def pad_windows(windows: list[TextWindow], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` (B, T) int64, right-padded with ``pad_id``."""
    T = max(len(w.input_ids) for w in windows)
    ids = torch.full((len(windows), T), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(windows), T), dtype=torch.long)
    for i, w in enumerate(windows):
        ids[i, : len(w.input_ids)] = torch.tensor(w.input_ids)
        mask[i, : len(w.input_ids)] = 1
    return ids, mask


@dataclass
class PatchRows:
    """Patch tokens (or feature-map positions) of some images.

    ``rows`` (N, d) float32; ``item`` (N,) int64 the image's index in the call;
    ``position`` (N,) ``patch_row * grid + patch_col`` (-1: the class token); ``patch_row``,
    ``patch_col`` (N,) int64 (-1 for the class token).
    """

    rows: np.ndarray
    item: np.ndarray
    position: np.ndarray
    patch_row: np.ndarray
    patch_col: np.ndarray

    def __len__(self) -> int:
        return self.rows.shape[0]

    @classmethod
    def from_grid(cls, tokens: np.ndarray, grid: int, class_token: bool = False) -> PatchRows:
        """From ``tokens`` (n, [1 +] grid², d), the class token first when ``class_token``."""
        n, per, d = tokens.shape
        position = np.arange(grid * grid)
        if class_token:
            position = np.concatenate([[-1], position])
        row = np.where(position >= 0, position // grid, -1)
        col = np.where(position >= 0, position % grid, -1)
        return cls(
            rows=np.ascontiguousarray(tokens.reshape(n * per, d), dtype=np.float32),
            item=np.repeat(np.arange(n, dtype=np.int64), per),
            position=np.tile(position, n).astype(np.int64),
            patch_row=np.tile(row, n).astype(np.int64),
            patch_col=np.tile(col, n).astype(np.int64),
        )
