import json

import numpy as np
import pytest
from needs import needs_font

from dbksvd import DBKSVD, DataFileError, InputError, ParameterError
from dbksvd.data.datasets import EmojiDataset, TextsDataset
from dbksvd.data.store import EmbeddingStore, StoreWriter, is_store, open_rows
from dbksvd.embedding import embed_dataset
from dbksvd.encoders import get_encoder


def write_store(path, n=350, shard_rows=100, d=(6, 4), dtype="float32", complete=True):
    """A store whose image rows hold their own row index in column 0 (exact in float32)."""
    rng = np.random.default_rng(0)
    w = StoreWriter(
        path,
        dataset={"name": "toy"},
        dtype=dtype,
        shard_rows=shard_rows,
        spaces={
            "image": {"encoder": {"name": "enc-a"}, "dim": d[0]},
            "text": {"encoder": {"name": "enc-b"}, "dim": d[1]},
        },
    )
    full = {"image": rng.standard_normal((n, d[0])), "text": rng.standard_normal((n, d[1]))}
    full["image"][:, 0] = np.arange(n)
    meta = [{"id": f"item-{i}", "caption": f"caption {i} ✓", "label": i % 3, "source": f"s:{i}"} for i in range(n)]
    for s in range(0, n, shard_rows):
        w.add_shard(
            {k: v[s : s + shard_rows] for k, v in full.items()},
            meta[s : s + shard_rows],
            next_item=min(n, s + shard_rows),
        )
    if complete:
        w.finish()
    return full, meta


def test_round_trip_and_row_access(tmp_path):
    full, meta = write_store(tmp_path / "s")
    store = EmbeddingStore(tmp_path / "s")
    assert store.count == 350 and store.spaces == ["image", "text"] and store.default_space() == "image"
    m = store.manifest
    assert (
        m["format_version"] == 2
        and m["granularity"] == "item"
        and m["preprocessing"] == {"kind": "none"}
        and m["complete"]
    )
    assert m["spaces"]["image"] == {"encoder": {"name": "enc-a"}, "dim": 6, "dtype": "float32"}
    assert sorted(p.name for p in (tmp_path / "s" / "image").iterdir()) == [f"shard-0000{i}.npy" for i in range(4)]
    img = store.space("image")
    assert img.shape == (350, 6) and img.dtype == np.float32
    np.testing.assert_array_equal(img.to_numpy(), full["image"].astype(np.float32))
    np.testing.assert_array_equal(store.space("text").to_numpy(), full["text"].astype(np.float32))
    assert store.metadata() == meta
    chunks = list(img.iter_chunks(120))
    assert [c.shape[0] for c in chunks] == [120, 120, 110]
    rows = np.array([0, 5, 99, 100, 101, 349])
    np.testing.assert_array_equal(img.take(rows)[:, 0], rows)
    # one shuffled pass visits every row exactly once, in batches of the asked size
    seen = np.concatenate([b[:, 0] for b in img.iter_batches(64, np.random.default_rng(1))]).astype(int)
    assert sorted(seen) == list(range(350)) and not np.array_equal(seen, np.arange(350))
    assert [len(b) for b in img.iter_batches(64, np.random.default_rng(1))][:5] == [64] * 5
    assert open_rows(tmp_path / "s", space="text").shape == (350, 4)


def test_float16_store(tmp_path):
    full, _ = write_store(tmp_path / "s", dtype="float16")
    X = EmbeddingStore(tmp_path / "s").space("text").to_numpy()
    assert X.dtype == np.float16
    np.testing.assert_allclose(X, full["text"], atol=2e-3)


@pytest.mark.parametrize(
    "damage, words",
    [
        ("truncate", "truncated"),
        ("short", "mismatched shard size"),
        ("delete", "missing shard"),
        ("version", "newer dbksvd"),
        ("incomplete", "incomplete"),
        ("manifest", "corrupt JSON"),
    ],
)
def test_damaged_stores_are_refused(tmp_path, damage, words):
    write_store(tmp_path / "s", complete=damage != "incomplete")
    shard = tmp_path / "s" / "image" / "shard-00001.npy"
    manifest = tmp_path / "s" / "manifest.json"
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-50])
    elif damage == "short":
        np.save(shard, np.zeros((99, 6), dtype=np.float32))
    elif damage == "delete":
        shard.unlink()
    elif damage == "version":
        m = json.loads(manifest.read_text())
        m["format_version"] = 99
        manifest.write_text(json.dumps(m))
    elif damage == "manifest":
        manifest.write_text("{not json")
    with pytest.raises(DataFileError, match=words):
        EmbeddingStore(tmp_path / "s")


