"""The explorer's web app: a JSON API under ``/api`` (OpenAPI schema at ``/api/openapi.json``,
docs at ``/api/docs``) over :class:`dbksvd.web.run.Run`, the front end in ``static/``, and the
run folder's own files under ``/files`` (reports, plots; nothing outside the folder).

Every answer's type is a model of ``schemas.py``, declared on its route. Every error is a JSON
object ``{"error": "one line"}``: 404 for what does not exist, 400 for a bad value, 413 for an
upload that is too large, 422 for a malformed parameter.
"""

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DbksvdError, MissingDependencyError, NotFoundError, ParameterError
from .queries import MAX_PAGE, MAX_QUERY_CHARS, MAX_SEARCH_HITS, SORT_KEYS, dumps
from .run import MAX_UPLOAD_BYTES, Run

STATIC = Path(__file__).parent / "static"


def _fastapi():
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingDependencyError("the explorer needs fastapi and uvicorn: pip install 'dbksvd[serve]'") from None


def _json_response(content: Any, status: int = 200) -> Any:
    """A JSON response rendered with json.dumps directly: FastAPI's per-field encoder of a
    returned dict costs more than the query itself for atom records. (A route that returns a
    Response is neither validated nor encoded against its ``response_model``, which then only
    documents the answer.)"""
    from fastapi.responses import Response

    return Response(dumps(content), status_code=status, media_type="application/json")


