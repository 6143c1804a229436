"""Atom evidence, descriptions and their scores, on the real emoji store (effnet-lite0 images,
minilm captions) and on Fashion-MNIST images without captions."""

import json

import numpy as np
import pytest
import torch

from dbksvd import DBKSVD, SparseCodes
from dbksvd.analysis.explain import ExplainConfig, explain, read_atoms, write_explanation
from dbksvd.analysis.explain.describe import CaptionTerms, caption_terms, head_classes
from dbksvd.analysis.explain.evidence import active_matrix, atom_evidence
from dbksvd.cli import main
from dbksvd.errors import InputError, ParameterError

FAST = dict(vocabularies=("captions", "imagenet"))


# -- evidence and candidates, by hand ----------------------------------------------------


def test_atom_evidence_by_hand():
    # 4 items, K = 3 atoms, k = 2 slots
    codes = SparseCodes(
        torch.tensor([[0, 1], [0, 2], [1, 0], [2, 0]]),
        torch.tensor([[2.0, -1.0], [0.5, 3.0], [-4.0, 0.0], [1.0, -0.25]]),
        3,
    )
    D = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    ev = atom_evidence(codes, D, rows=np.array([10, 11, 12, 13]), top=2, nearest=1)
    assert ev.count["pos"].tolist() == [2, 0, 2] and ev.count["neg"].tolist() == [1, 2, 0]
    assert ev.mean_abs["pos"][0] == pytest.approx(1.25) and ev.mean_abs["neg"][1] == pytest.approx(2.5)
    assert ev.top["pos"][0].tolist() == [10, 11] and ev.top_coef["pos"][0].tolist() == [2.0, 0.5]
    assert ev.top["neg"][1].tolist() == [12, 10] and ev.top["pos"][1].tolist() == [-1, -1]
    assert ev.top["neg"][0].tolist() == [13, -1]
    assert ev.usage().tolist() == pytest.approx([0.75, 0.5, 0.5])
    assert ev.primary_side().tolist() == ["pos", "neg", "pos"]
    assert ev.hist.sum(axis=1).tolist() == [3, 2, 2] and ev.hist_max.tolist() == [2.0, 4.0, 3.0]
    assert ev.nearest[:, 0].tolist() == [1, 2, 1] and ev.nearest_cos[0, 0] == pytest.approx(0.6)
    A = active_matrix(codes, np.array([0, 1]), np.array([-1, -1]))
    assert A.tolist() == [[False, False, False, True], [True, False, True, False]]
    with pytest.raises(InputError, match="3 atoms"):
        atom_evidence(codes, D[:2])


def test_caption_terms_and_log_odds():
    assert caption_terms("Grinning face with smiling eyes") == [
        "grinning",
        "face",
        "smiling",
        "eyes",
        "grinning face",
        "smiling eyes",
    ]
    captions = ["red flag", "white flag", "black flag", "cat face", "dog face", "red apple", None, "green apple"]
    terms = CaptionTerms(captions)
    (found,) = terms.candidates([np.array([0, 1, 2])])
    assert found[0] == ("flag", "captions:term")
    ((ids, z),) = terms.zscores([np.array([3, 4])])
    assert terms.terms[ids[0]] == "face" and z[0] > 0
    # a term seen in one caption of the group only is not a pattern
    assert "red" not in terms.terms[terms.zscores([np.array([0, 1, 2])])[0][0]]


def test_head_classes_reads_the_largest_logit_changes():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    idx, val = head_classes(np.array([[1.0, 0.1], [-1.0, 0.0]]), W, top=2)
    assert idx.tolist() == [[0, 1], [2, 1]] and val[0, 0] == pytest.approx(1.0)


def test_distinct_descriptions_within_one_standard_error():
    from dbksvd.analysis.explain.choice import distinct_descriptions

    cands = [
        [("flag", "a"), ("banner", "b")],  # the most faithful atom keeps "flag"
        [("Flag", "a"), ("pennant", "b")],  # "pennant" is within its margin: takes it
        [("flag", "a"), ("sky", "b")],  # "sky" is far worse: keeps the shared "flag"
        [("flag", "a")],
    ]  # the other side of an atom: left alone
    choice_f = [np.array([0.9, 0.7]), np.array([0.85, 0.82]), np.array([0.8, 0.5]), np.array([0.95])]
    chosen = [0, 0, 0, 0]
    distinct_descriptions(
        cands, chosen, choice_f, np.array([True, True, True, False]), np.array([0.05, 0.05, 0.05, 0.05])
    )
    assert chosen == [0, 1, 0, 0]


# -- the whole pipeline on real data --------------------------------------------------------


