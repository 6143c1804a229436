"""Hugging Face transformers encoders: CLIP (images and texts) and ViT / DINOv2 (images).

``NAME_OR_PATH`` is a hub name (``openai/clip-vit-base-patch32``) or a local folder written
by ``save_pretrained``; both go through the same ``from_pretrained`` calls. Models run in
float32, eval mode, under ``torch.inference_mode``.

Image preprocessing always uses the PIL ("slow") image processor, so the pixels, and hence
the embeddings, do not depend on whether torchvision happens to be installed.

``layer`` indexes ``hidden_states`` of the vision transformer: index 0 is the patch
embedding output, index i the output of block i, -1 the last block. These are the raw
residual-stream states: no final layernorm (for ViT ``hidden_states[-1]`` differs from
``last_hidden_state``, which is layer-normed) and no projection.
"""

from __future__ import annotations

import abc
import os
from typing import Any

import numpy as np
import torch

from ..errors import ModelFormatError, ParameterError
from ..validation import resolve_device
from .base import Encoder, missing, quiet_transformers, versions


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
            n = self._vision_config(config).num_hidden_layers + 1
            if self.layer is not None and not -n <= self.layer < n:
                raise ParameterError(
                    f"layer {self.layer} is out of range for {self.name}: it has {n} hidden states "
                    f"(embeddings + {n - 1} blocks), so layer must be in {-n}..{n - 1}"
                )
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

    def _class_token(self, vision_model: torch.nn.Module, images: list) -> np.ndarray:
        """``hidden_states[layer][:, 0]`` of a vision transformer: ``(n, hidden_size)``."""
        self.config()  # checks the layer
        with torch.inference_mode():
            out = vision_model(pixel_values=self._pixels(images), output_hidden_states=True)
            return out.hidden_states[self.layer][:, 0].float().cpu().numpy()

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
