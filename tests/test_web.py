"""The explorer's API and static export on a real emoji run (effnet-lite0 images, minilm
captions, DB-KSVD and TopK SAE models): queries, decompositions, safety bounds, bad input,
run folders with missing parts."""

import io
import json
import shutil
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the explorer needs fastapi: pip install 'dbksvd[serve]'")
from explorer_checks import checked_client, serving
from pydantic import ValidationError

from dbksvd import metrics
from dbksvd.cli import main
from dbksvd.data import EmojiDataset, Item
from dbksvd.errors import NotFoundError
from dbksvd.models import load_model
from dbksvd.web import schemas
from dbksvd.web.export import export_site
from dbksvd.web.run import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES, Run


@pytest.fixture(scope="module")
def client(emoji_run):
    """The app of the emoji run; every JSON answer is validated against its route's schema."""
    return checked_client(emoji_run)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_overview_lists_models_scores_and_what_is_missing(client):
    ov = client.get("/api/overview").json()
    assert ov["store"]["dataset"] == "emoji" and ov["store"]["count"] > 1300
    assert set(ov["store"]["spaces"]) == {"image", "text"}
    models = {m["id"]: m for m in ov["models"]}
    assert set(models) == {"model-image", "model-image-topk", "model-text"}
    assert models["model-image"]["architecture"] == "dbksvd" and models["model-image-topk"]["architecture"] == "topk"
    for name in ("model-image", "model-image-topk"):
        m = models[name]
        assert m["explanation"] == name.replace("model-", "atoms-")
        assert 0.5 < m["faithfulness"] < 1 and m["random"]["faithfulness"] is not None
        assert 0 < m["heldout"]["explained_signal"] < 1
    assert models["model-text"]["faithfulness"] is None and models["model-text"]["space"] == "text"
    assert any("descriptions of model-text" in line for line in ov["missing"])
    assert ov["features"] == {"thumbnails": True, "upload": True, "embedding_search": True, "decompose": True}
    schema = client.get("/api/openapi.json").json()
    assert {
        "/api/overview",
        "/api/models/{model}/atoms",
        "/api/search",
        "/api/decompose",
        "/api/decompose/image",
    } <= set(schema["paths"])


def test_gallery_sorts_filters_and_pages(client, emoji_run):
    full = client.get("/api/models/model-image/atoms", params={"sort": "faithfulness", "limit": 200}).json()
    assert full["total"] == 64 and len(full["atoms"]) == 64
    f = [a["faithfulness"] for a in full["atoms"]]
    scored = [v for v in f if v is not None]
    assert scored == sorted(scored, reverse=True) and f[: len(scored)] == scored  # unscored atoms last
    pages = [
        client.get("/api/models/model-image/atoms", params={"sort": "faithfulness", "offset": o, "limit": 10}).json()[
            "atoms"
        ]
        for o in range(0, 70, 10)
    ]
    assert [a["atom"] for p in pages for a in p] == [a["atom"] for a in full["atoms"]]
    asc = client.get("/api/models/model-image/atoms", params={"sort": "usage", "order": "asc", "limit": 200}).json()
    u = [a["usage"] for a in asc["atoms"]]
    assert u == sorted(u)
    # a text filter keeps exactly the atoms whose descriptions hold the word
    records = [json.loads(line) for line in (emoji_run / "atoms-image" / "atoms.jsonl").read_text().splitlines()]
    word = max(
        {w for r in records if r["description"] for w in r["description"].lower().split()},
        key=lambda w: (sum(w in (r["description"] or "").lower() for r in records), w),
    )
    hits = client.get("/api/models/model-image/atoms", params={"q": word, "limit": 200}).json()

    def text(r):
        return " | ".join(
            filter(
                None,
                [r["description"], (r["other_side"] or {}).get("description")]
                + [a["description"] for a in r["alternatives"]],
            )
        ).lower()

    expected = {r["atom"] for r in records if word in text(r)}
    assert hits["total"] == len(expected) >= 2 and {a["atom"] for a in hits["atoms"]} == expected
    strict = client.get("/api/models/model-image/atoms", params={"min_faithfulness": 0.8, "limit": 200}).json()
    assert strict["total"] == sum(1 for v in scored if v >= 0.8)
    cards = full["atoms"][0]
    assert cards["top"] and all(isinstance(t["row"], int) for t in cards["top"])