def test_writer_refuses_other_settings_and_foreign_folders(tmp_path):
    write_store(tmp_path / "s", complete=False)
    with pytest.raises(ParameterError, match="different spaces"):
        StoreWriter(
            tmp_path / "s",
            dataset={"name": "toy"},
            shard_rows=100,
            spaces={"image": {"encoder": {"name": "other"}, "dim": 6}},
        )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataFileError, match="not an embedding store"):
        StoreWriter(tmp_path / "busy", dataset={}, spaces={"x": {"encoder": {}, "dim": 2}})
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def minilm():
    return get_encoder("minilm")


@needs_font
def test_embedding_resumes_after_an_interruption_without_loss_or_duplicates(tmp_path, monkeypatch, effnet, minilm):
    data = EmojiDataset(limit=130)
    ref = embed_dataset(
        data, tmp_path / "ref", effnet, text_encoder=minilm, shard_rows=50, batch_size=16, show_progress=False
    )
    assert ref.count == 130 and ref.spaces == ["image", "text"]
    assert [s["rows"] for s in ref.manifest["shards"]] == [50, 50, 30]

    real_load, calls = EmojiDataset.load, []

    def flaky(self, item):
        calls.append(item.id)
        if len(calls) == 117:  # Ctrl-C in the middle of the third shard
            raise KeyboardInterrupt
        return real_load(self, item)

    monkeypatch.setattr(EmojiDataset, "load", flaky)
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(
            data, tmp_path / "s", effnet, text_encoder=minilm, shard_rows=50, batch_size=16, show_progress=False
        )
    with pytest.raises(DataFileError, match="incomplete"):
        EmbeddingStore(tmp_path / "s")
    monkeypatch.setattr(EmojiDataset, "load", real_load)
    again = embed_dataset(
        data, tmp_path / "s", effnet, text_encoder=minilm, shard_rows=50, batch_size=16, show_progress=False
    )
    assert again.metadata() == ref.metadata()
    for space in ("image", "text"):
        np.testing.assert_array_equal(again.space(space).to_numpy(), ref.space(space).to_numpy())
    # a third run finds the store complete and reuses it as is
    mtime = (tmp_path / "s" / "manifest.json").stat().st_mtime_ns
    embed_dataset(data, tmp_path / "s", effnet, text_encoder=minilm, shard_rows=50, show_progress=False)
    assert (tmp_path / "s" / "manifest.json").stat().st_mtime_ns == mtime


def test_bad_items_are_skipped_and_counted(tmp_path, minilm):
    texts = tmp_path / "t.txt"
    texts.write_bytes(b"a red apple\n\xff\xfe broken\na green pear\n\nthe night sky\n")
    store = embed_dataset(TextsDataset(texts), tmp_path / "s", minilm, shard_rows=2, show_progress=False)
    assert store.count == 3 and store.spaces == ["text"]
    assert [r["caption"] for r in store.metadata()] == ["a red apple", "a green pear", "the night sky"]
    assert sum(store.manifest["skipped"].values()) == 1
    X = store.space("text").to_numpy().astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=2e-3)  # MiniLM is L2-normalised


def test_wrong_encoder_for_the_modality_leaves_nothing(tmp_path, effnet):
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n")
    with pytest.raises(ParameterError, match="cannot embed texts"):
        embed_dataset(TextsDataset(texts), tmp_path / "s", effnet, show_progress=False)
    assert not (tmp_path / "s").exists()


def test_streaming_fit_reads_every_row_once_per_pass(tmp_path):
    write_store(tmp_path / "s", n=1000, shard_rows=128, d=(16, 4))
    space = EmbeddingStore(tmp_path / "s").space("image")
    model = DBKSVD(20, 3, max_iter=3, batch_size=300, random_state=0, device="cpu").fit(space)
    per_pass = {}
    for h in model.history_:
        per_pass[h["pass"]] = per_pass.get(h["pass"], 0) + h["rows"]
    assert per_pass == {0: 1000, 1: 1000, 2: 1000}
    assert model.data_info_["kind"] == "store" and model.data_info_["encoder"] == "enc-a"
    again = DBKSVD(20, 3, max_iter=3, batch_size=300, random_state=0, device="cpu").fit(space)
    np.testing.assert_array_equal(model.components_, again.components_)
    codes = model.transform(space, batch_size=333)
    assert len(codes) == 1000
    with pytest.raises(InputError, match=r"text space\) has 4 features but the model was fitted with 16"):
        model.transform(EmbeddingStore(tmp_path / "s").space("text"))


def test_is_store(tmp_path):
    assert not is_store(tmp_path)
    write_store(tmp_path / "s")
    assert is_store(tmp_path / "s")