@pytest.fixture(scope="module")
def emoji_image_model(emoji_store):
    X = emoji_store.space("image")
    return DBKSVD(64, 4, max_iter=8, random_state=0).fit(X)


def _flag_direction(model, store):
    captions = [m["caption"] for m in store.metadata()]
    flags = np.array(["flag" in c for c in captions])
    X = torch.as_tensor(store.space("image").to_numpy(), dtype=torch.float64)
    Z = model._preprocessor().apply(X)[0].numpy()
    u = Z[flags].mean(axis=0)
    return u / np.linalg.norm(u), flags


def test_planted_flag_atom_is_described_as_flags_and_scores_high(emoji_store, emoji_image_model):
    model = DBKSVD(64, 4, max_iter=8, random_state=0).fit(emoji_store.space("image"))
    u, flags = _flag_direction(model, emoji_store)
    D = model.components_.copy()
    D[0] = u  # the planted atom: the mean direction of every flag emoji
    model.components_ = D.astype(model.components_.dtype)
    expl = explain(model, emoji_store, config=ExplainConfig(random_state=0), show_progress=False)
    atom = expl.atoms[0]
    assert "flag" in atom["description"].lower(), atom
    assert atom["faithfulness"] > 0.75 and atom["specificity"] >= 0.5, atom
    assert all("flag" in it["caption"] for it in atom["top_positive"][:5])
    s = expl.summary
    assert s["bridge"]["test"]["recall@5"] > 10 * 5 / s["bridge"]["test"]["gallery"]  # far above chance
    assert {"captions", "imagenet", "wordnet"} <= set(s["vocabularies"])
    assert s["head"].startswith("effnet-lite0")


def test_real_dictionary_beats_random_directions(emoji_store, emoji_image_model):
    expl = explain(emoji_image_model, emoji_store, config=ExplainConfig(**FAST), show_progress=False)
    s, r = expl.summary, expl.summary["random"]
    assert s["described"] >= 0.9 * 64
    assert s["faithfulness"]["mean"] > r["faithfulness"]["mean"] + 0.05
    assert s["specificity"]["mean"] > r["specificity"]["mean"]
    assert 0.5 < s["faithfulness"]["mean"] <= 1 and 0 < s["specificity"]["mean"] <= 1
    for rec in expl.atoms:
        if rec["description"] is not None:
            assert rec["alternatives"][0]["description"]
            assert rec["description"] in [a["description"] for a in rec["alternatives"]]
            assert rec["usage"] > 0


def test_distinct_descriptions_raise_diversity_on_real_atoms(emoji_store, emoji_image_model):
    plain = explain(
        emoji_image_model,
        emoji_store,
        config=ExplainConfig(**FAST, baseline=False, distinct=False),
        show_progress=False,
    )
    distinct = explain(
        emoji_image_model, emoji_store, config=ExplainConfig(**FAST, baseline=False), show_progress=False
    )
    assert distinct.summary["diversity"] > plain.summary["diversity"]
    held = {r["description"].casefold() for r in distinct.atoms if r["description"]}
    changed = [(a, b) for a, b in zip(plain.atoms, distinct.atoms) if a["description"] != b["description"]]
    assert changed
    for a, b in changed:  # a switch only ever leaves a description another atom still holds
        assert a["description"].casefold() in held
        assert b["description"] in [alt["description"] for alt in a["alternatives"]]
    assert abs(distinct.summary["faithfulness"]["mean"] - plain.summary["faithfulness"]["mean"]) < 0.02


def test_thresholding_pursuit_atoms_are_described_and_reconstruct(emoji_store):
    X = emoji_store.space("image")
    model = DBKSVD(64, 4, coder="threshold", max_iter=8, random_state=0).fit(X)
    expl = explain(model, emoji_store, config=ExplainConfig(**FAST), show_progress=False)
    s, r = expl.summary, expl.summary["random"]
    assert s["faithfulness"]["mean"] > r["faithfulness"]["mean"] + 0.05
    assert s["specificity"]["mean"] > r["specificity"]["mean"]
    from dbksvd.models import RandomDictionary

    assert model.score(X) > RandomDictionary(64, 4, random_state=0).fit(X).score(X) + 0.1


def test_explain_is_deterministic_and_round_trips(emoji_store, emoji_image_model, tmp_path):
    cfg = ExplainConfig(**FAST, baseline=False)
    a = explain(emoji_image_model, emoji_store, config=cfg, show_progress=False)
    b = explain(emoji_image_model, emoji_store, config=cfg, show_progress=False)
    assert a.atoms == b.atoms
    write_explanation(a, tmp_path / "atoms")
    assert read_atoms(tmp_path / "atoms") == json.loads(json.dumps(a.atoms))
    assert json.loads((tmp_path / "atoms" / "summary.json").read_text())["described"] == a.summary["described"]


