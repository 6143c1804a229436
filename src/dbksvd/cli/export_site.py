"""``dbksvd export-site``: the explorer of a run folder as static files (docs/explorer.md)."""

from __future__ import annotations

from typing import Annotated

import tyro

from ..config import Count, cli, config_dataclass
from ._shared import Quiet


@config_dataclass
class ExportSiteConfig:
    """the explorer of a run folder as a static site (works from file://)"""

    run: Annotated[str, tyro.conf.Positional, cli(metavar="RUN")]
    """Run folder."""
    out: Annotated[str, tyro.conf.Positional, cli(metavar="OUT")]
    """Folder to write (index.html and data/)."""
    max_items: Annotated[Count, cli(metavar="N")] = 20000
    """Items with pages and thumbnails at most (the atoms' top items always have them)."""
    quiet: Quiet = False


CONFIG = ExportSiteConfig


def run(cfg: ExportSiteConfig) -> int:
    from ..web.export import export_site

    summary = export_site(cfg.run, cfg.out, max_items=cfg.max_items, show_progress=not cfg.quiet)
    print(
        f"wrote {cfg.out}/index.html ({summary['models']} models, {summary['atoms']} atoms, "
        f"{summary['items']} items); open it in a browser, no server needed"
    )
    return 0
