"""Encoders on real data: rendered emoji for EfficientNet-Lite0, sentences for MiniLM, and
tiny randomly initialised CLIP / ViT / DINOv2 models saved to a folder for the transformers
encoders (the hub is not reachable from the tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from needs import FONT

from dbksvd.encoders import ENCODER_NAMES, Encoder, get_encoder
from dbksvd.errors import DataFileError, InputError, ModelFormatError, ParameterError

CATEGORIES = {
    "animal": "🐶🐱🐭🐰🦊🐻🐼🐨",
    "face": "😀😃😄😁😆😅😂🙂",
    "vehicle": "🚗🚕🚙🚌🚓🚑🚒🚜",
    "flag": "🏁🚩🎌🏳🏴",
    "food": "🍎🍊🍋🍌🍉🍇🍓🍒",
}
OBJECTS = "🎸⌚⏰"  # unambiguous ImageNet classes


def render(emoji: str):
    """One emoji as an RGBA image on a transparent background (the encoder composites on white)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), 109)  # the only size this bitmap font has
    image = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((0, 0), emoji, font=font, embedded_color=True)
    return image


def cosine(X: np.ndarray) -> np.ndarray:
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    return Xn @ Xn.T


# -- EfficientNet-Lite0 -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def emoji():
    """(labels, images): 37 categorised emoji followed by the 3 OBJECTS."""
    if not FONT.is_file():
        pytest.skip(f"no emoji font at {FONT}: apt-get install fonts-noto-color-emoji")
    labels = [cat for cat, chars in CATEGORIES.items() for _ in chars] + list(OBJECTS)
    chars = "".join(CATEGORIES.values()) + OBJECTS
    return labels, [render(c) for c in chars]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """A private DBKSVD_CACHE for the whole module (never the user's ~/.cache)."""
    path = tmp_path_factory.mktemp("dbksvd-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DBKSVD_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def effnet(onnx_cache, emoji):
    """(encoder, features of all emoji): the model loads and exports once."""
    pytest.importorskip("onnxruntime")
    enc = get_encoder("effnet-lite0", device="cpu")
    assert enc.backend == "onnx"
    return enc, enc.encode_images(emoji[1])


def test_effnet_features_shape_and_determinism(effnet, emoji):
    enc, X = effnet
    assert enc.modalities == ("image",) and enc.dim("image") == 1280
    assert X.shape == (len(emoji[1]), 1280) and X.dtype == np.float32
    assert np.isfinite(X).all() and (X != 0).any()
    np.testing.assert_array_equal(enc.encode_images(emoji[1], batch_size=16), X)  # other batches, same rows
    np.testing.assert_array_equal(enc.encode_images(emoji[1]), X)


def test_effnet_onnx_matches_torch_and_head_is_fc(effnet, emoji):
    from dbksvd.encoders.efficientnet import EffNetLite0Encoder, preprocess

    enc, X = effnet
    torch_enc = EffNetLite0Encoder(device="cpu", backend="torch")
    images = emoji[1][::7]
    Xt = torch_enc.encode_images(images)
    np.testing.assert_allclose(Xt, X[::7], atol=1e-4, rtol=0)
    # classify(features) equals the full network's logits: the features are what _fc consumes.
    from dbksvd.encoders.base import to_rgb

    pixels = torch.from_numpy(np.stack([preprocess(to_rgb(im)) for im in images]))
    with torch.inference_mode():
        logits = torch_enc._torch_net().net(pixels).numpy()
    np.testing.assert_allclose(enc.classify(Xt), logits, atol=1e-4, rtol=0)


def test_effnet_imagenet_head_top5(effnet):
    enc, X = effnet
    names = enc.class_names()
    assert len(names) == 1000 and names[402] == "acoustic guitar"
    top5 = [[names[j] for j in np.argsort(-row)[:5]] for row in enc.classify(X[-3:])]
    guitar, watch, alarm = top5
    assert any("guitar" in n for n in guitar), guitar
    assert any("clock" in n or "watch" in n for n in watch), watch
    assert any("clock" in n or "watch" in n for n in alarm), alarm
    with pytest.raises(InputError, match="1280"):
        enc.classify(np.zeros((2, 10)))


def test_effnet_same_category_closer(effnet, emoji):
    labels, _ = emoji
    n = sum(len(c) for c in CATEGORIES.values())
    lab, S = np.array(labels[:n]), cosine(effnet[1][:n])
    same, off = lab[:, None] == lab[None, :], ~np.eye(n, dtype=bool)
    assert S[same & off].mean() > S[~same].mean() + 0.1
    for cat in CATEGORIES:
        m = lab == cat
        within = S[np.ix_(m, m)][~np.eye(m.sum(), dtype=bool)].mean()
        assert within > S[np.ix_(m, ~m)].mean(), cat
    np.fill_diagonal(S, -2)
    assert (lab[S.argmax(axis=1)] == lab).mean() >= 0.8  # nearest neighbour has the same category


def test_effnet_onnx_cache_reused_and_rebuilt(effnet, emoji, onnx_cache):
    _, X = effnet
    files = sorted(onnx_cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".onnx"  # no temp file left behind
    mtime = files[0].stat().st_mtime_ns
    again = get_encoder("effnet-lite0", device="cpu")
    np.testing.assert_array_equal(again.encode_images(emoji[1][:4]), X[:4])
    assert files[0].stat().st_mtime_ns == mtime  # reused, not exported again
    # A corrupt cache file is exported again.
    files[0].write_bytes(b"not an onnx model")
    rebuilt = get_encoder("effnet-lite0", device="cpu")
    np.testing.assert_array_equal(rebuilt.encode_images(emoji[1][:4]), X[:4])
    assert sorted(onnx_cache.iterdir()) == files and files[0].stat().st_size > 1_000_000


def test_effnet_export_crash_leaves_no_cache(tmp_path, monkeypatch, effnet, emoji):
    monkeypatch.setenv("DBKSVD_CACHE", str(tmp_path))

    def crash(model, args, f, **kwargs):
        Path(f).write_bytes(b"half a model")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", crash)
    enc = get_encoder("effnet-lite0", device="cpu")
    enc._net = effnet[0]._net  # skip reloading the weights
    with pytest.raises(RuntimeError, match="exporter crashed"):
        enc.encode_images(emoji[1][:1])
    assert list(tmp_path.iterdir()) == []


def test_effnet_inputs(effnet, emoji, tmp_path, capsys):
    enc, X = effnet
    emoji[1][0].save(tmp_path / "dog.png")
    from_path = enc.encode_images([tmp_path / "dog.png", str(tmp_path / "dog.png")], progress=True)
    np.testing.assert_array_equal(from_path, X[[0, 0]])
    assert "img" in capsys.readouterr().err  # the progress bar counts images
    empty = enc.encode_images([])
    assert empty.shape == (0, 1280) and empty.dtype == np.float32
    with pytest.raises(InputError, match="no text tower.*minilm"):
        enc.encode_texts(["a dog"])
    with pytest.raises(DataFileError, match="not found"):
        enc.encode_images([tmp_path / "missing.png"])
    with pytest.raises(InputError, match=r"images\[1\]"):
        enc.encode_images([emoji[1][0], 3])
    with pytest.raises(InputError, match="sequence"):
        enc.encode_images(str(tmp_path / "dog.png"))
    with pytest.raises(ParameterError, match="batch_size"):
        enc.encode_images(emoji[1][:1], batch_size=0)


# -- MiniLM ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    return get_encoder("minilm", device="cpu")


def test_minilm_embeddings(minilm):
    texts = [
        "A dog is running across the park.",
        "A puppy runs through the park.",
        "The stock market fell sharply today.",
        "Shares dropped steeply on the exchange this afternoon.",
        "How do I bake sourdough bread?",
    ]
    X = minilm.encode_texts(texts, batch_size=2)
    assert X.shape == (5, 384) and X.dtype == np.float32 and minilm.dim("text") == 384
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(minilm.encode_texts(texts, batch_size=2), X)
    S = cosine(X)
    for a, b in [(0, 1), (2, 3)]:  # each paraphrase pair beats every unrelated pair
        assert S[a, b] > max(S[a, c] for c in range(5) if c not in (a, b)) + 0.2


def test_minilm_inputs(minilm):
    empty = minilm.encode_texts([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    with pytest.raises(InputError, match=r"texts\[1\]"):
        minilm.encode_texts(["fine", 42])
    with pytest.raises(InputError, match="sequence"):
        minilm.encode_texts("one string")
    with pytest.raises(InputError, match="no image tower"):
        minilm.encode_images([])
    with pytest.raises(ParameterError, match="7 hidden states"):
        get_encoder("minilm", layer=7)  # the residual stream has layers 0..6
    with pytest.raises(ParameterError, match="layer does not apply to effnet-lite0"):
        get_encoder("effnet-lite0", layer=1)
    spec = minilm.spec()
    assert spec["dims"] == {"text": 384} and spec["output"] == "mean_pooled"


# -- transformers: tiny CLIP / ViT / DINOv2 saved to folders -------------------------------------


TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def tiny_image_processor(kind: str):
    """The slow (PIL) image processor class for a tiny model; 32 x 32 pixels out."""
    import transformers

    pil = int(transformers.__version__.split(".")[0]) >= 5
    name = {"clip": "CLIPImageProcessor", "vit": "ViTImageProcessor", "dinov2": "BitImageProcessor"}[kind]
    cls = getattr(transformers, name + ("Pil" if pil else ""))
    if kind == "vit":
        return cls(size={"height": 32, "width": 32})
    return cls(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A folder holding a random 2-block CLIP (hidden 32, projection 16) with tokenizer and processor."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-clip")
    # A hub-style BPE tokenizer: vocab.json + merges.txt (letters and the word "cat").
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch], vocab[ch + "</w>"] = len(vocab), len(vocab) + 1
    vocab["ca"], vocab["cat</w>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer"}))
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), max_position_embeddings=16, bos_token_id=0, eos_token_id=1, **TINY),
        vision_config=dict(image_size=32, patch_size=8, **TINY),
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(folder)
    tiny_image_processor("clip").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["vit", "dinov2"])
