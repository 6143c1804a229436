"""Load on the explorer: 50 concurrent clients, 5,000 requests, against `dbksvd serve`.

Claim
-----
The explorer of the built-in emoji run answers a realistic mix of requests from 50 concurrent
clients with no error, and its dynamic API stays within a small factor of serving the same
pages as precomputed files.

What it measures
----------------
``dbksvd serve RUN`` runs in a subprocess on 127.0.0.1 (``RUN`` default ``runs/emoji``, written
by ``dbksvd demo --no-serve``). ``--clients`` (50) threads, each with its own keep-alive HTTP
connection, send ``--requests`` (5,000) requests in all, drawn at random (seed ``--seed``) from
this mix: 30% gallery pages (a random model, sort key, order and page), 25% atom pages, 20%
item thumbnails, 10% searches (a random caption word: description words, text embeddings of
the query, nearest captions), 10% decompositions of a random item under every model, 5% the
overview. Every answer must be HTTP 200 with a body; anything else, or a connection error, is
an error. Printed: errors, throughput and p50 / p90 / p99 / max latency, overall and per kind.

Peer: the same clients and mix against the run's static export (``dbksvd export-site``)
served by Python's ``http.server`` (``ThreadingHTTPServer``): each request kind fetches the
file that holds the same answer (the model's atom index for a gallery page, the atom's chunk,
the thumbnail PNG, the item's decomposition chunk, the overview; searches fetch the item list).
Ratios are dynamic / static latency.

Target: 0 errors (PASS / FAIL). Results: ``benchmarks/results/serve_load-<UTC time>.json``
(``--results-dir``; ``--json OUT`` also writes a copy); the exit status is 1 when the target
fails or the server does not start (the last line says so), 2 when there is no run folder,
else 0.

How to run
----------
::

    dbksvd demo --no-serve                   # once: writes runs/emoji
    python benchmarks/serve_load.py          # about a minute on 2 cores
    python benchmarks/serve_load.py --no-peer --requests 20000
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from urllib.parse import quote, urlencode

import _common  # benchmarks/_common.py: this script's folder is sys.path[0]
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plan(overview: dict, items: int, words: list[str], n: int, rng: np.random.Generator) -> list[tuple[str, dict]]:
    """``n`` requests as (kind, parameters)."""
    models = [m for m in overview["models"] if not m["problem"]]
    kinds = rng.choice(
        ["gallery", "atom", "thumbnail", "search", "decompose", "overview"],
        size=n,
        p=[0.30, 0.25, 0.20, 0.10, 0.10, 0.05],
    )
    plan = []
    for kind in kinds:
        m = models[rng.integers(len(models))]
        if kind == "gallery":
            pages = max(1, -(-m["atoms"] // 48))
            p = {
                "model": m["id"],
                "sort": str(rng.choice(["usage", "faithfulness", "specificity", "atom"])),
                "order": str(rng.choice(["asc", "desc"])),
                "page": int(rng.integers(pages)),
            }
        elif kind == "atom":
            p = {"model": m["id"], "atom": int(rng.integers(m["atoms"]))}
        elif kind in ("thumbnail", "decompose"):
            p = {"row": int(rng.integers(items))}
        elif kind == "search":
            p = {"q": str(rng.choice(words))}
        else:
            p = {}
        plan.append((str(kind), p))
    return plan


def _dynamic_url(kind: str, p: dict) -> str:
    if kind == "gallery":
        q = urlencode({"sort": p["sort"], "order": p["order"], "offset": 48 * p["page"], "limit": 48})
        return f"/api/models/{quote(p['model'])}/atoms?{q}"
    if kind == "atom":
        return f"/api/models/{quote(p['model'])}/atoms/{p['atom']}"
    if kind == "thumbnail":
        return f"/api/items/{p['row']}/thumbnail.png"
    if kind == "decompose":
        return f"/api/decompose?row={p['row']}"
    if kind == "search":
        return f"/api/search?{urlencode({'q': p['q']})}"
    return "/api/overview"


def _static_url(kind: str, p: dict) -> str:
    from dbksvd.web.export import CHUNK
    from dbksvd.web.run_folder import slug

    if kind == "gallery":
        return f"/data/index-{slug(p['model'])}.js"
    if kind == "atom":
        return f"/data/atoms-{slug(p['model'])}-{p['atom'] // CHUNK}.js"
    if kind == "thumbnail":
        return f"/thumbs/{p['row']}.png"
    if kind == "decompose":
        return f"/data/decompose-{p['row'] // CHUNK}.js"
    if kind == "search":
        return "/data/items.js"
    return "/data/overview.js"


def _load(port: int, urls: list[tuple[str, str]], clients: int) -> tuple[list[tuple[str, float, bool]], float]:
    """Send every (kind, url) with ``clients`` threads; returns (kind, seconds, ok) per request
    and the wall time."""
    results: list[tuple[str, float, bool]] = []
    lock = threading.Lock()
    next_index = iter(range(len(urls)))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            kind, url = urls[i]
            t0 = time.perf_counter()
            try:
                conn.request("GET", url)
                res = conn.getresponse()
                body = res.read()
                ok = res.status == 200 and len(body) > 0
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                results.append((kind, time.perf_counter() - t0, ok))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - t0


def _stats(results: list[tuple[str, float, bool]]) -> dict[str, dict[str, float]]:
    out = {}
    for kind in ["all"] + sorted({k for k, _, _ in results}):
        sec = np.array([s for k, s, _ in results if kind in ("all", k)]) * 1000
        errors = sum(1 for k, _, ok in results if kind in ("all", k) and not ok)
        out[kind] = {
            "n": len(sec),
            "errors": errors,
            "p50": float(np.percentile(sec, 50)),
            "p90": float(np.percentile(sec, 90)),
            "p99": float(np.percentile(sec, 99)),
            "max": float(sec.max()),
        }
    return out


def _print(title: str, stats: dict, wall: float, peer: dict | None = None) -> None:
    print(
        f"\n{title}: {stats['all']['n']} requests in {wall:.1f} s ({stats['all']['n'] / wall:.0f} req/s), "
        f"{stats['all']['errors']} errors"
    )
    head = f"{'kind':<10} {'n':>5} {'errors':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    print(head + ("   p50 / static   p99 / static" if peer else ""))
    for kind, s in stats.items():
        line = f"{kind:<10} {s['n']:>5} {s['errors']:>6} {s['p50']:>8.1f} {s['p90']:>8.1f} {s['p99']:>8.1f} {s['max']:>8.1f}"
        if peer and kind in peer:
            line += f"   {s['p50'] / peer[kind]['p50']:>12.2f}   {s['p99'] / peer[kind]['p99']:>12.2f}"
        print(line)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/emoji", help="run folder (default runs/emoji: dbksvd demo --no-serve)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="dbksvd serve --workers (default 1)")
    ap.add_argument("--no-peer", action="store_true", help="skip the static-file peer")
    _common.add_output_options(ap)
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "store").is_dir():
        print(f"{run}: no run folder; run `dbksvd demo --no-serve` first", file=sys.stderr)
        return 2
    from dbksvd.data import EmbeddingStore

    store = EmbeddingStore(run / "store")
    words = sorted({w for m in store.metadata() for w in (m.get("caption") or "").split() if len(w) > 3})
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbksvd.cli", "serve", str(run), "--port", str(port), "--workers", str(args.workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if not re.search(r"http://", line):
            print(f"dbksvd serve did not start: {line}{proc.stdout.read()}", file=sys.stderr)
            return 1
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("GET", "/api/overview")
        overview = json.loads(conn.getresponse().read())
        t0 = time.perf_counter()
        for _ in range(4 * args.workers):  # each worker loads its text encoder on its first search
            conn.request("GET", "/api/search?q=warm")
            conn.getresponse().read()
        conn.close()
        warmup = time.perf_counter() - t0
        print(
            f"explorer of {run} on port {port}: {len(overview['models'])} models, {store.count} items "
            f"(warm-up searches {warmup:.1f} s); {args.workers} worker(s), {args.clients} clients, "
            f"{args.requests} requests"
        )
        plan = _plan(overview, store.count, words, args.requests, np.random.default_rng(args.seed))
        results, wall = _load(port, [(k, _dynamic_url(k, p)) for k, p in plan], args.clients)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    dynamic = _stats(results)
    peer = None
    if not args.no_peer:
        from dbksvd.web.export import export_site

        with tempfile.TemporaryDirectory() as tmp:
            site = Path(tmp) / "site"
            export_site(run, site, show_progress=False)
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(site)))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                peer_results, peer_wall = _load(
                    server.server_address[1], [(k, _static_url(k, p)) for k, p in plan], args.clients
                )
            finally:
                server.shutdown()
        peer = _stats(peer_results)
        _print("static export through http.server (peer)", peer, peer_wall)
    _print("dbksvd serve", dynamic, wall, peer)
    print()
    targets = _common.Targets()
    targets(
        f"0 errors over {dynamic['all']['n']} requests from {args.clients} clients",
        f"{dynamic['all']['errors']} errors",
        dynamic["all"]["errors"] == 0,
    )
    figures = {
        "run": str(run),
        "models": len(overview["models"]),
        "items": store.count,
        "workers": args.workers,
        "clients": args.clients,
        "requests": args.requests,
        "seed": args.seed,
        "warmup_seconds": warmup,
        "dynamic": {"wall_seconds": wall, "requests_per_s": dynamic["all"]["n"] / wall, "latency_ms": dynamic},
        "static_peer": None
        if peer is None
        else {"wall_seconds": peer_wall, "requests_per_s": peer["all"]["n"] / peer_wall, "latency_ms": peer},
    }
    return _common.finish("serve_load", args, figures, targets)


if __name__ == "__main__":
    sys.exit(main())
