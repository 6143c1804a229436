"""Datasets on real data: the Noto emoji font, the Debian Fashion-MNIST files, image folders
with damaged files and captions, and text files (txt, jsonl, parquet)."""

import dataclasses
import gzip
import json
import sys
import unicodedata

import numpy as np
import pytest
from needs import FASHION, FONT, needs_fashion, needs_font, needs_wordnet
from PIL import Image

from dbksvd.data.datasets import (
    DATASET_NAMES,
    EmojiDataset,
    FashionMNIST,
    FolderDataset,
    Item,
    SkipItem,
    TextsDataset,
    WordNetGlosses,
    dataset_from_spec,
    fashion_mnist,
    get_dataset,
    register_dataset,
)
from dbksvd.errors import DataFileError, InputError, MissingDependencyError, ParameterError


@pytest.fixture(scope="module")
def emoji():
    return EmojiDataset()


@pytest.fixture(scope="module")
def fashion():
    return FashionMNIST()


def _is_blank(image: Image.Image) -> bool:
    return bool((np.asarray(image) == 255).all())


# --- emoji ------------------------------------------------------------------------------------


@needs_font
def test_emoji_listing(emoji):
    items = list(emoji.items())
    assert 1300 <= len(emoji) == len(items) <= 1500
    assert emoji.name == "emoji" and emoji.modality == "image" and emoji.label_names is None
    assert len({item.id for item in items}) == len(items)
    codepoints = [int(item.id[2:], 16) for item in items]
    assert codepoints == sorted(codepoints)
    for item, cp in zip(items, codepoints):
        assert item.id == item.source == f"U+{cp:04X}"
        assert item.caption == unicodedata.name(chr(cp)).lower() and item.label is None
    by_id = {item.id: item for item in items}
    assert by_id["U+1F436"].caption == "dog face"
    assert by_id["U+1F600"].caption == "grinning face"
    excluded = [0x20, 0x23, 0x2A, 0x30, 0x39, 0x200D, 0xFE0F, 0x1F3FB, 0x1F1E6, 0xE0067, 0xE007F]
    assert not {f"U+{cp:04X}" for cp in excluded} & set(by_id)


@pytest.mark.slow  # renders all ~1,360 glyphs: 1-3 s
@needs_font
def test_emoji_every_glyph_renders(emoji):
    """The listing's empty-glyph test (no bitmap in the font) agrees with actual rendering."""
    for item in emoji.items():
        image = emoji.load(item)
        assert image.mode == "RGB" and image.size == (160, 160)
        assert not _is_blank(image), item


@needs_font
def test_emoji_image_is_centred_and_deterministic(emoji):
    item = next(i for i in emoji.items() if i.id == "U+1F600")
    first, second = emoji.load(item), emoji.load(item)
    assert first.tobytes() == second.tobytes()
    assert EmojiDataset(codepoints=["U+1F600"]).load(item).tobytes() == first.tobytes()
    pixels = np.asarray(first)
    ink = np.argwhere((pixels != 255).any(axis=2))
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0)
    assert abs((top + bottom) - 159) <= 2 and abs((left + right) - 159) <= 2  # centred
    assert (pixels[:8] == 255).all() and (pixels[:, :8] == 255).all()  # the margin stays white


@needs_font
def test_emoji_small_size_scales_down():
    ds = EmojiDataset(size=64, codepoints=[0x1F436, "🍕", "1F680"])
    assert [item.id for item in ds.items()] == ["U+1F436", "U+1F355", "U+1F680"]
    for item in ds.items():
        pixels = np.asarray(ds.load(item))
        assert pixels.shape == (64, 64, 3) and not _is_blank(Image.fromarray(pixels))
        assert (pixels[:3] == 255).all() and (pixels[-3:] == 255).all()  # 5 % margin
        assert (pixels[:, :3] == 255).all() and (pixels[:, -3:] == 255).all()


@needs_font
def test_emoji_start_subset_and_spec(emoji):
    everything = list(emoji.items())
    for start in (0, 1, 700, len(emoji) - 1, len(emoji), len(emoji) + 5):
        assert list(emoji.items(start=start)) == everything[start:]
    with pytest.raises(ParameterError):
        emoji.items(start=-1)
    limited = EmojiDataset(limit=10)
    assert list(limited.items()) == everything[:10] and len(limited) == 10
    spec = emoji.spec()
    assert spec["name"] == "emoji" and spec["count"] == len(emoji) and spec["path"] == str(FONT)
    assert json.loads(json.dumps(spec)) == spec == EmojiDataset().spec()
    assert limited.spec()["fingerprint"] != spec["fingerprint"]