def tiny_vit(request, tmp_path_factory):
    """(kind, folder) of a random 2-block ViT or DINOv2 (hidden 32) with its image processor."""
    transformers = pytest.importorskip("transformers")
    kind = request.param
    folder = tmp_path_factory.mktemp(f"tiny-{kind}")
    config_cls, model_cls = {
        "vit": (transformers.ViTConfig, transformers.ViTModel),
        "dinov2": (transformers.Dinov2Config, transformers.Dinov2Model),
    }[kind]
    config = config_cls(image_size=32, patch_size=8, **TINY)
    torch.manual_seed(0)
    model_cls(config).save_pretrained(folder)
    tiny_image_processor(kind).save_pretrained(folder)
    return kind, folder


def direct_vision(folder, model_cls: str, images, layer=None):
    """Reference values computed with transformers directly (no dbksvd code)."""
    import transformers
    from PIL import Image

    model = getattr(transformers, model_cls).from_pretrained(folder).eval()
    pil = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}
    processor = transformers.AutoImageProcessor.from_pretrained(folder, **pil)
    rgb = [Image.alpha_composite(Image.new("RGBA", im.size, "white"), im).convert("RGB") for im in images]
    pixels = processor(images=rgb, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        if layer is None:
            out = model.get_image_features(pixel_values=pixels)
            return (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
        vision = model.vision_model if hasattr(model, "vision_model") else model
        return vision(pixel_values=pixels, output_hidden_states=True).hidden_states[layer][:, 0].numpy()


def test_clip_projected(tiny_clip, emoji):
    images = emoji[1][:5]
    enc = get_encoder(f"clip:{tiny_clip}", device="cpu")
    assert isinstance(enc, Encoder) and enc.modalities == ("image", "text")
    assert enc.dim("image") == enc.dim("text") == 16
    X = enc.encode_images(images, batch_size=2)
    assert X.shape == (5, 16) and X.dtype == np.float32
    np.testing.assert_allclose(X, direct_vision(tiny_clip, "CLIPModel", images), atol=1e-5)
    np.testing.assert_array_equal(enc.encode_images(images, batch_size=2), X)
    texts = ["a cat", "the dog", "a cat " * 40]  # the last one is longer than the 16-token context
    T = enc.encode_texts(texts)
    assert T.shape == (3, 16) and T.dtype == np.float32 and np.isfinite(T).all()
    np.testing.assert_array_equal(enc.encode_texts(texts), T)
    assert enc.encode_texts([]).shape == (0, 16)
    spec = enc.spec()
    assert spec == json.loads(json.dumps(spec))
    assert spec["model"] == str(tiny_clip) and spec["output"] == "projected" and spec["layer"] is None
    assert spec["dims"] == {"image": 16, "text": 16} and spec["image_size"] == 32


def test_clip_layer_class_token(tiny_clip, emoji):
    images = emoji[1][10:13]
    enc = get_encoder(f"clip:{tiny_clip}", device="cpu", layer=-1)
    assert enc.dim("image") == 32 and enc.dim("text") == 16
    X = enc.encode_images(images)
    np.testing.assert_allclose(X, direct_vision(tiny_clip, "CLIPModel", images, layer=-1), atol=1e-5)
    X1 = get_encoder(f"clip:{tiny_clip}", device="cpu", layer=1).encode_images(images)
    np.testing.assert_allclose(X1, direct_vision(tiny_clip, "CLIPModel", images, layer=1), atol=1e-5)
    assert enc.encode_texts(["a cat"]).shape == (1, 16)
    assert enc.spec()["output"] == "class_token" and enc.spec()["layer"] == -1
    for bad in (3, -4):  # 3 hidden states: embeddings + 2 blocks
        with pytest.raises(ParameterError, match="out of range"):
            get_encoder(f"clip:{tiny_clip}", layer=bad).encode_images(images)


def test_vit_class_token(tiny_vit, emoji, capsys):
    kind, folder = tiny_vit
    images = emoji[1][20:24]
    enc = get_encoder(f"vit:{folder}", device="cpu")
    assert enc.modalities == ("image",) and enc.dim("image") == 32
    X = enc.encode_images(images, progress=True)
    assert f"vit:{folder}" in capsys.readouterr().err
    assert X.shape == (4, 32) and X.dtype == np.float32
    np.testing.assert_allclose(X, direct_vision(folder, "AutoModel", images, layer=-1), atol=1e-5)
    X0 = get_encoder(f"vit:{folder}", layer=0, device="cpu").encode_images(images)
    np.testing.assert_allclose(X0, direct_vision(folder, "AutoModel", images, layer=0), atol=1e-5)
    assert enc.spec()["layer"] == -1 and enc.spec()["output"] == "class_token"
    with pytest.raises(InputError, match="no text tower"):
        enc.encode_texts(["a cat"])
    with pytest.raises(ParameterError, match="out of range"):
        get_encoder(f"vit:{folder}", layer=5).dim("image")


def test_hf_load_errors(tmp_path, tiny_clip):
    pytest.importorskip("transformers")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFormatError, match="empty") as info:
        get_encoder(f"clip:{tmp_path / 'empty'}").encode_images([])
    assert "\n" not in str(info.value)
    with pytest.raises(ModelFormatError, match="not a folder"):
        get_encoder(f"vit:{tmp_path / 'nowhere'}")
    with pytest.raises(ModelFormatError, match="use clip:"):
        get_encoder(f"vit:{tiny_clip}").dim("image")
    with pytest.raises(ParameterError, match="layer must be an integer"):
        get_encoder(f"clip:{tiny_clip}", layer=1.5)


@pytest.mark.parametrize("spec", ["effnet", "clip:", "vit: ", "minilm:x", "resnet50", "", None])
def test_unknown_spec(spec):
    with pytest.raises(ParameterError, match="effnet-lite0") as info:
        get_encoder(spec)
    assert all(name in str(info.value) for name in ENCODER_NAMES)


def test_layer_refused_for_fixed_encoders():
    with pytest.raises(ParameterError, match="layer"):
        get_encoder("effnet-lite0", layer=-1)
    with pytest.raises(ParameterError, match="backend"):
        from dbksvd.encoders.efficientnet import EffNetLite0Encoder

        EffNetLite0Encoder(backend="tensorrt")


def test_missing_packages_name_the_extra(monkeypatch, emoji):
    from dbksvd.encoders.efficientnet import EffNetLite0Encoder
    from dbksvd.errors import MissingDependencyError

    for module in ("efficientnet_lite_pytorch", "sentence_transformers", "transformers"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    with pytest.raises(MissingDependencyError, match=r"dbksvd\[embed\]"):
        EffNetLite0Encoder(device="cpu", backend="torch").encode_images(emoji[1][:1])
    with pytest.raises(MissingDependencyError, match=r"dbksvd\[embed\]"):
        get_encoder("minilm", device="cpu").encode_texts(["a dog"])
    with pytest.raises(MissingDependencyError, match=r"dbksvd\[clip\]"):
        get_encoder("clip:openai/clip-vit-base-patch32").dim("text")


def direct_hidden(folder, model_cls: str, images, layer: int):
    """Hidden state ``layer`` of the vision transformer at every token, by transformers directly."""
    import transformers
    from PIL import Image

    model = getattr(transformers, model_cls).from_pretrained(folder).eval()
    pil = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}
    processor = transformers.AutoImageProcessor.from_pretrained(folder, **pil)
    rgb = [Image.alpha_composite(Image.new("RGBA", im.size, "white"), im).convert("RGB") for im in images]
    pixels = processor(images=rgb, return_tensors="pt")["pixel_values"]
    vision = model.vision_model if hasattr(model, "vision_model") else model
    with torch.inference_mode():
        return vision(pixel_values=pixels, output_hidden_states=True).hidden_states[layer].numpy()


def test_vit_and_clip_patches(tiny_vit, tiny_clip, emoji):
    """Every patch token of hidden state L (after the class and register tokens), row-major;
    the class token first with class_token=True."""
    kind, folder = tiny_vit
    images = emoji[1][30:33]
    for spec, cls, layer in [(f"vit:{folder}", "AutoModel", 1), (f"clip:{tiny_clip}", "CLIPModel", -1)]:
        enc = get_encoder(spec, layer=layer, device="cpu")
        ref = direct_hidden(spec.split(":", 1)[1], cls, images, layer)
        patches = enc.encode_patches(images, batch_size=2)
        grid = 4  # 32 / 8
        assert patches.rows.shape == (3 * grid * grid, 32)
        first = ref.shape[1] - grid * grid
        np.testing.assert_allclose(patches.rows, ref[:, first:].reshape(-1, 32), atol=1e-5)
        assert list(patches.patch_row[:5]) == [0, 0, 0, 0, 1] and list(patches.patch_col[:5]) == [0, 1, 2, 3, 0]
        with_cls = enc.encode_patches(images, class_token=True)
        assert with_cls.position[0] == -1 and len(with_cls) == 3 * (grid * grid + 1)
        np.testing.assert_allclose(with_cls.rows[0], ref[0, 0], atol=1e-5)
        spec_ = enc.patch_spec(class_token=True)
        assert spec_["output"] == "patch_tokens" and spec_["grid"] == [grid, grid] and spec_["class_token"]
    with pytest.raises(InputError, match="--tokens applies to text transformers"):
        get_encoder(f"vit:{folder}").encode_tokens(["a cat"])
