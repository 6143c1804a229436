"""Hugging Face transformers encoders: CLIP (images and texts), ViT / DINOv2 (images) and
any text transformer (``hf:``: BERT-like, GPT-2, Pythia, Gemma, ...; texts, per token).

``NAME_OR_PATH`` is a hub name (``openai/clip-vit-base-patch32``) or a local folder written
by ``save_pretrained``; both go through the same ``from_pretrained`` calls. Models run in
float32, eval mode, under ``torch.inference_mode``.

Image preprocessing always uses the PIL ("slow") image processor, so the pixels, and hence
the embeddings, do not depend on whether torchvision happens to be installed.

``layer`` indexes the hidden states of the transformer: index 0 is the (patch or token)
embedding output, index i the output of block i, -1 the last block. These are the raw
residual-stream states, read by a hook (:class:`dbksvd.encoders.activations.ResidualSite`):
no final layernorm (for ViT ``hidden_states[-1]`` differs from ``last_hidden_state``, which
is layer-normed) and no projection.

Per token and per patch: ``HFTextEncoder.encode_tokens`` gives the residual stream at every
token of every text (windows of ``context`` tokens with a ``stride``, special tokens left
out), ``encode_patches`` of CLIP and ViT every patch token of every image.
"""

from __future__ import annotations

import abc
import os
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ModelFormatError, ParameterError
from ..validation import resolve_device
from .activations import (
    PatchRows,
    ResidualSite,
    TokenRows,
    check_layer,
    check_window,
    pad_windows,
    special_frame,
    text_windows,
    transformer_blocks,
)
from .base import Encoder, missing, quiet_transformers, versions

#: Files one of which a local model folder needs for its tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


