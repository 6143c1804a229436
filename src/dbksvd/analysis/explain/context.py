"""Everything about a store's space that does not depend on the dictionary, prepared once:
rows, captions and their embeddings, the item split, the way into the text space,
vocabularies and the classifier head (:func:`explain_context`, one named step each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...config import DEFAULT_TEXT_ENCODER, ExplainConfig
from ...data.splits import as_describe_select_test, split_by_item, split_rows
from ...errors import MissingDependencyError
from ...metrics import unit_rows
from .describe import CaptionTerms, token_terms
from .samples import RowSample, sample_rows
from .text import SharedSpace, TextSide


@dataclass
class ExplainContext:
    """Everything about the store that does not depend on the dictionary."""

    cfg: ExplainConfig
    rows: Any  # the store space (a row source)
    X: np.ndarray  # (n, d) its rows, in memory (token and patch stores: the sample's)
    ids: list[str]
    captions: list[str | None]
    split: dict[str, np.ndarray]  # describe / select / test row ids
    text: TextSide | None
    caption_unit: np.ndarray | None  # (n, e) unit caption embeddings, or None (no scores)
    terms: list[CaptionTerms]  # the caption terms (and, for tokens, the token strings)
    mapping: Any  # SharedSpace, a fitted LinearBridge, or None
    # (Vocabulary, its vectors in the comparison space, its vectors in the text space centred)
    vocabularies: list[tuple[Any, np.ndarray, np.ndarray]]
    head: Any  # ClassifierHead or None
    notes: list[str]
    info: dict[str, Any]
    sample: RowSample | None = None  # token and patch stores: the rows described


def explain_context(
    store: Any,
    space: str | None = None,
    config: ExplainConfig | None = None,
    *,
    split: dict[str, np.ndarray] | None = None,
    show_progress: bool = True,
    model: Any = None,
) -> ExplainContext:
    """Everything about ``store``'s space that does not depend on the dictionary: rows,
    captions and their embeddings, the item split, the bridge, vocabularies, the head.
    ``split``: ``{"describe", "select", "test"}`` row ids (default: drawn with the config's
    fractions and seed, :func:`dbksvd.data.splits.split_rows`); ``model``: checked against the
    rows before any work."""
    from ...models import check_rows

    cfg = config or ExplainConfig()
    cfg.validate()
    space = space or store.default_space()
    rows = store.space(space)
    if model is not None:
        check_rows(model, rows)
    notes: list[str] = []
    sample = None
    if store.granularity == "item":
        X = rows.to_numpy().astype(np.float32)
        meta = store.metadata()
        ids = [str(m.get("id")) for m in meta]
        captions = [m.get("caption") or None for m in meta]
    else:  # millions of rows: a sample of whole texts or images
        sample = sample_rows(store, cfg.max_rows, cfg.random_state, cfg.window)
        X = rows.take(sample.rows).astype(np.float32)
        ids, captions = sample.ids, sample.captions
        notes.extend(sample.notes)
    if split is None and sample is not None:
        split = as_describe_select_test(
            split_by_item(sample.item, cfg.test_fraction, cfg.select_fraction, cfg.random_state, max_rows=len(sample))
        )
    elif split is None:
        split = as_describe_select_test(
            split_rows(X.shape[0], cfg.test_fraction, cfg.select_fraction, cfg.random_state)
        )
    encoder_of = {name: s["encoder"]["name"] for name, s in store.manifest["spaces"].items()}
    info: dict[str, Any] = {
        "store": str(store.path),
        "space": space,
        "coder": cfg.coder or "own",
        "items": X.shape[0],
        "captioned_items": sum(c is not None for c in captions),
        "encoder": encoder_of[space],
        "split": {k: int(len(v)) for k, v in split.items()},
    }
    if sample is not None:
        info["granularity"] = store.granularity
        info["sample"] = {"rows": len(sample), "items": len(sample.item_ids), "of_rows": store.count}
        if sample.granularity == "token":
            info["window"] = cfg.window
    text_spec, text_space = _text_encoder(cfg, encoder_of)
    # a token store's rows are a hidden layer, not the text encoder's sentence embeddings
    shared = encoder_of[space] == text_spec and store.granularity == "item"
    text = TextSide(text_spec, show_progress)
    info["text_encoder"] = text_spec
    if sample is not None and sample.granularity == "token" and sample.has_texts:
        caption_rows = _token_caption_rows(sample, text)
    else:
        caption_rows = _caption_rows(store, text_space, X if shared else None, captions, text)
    caption_unit, terms = _caption_terms(caption_rows, captions, text, notes)
    if sample is not None and sample.granularity == "token" and caption_unit is not None and sample.has_texts:
        terms.append(CaptionTerms(sample.words, source="tokens", terms=token_terms))
    mapping = _text_mapping(shared, X, caption_rows, caption_unit, captions, split, cfg, info, notes)
    defaults = ("wordnet",) if store.granularity == "token" else None  # context windows are no vocabulary
    vocabularies = _vocabularies(mapping, captions, text, cfg, info, notes, defaults)
    head = _classifier_head(space, encoder_of[space], text, info, notes)
    return ExplainContext(
        cfg, rows, X, ids, captions, split, text, caption_unit, terms, mapping, vocabularies, head, notes, info, sample
    )


def _text_encoder(cfg: ExplainConfig, encoder_of: dict[str, str]) -> tuple[str, str | None]:
    """The text encoder's spec, and the store space that already holds the captions embedded
    with it (``"text"``), or None (no such space, or the user chose another text encoder)."""
    text_space = "text" if "text" in encoder_of else None
    spec = cfg.text_encoder or (encoder_of[text_space] if text_space else DEFAULT_TEXT_ENCODER)
    if text_space and cfg.text_encoder and cfg.text_encoder != encoder_of[text_space]:
        text_space = None  # embed the captions again with the chosen encoder
    return spec, text_space


def _caption_rows(
    store: Any, text_space: str | None, shared_rows: np.ndarray | None, captions: list[str | None], text: TextSide
) -> np.ndarray | None:
    """(n, e) the captions in the text space: the store's text space, the model's own rows
    (``shared_rows``, when its space is the text space) or embedded now (with at least two
    captions); zero rows for uncaptioned items; None without captions."""
    n_captioned = sum(c is not None for c in captions)
    if not n_captioned:
        return None
    if text_space:
        return store.space(text_space).to_numpy().astype(np.float32)
    if shared_rows is not None:
        return shared_rows
    if n_captioned < 2:
        return None
    present = [i for i, c in enumerate(captions) if c is not None]
    embedded = text.embed([captions[i] for i in present])  # each distinct caption once
    rows = np.zeros((len(captions), embedded.shape[1]), dtype=np.float32)
    rows[present] = embedded
    return rows


def _token_caption_rows(sample: RowSample, text: TextSide) -> np.ndarray:
    """(n, e) the caption embedding of every sampled token: the mean of the unit embeddings of
    its word and of its context window (a description may name either); each distinct text
    is embedded once."""
    windows = [c or w for c, w in zip(sample.captions, sample.words)]
    return 0.5 * (text.embed(windows) + text.embed(sample.words))


def _caption_terms(
    caption_rows: np.ndarray | None, captions: list[str | None], text: TextSide, notes: list[str]
) -> tuple[np.ndarray | None, list[CaptionTerms]]:
    """The unit caption embeddings (n, e) the scores compare descriptions with, and the caption
    term counts; (None, []) with fewer than two captions (no scores, said in ``notes``)."""
    n, n_captioned = len(captions), sum(c is not None for c in captions)
    if n_captioned < 2:
        notes.append(
            "the store has no captions: descriptions come from vocabularies and the classifier head "
            "only, and faithfulness and specificity cannot be computed"
        )
        return None, []
    caption_unit = unit_rows(caption_rows)
    text.known(captions, caption_unit)
    if n_captioned < n:
        notes.append(
            f"{n - n_captioned} of {n} items have no caption: they count as dissimilar to every "
            "description in the scores"
        )
    return caption_unit, [CaptionTerms(captions)]


def _text_mapping(
    shared: bool,
    X: np.ndarray,
    caption_rows: np.ndarray | None,
    caption_unit: np.ndarray | None,
    captions: list[str | None],
    split: dict[str, np.ndarray],
    cfg: ExplainConfig,
    info: dict[str, Any],
    notes: list[str],
) -> Any:
    """The way from the model's space into the text space: :class:`SharedSpace` when it is the
    text space, else a linear bridge learned on the describe and select items' image-caption
    pairs (its held-out recall on the test items in ``info["bridge"]``), else None."""
    space, text_spec = info["space"], info["text_encoder"]
    if shared:
        info["text_space"] = "shared with the model's space"
        return SharedSpace()
    if caption_unit is None or caption_rows is None:
        notes.append(
            f"the {space} space ({info['encoder']}) is not a text space and the store has no "
            "captions to learn a bridge from: no vocabulary descriptions"
        )
        return None
    from .bridge import bridge_recall, fit_bridge

    has = np.array([c is not None for c in captions])
    fit_rows = np.sort(np.concatenate([split["describe"], split["select"]]))
    fit_rows, test_rows = fit_rows[has[fit_rows]], split["test"][has[split["test"]]]
    bridge, report = fit_bridge(
        X[fit_rows], caption_rows[fit_rows], [captions[i] for i in fit_rows], kind=cfg.bridge, seed=cfg.random_state
    )
    report["test"] = bridge_recall(bridge, X[test_rows], caption_rows[test_rows], [captions[i] for i in test_rows])
    info["text_space"] = f"linear bridge ({bridge.kind}) from {space} to {text_spec}"
    info["bridge"] = report
    return bridge


def _vocabularies(
    mapping: Any,
    captions: list[str | None],
    text: TextSide,
    cfg: ExplainConfig,
    info: dict,
    notes: list[str],
    defaults: tuple[str, ...] | None = None,
) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    """Each vocabulary with its entries in the comparison space and in the centred text space
    (none without a way into the text space). ``defaults``: the vocabularies when the config
    names none (default: captions when present, imagenet, wordnet). A default vocabulary whose
    package is missing is skipped with a note; one asked for by name is an error."""
    from ...data.vocab import load_vocabulary

    if mapping is None:
        if cfg.vocabularies is not None:
            notes.append("vocabularies were given but there is no way into the text space: they are not used")
        return []
    names = cfg.vocabularies or defaults
    if names is None:
        names = (("captions",) if any(c is not None for c in captions) else ()) + ("imagenet", "wordnet")
    vocabularies = []
    for name in names:
        try:
            vocab = load_vocabulary(name, captions=captions)
        except MissingDependencyError as exc:
            if cfg.vocabularies is not None:
                raise  # asked for by name: the user must know
            notes.append(f"vocabulary {name} skipped: {exc}")
            continue
        raw = text.vocabulary(vocab)
        vocabularies.append((vocab, mapping.texts(raw), SharedSpace().texts(raw)))
    info["vocabularies"] = {v.name: len(v) for v, _, _ in vocabularies}
    return vocabularies


def _classifier_head(space: str, encoder: str, text: TextSide, info: dict, notes: list[str]) -> Any:
    """The image encoder's classifier head (its class names embedded), or None: not an image
    space, or the encoder has no head (a missing package or weights: said in ``notes``)."""
    if space != "image":
        return None
    try:
        from ...encoders import get_encoder

        head = get_encoder(encoder).head()
    except Exception as exc:  # a missing package or weights: no head descriptions, say why
        notes.append(f"no classifier-head descriptions: {' '.join(str(exc).split())[:160]}")
        return None
    if head is None:
        return None
    info["head"] = f"{encoder} ({len(head.class_names)} classes)"
    text.embed(head.class_names)
    return head
