"""``dbksvd demo``: the built-in offline job (:mod:`dbksvd.pipeline`), then the explorer."""

from __future__ import annotations

from pathlib import Path

from ..pipeline import DemoConfig, run_demo, run_synthetic
from .serve import serve_run

CONFIG = DemoConfig


def run(cfg: DemoConfig) -> int:
    if cfg.synthetic:
        run_synthetic(cfg)
        return 0
    run_demo(cfg)
    if not cfg.serve:
        return 0
    print(f"6/6 serving the explorer of {cfg.workdir} (Ctrl-C stops it)")
    return serve_run(Path(cfg.workdir), cfg.host, cfg.port, find_free_port=True)