class _HFEncoder(Encoder):
    """Shared loading, layer checks and preprocessing of the transformers encoders."""

    kind: str  # "clip" or "vit"
    default_batch_size = 32

    def __init__(self, model: str, *, device: Any = None, layer: int | None = None, batch_size: int | None = None):
        super().__init__(batch_size=batch_size)
        if not isinstance(model, str) or not model.strip():
            raise ParameterError(f"{self.kind}: needs a model name or folder, e.g. {self.kind}:{self._example}")
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, (int, np.integer))):
            raise ParameterError(f"layer must be an integer (negative counts from the last); got {layer!r}")
        self.name = f"{self.kind}:{model}"
        self.layer = None if layer is None else int(layer)
        self.device = resolve_device("auto" if device is None else device)
        self.model_name = model
        local = os.path.expanduser(model)
        if os.path.isdir(local):
            self.source = os.path.abspath(local)
        elif model.startswith(("/", ".", "~")) or os.path.exists(local):
            raise ModelFormatError(f"cannot load {self.name}: {model} is not a folder")
        else:
            self.source = model  # a hub name
        self._config = None
        self._model = None
        self._image_processor = None

    # -- loading -----------------------------------------------------------------------

    def _load(self, what: str, loader, **kwargs):
        """``loader.from_pretrained(source)``; any failure becomes a one-line ModelFormatError."""
        try:
            with quiet_transformers():
                return loader.from_pretrained(self.source, **kwargs)
        except Exception as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ModelFormatError(f"cannot load {self.name} ({what}): {first}") from None

    def config(self):
        """The model's transformers config (loaded once); checks ``layer`` against it."""
        if self._config is None:
            transformers = _transformers()
            config = self._load("config", transformers.AutoConfig)
            self._check_config(config)
            if self.layer is not None:
                check_layer(self.layer, self._vision_config(config).num_hidden_layers, self.name)
            self._config = config
        return self._config

    @abc.abstractmethod
    def _check_config(self, config) -> None:
        """Raise ModelFormatError when ``config`` is not a model of this family."""

    def _vision_config(self, config):
        return config

    def image_processor(self):
        """The PIL image processor of the model (loaded once)."""
        if self._image_processor is None:
            transformers = _transformers()
            pil = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}
            self._image_processor = self._load("image processor", transformers.AutoImageProcessor, **pil)
        return self._image_processor

    def _move(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(device=self.device, dtype=torch.float32).eval()

    def _pixels(self, images: list) -> torch.Tensor:
        """RGB images -> ``(n, 3, H, W)`` float32 on the device."""
        pixels = self.image_processor()(images=images, return_tensors="pt")["pixel_values"]
        return pixels.to(device=self.device, dtype=torch.float32)

    def site(self, module: torch.nn.Module) -> ResidualSite:
        """Where hidden state ``layer`` of ``module`` (the transformer) is read and written."""
        n_layers = self._vision_config(self.config()).num_hidden_layers
        layer = check_layer(-1 if self.layer is None else self.layer, n_layers, self.name)
        return ResidualSite(transformer_blocks(module, n_layers), layer)

    def _hidden(self, vision_model: torch.nn.Module, images: list) -> torch.Tensor:
        """Hidden state ``layer`` of a vision transformer: ``(n, 1 + extra + patches, d)``."""
        site = self.site(vision_model)
        with torch.inference_mode(), site.capture() as seen:
            site.run(vision_model, pixel_values=self._pixels(images))
        return seen[0].float()

    def _class_token(self, vision_model: torch.nn.Module, images: list) -> np.ndarray:
        """Hidden state ``layer`` of a vision transformer at the class token: ``(n, hidden_size)``."""
        return self._hidden(vision_model, images)[:, 0].cpu().numpy()

    def patch_spec(self, class_token: bool = False) -> dict[str, Any]:
        """The spec of per-patch rows: hidden state ``layer`` at every patch token."""
        config = self._vision_config(self.config())
        layer = check_layer(-1 if self.layer is None else self.layer, config.num_hidden_layers, self.name)
        grid = int(config.image_size) // int(config.patch_size)
        return {
            **self._spec("patch_tokens"),
            "layer": layer,
            "n_layers": int(config.num_hidden_layers),
            "dims": {"image": int(config.hidden_size)},
            "grid": [grid, grid],
            "class_token": bool(class_token),
        }

    def _patch_rows(self, vision_model: torch.nn.Module, images: list, class_token: bool) -> PatchRows:
        """Every patch token of hidden state ``layer`` (after the class and register tokens),
        in row-major grid order; with ``class_token`` the class token first (position -1)."""
        hidden = self._hidden(vision_model, images).cpu().numpy()
        registers = int(getattr(self._vision_config(self.config()), "num_register_tokens", 0) or 0)
        patches = hidden[:, 1 + registers :]
        grid = int(round(patches.shape[1] ** 0.5))
        if grid * grid != patches.shape[1]:
            raise ModelFormatError(f"{self.name}: {patches.shape[1]} patch tokens do not form a square grid")
        parts = [hidden[:, :1], patches] if class_token else [patches]
        return PatchRows.from_grid(np.concatenate(parts, axis=1), grid, class_token)

    # -- description -------------------------------------------------------------------

    def _image_size(self) -> int | None:
        proc = self.image_processor()
        size = proc.crop_size if getattr(proc, "do_center_crop", False) else proc.size
        for key in ("height", "shortest_edge"):
            value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
            if value:
                return int(value)
        return getattr(self._vision_config(self.config()), "image_size", None)

    def _spec(self, output: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.source,
            "layer": self.layer,
            "output": output,
            "image_size": self._image_size(),
            "dims": {m: self.dim(m) for m in self.modalities},
            "library_versions": versions("torch", "transformers", "pillow"),
        }


class CLIPEncoder(_HFEncoder):
    """``"clip:NAME_OR_PATH"``: images and texts in CLIP's shared projected space.

    Default: images -> ``get_image_features`` ``(n, projection_dim)``, texts ->
    ``get_text_features`` ``(n, projection_dim)`` (not normalised). With ``layer=L``, images
    instead give the raw class token of vision hidden state L, ``(n, vision hidden_size)``
    (no post-layernorm, no projection); texts stay projected. Texts longer than the model's
    context are truncated.
    """

    kind = "clip"
    _example = "openai/clip-vit-base-patch32"
    modalities = ("image", "text")
    granularities = ("item", "patch")

    def __init__(self, model: str, **kwargs):
        super().__init__(model, **kwargs)
        self._tokenizer = None

    def _check_config(self, config) -> None:
        if getattr(config, "model_type", None) != "clip":
            raise ModelFormatError(f"{self.name} is a {getattr(config, 'model_type', '?')} model, not CLIP")

    def _vision_config(self, config):
        return config.vision_config

    def dim(self, modality: str) -> int:
        self._require(modality)
        config = self.config()
        if modality == "image" and self.layer is not None:
            return int(config.vision_config.hidden_size)
        return int(config.projection_dim)

    def spec(self) -> dict[str, Any]:
        return self._spec("projected" if self.layer is None else "class_token")

    def model(self):
        """The ``CLIPModel`` (loaded once), float32, eval mode, on the device."""
        if self._model is None:
            self.config()
            self._model = self._move(self._load("weights", _transformers().CLIPModel))
        return self._model

    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = self._load("tokenizer", _transformers().AutoTokenizer)
        return self._tokenizer

    def _embed_images(self, images: list) -> np.ndarray:
        model = self.model()
        if self.layer is not None:
            return self._class_token(model.vision_model, images)
        with torch.inference_mode():
            return _pooled(model.get_image_features(pixel_values=self._pixels(images)))

    def _patches(self, images: list, class_token: bool) -> PatchRows:
        return self._patch_rows(self.model().vision_model, images, class_token)

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        model, tokenizer = self.model(), self.tokenizer()
        max_length = min(tokenizer.model_max_length, self.config().text_config.max_position_embeddings)
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            out = model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            )
            return _pooled(out)


