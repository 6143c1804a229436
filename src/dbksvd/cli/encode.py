"""``dbksvd encode``: the sparse codes of a set of rows, as a codes file (docs/model-format.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ..config import Count, cli, config_dataclass
from ._shared import ArrayKey, Device, InputRows, ModelFolder, open_model_and_rows


@config_dataclass
class EncodeConfig:
    """sparse-code an array file or a store with a fitted model"""

    model: ModelFolder
    input: InputRows
    out: Annotated[str, cli(metavar="FILE")]
    """Codes file to write (.safetensors is added when missing): 'indices' and 'values' (n, k),
    'row_norms' (n,) for a normalizing model."""
    key: ArrayKey = None
    space: Annotated[str | None, cli(metavar="SPACE")] = None
    """Store space to code (default: the space the model was fitted on)."""
    batch_size: Annotated[Count | None, cli(metavar="ROWS")] = None
    """Rows coded at once (default: the model's chunk size)."""
    device: Device = None


CONFIG = EncodeConfig


def run(cfg: EncodeConfig) -> int:
    from ..io import save_tensors

    model, X = open_model_and_rows(cfg.model, cfg.input, cfg.key, cfg.space, cfg.device)
    codes = model.transform(X, batch_size=cfg.batch_size)
    out = Path(cfg.out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    tensors = {"indices": codes.indices, "values": codes.values}
    if codes.row_norms is not None:
        tensors["row_norms"] = codes.row_norms
    save_tensors(
        out, tensors, metadata={"n_atoms": str(codes.n_atoms), "format": "dbksvd-codes", "format_version": "1"}
    )
    print(f"wrote codes for {len(codes)} rows (k={codes.indices.shape[1]}, K={codes.n_atoms}) to {out}")
    return 0