@needs_font
def test_emoji_errors(tmp_path, emoji):
    with pytest.raises(DataFileError, match="apt-get install fonts-noto-color-emoji"):
        EmojiDataset(font_path=tmp_path / "missing.ttf")
    (tmp_path / "junk.ttf").write_bytes(b"not a font at all" * 10)
    with pytest.raises(DataFileError, match="junk.ttf"):
        EmojiDataset(font_path=tmp_path / "junk.ttf")
    with pytest.raises(ParameterError, match=r"U\+0041"):
        EmojiDataset(codepoints=[0x1F600, 0x41])
    with pytest.raises(ParameterError):
        EmojiDataset(size=4)
    with pytest.raises(ParameterError):
        EmojiDataset(limit=0)
    with pytest.raises(ParameterError):
        EmojiDataset(limit=3).load(Item(id="U+1F436", source="U+1F436"))


# --- Fashion-MNIST ----------------------------------------------------------------------------


@needs_fashion
def test_fashion_listing_and_images(fashion):
    assert len(fashion) == 70_000 and fashion.name == "fashion-mnist"
    assert fashion.label_names == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    labels = gzip.decompress((FASHION / "train-labels-idx1-ubyte.gz").read_bytes())
    pixels = gzip.decompress((FASHION / "t10k-images-idx3-ubyte.gz").read_bytes())
    first = next(fashion.items())
    assert first == Item(id="train-00000", source="train:0", caption=fashion.label_names[labels[8]], label=labels[8])
    image = fashion.load(first)
    assert image.mode == "RGB" and image.size == (28, 28)
    test_first = next(fashion.items(start=60_000))
    assert test_first.id == "test-00000" and test_first.source == "test:0"
    grey = np.asarray(fashion.load(test_first))
    assert (grey == np.frombuffer(pixels, np.uint8, 28 * 28, 16).reshape(28, 28, 1)).all()
    spec = fashion.spec()
    assert spec["count"] == 70_000 and json.loads(json.dumps(spec)) == spec


@needs_fashion
def test_fashion_splits_limit_and_start(monkeypatch):
    test = FashionMNIST(split="test")
    assert len(test) == 10_000 and next(test.items()).id == "test-00000"
    assert len(FashionMNIST(split="train")) == 60_000
    small = FashionMNIST(limit=5)
    assert [item.id for item in small.items(start=3)] == ["train-00003", "train-00004"]
    # start never touches pixels: listing works even when the image files cannot be read
    monkeypatch.setattr(fashion_mnist, "read_idx_bytes", lambda path: 1 / 0)
    tail = list(test.items(start=9_998))
    assert [item.id for item in tail] == ["test-09998", "test-09999"]
    with pytest.raises(ZeroDivisionError):
        test.load(tail[0])
    with pytest.raises(ParameterError):
        FashionMNIST(split="validation")


