"""GGUF tokenizer metadata from a Hugging Face tokenizer.json: a byte-level BPE vocabulary, its
merges, the pre-tokenizer llama.cpp must re-implement, special tokens, and the chat template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Split regexes of known byte-level BPE tokenizers -> llama.cpp pre-tokenizer names (llama.cpp
# re-implements each by name; tokenization_parity checks the choice on probe texts).
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?"
                 r"[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
KNOWN_SPLITS = {_LLAMA3_REGEX: "llama-bpe",
                _LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}"): "qwen2"}


def pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's pre-tokenizer name for a tokenizer.json."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # GPT-2's own split regex, as train_byte_bpe makes
    for step in pre.get("pretokenizers", ()):
        if step.get("type") == "Split":
            regex = step.get("pattern", {}).get("Regex")
            if regex in KNOWN_SPLITS:
                return KNOWN_SPLITS[regex]
    raise NotImplementedError(f"no llama.cpp pre-tokenizer known for this tokenizer: {pre}")


def eos_ids(model_dir: Path, tokenizer: Any) -> list[int]:
    """Every EOS id the HF model declares: generation_config.json's (what ``generate`` stops
    at; config.json's when it has none), then the tokenizer's own, without repeats."""
    declared: list[int] = []
    for name in ("generation_config.json", "config.json"):
        path = model_dir / name
        value = json.loads(path.read_text("utf-8")).get("eos_token_id") if path.is_file() else None
        if value is not None:
            declared = list(value) if isinstance(value, list) else [value]
            break
    if tokenizer.eos_token_id is not None:
        declared.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(declared))


def write_tokenizer(writer: Any, model_dir: Path, config: Any) -> None:
    """Byte-level BPE metadata: tokens by id, types, merges, special ids, chat template.

    Raises:
        NotImplementedError: for a tokenizer that is not byte-level BPE (SentencePiece, Unigram,
            WordPiece), or whose pre-tokenizer llama.cpp does not know.
    """
    from transformers import AutoTokenizer

    tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = tokenizer_json["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise NotImplementedError("gguf backend writes byte-level BPE tokenizers; got "
                                  f"{model.get('type')}{' with byte fallback' if model.get('byte_fallback') else ''}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens, types = _token_table(tokenizer, tokenizer_json, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(tokenizer_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model["merges"]])
    _write_special_ids(writer, model_dir, tokenizer, config.bos_token_id)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _token_table(tokenizer: Any, tokenizer_json: dict[str, Any], vocab_size: int) -> tuple[list[str], list[Any]]:
    import gguf

    specials = {t["id"] for t in tokenizer_json.get("added_tokens", ()) if t.get("special")}
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    # The embedding may be wider than the tokenizer (padded to a multiple); llama.cpp needs one
    # token per row, so the extra rows get unused placeholders.
    tokens, types = [], []
    for i in range(max(vocab_size, len(by_id))):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    return tokens, types


def _write_special_ids(writer: Any, model_dir: Path, tokenizer: Any, config_bos: Any) -> None:
    """BOS (the config's when the tokenizer has none), EOS, PAD, and a second declared EOS as EOT. llama.cpp ends a generation at EOS, EOT,
    EOM and control tokens it knows by text (``<|im_end|>``, ``<|endoftext|>``, ...); GGUF has no
    list of EOS ids, so a third declared id of unknown text is not written (eos_stop fails)."""
    declared = eos_ids(model_dir, tokenizer)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else next(iter(declared), None)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config_bos
    if isinstance(bos, int):
        writer.add_bos_token_id(bos)
    if eos is not None:
        writer.add_eos_token_id(eos)
    if len(declared) > 1:
        writer.add_eot_token_id(next(i for i in declared if i != eos))
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    # Whether the HF tokenizer adds BOS itself: llama.cpp must do the same.
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [
        tokenizer.bos_token_id]
    writer.add_add_bos_token(adds_bos)
