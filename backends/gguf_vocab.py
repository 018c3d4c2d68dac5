"""GGUF tokenizer metadata from a Hugging Face tokenizer.json: the vocabulary (and merges or
scores) in the form llama.cpp's tokenizer for it reads, special tokens, and the chat template.

Two llama.cpp tokenizers are written:

* ``gpt2``, for byte-level BPE: tokens, merges, and the pre-tokenizer llama.cpp must
  re-implement by name (:mod:`distill.backends.gguf_pretokenizers`).
* ``llama`` (SentencePiece), for BPE with byte fallback on "▁"-escaped text (Llama, Mistral,
  Gemma): tokens, scores and token types. llama.cpp's SPM tokenizer has no merge list: it
  repeatedly joins the adjacent pair whose joined text is the token with the highest score. HF's
  BPE joins the pair of lowest merge rank, so a token's score is minus the rank of the merge
  that makes it and both pick the same pair. (llama.cpp's converter, reading tokenizer.json
  without a tokenizer.model, writes -1000 for every score; llama.cpp then joins left to right.)

Unigram is refused: llama.cpp's ``llama`` tokenizer is this greedy pair joining, not Unigram's
best segmentation; llama.cpp's own Unigram tokenizer (``t5``, with SentencePiece's precompiled
normalization map) is not written here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distill.backends import gguf_pretokenizers
from distill.backends.llama_cpp import installed_converter
from distill.compiler.records.record import read_json

SPACE = "▁"  # SentencePiece's escaped space (U+2581), as llama.cpp escapes it too
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # byte fallback pieces, llama.cpp's byte_to_token form


def pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer.json (see
    :mod:`distill.backends.gguf_pretokenizers`)."""
    return gguf_pretokenizers.name(tokenizer_json, installed_converter())


def space_prefix(tokenizer_json: dict[str, Any]) -> bool:
    """Whether a SentencePiece-style tokenizer.json puts "▁" before the text, as llama.cpp's
    ``add_space_prefix`` does: always, at the start and after each special token.

    llama.cpp escapes every space as "▁" and changes nothing else, so the tokenizer may only do
    that: Llama-2 and Mistral's ``Prepend("▁")`` + ``Replace(" ", "▁")`` normalizers, or Gemma's
    bare ``Replace`` (no prefix), or a ``Metaspace`` pre-tokenizer that adds no prefix.

    Raises:
        NotImplementedError: for any other normalization (NFKC, lowercasing, ...) or
            pre-tokenization, for spaces not escaped at all, and for a Metaspace that adds the
            prefix (see :func:`_metaspace`).
    """
    prefix, escaped = False, False
    for step in gguf_pretokenizers.steps(tokenizer_json.get("normalizer"), "normalizers"):
        if step["type"] == "Prepend" and step["prepend"] == SPACE:
            prefix = True
        elif step["type"] == "Replace" and step["pattern"].get("String") == " " and step["content"] == SPACE:
            escaped = True
        else:
            raise NotImplementedError(f"llama.cpp's SentencePiece tokenizer cannot normalize as {step}")
    for step in gguf_pretokenizers.steps(tokenizer_json.get("pre_tokenizer"), "pretokenizers"):
        if step["type"] == "Metaspace" and step.get("replacement", SPACE) == SPACE:
            escaped = _metaspace(step, tokenizer_json["model"]["vocab"])
        elif not (step["type"] == "Split" and step["pattern"].get("String") == " "):
            # Gemma splits on " " after its normalizer replaced every space: a no-op.
            raise NotImplementedError(f"llama.cpp's SentencePiece tokenizer cannot pre-tokenize as {step}")
    if not escaped:
        raise NotImplementedError("a BPE with byte fallback that does not escape spaces as '▁' is no "
                                  "SentencePiece tokenizer llama.cpp knows")
    return prefix


