"""``dbksvd serve``: the interactive explorer of a run folder (docs/explorer.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro

from ..config import Count, cli, config_dataclass


@config_dataclass
class ServeConfig:
    """the interactive explorer of a run folder (store, models, descriptions)"""

    run: Annotated[str, tyro.conf.Positional, cli(metavar="RUN")]
    """Run folder, e.g. runs/emoji (docs/explorer.md)."""
    host: str = "127.0.0.1"
    """Address to bind (127.0.0.1: this machine only)."""
    port: Annotated[int, cli(metavar="PORT")] = 8000
    """Port (0: one the system chooses)."""
    workers: Annotated[Count, cli(metavar="N")] = 1
    """Server processes (each loads the run; more serve more clients on more cores)."""


CONFIG = ServeConfig


def run(cfg: ServeConfig) -> int:
    return serve_run(Path(cfg.run), cfg.host, cfg.port, workers=cfg.workers)


def serve_run(run: Path, host: str, port: int, workers: int = 1, find_free_port: bool = False) -> int:
    """Serve the explorer of ``run`` until Ctrl-C (exit 0: nothing is lost, the server only reads)."""
    from ..web.app import serve

    serve(
        run,
        host=host,
        port=port,
        workers=workers,
        find_free_port=find_free_port,
        on_ready=lambda url: print(f"explorer: {url}  (Ctrl-C to stop)", flush=True),
    )
    return 0