#: What each error status means, for the OpenAPI document.
_ERROR_MEANINGS = {
    400: "a value the run refuses (an atom or row past the end, an unknown sort key, an unreadable upload)",
    404: "no such model, item or store",
    413: "an upload over the size limit",
    422: "a parameter that breaks the schema's bounds or types",
    500: "an unexpected failure",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that may answer these error statuses."""
    from .schemas import ErrorAnswer

    return {status: {"model": ErrorAnswer, "description": _ERROR_MEANINGS[status]} for status in statuses}


def create_app(run: Run | str | Path) -> Any:
    """The FastAPI application serving ``run`` (a :class:`Run` or a run folder path)."""
    _fastapi()
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from . import schemas

    run = run if isinstance(run, Run) else Run(run)
    app = FastAPI(
        title="dbksvd explorer",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        description=f"Atoms, descriptions and sparse codes of the run {run.path.name}.",
        responses=_errors(500),
    )
    app.state.run = run

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

    @app.exception_handler(DbksvdError)
    async def _dbksvd_error(request: Request, exc: DbksvdError) -> JSONResponse:
        return error(404 if isinstance(exc, NotFoundError) else 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error(422, f"{where}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # never a bare traceback
        return error(500, f"internal error ({type(exc).__name__})")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/data/site.js", include_in_schema=False)
    def site_js() -> Response:  # only the static export has one: served, the front end uses the API
        return Response("// served by dbksvd serve: the front end reads /api\n", media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/files/{path:path}", include_in_schema=False)
    def run_file(path: str) -> FileResponse:
        return FileResponse(run.file(path))

    @app.get(
        "/api/overview",
        summary="The run: dataset, spaces, models with their scores, reports, what is missing",
        response_model=schemas.Overview,
    )
    def overview() -> Response:
        return _json_response(run.overview())

    @app.get(
        "/api/models/{model}/atoms",
        summary="One page of a model's atoms, sorted and filtered",
        response_model=schemas.GalleryPage,
        responses=_errors(400, 404, 422),
    )
    def atoms(
        model: str,
        sort: str = Query("usage", description=f"one of {', '.join(SORT_KEYS)}"),
        order: str = Query("desc", pattern="^(asc|desc)$"),
        q: str = Query("", max_length=MAX_QUERY_CHARS, description="words every shown description contains"),
        min_faithfulness: float | None = Query(None, ge=0, le=1),
        min_specificity: float | None = Query(None, ge=0, le=1),
        min_usage: float | None = Query(None, ge=0, le=1),
        described: bool | None = None,
        offset: int = Query(0, ge=0, le=10**9),
        limit: int = Query(48, ge=1, le=MAX_PAGE),
    ) -> Response:
        return _json_response(
            run.gallery(
                model,
                sort=sort,
                order=order,
                q=q,
                min_faithfulness=min_faithfulness,
                min_specificity=min_specificity,
                min_usage=min_usage,
                described=described,
                offset=offset,
                limit=limit,
            )
        )

    @app.get(
        "/api/models/{model}/atoms/{atom}",
        summary="One atom: description, scores, top items, histogram, alternatives, nearest atoms",
        response_model=schemas.AtomAnswer,
        responses=_errors(400, 404, 422),
    )
    def atom(model: str, atom: int) -> Response:
        return _json_response(run.atom(model, atom))

    @app.get(
        "/api/items",
        summary="Items whose caption or id contains every word of q",
        response_model=schemas.ItemsPage,
        responses=_errors(404, 422),
    )
    def items(
        q: str = Query("", max_length=MAX_QUERY_CHARS),
        offset: int = Query(0, ge=0, le=10**9),
        limit: int = Query(48, ge=1, le=MAX_PAGE),
    ) -> Response:
        return _json_response(run.items(q, offset, limit))

    @app.get("/api/items/{row}", summary="One item", response_model=schemas.Item, responses=_errors(400, 404, 422))
    def item(row: int) -> Response:
        return _json_response(run.item(row))

    @app.get(
        "/api/items/{row}/thumbnail.png",
        summary="An item's image, small",
        response_class=Response,  # only the image/png below, no JSON 200 in the schema
        responses={200: {"content": {"image/png": {}}}, **_errors(400, 404, 422)},
    )
    def thumbnail(row: int) -> Response:
        return Response(run.thumbnail(row), media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    @app.get(
        "/api/search",
        summary="Free text -> atoms (by description words and text embedding) and items",
        response_model=schemas.SearchAnswer,
        responses=_errors(400, 422),
    )
    def search(
        q: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS),
        limit: int = Query(10, ge=1, le=MAX_SEARCH_HITS),
    ) -> Response:
        return _json_response(run.search(q, limit))

    @app.get(
        "/api/decompose",
        summary="An item's sparse code under every model, side by side",
        response_model=schemas.Decomposition,
        responses=_errors(400, 404, 422),
    )
    def decompose(row: int = Query(..., ge=0)) -> Response:
        return _json_response(run.decompose(row))

    @app.post(
        "/api/decompose/image",
        summary="An uploaded image's sparse code under every image model "
        f"(the request body is the image file, at most {MAX_UPLOAD_BYTES} bytes)",
        response_model=schemas.Decomposition,
        responses=_errors(400, 413),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def decompose_image(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            return error(413, f"the upload is {declared} bytes; at most {MAX_UPLOAD_BYTES} are allowed")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_UPLOAD_BYTES:
                return error(413, f"the upload is over {MAX_UPLOAD_BYTES} bytes, the most allowed")
        from starlette.concurrency import run_in_threadpool

        return _json_response(await run_in_threadpool(run.decompose_image, bytes(body)))

    @app.get("/api/{rest:path}", include_in_schema=False)
    def unknown(rest: str) -> JSONResponse:
        return error(404, f"no API route /api/{rest[:80]}")

    return app


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _serving_app() -> Any:
    """App factory of a worker process (``serve(..., workers=N)``): the run folder comes from
    the environment the parent process set."""
    import os

    return _prepared_app(Run(os.environ["DBKSVD_SERVE_RUN"]))


def _prepared_app(run: Run) -> Any:
    import threading

    import numba
    import torch

    # many small requests at once: one thread per request beats intra-op threads fighting
    # over the cores
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    threading.Thread(target=run.warm, name="dbksvd-warm", daemon=True).start()
    return create_app(run)


def serve(
    run: Run | str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    find_free_port: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the explorer of ``run`` until Ctrl-C (or SIGTERM). ``port`` 0: a free port the
    system chooses (no race with other programs); ``workers``: server processes (each loads
    the run; more answer more requests at once on more cores); ``find_free_port``: take the
    first free port from ``port`` on instead of refusing a busy one; ``on_ready(url)`` is
    called with the URL, its port the one bound, once the server accepts connections."""
    _fastapi()
    import uvicorn

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ParameterError(f"port must be an integer in 0..65535, got {port!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise ParameterError(f"workers must be an integer in 1..64, got {workers!r}")
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        raise ParameterError(f"cannot bind {host!r}: not an address of this machine") from None
    if port and not _port_free(host, port):
        if not find_free_port:
            raise ParameterError(f"port {port} on {host} is in use; pass another --port")
        port = next((p for p in range(port + 1, min(port + 50, 65536)) if _port_free(host, p)), 0)
    run = run if isinstance(run, Run) else Run(run)  # read once here: a bad run folder fails now
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: other machines can reach the explorer", flush=True)
    shown = f"[{host}]" if ":" in host else host
    if workers > 1:
        import os

        os.environ["DBKSVD_SERVE_RUN"] = str(run.path)
        config = uvicorn.Config(
            "dbksvd.web.app:_serving_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
    else:
        config = uvicorn.Config(_prepared_app(run), host=host, port=port, log_level="warning", access_log=False)
    # bound here, once: with port 0 the system's choice is the port of every worker and of the URL
    sock = config.bind_socket()
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    if workers > 1:
        sock.listen(config.backlog)  # connections wait in the backlog until a worker is up
        if on_ready is not None:
            on_ready(url)
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
        return

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready(url)

    _Server(config).run(sockets=[sock])