def test_atoms_read_as_detectors(emoji_store, emoji_image_model):
    cfg = ExplainConfig(**FAST, baseline=False, coder="detector")
    expl = explain(emoji_image_model, emoji_store, config=cfg, show_progress=False)
    assert expl.summary["coder"] == "detector" and expl.summary["faithfulness"]["mean"] > 0.55
    # every item now counts for exactly k atoms, each with its projection
    assert sum(r["count_positive"] + r["count_negative"] for r in expl.atoms) == 4 * emoji_store.count
    with pytest.raises(ParameterError, match="unknown coder"):
        ExplainConfig(coder="lasso").validate()


def test_text_space_model_uses_the_shared_space(emoji_store):
    model = DBKSVD(32, 4, max_iter=5, random_state=0).fit(emoji_store.space("text"))
    expl = explain(
        model, emoji_store, "text", ExplainConfig(vocabularies=("captions",), baseline=False), show_progress=False
    )
    assert expl.summary["text_space"] == "shared with the model's space" and "bridge" not in expl.summary
    assert expl.summary["faithfulness"]["mean"] > 0.7


@pytest.fixture(scope="module")
def uncaptioned_store(tmp_path_factory, effnet):
    """80 real Fashion-MNIST images saved as PNG in a folder without captions, embedded."""
    from dbksvd.data import FashionMNIST, FolderDataset
    from dbksvd.embedding import embed_dataset

    folder = tmp_path_factory.mktemp("pngs")
    fashion = FashionMNIST(split="test", limit=80)
    for item in fashion.items():
        fashion.load(item).save(folder / f"{item.id}.png")
    return embed_dataset(FolderDataset(folder), folder / "store", effnet, show_progress=False)


def test_store_without_captions_uses_the_head_and_says_so(uncaptioned_store):
    model = DBKSVD(16, 3, max_iter=3, random_state=0).fit(uncaptioned_store.space("image"))
    expl = explain(model, uncaptioned_store, config=ExplainConfig(baseline=False), show_progress=False)
    assert any("no captions" in n for n in expl.summary["notes"])
    described = [r for r in expl.atoms if r["description"]]
    assert described and all(r["source"] == "head" and r["faithfulness"] is None for r in described)
    assert "faithfulness" not in expl.summary


def test_bad_input(emoji_store, emoji_image_model, tmp_path):
    with pytest.raises(ParameterError, match="unknown bridge"):
        explain(emoji_image_model, emoji_store, config=ExplainConfig(bridge="pca"))
    with pytest.raises(InputError, match="1280 features"):
        text_model = DBKSVD(8, 2, max_iter=1).fit(emoji_store.space("text"))
        explain(text_model, emoji_store, "image")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="no entries"):
        explain(
            emoji_image_model,
            emoji_store,
            config=ExplainConfig(vocabularies=(str(empty),), baseline=False),
            show_progress=False,
        )


# -- the command ---------------------------------------------------------------------------


def test_cli_explain_writes_the_table(emoji_store, emoji_image_model, tmp_path, capsys):
    emoji_image_model.save(tmp_path / "model")
    out = tmp_path / "atoms"
    assert (
        main(
            [
                "explain",
                str(tmp_path / "model"),
                str(emoji_store.path),
                "--out",
                str(out),
                "--vocab",
                "captions,imagenet",
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "random directions" in printed and "most used atoms" in printed
    atoms = read_atoms(out)
    assert len(atoms) == 64 and {"atom", "description", "alternatives", "usage", "top_positive"} <= set(atoms[0])
    assert (out / "summary.md").read_text().startswith("| dictionary")


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t, s: [str(t / "model"), str(t / "rows.npy")], "not an embedding store"),
        (lambda t, s: [str(t / "model"), str(s), "--space", "text"], "features"),
        (lambda t, s: [str(t / "model"), str(s), "--vocab", str(t / "missing.txt")], "missing.txt"),
    ],
)
def test_cli_explain_bad_input_is_one_line(emoji_store, emoji_image_model, tmp_path, capsys, make_args, message):
    emoji_image_model.save(tmp_path / "model")
    np.save(tmp_path / "rows.npy", np.zeros((4, 1280), dtype=np.float32))
    out = tmp_path / "atoms"
    assert main(["explain", *make_args(tmp_path, emoji_store.path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dbksvd: error:") and message in err[0]
    assert not out.exists()