class ViTEncoder(_HFEncoder):
    """``"vit:NAME_OR_PATH"``: images -> class token of hidden state ``layer`` (default -1),
    ``(n, hidden_size)``. Works for ViT, DINOv2 and other ``AutoModel`` vision transformers
    whose token 0 is a class token. The state is taken before the final layernorm."""

    kind = "vit"
    _example = "google/vit-base-patch16-224"
    modalities = ("image",)
    granularities = ("item", "patch")

    def __init__(self, model: str, *, layer: int | None = -1, **kwargs):
        super().__init__(model, layer=-1 if layer is None else layer, **kwargs)

    def _check_config(self, config) -> None:
        if hasattr(config, "vision_config"):
            raise ModelFormatError(
                f"{self.name} is a {config.model_type} model with a text tower; use clip:{self.model_name}"
            )
        if not hasattr(config, "hidden_size") or not hasattr(config, "num_hidden_layers"):
            raise ModelFormatError(f"{self.name} ({config.model_type}) is not a vision transformer")

    def dim(self, modality: str) -> int:
        self._require(modality)
        return int(self.config().hidden_size)

    def spec(self) -> dict[str, Any]:
        return self._spec("class_token")

    def model(self):
        """The ``AutoModel`` (loaded once), float32, eval mode, on the device."""
        if self._model is None:
            self.config()
            self._model = self._move(self._load("weights", _transformers().AutoModel))
        return self._model

    def _embed_images(self, images: list) -> np.ndarray:
        return self._class_token(self.model(), images)

    def _patches(self, images: list, class_token: bool) -> PatchRows:
        return self._patch_rows(self.model(), images, class_token)