@needs_fashion
def test_fashion_damaged_files(tmp_path):
    with pytest.raises(DataFileError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(root=tmp_path)
    labels = (FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes()
    images = (FASHION / "t10k-images-idx3-ubyte.gz").read_bytes()

    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(labels[: len(labels) // 2])
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(images)
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.gz"):
        FashionMNIST(root=tmp_path, split="test")

    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(labels)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(images[: len(images) - 1000])
    with pytest.raises(DataFileError, match="t10k-images-idx3-ubyte.gz"):
        FashionMNIST(root=tmp_path, split="test")

    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + bytes(12)))
    with pytest.raises(DataFileError, match="magic"):
        FashionMNIST(root=tmp_path, split="test")

    # uncompressed IDX files are read too
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(images))
    ds = FashionMNIST(root=tmp_path, split="test")
    assert len(ds) == 10_000 and ds.load(next(ds.items())).size == (28, 28)


# --- image folder -----------------------------------------------------------------------------


def _png_bytes(image: Image.Image) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def picture_folder(tmp_path):
    """Four good images (one RGBA with a transparent background), a truncated PNG and a text
    file named .png."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pics"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / "b.jpg")
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 4:12] = (200, 0, 0, 255)
    Image.fromarray(rgba).save(root / "sub" / "c.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "D.PNG")
    good = _png_bytes(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "text.png").write_text("this is not an image\n")
    (root / "notes.txt").write_text("ignored")
    return root


def test_folder_without_captions(picture_folder):
    ds = FolderDataset(picture_folder)
    ids = [item.id for item in ds.items()]
    assert ids == ["D.PNG", "a.png", "b.jpg", "sub/c.png", "text.png", "truncated.png"]
    assert ds.skipped == {} and ds.label_names is None and ds.name == "folder"
    assert all(item.caption is None and item.label is None for item in ds.items())
    assert next(ds.items(start=3)).source == str(picture_folder / "sub" / "c.png")
    loaded = {item.id: ds.load(item) for item in ds.items() if item.id not in ("text.png", "truncated.png")}
    assert loaded["a.png"].mode == "RGB" and loaded["a.png"].size == (28, 28)
    assert loaded["b.jpg"].size == (30, 20)
    c = np.asarray(loaded["sub/c.png"])
    assert c.shape == (16, 16, 3) and (c[0, 0] == 255).all() and tuple(c[8, 8]) == (200, 0, 0)
    for bad in ("text.png", "truncated.png"):
        with pytest.raises(SkipItem, match="^unreadable image: "):
            ds.load(next(item for item in ds.items() if item.id == bad))


def test_folder_csv_captions(picture_folder):
    (picture_folder / "captions.csv").write_bytes(
        b"path,caption,label\n"
        b"a.png,a noisy square,noise\n"
        b'sub/c.png,"a red square, on white",shape\n'
        b"missing.png,not there,shape\n"
        b"b.jpg,caf\xe9 in latin-1,noise\n"
        b"truncated.png,cut in half,broken\n"
        b"\n"
        b"text.png,,broken\n"
        b"b.jpg,too,many,fields\n"
        b"text.png,text pretending,broken\n"
        b"a.png,the same square again,noise\n"
    )
    ds = FolderDataset(picture_folder)
    assert ds.skipped == {"missing image": 1, "undecodable caption": 1, "empty caption": 1, "malformed row": 1}
    items = list(ds.items())
    assert [item.id for item in items] == ["a.png", "sub/c.png", "truncated.png", "text.png", "a.png#2"]
    assert items[1].caption == "a red square, on white"
    assert ds.label_names == ["broken", "noise", "shape"]
    assert [item.label for item in items] == [1, 2, 0, 0, 1]
    assert ds.load(items[0]).size == (28, 28) and ds.load(items[4]).size == (28, 28)
    assert ds.load(items[1]).mode == "RGB"
    for bad in items[2:4]:
        with pytest.raises(SkipItem, match="unreadable image"):
            ds.load(bad)
    assert list(ds.items(start=2)) == items[2:]
    spec = ds.spec()
    assert spec["count"] == 5 and spec["skipped"] == ds.skipped and json.loads(json.dumps(spec)) == spec


def test_folder_jsonl_captions(picture_folder, tmp_path):
    lines = [
        json.dumps({"path": "a.png", "caption": "first", "label": 3}),
        json.dumps({"path": str(picture_folder / "b.jpg"), "caption": "absolute", "label": 7}),
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"path": "sub/c.png", "caption": None}),
        json.dumps({"path": "gone.png", "caption": "missing"}),
        json.dumps({"path": "D.PNG", "caption": "no label"}),
    ]
    captions = tmp_path / "elsewhere.jsonl"
    captions.write_text("\n".join(lines) + "\n")
    ds = FolderDataset(picture_folder, captions=captions)
    assert [item.id for item in ds.items()] == ["a.png", "b.jpg", "D.PNG"]
    assert [item.label for item in ds.items()] == [3, 7, None] and ds.label_names is None
    assert ds.skipped == {"malformed row": 2, "empty caption": 1, "missing image": 1}
    assert ds.load(list(ds.items())[1]).size == (30, 20)
    # the default captions.jsonl in the folder is found on its own
    (picture_folder / "captions.jsonl").write_text(lines[0] + "\n")
    assert [item.caption for item in FolderDataset(picture_folder).items()] == ["first"]


def test_folder_errors(tmp_path, picture_folder):
    with pytest.raises(DataFileError):
        FolderDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no usable images"):
        FolderDataset(tmp_path / "empty")
    (picture_folder / "captions.csv").write_text("path,caption\nx.png,gone\ny.png,gone too\n")
    with pytest.raises(InputError, match="2 missing image"):
        FolderDataset(picture_folder)
    (picture_folder / "captions.csv").write_text("path,text\na.png,a square\n")
    with pytest.raises(DataFileError, match="caption"):
        FolderDataset(picture_folder)
    (picture_folder / "captions.csv").write_text("")
    with pytest.raises(DataFileError):
        FolderDataset(picture_folder)
    (picture_folder / "captions.jsonl").write_text(json.dumps({"file": "a.png", "caption": "x"}) + "\n")
    with pytest.raises(DataFileError, match="path"):
        FolderDataset(picture_folder, captions="captions.jsonl")
    with pytest.raises(DataFileError):
        FolderDataset(picture_folder, captions="nope.csv")


def test_folder_image_problems_at_load_time(picture_folder, monkeypatch):
    ds = FolderDataset(picture_folder)
    a = next(item for item in ds.items() if item.id == "a.png")  # 28 x 28 = 784 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 784 > 500: a warning, made an error
    with pytest.raises(SkipItem, match="unreadable image: DecompressionBomb"):
        ds.load(a)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 784 > 2 * 100: Pillow's own error
    with pytest.raises(SkipItem, match="unreadable image: DecompressionBomb"):
        ds.load(a)
    monkeypatch.undo()
    (picture_folder / "a.png").unlink()
    with pytest.raises(SkipItem, match="^missing image"):
        ds.load(a)


def test_folder_sixteen_bit_grey(tmp_path):
    ramp = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    ds = FolderDataset(tmp_path)
    pixels = np.asarray(ds.load(next(ds.items())))
    assert pixels.dtype == np.uint8 and pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255


# --- texts ------------------------------------------------------------------------------------


def test_texts_txt(tmp_path):
    path = tmp_path / "sents.txt"
    path.write_bytes(b"\xef\xbb\xbfhello world\n\n   padded line  \r\nbad \xff byte\nlast line")
    ds = TextsDataset(path)
    items = list(ds.items())
    assert [item.id for item in items] == ["sents:1", "sents:3", "sents:5"]
    assert [item.source for item in items] == ["sents.txt:1", "sents.txt:3", "sents.txt:5"]
    assert [ds.load(item) for item in items] == ["hello world", "padded line", "last line"]
    assert all(item.caption == ds.load(item) and item.label is None for item in items)
    assert ds.skipped == {"undecodable text": 1} and ds.modality == "text" and ds.name == "texts"
    assert list(ds.items(start=1)) == items[1:] and list(ds.items(start=3)) == []
    spec = ds.spec()
    assert spec["count"] == 3 and json.loads(json.dumps(spec)) == spec


def test_texts_jsonl(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"text": "one", "body": "uno"}),
                "not json",
                json.dumps({"text": 5}),
                json.dumps({"text": "   "}),
                json.dumps({"text": "two", "body": "dos"}),
            ]
        )
    )
    ds = TextsDataset(path)
    assert [(item.id, item.caption) for item in ds.items()] == [("rows:1", "one"), ("rows:5", "two")]
    assert ds.skipped == {"malformed line": 2, "empty text": 1}
    body = get_dataset(f"texts:{path}#body")
    assert [body.load(item) for item in body.items()] == ["uno", "dos"] and body.column == "body"


def test_texts_parquet(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    one = tmp_path / "one.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3, 4], "sentence": ["a cat", None, "", "a dog"]}), one)
    ds = TextsDataset(one)
    assert [(item.id, item.caption) for item in ds.items()] == [("one:0", "a cat"), ("one:3", "a dog")]
    assert ds.column == "sentence" and ds.skipped == {"empty text": 2}
    assert list(ds.items(start=1))[0].id == "one:3"

    two = tmp_path / "two.parquet"
    pq.write_table(pa.table({"en": ["cat", "dog"], "fr": ["chat", "chien"]}), two)
    with pytest.raises(ParameterError, match="string columns"):
        TextsDataset(two)
    assert [item.caption for item in TextsDataset(two, column="fr").items()] == ["chat", "chien"]
    with pytest.raises(DataFileError, match="no column"):
        TextsDataset(two, column="de")
    with pytest.raises(DataFileError, match="not a string column"):
        TextsDataset(one, column="n")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(DataFileError):
        TextsDataset(tmp_path / "bad.parquet")

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match=r"dbksvd\[embed\]"):
        TextsDataset(one)


def test_texts_errors(tmp_path):
    with pytest.raises(DataFileError):
        TextsDataset(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(InputError, match="no texts"):
        TextsDataset(tmp_path / "blank.txt")
    with pytest.raises(ParameterError):
        TextsDataset(tmp_path / "data.csv")
    with pytest.raises(ParameterError):
        TextsDataset(tmp_path / "blank.txt", column="text")


# --- by name ----------------------------------------------------------------------------------


def test_get_dataset(tmp_path, picture_folder):
    assert DATASET_NAMES == ("emoji", "fashion-mnist", "folder:PATH", "texts:PATH", "wordnet-glosses")
    for bad in ("mnist", "emoji:x", "folder:", "texts", "", "FOLDER:/tmp"):
        with pytest.raises(ParameterError, match="emoji, fashion-mnist, folder:PATH, texts:PATH"):
            get_dataset(bad)
    with pytest.raises(ParameterError):
        get_dataset(42)
    folder = get_dataset(f"folder:{picture_folder}")
    assert isinstance(folder, FolderDataset) and len(folder) == 6
    with pytest.raises(ParameterError, match="colour"):
        get_dataset(f"folder:{picture_folder}", colour="red")
    with pytest.raises(ParameterError, match="root"):
        get_dataset(f"folder:{picture_folder}", root=picture_folder)
    hashed = tmp_path / "a#b.txt"  # an existing path keeps its '#'
    hashed.write_text("x\n")
    assert get_dataset(f"texts:{hashed}").load(Item(id="a#b:1", source="")) == "x"


@needs_font
def test_get_dataset_emoji():
    emoji = get_dataset("emoji", size=32, limit=3)
    assert isinstance(emoji, EmojiDataset) and len(emoji) == 3 and emoji.size == 32


@needs_fashion
def test_get_dataset_fashion_mnist():
    fashion = get_dataset("fashion-mnist", split="test", limit=7)
    assert isinstance(fashion, FashionMNIST) and len(fashion) == 7


@pytest.mark.parametrize(
    "family",
    [
        "folder",
        "texts",
        pytest.param("emoji", marks=needs_font),
        pytest.param("fashion-mnist", marks=needs_fashion),
    ],
)
def test_dataset_from_spec_rebuilds_every_family(family, tmp_path, picture_folder):
    texts = tmp_path / "rows.jsonl"
    texts.write_text(json.dumps({"body": "uno"}) + "\n" + json.dumps({"body": "dos"}) + "\n")
    dataset = {
        "folder": lambda: FolderDataset(picture_folder),
        "texts": lambda: TextsDataset(texts, column="body"),
        "emoji": lambda: EmojiDataset(size=32, codepoints=["U+1F600", "🐶"]),
        "fashion-mnist": lambda: FashionMNIST(split="test", limit=5),
    }[family]()
    spec = json.loads(json.dumps(dataset.spec()))  # as a manifest holds it
    again = dataset_from_spec(spec)
    assert type(again) is type(dataset) and again.name == family and again.spec() == dataset.spec()
    assert list(again.items()) == list(dataset.items())


def test_dataset_from_spec_refuses_unknown_names():
    for bad in ({"name": "mnist"}, {}, {"name": None}):
        with pytest.raises(ParameterError, match="emoji, fashion-mnist, folder, texts"):
            dataset_from_spec(bad)
    with pytest.raises(ParameterError, match="dict"):
        dataset_from_spec("emoji")


def test_a_family_registers_its_name_once():
    families = (EmojiDataset, FashionMNIST, FolderDataset, TextsDataset, WordNetGlosses)
    assert tuple(cls.spec_form or cls.name for cls in families) == DATASET_NAMES
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(type("Again", (TextsDataset,), {}))


def test_item_and_skip_item():
    item = Item(id="x", source="x.txt:1")
    assert item.caption is None and item.label is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.id = "y"
    assert str(SkipItem("unreadable image: bad")) == "unreadable image: bad"


@needs_wordnet
def test_wordnet_glosses():
    full = get_dataset("wordnet-glosses")
    assert len(full) > 80000 and full.modality == "text"
    first = next(full.items())
    assert first.id == "entity.n.00001740" and first.caption.startswith("that which is perceived")
    assert full.load(first) == first.caption and first.source == "data.noun:00001740"
    some = get_dataset("wordnet-glosses", limit=50)
    assert len(some) == 50 and dataset_from_spec(some.spec()).spec() == some.spec()
    with pytest.raises(MissingDependencyError, match="wordnet-base"):
        WordNetGlosses(root="/nowhere")
