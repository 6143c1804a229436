"""``dbksvd embed``: a dataset through an encoder into an on-disk store (docs/store.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from ..config import Count, Flag, cli, config_dataclass
from . import EXIT_INTERRUPTED
from ._shared import Quiet


@config_dataclass
class EmbedConfig:
    """embed a dataset into an on-disk store (resumable)"""

    dataset: Annotated[str, cli(metavar="DATASET")]
    """emoji, fashion-mnist, wordnet-glosses, folder:PATH or texts:PATH[#column] (.txt, .jsonl,
    .parquet)."""
    out: Annotated[str, cli(metavar="DIR")]
    """Store folder to write; a rerun of the same command resumes or reuses it."""
    encoder: Annotated[str | None, cli(metavar="ENCODER")] = None
    """effnet-lite0 (default for images), minilm (default for texts), clip:NAME_OR_PATH,
    vit:NAME_OR_PATH, hf:NAME_OR_PATH (any text transformer: BERT, GPT-2, Pythia, Gemma...)."""
    text_encoder: Annotated[str | None, cli(metavar="ENCODER")] = None
    """Encoder of an image dataset's captions (default: the encoder's own text tower, else
    minilm); none to skip the captions."""
    layer: Annotated[int | None, cli(metavar="L")] = None
    """Hidden state L (0: embeddings, L: after block L; negative counts from the end): the
    class token of clip/vit, the residual stream of minilm/hf (with --tokens)."""
    tokens: Flag = False
    """One row per token of every text: the residual stream at --layer (text datasets; minilm, hf:)."""
    patches: Flag = False
    """One row per patch of every image: clip/vit patch tokens at --layer, effnet-lite0's last
    7x7 feature map (image datasets)."""
    context: Annotated[Count | None, cli(metavar="TOKENS")] = None
    """--tokens: tokens per model input, special tokens included (default: the model's, at
    most 1024; minilm 256); longer texts are split into windows, never truncated."""
    stride: Annotated[Count | None, cli(metavar="TOKENS")] = None
    """--tokens: tokens between the starts of consecutive windows of a long text (default:
    half the context); each token is stored once, from the window that gives it most left context."""
    keep_bos: Flag = False
    """--tokens: also store each text's BOS/CLS token (left out by default: its norm dwarfs the rest)."""
    class_token: Flag = False
    """--patches: also store the class token of clip/vit (as position -1)."""
    dtype: Literal["float16", "float32"] = "float16"
    """Dtype of the stored rows."""
    shard_rows: Annotated[Count, cli(metavar="ROWS")] = 4096
    """Rows per shard file (a shard is the unit of resumption)."""
    batch_size: Annotated[Count, cli(metavar="ITEMS")] = 64
    """Items per encoder call."""
    device: Annotated[str | None, cli(metavar="DEVICE")] = None
    """cpu, cuda, cuda:N (default: cuda when present)."""
    quiet: Quiet = False


CONFIG = EmbedConfig


def run(cfg: EmbedConfig) -> int:
    from ..data.datasets import get_dataset
    from ..embedding import embed_dataset
    from ..encoders import get_encoder
    from ..errors import ParameterError

    granularity = "token" if cfg.tokens else "patch" if cfg.patches else "item"
    if cfg.tokens and cfg.patches:
        raise ParameterError("--tokens and --patches exclude each other (tokens: texts, patches: images)")
    if not cfg.tokens and (cfg.context is not None or cfg.stride is not None or cfg.keep_bos):
        raise ParameterError("--context, --stride and --keep-bos apply with --tokens")
    if cfg.class_token and not cfg.patches:
        raise ParameterError("--class-token applies with --patches")
    dataset = get_dataset(cfg.dataset)
    name = cfg.encoder or ("minilm" if dataset.modality == "text" else "effnet-lite0")
    window = {"context": cfg.context, "stride": cfg.stride, "keep_bos": cfg.keep_bos} if cfg.tokens else {}
    encoder = get_encoder(name, device=cfg.device, layer=cfg.layer, **window)
    text_encoder = None
    if cfg.text_encoder and cfg.text_encoder != "none":
        text_encoder = get_encoder(cfg.text_encoder, device=cfg.device)
    try:
        store = embed_dataset(
            dataset,
            cfg.out,
            encoder,
            text_encoder=text_encoder,
            dtype=cfg.dtype,
            shard_rows=cfg.shard_rows,
            batch_size=cfg.batch_size,
            show_progress=not cfg.quiet,
            captions=cfg.text_encoder != "none",
            granularity=granularity,
            class_token=cfg.class_token,
        )
    except KeyboardInterrupt:
        from ..data.store import is_store, read_manifest

        done = read_manifest(Path(cfg.out))["count"] if is_store(cfg.out) else 0
        print(
            f"dbksvd: interrupted; {done} rows are safely in {cfg.out}; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    m = store.manifest
    spaces = ", ".join(f"{k} {v['dim']}-d ({v['encoder'].get('name')})" for k, v in m["spaces"].items())
    skipped = sum(m["skipped"].values())
    per = "" if store.granularity == "item" else f" ({store.granularity}s of {store.n_items} items)"
    print(f"store {cfg.out}: {store.count} rows{per} of {m['dataset'].get('name')}; spaces: {spaces}")
    if skipped:
        print(f"skipped {skipped} items: " + ", ".join(f"{c} {r}" for r, c in m["skipped"].items()))
    return 0
