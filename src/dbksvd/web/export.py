"""``dbksvd export-site RUN_DIR OUT_DIR``: the explorer as a static site.

The same front end (``static/``) reads its answers from ``data/*.js`` files instead of the API.
They are scripts that fill ``window.DBKSVD_DATA`` (not JSON fetched with ``fetch``), so the site
works from any static host and from ``file://``, where browsers refuse ``fetch``. Everything
the server computes per request is computed here once: atom cards and records, item lists,
every exported item's decomposition, thumbnails. Search matches words only (no text encoder
runs in a browser) and there is no upload.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import progress
from ..errors import NotFoundError, ParameterError
from ..io import atomic_path
from .app import STATIC
from .queries import dumps
from .run import Run
from .run_folder import slug

#: Atom records and decompositions per data file.
CHUNK = 100


def _write_js(path: Path, key: str, value: Any) -> None:
    text = dumps(value)
    # "</" inside a string must not end an inline script; U+2028/9 are line ends in older JS
    text = text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    path.write_text(f"(window.DBKSVD_DATA=window.DBKSVD_DATA||{{}})[{json.dumps(key)}]={text};\n", encoding="utf-8")


def _top_rows(run: Run, models: list) -> set[int]:
    """Store rows that are some atom's top item (either sign) in any of ``models``."""
    return {
        t["row"]
        for entry in models
        for rec in run.atoms(entry)
        for side in ("top_positive", "top_negative")
        for t in rec.get(side, [])
    }


def _exported_rows(run: Run, models: list, max_items: int) -> np.ndarray:
    """Item rows that get pages: all when the store has at most ``max_items``, else every
    atom's top items and the first rows up to ``max_items``."""
    if run.store is None:
        return np.zeros(0, dtype=np.int64)
    n = run.store.count
    if n <= max_items:
        return np.arange(n)
    return np.array(sorted(set(range(max_items)) | _top_rows(run, models)), dtype=np.int64)


def export_site(
    run_dir: str | Path, out: str | Path, *, max_items: int = 20000, show_progress: bool = True
) -> dict[str, int]:
    """Write the static explorer of ``run_dir`` to ``out`` (replaced atomically: a failed or
    interrupted export leaves no partial folder). Returns counts of models, atoms, items."""
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 0:
        raise ParameterError(f"max_items must be a non-negative integer, got {max_items!r}")
    run = Run(run_dir)
    out = Path(out).resolve()
    if out == run.path or out.is_relative_to(run.path):
        raise ParameterError(f"{out} is inside the run folder; export the site somewhere else")
    if run.path.is_relative_to(out):
        raise ParameterError(f"{out} holds the run folder; export the site somewhere else")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "data" / "site.js").is_file())):
        raise ParameterError(f"{out} exists and is not an earlier export; choose an empty or new folder")
    models = run.usable()
    rows = _exported_rows(run, models, max_items)
    features = run.features()
    # thumbnails: the exported items and every atom's top items
    shown = {int(r) for r in rows} | (_top_rows(run, models) if features["thumbnails"] else set())
    total = sum(e.n_atoms for e in models) + len(rows) + (len(shown) if features["thumbnails"] else 0)
    bar = progress(total, "export site", enabled=show_progress, unit="step")
    with atomic_path(out, directory=True) as tmp:
        shutil.copy2(STATIC / "index.html", tmp / "index.html")
        (tmp / "static").mkdir()
        for name in ("app.js", "style.css"):
            shutil.copy2(STATIC / name, tmp / "static" / name)
        data = tmp / "data"
        data.mkdir()
        (data / "site.js").write_text(f"window.DBKSVD_STATIC={json.dumps({'chunk': CHUNK, 'version': 1})};\n")
        atoms = 0
        for entry in models:
            recs = run.atoms(entry)
            cards = [{**run.atom_card(r), "text": t} for r, t in zip(recs, run.columns(entry).text)]
            _write_js(data / f"index-{slug(entry.id)}.js", f"index/{entry.id}", {"model": entry.id, "atoms": cards})
            for start in range(0, len(recs), CHUNK):
                chunk = {j: run.atom(entry.id, j) for j in range(start, min(start + CHUNK, len(recs)))}
                _write_js(
                    data / f"atoms-{slug(entry.id)}-{start // CHUNK}.js", f"atoms/{entry.id}/{start // CHUNK}", chunk
                )
                bar.update(len(chunk))
            atoms += len(recs)
        _write_js(data / "items.js", "items", [run.item(int(r)) for r in rows])
        chunks: dict[int, dict[int, Any]] = {}
        for r in rows:
            chunks.setdefault(int(r) // CHUNK, {})[int(r)] = run.decompose(int(r))
            bar.update(1)
        for c, value in chunks.items():
            _write_js(data / f"decompose-{c}.js", f"decompose/{c}", value)
        if features["thumbnails"]:
            thumbs = tmp / "thumbs"
            thumbs.mkdir()
            for r in sorted(shown):
                try:
                    (thumbs / f"{r}.png").write_bytes(run.thumbnail(r))
                except NotFoundError:  # that item's pages show its caption instead
                    if run.dataset is None:  # the dataset itself is gone: no thumbnail at all
                        break
                bar.update(1)
        for report in run.reports:
            for rel in [*report["plots"], report["html"]]:
                target = tmp / "files" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run.file(rel), target)
        overview = run.overview()  # last: it lists every problem met while exporting
        overview["features"] = {**features, "upload": False, "embedding_search": False}
        overview["exported_items"] = int(len(rows))
        _write_js(data / "overview.js", "overview", overview)
    bar.close()
    return {"models": len(models), "atoms": atoms, "items": int(len(rows))}
