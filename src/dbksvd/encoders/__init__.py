"""Embedding models that turn images and texts into the rows dictionaries are learned on.

``get_encoder(spec)`` builds one from a short spec string:

==================  ===============  =====================================================
spec                modalities       output
==================  ===============  =====================================================
effnet-lite0        image            1280-d pooled conv features (ImageNet head reachable)
minilm              text             384-d all-MiniLM-L6-v2 sentence embeddings
clip:NAME_OR_PATH   image, text      CLIP projected embeddings; ``layer`` -> class token
vit:NAME_OR_PATH    image            class token of hidden state ``layer`` (default -1)
==================  ===============  =====================================================

Encoders load their model on the first encode call; each needs an optional extra
(``pip install 'dbksvd[embed]'`` for effnet-lite0 and minilm, ``'dbksvd[clip]'`` for clip/vit).
"""

from __future__ import annotations

from typing import Any

from ..errors import ParameterError
from .base import ClassifierHead, Encoder

ENCODER_NAMES = ("effnet-lite0", "minilm", "clip:NAME_OR_PATH", "vit:NAME_OR_PATH")

__all__ = ["ClassifierHead", "Encoder", "get_encoder", "ENCODER_NAMES"]


def get_encoder(spec: str, *, device: Any = None, layer: int | None = None, batch_size: int | None = None) -> Encoder:
    """Build the encoder named by ``spec`` (one of ``ENCODER_NAMES``).

    ``device``: None/"auto" (CUDA when available), "cpu", "cuda", ...; ``layer`` selects a
    hidden state of clip/vit models (negative counts from the last) and is refused for the
    others; ``batch_size`` overrides the encoder's default items per forward pass.
    """
    choices = ", ".join(ENCODER_NAMES)
    if not isinstance(spec, str):
        raise ParameterError(f"encoder must be a string, one of {choices}; got {spec!r}")
    kind, colon, model = spec.strip().partition(":")
    if not colon and kind in ("effnet-lite0", "minilm"):
        if layer is not None:
            raise ParameterError(f"layer applies to clip: and vit: encoders only, not {kind}")
        if kind == "effnet-lite0":
            from .efficientnet import EffNetLite0Encoder

            return EffNetLite0Encoder(device=device, batch_size=batch_size)
        from .sentence import SentenceEncoder

        return SentenceEncoder(device=device, batch_size=batch_size)
    if colon and kind in ("clip", "vit") and model.strip():
        from .hf import CLIPEncoder, ViTEncoder

        cls = CLIPEncoder if kind == "clip" else ViTEncoder
        return cls(model.strip(), device=device, layer=layer, batch_size=batch_size)
    raise ParameterError(f"unknown encoder {spec!r}; choose one of {choices}")