def test_atom_page_has_items_histogram_alternatives_and_nearest(client, emoji_run):
    a = client.get("/api/models/model-image/atoms/3").json()
    assert a["atom"] == 3 and a["n_atoms"] == 64
    assert all(t["coef"] > 0 for t in a["top_positive"]) and all(t["coef"] < 0 for t in a["top_negative"])
    assert sum(a["histogram"]["counts"]) == a["count_positive"] + a["count_negative"]
    assert len(a["nearest"]) == 5 and all("description" in n for n in a["nearest"])
    model = load_model(emoji_run / "model-image")
    D = np.asarray(model.components_)
    n0 = a["nearest"][0]
    assert n0["cosine"] == pytest.approx(float(D[3] @ D[n0["atom"]]), abs=1e-4)
    described = client.get("/api/models/model-image/atoms", params={"described": True, "limit": 1}).json()
    for j in {3, described["atoms"][0]["atom"]}:  # atom 3, and one that surely has a description
        rec = client.get(f"/api/models/model-image/atoms/{j}").json()
        if j != 3 or rec["description"] is not None:
            assert rec["description"] and rec["alternatives"]
            assert any(alt["description"] == rec["description"] for alt in rec["alternatives"])


def test_search_finds_atoms_and_items_by_words_and_embedding(client):
    res = client.get("/api/search", params={"q": "cat"}).json()
    items = res["items"]
    assert items["by_text"] and all("cat" in (i["caption"] or "") for i in items["by_text"])
    top = [i["caption"] for i in items["by_embedding"][:3]]
    assert any("cat" in c for c in top), top  # minilm puts cat captions nearest to "cat"
    by_model = {m["model"]: m for m in res["atoms"]}
    assert set(by_model) == {"model-image", "model-image-topk", "model-text"}
    assert by_model["model-image"]["by_embedding"]  # nearest descriptions
    assert by_model["model-text"]["by_direction"]  # text-space atoms against the query's embedding
    sims = [a["similarity"] for a in by_model["model-image"]["by_embedding"]]
    assert sims == sorted(sims, reverse=True)


def test_decompose_matches_the_models_own_codes(client, emoji_run, emoji_store):
    row = 100
    res = client.get("/api/decompose", params={"row": row}).json()
    assert res["item"]["row"] == row and res["item"]["held_out"] is True
    by_model = {m["model"]: m for m in res["models"]}
    assert set(by_model) == {"model-image", "model-image-topk", "model-text"}  # DB-KSVD and SAE side by side
    for name, m in by_model.items():
        model = load_model(emoji_run / name)
        x = emoji_store.space(m["model"].split("-")[1]).take(np.array([row]))
        codes = model.transform(x)
        batch = model.transform(emoji_store.space(m["model"].split("-")[1]))  # the codes behind the atom pages
        assert sorted(batch.indices[row].tolist()) == sorted(codes.indices[0].tolist())
        np.testing.assert_allclose(
            np.sort(batch.values[row].numpy()), np.sort(codes.values[0].numpy()), rtol=1e-3, atol=1e-4
        )
        assert m["explained_signal"] == pytest.approx(
            metrics.explained_signal(x, model.inverse_transform(codes)), abs=1e-6
        )
        nonzero = {int(a): float(v) for a, v in zip(codes.indices[0].tolist(), codes.values[0].tolist()) if v != 0}
        assert {a["atom"]: a["coef"] for a in m["atoms"]} == pytest.approx(nonzero)
        assert 1 <= m["l0"] <= 4
    described = [a for a in by_model["model-image"]["atoms"] if a["description"]]
    assert described and all(a["top"] for a in described)


