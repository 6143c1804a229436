import numpy as np
import pytest
import torch
from needs import FIXTURE_NEEDS

torch.set_num_threads(2)

#: Session fixtures that embed a dataset or load a real encoder: every test using one, directly
#: or through another fixture, is marked `slow`, so `pytest -m "not slow"` embeds no dataset.
SLOW_FIXTURES = frozenset({"effnet", "minilm", "fashion_store", "emoji_store", "emoji_run"})


def pytest_collection_modifyitems(config, items):
    """Mark `slow` the tests that use a SLOW_FIXTURES fixture, and skip (with the reason) those
    whose fixture embeds Debian data that is not installed."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        for name in sorted(used & FIXTURE_NEEDS.keys()):
            item.add_marker(FIXTURE_NEEDS[name])


def unit_rows(rng: np.random.Generator, K: int, d: int, dtype=np.float64) -> np.ndarray:
    D = rng.standard_normal((K, d))
    return (D / np.linalg.norm(D, axis=1, keepdims=True)).astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def interrupt_at(monkeypatch):
    """``interrupt_at(n)``: the n-th DB-KSVD iteration raises KeyboardInterrupt (a Ctrl-C)."""
    from dbksvd import ksvd

    def arm(n: int) -> None:
        real = ksvd.iterate
        calls = []

        def iterate(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(ksvd, "iterate", iterate)

    return arm


@pytest.fixture(scope="session")
def effnet():
    from dbksvd.encoders import get_encoder

    return get_encoder("effnet-lite0")


@pytest.fixture(scope="session")
def fashion_store(tmp_path_factory, effnet):
    """300 real Fashion-MNIST test images through effnet-lite0, in a store (3 shards)."""
    from dbksvd.data import FashionMNIST
    from dbksvd.embedding import embed_dataset

    path = tmp_path_factory.mktemp("fashion") / "store"
    return embed_dataset(
        FashionMNIST(split="test", limit=300), path, effnet, captions=False, shard_rows=128, show_progress=False
    )


@pytest.fixture(scope="session")
def minilm():
    from dbksvd.encoders import get_encoder

    return get_encoder("minilm")


@pytest.fixture(scope="session")
def emoji_store(tmp_path_factory, effnet, minilm):
    """Every emoji (about 1,360): images through effnet-lite0 (space ``image``, 1280-d) and
    their Unicode-name captions through minilm (space ``text``, 384-d)."""
    from dbksvd.data import EmojiDataset
    from dbksvd.embedding import embed_dataset

    path = tmp_path_factory.mktemp("emoji") / "store"
    return embed_dataset(EmojiDataset(), path, effnet, text_encoder=minilm, show_progress=False)


@pytest.fixture(scope="session")
def emoji_run(tmp_path_factory, emoji_store):
    """A run folder as `dbksvd demo` writes it, smaller: the real emoji store, a DB-KSVD image
    model (described), a TopK SAE image model (described), a DB-KSVD text model (not
    described) and metrics.json with held-out numbers (rows 0, 5, 10, ... held out)."""
    import json
    import shutil

    from dbksvd import DBKSVD
    from dbksvd.analysis.compare import model_metrics
    from dbksvd.analysis.explain import ExplainConfig, explain, write_explanation
    from dbksvd.models.sae import SAE

    run = tmp_path_factory.mktemp("run") / "emoji"
    shutil.copytree(emoji_store.path, run / "store")
    n = emoji_store.count
    test = np.arange(0, n, 5)
    train = np.setdiff1d(np.arange(n), test)
    heldout = {}
    for name, space, model in [
        ("model-image", "image", DBKSVD(64, 4, max_iter=8, random_state=0)),
        ("model-image-topk", "image", SAE("topk", 64, 4, max_epochs=10, random_state=0)),
        ("model-text", "text", DBKSVD(64, 4, max_iter=8, random_state=0)),
    ]:
        X = emoji_store.space(space).to_numpy()
        model.fit(X[train])
        model.data_info_ = {**emoji_store.space(space).describe(), "rows": len(train)}
        model.save(run / name)
        heldout[name] = model_metrics(model, X[test])
        if space == "image":
            expl = explain(
                model, emoji_store, "image", ExplainConfig(vocabularies=("captions", "imagenet")), show_progress=False
            )
            write_explanation(expl, run / name.replace("model-", "atoms-"))
    (run / "metrics.json").write_text(
        json.dumps({"split": "test (every 5th row)", "test_rows": test.tolist(), "models": heldout}, default=float)
    )
    return run
