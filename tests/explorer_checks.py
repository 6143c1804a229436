"""Helpers of the explorer's tests (test_web.py, test_browser.py): a TestClient that validates
every JSON answer against the schema its route declares, and `dbksvd serve --port 0` in a
subprocess with the URL read from its output."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

#: How long a server may take to print its URL before the test fails (it never hangs).
START_TIMEOUT_S = 300


def answer_schema(app, method: str, path: str, status: int):
    """The schema model of the answer to ``method path`` with ``status``: the route's
    ``response_model`` for 200, ErrorAnswer for every error; None for what is no API answer
    (a run file, the front end)."""
    from fastapi.routing import APIRoute

    from dbksvd.web.schemas import ErrorAnswer

    if status != 200:
        return ErrorAnswer
    for route in app.routes:
        if isinstance(route, APIRoute) and method in route.methods and route.path_regex.match(path):
            return route.response_model
    return None


def checked_client(run):
    """A TestClient of ``create_app(run)`` that validates every JSON answer (strictly, no
    extra keys) against its route's schema; ``client.validated`` counts them per route model."""
    from fastapi.testclient import TestClient

    from dbksvd.web.app import create_app

    app = create_app(run)
    client = TestClient(app, raise_server_exceptions=False)
    client.validated = Counter()

    def validate(response):
        response.read()
        if response.headers.get("content-type", "").split(";")[0] != "application/json":
            return
        schema = answer_schema(app, response.request.method, response.request.url.path, response.status_code)
        if schema is None:  # a run file that happens to be JSON (/files/metrics.json), the schema itself
            path = response.request.url.path
            assert path.startswith("/files/") or path == "/api/openapi.json", response.request.url
            return
        schema.model_validate_json(response.content, strict=True)
        client.validated[schema.__name__] += 1

    client.event_hooks = {"request": [], "response": [validate]}
    return client


@contextmanager
def serving(run: Path, *options: str):
    """``dbksvd serve RUN --port 0 OPTIONS`` in a subprocess; yields the URL it prints
    ("explorer: URL"), the port the system chose. Its output is read all along (a full pipe
    never blocks it) and it is stopped at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbksvd.cli", "serve", str(run), "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"dbksvd serve printed no URL in {START_TIMEOUT_S} s: {''.join(seen)}", pytrace=False)
            if line is None:
                pytest.fail(f"dbksvd serve exited ({proc.wait()}) without a URL: {''.join(seen)}", pytrace=False)
            seen.append(line)
            found = re.match(r"explorer: (http://\S+/)", line)
            if found:
                break
        url = found.group(1)
        assert not re.search(r":0/$", url), url  # the bound port, not the requested 0
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
