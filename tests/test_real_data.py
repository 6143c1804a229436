"""The whole path on real offline data: datasets -> real encoders -> store -> DB-KSVD."""

import numpy as np
from needs import needs_font

from dbksvd import DBKSVD, metrics
from dbksvd.data import EmbeddingStore, EmojiDataset, FashionMNIST
from dbksvd.embedding import embed_dataset


def mean_cosines(X, labels):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = U @ U.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    return S[same & off].mean(), S[~same].mean()


def test_fashion_mnist_store_is_labelled_and_class_structured(fashion_store):
    store = fashion_store
    assert store.count == 300 and store.spaces == ["image"]
    assert store.label_names[0] == "T-shirt/top" and len(store.label_names) == 10
    meta = store.metadata()
    labels = np.array([r["label"] for r in meta])
    assert meta[0]["id"] == "test-00000" and meta[0]["caption"] == store.label_names[labels[0]]
    assert len(set(labels)) == 10
    X = store.space().to_numpy().astype(np.float64)
    assert X.shape == (300, 1280) and np.isfinite(X).all()
    same, other = mean_cosines(X, labels)
    assert same > other + 0.05, (same, other)


def test_fashion_mnist_embedding_is_deterministic(fashion_store, effnet, tmp_path):
    again = embed_dataset(
        FashionMNIST(split="test", limit=300),
        tmp_path / "s",
        effnet,
        captions=False,
        shard_rows=128,
        show_progress=False,
    )
    np.testing.assert_array_equal(again.space().to_numpy(), fashion_store.space().to_numpy())


def test_dictionary_on_real_embeddings_beats_random_directions(fashion_store):
    X = fashion_store.space().to_numpy().astype(np.float32)
    train, test = X[:240], X[240:]
    model = DBKSVD(64, 8, max_iter=15, random_state=0, device="cpu").fit(fashion_store.space().take(np.arange(240)))
    learned = model.score(test)
    rand = DBKSVD(64, 8, max_iter=1, random_state=0, device="cpu").fit(train)
    rng = np.random.default_rng(0)
    R = rng.standard_normal(rand.components_.shape).astype(np.float32)
    rand.components_ = R / np.linalg.norm(R, axis=1, keepdims=True)
    assert learned > rand.score(test) + 0.05
    codes = model.transform(test)
    assert metrics.l0(codes) <= 8


@needs_font
def test_emoji_store_image_and_caption_spaces(tmp_path, effnet):
    data = EmojiDataset(codepoints=["🐶", "🐱", "🐭", "🐰", "🦊", "🐻", "🚗", "🚕", "🚙", "🚌", "🚓", "🚑"])
    store = embed_dataset(data, tmp_path / "s", effnet, show_progress=False)
    assert store.spaces == ["image", "text"]
    assert store.manifest["spaces"]["text"]["encoder"]["name"] == "minilm"
    assert store.metadata()[0] == {"id": "U+1F436", "caption": "dog face", "label": None, "source": "U+1F436"}
    labels = np.array([0] * 6 + [1] * 6)  # animals, vehicles
    for space in ("image", "text"):
        same, other = mean_cosines(store.space(space).to_numpy().astype(np.float64), labels)
        assert same > other, (space, same, other)
    assert EmbeddingStore(tmp_path / "s").count == 12
