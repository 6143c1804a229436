"""The ``Encoder`` interface shared by every embedding model, and its input handling.

An encoder turns images and/or texts into rows of a float32 matrix::

    enc = get_encoder("effnet-lite0")
    X = enc.encode_images(["a.png", "b.jpg"])      # (2, 1280) float32
    enc.encode_texts(["a cat"])                      # InputError: no text tower

Subclasses implement ``dim``, ``spec`` and ``_embed_images`` / ``_embed_texts`` (one batch,
already validated and loaded); this base class checks the inputs, opens image files, splits
the work into batches and drives the progress bar.
"""

from __future__ import annotations

import abc
import contextlib
import importlib.metadata
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import progress as _progress_bar
from ..errors import InputError, MissingDependencyError, ParameterError

MODALITIES = ("image", "text")


@dataclass(frozen=True)
class ClassifierHead:
    """A linear classifier on an encoder's image features: ``logits = features @ weight.T + bias``.

    ``weight`` (C, d) float32, ``bias`` (C,) float32, ``class_names`` C names in output order.
    """

    weight: np.ndarray
    bias: np.ndarray
    class_names: list[str]


def cache_dir() -> Path:
    """Where derived files (ONNX exports, vocabulary embeddings) are cached:
    ``$DBKSVD_CACHE``, or ``~/.cache/dbksvd``."""
    return Path(os.environ.get("DBKSVD_CACHE") or Path.home() / ".cache" / "dbksvd")