def _metaspace(step: Mapping[str, Any], vocab: dict[str, int]) -> bool:
    """Checks a Metaspace pre-tokenizer (it escapes spaces) against llama.cpp's tokenizer.

    Raises:
        NotImplementedError: when it adds a prefix: tokenizers' Metaspace skips the "▁" when the
            text already starts with a space (measured: "  two" is HF ["▁", "▁two"],
            llama.cpp ["▁", "▁", "▁two"]), and prepend_scheme "first" also after special tokens; llama.cpp has
            neither rule. Or when it splits at every "▁" while pieces hold a "▁" inside: HF can
            never produce those pieces, llama.cpp (which does not split) can.
    """
    # tokenizers < 0.19 wrote add_prefix_space; newer ones a prepend_scheme.
    scheme = step.get("prepend_scheme", "always" if step.get("add_prefix_space", True) else "never")
    if scheme != "never":
        raise NotImplementedError(
            f"Metaspace prepend_scheme {scheme!r}: it skips the '▁' prefix when the text starts with "
            "a space" + (" or follows a special token" if scheme == "first" else "")
            + ", llama.cpp's add_space_prefix does not (a Prepend('▁') normalizer matches it)")
    if step.get("split", True) and any(SPACE in piece[1:] for piece in vocab):
        raise NotImplementedError("Metaspace splits at '▁' but the vocabulary has pieces with '▁' "
                                  "inside, which llama.cpp (no split) would produce and HF never does")
    return True


def merge_scores(merges: list[Any]) -> dict[str, float]:
    """Token text -> minus the rank of the first merge that makes it (see the module docstring)."""
    scores: dict[str, float] = {}
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        scores.setdefault(left + right, -float(rank))
    return scores


def eos_ids(model_dir: Path, tokenizer: Any) -> list[int]:
    """Every EOS id the HF model declares: generation_config.json's (what ``generate`` stops
    at; config.json's when it has none), then the tokenizer's own, without repeats."""
    declared: list[int] = []
    for name in ("generation_config.json", "config.json"):
        path = model_dir / name
        value = read_json(path).get("eos_token_id") if path.is_file() else None
        if value is not None:
            declared = list(value) if isinstance(value, list) else [value]
            break
    if tokenizer.eos_token_id is not None:
        declared.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(declared))