def test_upload_decomposes_a_real_image_and_refuses_bombs(client, emoji_store):
    meta = emoji_store.metadata()
    row = next(i for i, m in enumerate(meta) if m["caption"] == "red apple")
    image = EmojiDataset().load(Item(**meta[row]))
    up = client.post("/api/decompose/image", content=_png(image))
    assert up.status_code == 200, up.text
    same = client.get("/api/decompose", params={"row": row}).json()
    mine = {m["model"]: m for m in up.json()["models"]}
    assert set(mine) == {"model-image", "model-image-topk"}  # image models only
    assert set(mine) < {m["model"] for m in same["models"]}
    for m in same["models"]:
        if m["model"] in mine:  # the same emoji, re-encoded: the same strongest atom
            assert mine[m["model"]]["atoms"][0]["atom"] == m["atoms"][0]["atom"]
    from PIL import Image

    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    bomb = _png(Image.new("1", (side, side)))  # a few KB of PNG, many pixels
    assert len(bomb) < MAX_UPLOAD_BYTES
    r = client.post("/api/decompose/image", content=bomb)
    assert r.status_code == 400 and "pixels" in r.json()["error"]
    r = client.post("/api/decompose/image", content=b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert r.status_code == 413 and "bytes" in r.json()["error"]
    r = client.post("/api/decompose/image", content=b"not an image")
    assert r.status_code == 400 and "not a readable image" in r.json()["error"]


#: The schema of each API route's 200 answer, as /api/openapi.json names it (None: a PNG).
ROUTE_SCHEMAS = {
    ("/api/overview", "get"): "Overview",
    ("/api/models/{model}/atoms", "get"): "GalleryPage",
    ("/api/models/{model}/atoms/{atom}", "get"): "AtomAnswer",
    ("/api/items", "get"): "ItemsPage",
    ("/api/items/{row}", "get"): "Item",
    ("/api/items/{row}/thumbnail.png", "get"): None,
    ("/api/search", "get"): "SearchAnswer",
    ("/api/decompose", "get"): "Decomposition",
    ("/api/decompose/image", "post"): "Decomposition",
}


def test_every_answer_matches_its_schema_and_openapi_names_them(client):
    doc = client.get("/api/openapi.json").json()
    operations = {(path, method): op for path, ops in doc["paths"].items() for method, op in ops.items()}
    assert set(operations) == set(ROUTE_SCHEMAS)
    for key, name in ROUTE_SCHEMAS.items():
        responses = operations[key]["responses"]
        if name is None:
            assert set(responses["200"]["content"]) == {"image/png"}
        else:
            assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
            assert name in doc["components"]["schemas"]
        errors = {code: r for code, r in responses.items() if code != "200"}
        assert "500" in errors and (key == ("/api/overview", "get") or len(errors) >= 3), (key, errors)
        for r in errors.values():  # every error answer is {"error": one line}, never FastAPI's own shape
            assert r["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}}
    assert set(doc["components"]["schemas"]["ErrorAnswer"]["properties"]) == {"error"}

    # every route's answers on the emoji run, every atom of every model
    models = ("model-image", "model-image-topk", "model-text")
    answers = [(schemas.Overview, client.get("/api/overview"))]
    for m in models:
        for sort in ("usage", "faithfulness", "specificity", "atom"):
            answers.append((schemas.GalleryPage, client.get(f"/api/models/{m}/atoms", params={"sort": sort})))
        answers.append((schemas.GalleryPage, client.get(f"/api/models/{m}/atoms", params={"described": False})))
        answers += [(schemas.AtomAnswer, client.get(f"/api/models/{m}/atoms/{j}")) for j in range(64)]
    answers += [
        (schemas.ItemsPage, client.get("/api/items", params={"q": "cat"})),
        (schemas.ItemsPage, client.get("/api/items", params={"offset": 40, "limit": 200})),
        (schemas.Item, client.get("/api/items/0")),
        (schemas.Item, client.get("/api/items/1")),  # not held out
        (schemas.SearchAnswer, client.get("/api/search", params={"q": "cat"})),
        (schemas.SearchAnswer, client.get("/api/search", params={"q": "zzzz qqqq", "limit": 50})),  # no word hits
        (schemas.Decomposition, client.get("/api/decompose", params={"row": 100})),
        (schemas.Decomposition, client.post("/api/decompose/image", content=_png(_solid_image()))),
    ]
    for schema, r in answers:
        assert r.status_code == 200, (r.request.url, r.text)
        schema.model_validate_json(r.content, strict=True)
    errors = [
        client.get("/api/models/nothing/atoms"),
        client.get("/api/models/model-image/atoms", params={"sort": "bogus"}),
        client.get("/api/items/x"),
        client.post("/api/decompose/image", content=b"not an image"),
    ]
    assert [r.status_code for r in errors] == [404, 400, 422, 400]
    for r in errors:
        schemas.ErrorAnswer.model_validate_json(r.content, strict=True)
    # the client fixture validated every answer of every test against its route's schema too
    assert {name for name in ROUTE_SCHEMAS.values() if name} | {"ErrorAnswer"} <= set(client.validated)
    # the schemas hold: an undeclared key or a value of another type is refused
    card = answers[1][1].json()["atoms"][0]
    schemas.AtomCard.model_validate(card, strict=True)
    for bad in ({**card, "extra": 1}, {**card, "atom": "3"}, {**card, "side": "up"}, {**card, "top": None}):
        with pytest.raises(ValidationError):
            schemas.AtomCard.model_validate(bad, strict=True)


def _solid_image():
    from PIL import Image

    return Image.new("RGB", (64, 48), (200, 40, 40))


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_port_0_reports_the_port_it_bound(emoji_run, workers):
    with serving(emoji_run, "--workers", str(workers)) as url, urllib.request.urlopen(url + "api/overview") as r:
        body = r.read()
    overview = schemas.Overview.model_validate_json(body, strict=True)
    assert overview.run == "emoji" and {m.id for m in overview.models} == {
        "model-image",
        "model-image-topk",
        "model-text",
    }


def test_thumbnails_and_files_stay_inside_the_run(client, emoji_run, tmp_path):
    r = client.get("/api/items/5/thumbnail.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    from PIL import Image

    assert max(Image.open(io.BytesIO(r.content)).size) <= 96
    assert client.get("/files/metrics.json").status_code == 200
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (emoji_run / "link.txt").symlink_to(outside)
    try:
        for path in [
            "/files/../../../etc/passwd",
            "/files/%2e%2e/%2e%2e/etc/passwd",
            "/files/..%2f..%2fetc%2fpasswd",
            "/files//etc/passwd",
            "/files/link.txt",
            "/files/store/../../secret.txt",
            "/files/nothing.json",
            "/static/../../pyproject.toml",
            "/static/%2e%2e/app.py",
        ]:
            r = client.get(path)
            assert r.status_code == 404, path
            assert "secret" not in r.text and "root:" not in r.text
        # the HTTP client normalises literal ".." away: ask the run itself as well
        run = Run(emoji_run)
        for rel in [
            "../../../etc/passwd",
            "store/../../secret.txt",
            "/etc/passwd",
            "link.txt",
            "x" * 300,
            "a/" * 400,
            ".hidden",
            "store/.manifest.json.tmp-1",
            "",
        ]:
            with pytest.raises(NotFoundError):
                run.file(rel)
        assert run.file("store/manifest.json").name == "manifest.json"
        assert client.get("/files/" + "x" * 300).status_code == 404  # a name too long for the OS
    finally:
        (emoji_run / "link.txt").unlink()


@pytest.mark.parametrize(
    "url",
    [
        "/api/models/model-image/atoms?limit=0",
        "/api/models/model-image/atoms?limit=201",
        "/api/models/model-image/atoms?limit=abc",
        "/api/models/model-image/atoms?offset=-1",
        "/api/models/model-image/atoms?sort=bogus",
        "/api/models/model-image/atoms?order=up",
        "/api/models/model-image/atoms?min_faithfulness=nan",
        "/api/models/model-image/atoms?min_usage=2",
        "/api/models/model-image/atoms?q=" + "x" * 201,
        "/api/models/model-image/atoms?described=maybe",
        "/api/models/nothing/atoms",
        "/api/models/model-image/atoms/64",
        "/api/models/model-image/atoms/-1",
        "/api/models/model-image/atoms/1.5",
        "/api/models/..%2F..%2Fetc/atoms",
        "/api/items/100000",
        "/api/items/x",
        "/api/items?limit=1000",
        "/api/items/99999/thumbnail.png",
        "/api/search",
        "/api/search?q=",
        "/api/search?q=" + "y" * 201,
        "/api/search?q=cat&limit=51",
        "/api/decompose",
        "/api/decompose?row=-5",
        "/api/decompose?row=1e3",
        "/api/decompose?row=99999",
        "/api/nothing/here",
    ],
)
def test_malformed_requests_get_a_4xx_json_error(client, url):
    r = client.get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"] and "\n" not in body["error"]


def test_a_run_with_missing_parts_still_serves(emoji_run, tmp_path):
    part = tmp_path / "partial"
    part.mkdir()
    shutil.copytree(emoji_run / "model-image", part / "model-image")  # no store, no descriptions, no metrics
    c = checked_client(part)
    ov = c.get("/api/overview").json()
    assert any("embedding store" in m for m in ov["missing"]) and any("descriptions" in m for m in ov["missing"])
    page = c.get("/api/models/model-image/atoms").json()
    assert page["total"] == 64 and all(a["description"] is None for a in page["atoms"])
    assert len(c.get("/api/models/model-image/atoms/0").json()["nearest"]) == 5  # from the dictionary alone
    r = c.get("/api/decompose", params={"row": 0})
    assert r.status_code == 404 and "no embedding store" in r.json()["error"]
    # with the store but still no descriptions: atoms get their top items from the codes
    shutil.copytree(emoji_run / "store", part / "store")
    (part / "broken-model").mkdir()
    (part / "broken-model" / "config.json").write_text("{not json")
    (part / "broken-model" / "dictionary.safetensors").write_bytes(b"")
    c = checked_client(part)
    ov = c.get("/api/overview").json()
    broken = next(m for m in ov["models"] if m["id"] == "broken-model")
    assert "unreadable config.json" in broken["problem"]
    a = c.get("/api/models/model-image/atoms/0").json()
    assert a["description"] is None and "explain" in a["note"] and a["top_positive"]
    assert c.get("/api/models/broken-model/atoms").status_code == 404
    assert c.get("/api/decompose", params={"row": 0}).status_code == 200


def test_damaged_files_in_a_run_are_reported_not_fatal(emoji_run, tmp_path):
    run = tmp_path / "damaged"
    run.mkdir()
    shutil.copytree(emoji_run / "model-image", run / "model-image")
    shutil.copytree(emoji_run / "atoms-image", run / "atoms-image")
    bad = run / "model-odd"
    shutil.copytree(emoji_run / "model-text", bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "data": [1, 2], "params": []}))
    (run / "metrics.json").write_text(
        '{"models": {"model-image": {"explained_signal": NaN, "when": "today"}, "model-odd": 3}}'
    )
    (run / "atoms-image" / "summary.json").write_text("[]")
    c = checked_client(run)
    r = c.get("/api/overview")
    assert r.status_code == 200 and "NaN" not in r.text
    ov = r.json()
    models = {m["id"]: m for m in ov["models"]}
    assert "params and data must be objects" in models["model-odd"]["problem"]
    # metrics.json is read through its schema, as everywhere: refused in one line, not half-read
    assert models["model-image"]["heldout"] is None
    assert any("summary.json unreadable" in p for p in ov["problems"])
    assert any("not a valid metrics.json" in p and "held-out metrics not shown" in p for p in ov["problems"])
    assert c.get("/api/models/model-image/atoms/0").json()["description"]  # atoms.jsonl still read
    assert c.get("/api/models/model-odd/atoms").status_code == 404


def test_export_refuses_to_replace_what_it_did_not_write(emoji_run, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    for target, why in ((emoji_run.parent, "holds the run folder"), (tmp_path, "is not an earlier export")):
        assert main(["export-site", str(emoji_run), str(target), "--quiet"]) == 2
        assert why in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine" and (emoji_run / "store").is_dir()


def test_export_site_writes_every_page_and_never_a_partial_folder(emoji_run, tmp_path, monkeypatch):
    out = tmp_path / "site"
    counts = export_site(emoji_run, out, show_progress=False)
    assert counts == {"models": 3, "atoms": 192, "items": Run(emoji_run).store.count}
    assert (out / "index.html").is_file() and (out / "static" / "app.js").is_file()
    text = (out / "data" / "atoms-model-image-0.js").read_text()
    assert text.startswith('(window.DBKSVD_DATA=window.DBKSVD_DATA||{})["atoms/model-image/0"]=')
    assert len(list((out / "thumbs").glob("*.png"))) == counts["items"]
    # an interrupted export leaves the old site untouched and no temporary folder
    import dbksvd.web.run as web_run

    def boom(self, row):
        raise KeyboardInterrupt

    monkeypatch.setattr(web_run.Run, "decompose", boom)
    with pytest.raises(KeyboardInterrupt):
        export_site(emoji_run, out, show_progress=False)
    assert (out / "index.html").is_file() and [p.name for p in tmp_path.iterdir()] == ["site"]


def test_cli_errors_are_one_line_with_exit_2(emoji_run, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dbksvd: error:") and "no such run folder" in err and "\n" not in err
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert main(["serve", str(emoji_run), "--port", str(busy)]) == 2
        assert f"port {busy}" in capsys.readouterr().err
    assert main(["export-site", str(emoji_run), str(emoji_run / "site")]) == 2
    assert "inside the run folder" in capsys.readouterr().err
    assert not (emoji_run / "site").exists()