class HFTextEncoder(_HFEncoder):
    """``"hf:NAME_OR_PATH"``: texts through any transformers text model (BERT-like encoders,
    GPT-2, Pythia, Gemma, ...), read at hidden state ``layer`` (default -1, the last block).

    ``encode_tokens`` gives one row per token (:class:`~dbksvd.encoders.activations.TokenRows`);
    ``encode_texts`` the mean of those rows per text (``(n, hidden_size)``). ``context``
    (default: the model's positions, at most ``default_context``) and ``stride`` (default half
    the context) cut long texts into windows (none is truncated); ``keep_bos`` also stores the
    BOS/CLS token of each text's first window. Causal LMs load with their LM head (for
    splicing); the tokenizer must be a fast one (it gives the character spans).
    """

    kind = "hf"
    _example = "gpt2"
    modalities = ("text",)
    granularities = ("item", "token")

    def __init__(
        self,
        model: str,
        *,
        layer: int | None = -1,
        context: int | None = None,
        stride: int | None = None,
        keep_bos: bool = False,
        name: str | None = None,
        default_context: int = 1024,
        **kwargs,
    ):
        super().__init__(model, layer=-1 if layer is None else layer, **kwargs)
        if name is not None:
            self.name = name
        self.context, self.stride, self.keep_bos = context, stride, bool(keep_bos)
        self.default_context = default_context
        self._tokenizer = None
        self._frame: tuple[list[int], list[int]] | None = None

    def _check_config(self, config) -> None:
        if hasattr(config, "vision_config") or not hasattr(config, "num_hidden_layers"):
            raise ModelFormatError(f"{self.name} ({getattr(config, 'model_type', '?')}) is not a text transformer")

    @property
    def is_causal(self) -> bool:
        """A causal LM (its LM head gives next-token predictions)."""
        config = self.config()
        arch = getattr(config, "architectures", None) or []
        return bool(getattr(config, "is_decoder", False)) or any(
            a.endswith(("ForCausalLM", "LMHeadModel")) for a in arch
        )

    def dim(self, modality: str) -> int:
        self._require(modality)
        return int(self.config().hidden_size)

    def tokenizer(self):
        """The fast tokenizer of the model (loaded once)."""
        if self._tokenizer is None:
            if os.path.isdir(self.source) and not any(
                os.path.exists(os.path.join(self.source, f)) for f in TOKENIZER_FILES
            ):  # transformers 5 would build an empty tokenizer and map every word to [UNK]
                raise ModelFormatError(
                    f"cannot load {self.name} (tokenizer): {self.source} has none of {', '.join(TOKENIZER_FILES)}"
                )
            tok = self._load("tokenizer", _transformers().AutoTokenizer)
            if not getattr(tok, "is_fast", False):
                raise ModelFormatError(f"{self.name}: the tokenizer is not a fast tokenizer (no character offsets)")
            self._tokenizer = tok
        return self._tokenizer

    def window(self) -> tuple[int, int]:
        """``(context, stride)`` in tokens, checked against the model."""
        config, tok = self.config(), self.tokenizer()
        limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
        limits.append(tok.model_max_length if tok.model_max_length < 10**6 else None)
        max_context = min([int(v) for v in limits if v] or [self.default_context])
        context = self.context if self.context is not None else min(max_context, self.default_context)
        return check_window(context, self.stride, self.frame(), max_context, self.name)

    def frame(self) -> tuple[list[int], list[int]]:
        """Special token ids before and after every window."""
        if self._frame is None:
            self._frame = special_frame(self.tokenizer())
        return self._frame

    def windows(self, text: str):
        """The :class:`~dbksvd.encoders.activations.TextWindow` list of one text."""
        context, stride = self.window()
        return text_windows(
            self.tokenizer(), text, context=context, stride=stride, keep_bos=self.keep_bos, frame=self.frame()
        )

    def model(self):
        """The model (loaded once): ``AutoModelForCausalLM`` for a causal LM, else ``AutoModel``."""
        if self._model is None:
            transformers = _transformers()
            loader = transformers.AutoModelForCausalLM if self.is_causal else transformers.AutoModel
            self._model = self._move(self._load("weights", loader))
        return self._model

    def spec(self) -> dict[str, Any]:
        context, stride = self.window()
        n_layers = self.config().num_hidden_layers
        return {
            "name": self.name,
            "model": self.source,
            "layer": check_layer(self.layer, n_layers, self.name),
            "n_layers": int(n_layers),
            "output": "mean_pooled",
            "image_size": None,
            "dims": {"text": self.dim("text")},
            "context": context,
            "stride": stride,
            "keep_bos": self.keep_bos,
            "causal": self.is_causal,
            "library_versions": versions("torch", "transformers", "tokenizers"),
        }

    def token_spec(self) -> dict[str, Any]:
        """The spec of the per-token rows (:meth:`spec` with ``output`` "residual_stream" and
        what was left out)."""
        return {**self.spec(), "output": "residual_stream", "excluded": self._excluded()}

    def _excluded(self) -> list[str]:
        prefix, suffix = self.frame()
        names = []
        if prefix and not self.keep_bos:
            names.append("bos")
        if suffix:
            names.append("eos/sep")
        return [*names, "padding"]

    def hidden_windows(self, windows: list, batch_size: int | None = None):
        """Yield ``(window index, (len, d) float32 array)`` of hidden state ``layer`` for each
        window, in batches of similar length (less padding)."""
        model, tok = self.model(), self.tokenizer()
        site = self.site(model)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        bs = batch_size or self.batch_size
        for s in range(0, len(order), bs):
            idx = order[s : s + bs]
            ids, mask = pad_windows([windows[i] for i in idx], pad)
            with torch.inference_mode(), site.capture() as seen:
                site.run(model, input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
            hidden = seen[0].float().cpu().numpy()
            for j, i in enumerate(idx):
                yield i, hidden[j, : len(windows[i].input_ids)]

    def encode_tokens(self, texts: list[str], *, batch_size: int | None = None) -> TokenRows:
        """The residual stream at every stored token of ``texts`` (texts in order, tokens in
        order). InputError for a text with no tokens (its index named)."""
        items = _check_texts(texts)
        windows, owner = [], []
        for t, text in enumerate(items):
            try:
                ws = self.windows(text)
            except InputError as exc:
                raise InputError(f"texts[{t}]: {exc}") from None
            windows.extend(ws)
            owner.extend([t] * len(ws))
        parts: list[np.ndarray | None] = [None] * len(windows)
        for i, hidden in self.hidden_windows(windows, batch_size):
            parts[i] = hidden[windows[i].rows]
        d = self.dim("text")
        return TokenRows(
            rows=np.concatenate(parts) if parts else np.zeros((0, d), np.float32),
            item=np.concatenate([np.full(len(w.rows), o, np.int64) for w, o in zip(windows, owner)] or [[]]).astype(
                np.int64
            ),
            position=np.array([p for w in windows for p in w.positions], np.int64),
            char_start=np.array([a for w in windows for a, _ in w.spans], np.int64),
            char_end=np.array([b for w in windows for _, b in w.spans], np.int64),
            token=[t for w in windows for t in w.tokens],
        )

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """Mean of the stored token rows of each text."""
        tokens = self.encode_tokens(texts)
        out = np.zeros((len(texts), self.dim("text")), np.float32)
        np.add.at(out, tokens.item, tokens.rows)
        return out / np.maximum(np.bincount(tokens.item, minlength=len(texts)), 1)[:, None]


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise InputError("texts must be a sequence of strings; got a single str")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InputError(f"texts[{i}] is a {type(t).__name__}; expected str")
    return items


def _pooled(out) -> np.ndarray:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose
    ``pooler_output`` holds the projection (transformers 5)."""
    tensor = out if isinstance(out, torch.Tensor) else out.pooler_output
    return tensor.float().cpu().numpy()


def _transformers():
    try:
        import transformers
    except ImportError:
        raise missing("transformers", "clip") from None
    return transformers