class Encoder(abc.ABC):
    """An embedding model for images and/or texts.

    Attributes
    ----------
    name : str
        The spec string that built it, e.g. ``"effnet-lite0"`` or ``"clip:openai/clip-vit-base-patch32"``.
    modalities : tuple of str
        ``("image",)``, ``("text",)`` or ``("image", "text")``.
    batch_size : int
        Items per forward pass when a call does not say otherwise.

    Constructing an encoder is cheap; the model loads on the first encode call and stays
    cached on the instance. Outputs are deterministic: the same input gives bit-identical
    rows within a process (models run in eval mode, without dropout).
    """

    name: str
    modalities: tuple[str, ...]
    #: What one output row can be: ``item`` (one per image or text), ``token`` (one per token,
    #: :meth:`encode_tokens`), ``patch`` (one per patch or feature-map position, :meth:`encode_patches`).
    granularities: tuple[str, ...] = ("item",)
    default_batch_size: int = 32

    def __init__(self, *, batch_size: int | None = None):
        self.batch_size = check_batch_size(batch_size, self.default_batch_size)

    # -- what subclasses provide -------------------------------------------------------

    @abc.abstractmethod
    def dim(self, modality: str) -> int:
        """Output dimension for ``"image"`` or ``"text"``; InputError for a modality it lacks."""

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON-able, deterministic description for embedding-store manifests.

        Keys: ``name``, ``model`` (path or hub name), ``layer`` (int or None), ``output``
        (``"pooled"``, ``"projected"``, ``"class_token"`` or ``"mean_pooled"``), ``image_size``
        (int or None), ``dims`` (``{"image": d, ...}``) and ``library_versions``.
        """

    def head(self) -> ClassifierHead | None:
        """The model's own classifier on its image features, when it has one (else None)."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A concrete encoder must embed every modality it lists (checked at class creation)."""
        super().__init_subclass__(**kwargs)
        for modality in getattr(cls, "modalities", ()):
            name = f"_embed_{modality}s"
            if getattr(cls, name) is getattr(Encoder, name):
                raise TypeError(f"{cls.__name__} lists {modality!r} in modalities but does not define {name}")

    def _embed_images(self, images: list) -> np.ndarray:
        """One batch of RGB ``PIL.Image`` -> ``(len(images), dim("image"))`` float32.
        (Reached only for an encoder without an image tower, where it refuses.)"""
        raise self._no_tower("image")

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """One batch of strings -> ``(len(texts), dim("text"))`` float32.
        (Reached only for an encoder without a text tower, where it refuses.)"""
        raise self._no_tower("text")

    # -- the public calls --------------------------------------------------------------

    def encode_images(self, images: Sequence, *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Embed images: a sequence of ``PIL.Image`` or file paths (``str`` / ``Path``).

        Files are decoded one batch at a time (upright: their EXIF orientation applied); every
        image becomes RGB, with transparent pixels composited on white (see :func:`to_rgb`). Returns ``(n, dim("image"))`` float32, and a
        ``(0, dim("image"))`` array for an empty sequence.
        """
        items = self._image_list(images)

        def embed(batch: list) -> np.ndarray:  # files are opened one batch at a time
            return self._embed_images([to_rgb(x) for x in batch])

        return self._run(items, "image", batch_size, progress, embed)

    def encode_texts(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Embed strings. Returns ``(n, dim("text"))`` float32, ``(0, dim("text"))`` when empty."""
        self._require("text")
        items = _as_list(texts, "texts")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise InputError(f"texts[{i}] is a {type(item).__name__}; expected str")
        return self._run(items, "text", batch_size, progress, self._embed_texts)

    def encode_tokens(self, texts: Sequence[str], *, batch_size: int | None = None):
        """The activations at every token of ``texts`` (:class:`~dbksvd.encoders.activations.TokenRows`);
        text transformers only (``minilm --layer L``, ``hf:``)."""
        raise self._no_granularity("token")

    def encode_patches(self, images: Sequence, *, class_token: bool = False, batch_size: int | None = None):
        """The activations at every patch of ``images`` (:class:`~dbksvd.encoders.activations.PatchRows`):
        patch tokens of a vision transformer (``clip:``/``vit:``, ``class_token`` first when
        asked) or the positions of a CNN's last feature map (``effnet-lite0``)."""
        if "patch" not in self.granularities:
            raise self._no_granularity("patch")
        from .activations import PatchRows

        items = self._image_list(images)
        bs = check_batch_size(batch_size, self.batch_size)
        parts = []
        for start in range(0, len(items), bs):
            part = self._patches([to_rgb(x) for x in items[start : start + bs]], class_token)
            part.item += start
            parts.append(part)
        if not parts:
            raise InputError("images is empty")
        return PatchRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in PatchRows.__dataclass_fields__))

    def _patches(self, images: list, class_token: bool):
        """One batch of RGB images -> PatchRows (encoders with ``patch`` in granularities)."""
        raise self._no_granularity("patch")

    def _no_granularity(self, granularity: str) -> InputError:
        if granularity == "token":
            return InputError(
                f"{self.name} does not give token activations; --tokens applies to text transformers "
                "(minilm --layer L, hf:NAME_OR_PATH)"
            )
        return InputError(
            f"{self.name} does not give patch activations; --patches applies to image encoders "
            "(effnet-lite0, clip:NAME, vit:NAME)"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- helpers -----------------------------------------------------------------------

    def _image_list(self, images: Sequence) -> list:
        self._require("image")
        items = _as_list(images, "images")
        for i, item in enumerate(items):
            if not isinstance(item, (str, os.PathLike)) and not _is_pil_image(item):
                raise InputError(f"images[{i}] is a {type(item).__name__}; expected a PIL.Image or a file path")
        return items

    def _require(self, modality: str) -> None:
        if modality not in self.modalities:
            raise self._no_tower(modality)

    def _no_tower(self, modality: str) -> InputError:
        if modality == "text":
            return InputError(
                f"{self.name} has no text tower; captions are embedded with a text encoder such as minilm"
            )
        return InputError(
            f"{self.name} has no image tower; images are embedded with an image encoder such as effnet-lite0"
        )

    def _run(self, items: list, modality: str, batch_size: int | None, progress: bool, embed) -> np.ndarray:
        d = self.dim(modality)
        if not items:
            return np.zeros((0, d), dtype=np.float32)
        bs = check_batch_size(batch_size, self.batch_size)
        out = np.empty((len(items), d), dtype=np.float32)
        unit = "img" if modality == "image" else "text"
        bar = _progress_bar(len(items), f"{self.name} {modality}s", enabled=progress, unit=unit)
        try:
            for start in range(0, len(items), bs):
                batch = items[start : start + bs]
                out[start : start + len(batch)] = embed(batch)
                bar.update(len(batch))
        finally:
            bar.close()
        return out


# -- shared utilities ----------------------------------------------------------------------


def check_batch_size(batch_size: Any, default: int) -> int:
    """``None`` -> ``default``; otherwise a positive int, or ParameterError."""
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive integer; got {batch_size!r}")
    return int(batch_size)


def to_rgb(image):
    """A ``PIL.Image`` or an image file path -> an RGB ``PIL.Image``.

    A file is decoded by :func:`dbksvd.data.images.decode_image` (EXIF orientation applied,
    Pillow's pixel bound; DataFileError when missing, ImageError when unreadable); an image is
    taken as given and converted by :func:`dbksvd.data.images.to_rgb` (alpha composited on
    white)."""
    from ..data.images import decode_image
    from ..data.images import to_rgb as convert

    return convert(image) if _is_pil_image(image) else decode_image(image)


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of the named distributions (None for those not installed)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def missing(package: str, extra: str) -> MissingDependencyError:
    """The error for an optional package that is not installed."""
    return MissingDependencyError(f"the {package} package is not installed; pip install 'dbksvd[{extra}]'")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' info logs and 'Loading weights' bars while a model loads."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _is_pil_image(x: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(x, Image.Image)


def _as_list(items: Any, what: str) -> list:
    if isinstance(items, (str, bytes, os.PathLike)) or _is_pil_image(items):
        raise InputError(f"{what} must be a sequence (a list of {what}); got a single {type(items).__name__}")
    try:
        return list(items)
    except TypeError:
        raise InputError(f"{what} must be a sequence; got {type(items).__name__}") from None
