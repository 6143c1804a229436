"""Descriptions of token and patch atoms: the row sample (whole items, contexts, words), top
rows one per text or image with their coloured contexts and heatmaps, and the scores on real
MiniLM tokens over WordNet glosses and real EfficientNet patches of emoji."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from needs import needs_font, needs_wordnet
from tiny_models import tiny_bert

from dbksvd import DBKSVD, InputError
from dbksvd.analysis.explain import ExplainConfig, explain, write_explanation
from dbksvd.analysis.explain.samples import sample_rows
from dbksvd.cli import main
from dbksvd.data.datasets import EmojiDataset, TextsDataset
from dbksvd.embedding import embed_dataset
from dbksvd.encoders import get_encoder

TEXTS = [
    "a red apple on the table",
    "the night sky, full of stars",
    "a small dog chasing a ball across the wet grass in the park",
    "tea",
    "inferred from the unbelievable evidence",
]


def _texts(tmp_path, texts):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return TextsDataset(str(path))


@pytest.fixture(scope="module")
def bert_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bert-tokens")
    enc = get_encoder(f"hf:{tiny_bert(tmp / 'bert')}")
    return embed_dataset(_texts(tmp, TEXTS), tmp / "s", enc, granularity="token", shard_rows=7, show_progress=False)


def test_columns_of_chosen_rows_match_the_full_columns(bert_store):
    names = ("item", "position", "token", "char_start")
    full = bert_store.columns(names)
    rows = np.array([0, 3, 6, 7, 8, 20, bert_store.count - 1])  # across shard boundaries
    some = bert_store.columns(names, rows=rows)
    for name in names:
        assert list(some[name]) == [full[name][r] for r in rows]
    items = bert_store.columns(("id", "caption"), items=True, rows=np.array([1, 4]))
    assert items["caption"] == [TEXTS[1], TEXTS[4]]
    with pytest.raises(InputError, match="sorted and within"):
        bert_store.columns(names, rows=np.array([5, 2]))
    with pytest.raises(InputError, match="sorted and within"):
        bert_store.columns(names, rows=np.array([bert_store.count]))


def test_the_sample_is_whole_items_with_pieces_words_and_windows(bert_store):
    sample = sample_rows(bert_store, max_rows=bert_store.count, seed=0, window=2)
    assert len(sample) == bert_store.count and list(sample.rows) == list(range(bert_store.count))
    for j, text in enumerate(sample.texts):
        lo, hi = sample.starts[j], sample.starts[j + 1]
        assert "".join(sample.pieces[lo:hi]) == text.rstrip()[: len("".join(sample.pieces[lo:hi]))]
        assert set(sample.item[lo:hi]) == {j}
    i = sample.ids.index(f"{sample.item_ids[4]}@2")  # "inferred from the unbelievable ...": a subword piece
    assert sample.words[i] in TEXTS[4].split() and sample.words[i] in sample.captions[i]
    assert sample.captions[i] in TEXTS[4]
    small = sample_rows(bert_store, max_rows=12, seed=3, window=2)
    assert 0 < len(small) <= 12 or len(small.item_ids) == 1
    whole = np.diff(small.starts)
    full_counts = np.bincount(bert_store.item_of_row())
    assert [full_counts[bert_store.item_of_row()[small.rows[s]]] for s in small.starts[:-1]] == list(whole)


@pytest.fixture(scope="module")
def gloss_tokens(tmp_path_factory):
    """MiniLM hidden state 3 at every token of 400 real WordNet glosses, and a DB-KSVD
    dictionary of them."""
    from dbksvd.data.datasets import WordNetGlosses

    tmp = tmp_path_factory.mktemp("glosses")
    glosses = [it.caption for _, it in zip(range(400), WordNetGlosses().items())]
    store = embed_dataset(
        _texts(tmp, glosses), tmp / "s", get_encoder("minilm", layer=3), granularity="token", show_progress=False
    )
    model = DBKSVD(n_atoms=96, n_nonzero=4, max_iter=6, random_state=0).fit(store.space("text"))
    return store, model


@pytest.mark.slow
@needs_wordnet
def test_token_atoms_get_contexts_and_beat_random_directions(gloss_tokens, tmp_path, capsys):
    store, model = gloss_tokens
    expl = explain(model, store, config=ExplainConfig(max_rows=4000), show_progress=False)
    s = expl.summary
    assert s["granularity"] == "token" and s["sample"]["rows"] <= 4000 and s["sample"]["of_rows"] == store.count
    assert s["faithfulness"]["mean"] > s["random"]["faithfulness"]["mean"] > 0.5
    assert s["specificity"]["mean"] > 1.5 * s["random"]["specificity"]["mean"]
    tokens = store.columns(("item", "token"))
    texts = store.columns(("caption",), items=True)["caption"]
    sources = {r["source"] for r in expl.atoms if r["description"]}
    assert "tokens:term" in sources or "tokens:terms" in sources
    for rec in expl.atoms:
        for side, sign in (("top_positive", 1), ("top_negative", -1)):
            items = [t["item"] for t in rec[side]]
            assert len(items) == len(set(items))  # one row per text
            for t in rec[side]:
                c = t["context"]
                assert c["coefs"][c["focus"]] == pytest.approx(t["coef"]) and np.sign(t["coef"]) == sign
                assert tokens["item"][t["row"]] == t["item"]
                assert "".join(c["tokens"]).strip() in texts[t["item"]]
    out = write_explanation(expl, tmp_path / "atoms")
    first = json.loads((out / "atoms.jsonl").read_text().splitlines()[0])
    assert "context" in first["top_positive"][0] and "grid" not in first["top_positive"][0]


@pytest.mark.slow
@needs_wordnet
def test_a_token_store_without_texts_is_described_from_token_strings(gloss_tokens, tmp_path, capsys):
    store, _ = gloss_tokens
    bare = tmp_path / "bare"
    shutil.copytree(store.path, bare)
    for f in (bare / "items").glob("*.parquet"):
        t = pq.read_table(f)
        pq.write_table(
            t.set_column(t.schema.get_field_index("caption"), "caption", pa.nulls(t.num_rows, pa.string())), f
        )
    model_dir = tmp_path / "model"
    gloss_tokens[1].save(model_dir)
    assert (
        main(["explain", str(model_dir), str(bare), "--out", str(tmp_path / "a"), "--max-rows", "3000", "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    assert "token strings only" in out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert any("token strings only" in n for n in summary["notes"]) and summary["described"] > 0
    rec = next(json.loads(line) for line in (tmp_path / "a" / "atoms.jsonl").open() if '"context"' in line)
    t = rec["top_positive"][0] if rec["top_positive"] else rec["top_negative"][0]
    assert t["caption"] == t["context"]["tokens"][t["context"]["focus"]]


@pytest.mark.slow
@needs_font
def test_patch_atoms_get_heatmaps_over_their_images(tmp_path):
    store = embed_dataset(
        EmojiDataset(limit=150), tmp_path / "p", get_encoder("effnet-lite0"), granularity="patch", show_progress=False
    )
    model = DBKSVD(n_atoms=64, n_nonzero=4, max_iter=4, random_state=0).fit(store.space("image"))
    expl = explain(model, store, config=ExplainConfig(max_rows=5000), show_progress=False)
    s = expl.summary
    assert s["granularity"] == "patch" and s["sample"]["items"] == 5000 // 49
    assert s["faithfulness"]["mean"] > 0.5 and "head" in s
    captions = dict(zip(*store.columns(("id", "caption"), items=True).values()))
    for rec in expl.atoms:
        for t in rec["top_positive"] + rec["top_negative"]:
            grid = np.array(t["grid"])
            assert grid.shape == (7, 7) and grid[t["patch"]["row"], t["patch"]["col"]] == pytest.approx(
                t["coef"], abs=1e-4
            )
            assert t["id"].split("@")[0] in captions and t["caption"] == captions[t["id"].split("@")[0]]
            assert t["position"] == 7 * t["patch"]["row"] + t["patch"]["col"]
    assert any(a["source"] == "head" for r in expl.atoms for a in r["alternatives"])