def tokenizer_refusal(tokenizer_json: dict[str, Any]) -> str | None:
    """Why llama.cpp would tokenize differently from this tokenizer.json, or None. ``distill
    plan`` asks this of the student's tokenizer before training; the export asks it again."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE":
        return (f"the gguf backend writes BPE tokenizers (byte-level, or SentencePiece-style with "
                f"byte fallback); this one is {model.get('type')}"
                + (": llama.cpp's SentencePiece tokenizer joins pairs by score, not Unigram's best "
                   "segmentation" if model.get("type") == "Unigram" else ""))
    try:
        if model.get("byte_fallback"):
            space_prefix(tokenizer_json)
        else:
            pre_tokenizer(tokenizer_json)
    except NotImplementedError as error:
        return str(error)
    return None


def write_tokenizer(writer: Any, model_dir: Path, config: dict[str, Any]) -> None:
    """Tokenizer metadata: tokens by id, types, merges or scores, special ids, chat template.

    Raises:
        NotImplementedError: with :func:`tokenizer_refusal`'s reason.
    """
    tokenizer_json = read_json(model_dir / "tokenizer.json")
    reason = tokenizer_refusal(tokenizer_json)
    if reason is not None:
        raise NotImplementedError(reason)
    tokenizer = load_tokenizer(model_dir)
    if tokenizer_json["model"].get("byte_fallback"):
        _write_sentencepiece(writer, tokenizer, tokenizer_json, config["vocab_size"])
    else:
        _write_byte_level(writer, tokenizer, tokenizer_json, config["vocab_size"])
    _write_special_ids(writer, model_dir, tokenizer, config.get("bos_token_id"))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _write_byte_level(writer: Any, tokenizer: Any, tokenizer_json: dict[str, Any], vocab_size: int) -> None:
    tokens, types = _token_table(tokenizer, tokenizer_json, vocab_size, spaces=False)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(tokenizer_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = tokenizer_json["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])


def _write_sentencepiece(writer: Any, tokenizer: Any, tokenizer_json: dict[str, Any], vocab_size: int) -> None:
    prefix = space_prefix(tokenizer_json)  # first: it refuses what llama.cpp cannot mirror
    tokens, types = _token_table(tokenizer, tokenizer_json, vocab_size, spaces=True)
    ranked = merge_scores(tokenizer_json["model"]["merges"])
    # Below every merge: single characters and bytes are never a join's result, and a token no
    # merge makes (HF's BPE can never produce it) should be llama.cpp's last choice.
    floor = -float(len(ranked) + 1)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores([ranked.get(token, floor) for token in tokens])
    writer.add_token_types(types)
    writer.add_add_space_prefix(prefix)


def _token_table(tokenizer: Any, tokenizer_json: dict[str, Any], vocab_size: int,
                 spaces: bool) -> tuple[list[str], list[Any]]:
    """Token texts and llama.cpp token types by id. ``spaces``: a SentencePiece vocabulary,
    whose user-defined tokens llama.cpp matches in raw text, before escaping spaces as "▁"."""
    import gguf

    added = {t["id"]: t for t in tokenizer_json.get("added_tokens", ())}
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    # The embedding may be wider than the tokenizer (padded to a multiple); llama.cpp needs one
    # token per row, so the extra rows get unused placeholders.
    tokens, types = [], []
    for i in range(max(vocab_size, len(by_id))):
        token = by_id.get(i, f"[PAD{i}]")
        if i not in by_id:
            kind = gguf.TokenType.UNUSED
        elif i == tokenizer.unk_token_id:
            kind = gguf.TokenType.UNKNOWN
        elif i in added:
            # Added tokens are matched whole in the text by HF; llama.cpp does that for control
            # tokens (when parsing specials) and user-defined ones (always).
            kind = gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED
            token = token.replace(SPACE, " ") if spaces and kind == gguf.TokenType.USER_DEFINED else token
        elif spaces and BYTE_TOKEN.fullmatch(token):
            kind = gguf.TokenType.BYTE
        else:
            kind = gguf.TokenType.NORMAL
        tokens.append(token)
        types.append(kind)
    return tokens, types


def _write_special_ids(writer: Any, model_dir: Path, tokenizer: Any, config_bos: Any) -> None:
    """BOS (the config's when the tokenizer has none), EOS, UNK, PAD, a second declared EOS as
    EOT, and whether BOS and EOS are added. llama.cpp ends a generation at EOS, EOT, EOM and
    control tokens it knows by text (``<|im_end|>``, ``<end_of_turn>``, ...); GGUF has no list of
    EOS ids, so a third declared id of unknown text is not written (eos_stop fails)."""
    declared = eos_ids(model_dir, tokenizer)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else next(iter(declared), None)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config_bos
    if isinstance(bos, int):
        writer.add_bos_token_id(bos)
    if eos is not None:
        writer.add_eos_token_id(eos)
    if len(declared) > 1:
        writer.add_eot_token_id(next(i for i in declared if i != eos))
    if tokenizer.unk_token_id is not None:
        writer.add_unk_token_id(tokenizer.unk_token_id)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    # What the HF tokenizer's post-processor adds around a text: llama.cpp must do the same.
    writer.add_add_bos_token(adds_bos(tokenizer))
    ids = tokenizer("a").input_ids
    writer.add_add_eos_token(tokenizer.eos_token_id is not None and ids[-1:] == [tokenizer.eos_token_id])


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS before a text (what ``tokenizer.ggml.add_bos_token`` says)."""
    return tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]


def load_tokenizer(model_dir: Path) -> Any:
    """The model folder's tokenizer, as transformers loads it, never running code the folder ships."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
