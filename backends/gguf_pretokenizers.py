"""llama.cpp's byte-level BPE pre-tokenizers and their Hugging Face equivalents, both ways.

llama.cpp re-implements each pre-tokenizer by name (``tokenizer.ggml.pre``). A tokenizer.json is
given a name in one of two ways:

1. By structure, for the names in :data:`PRE_TOKENIZERS`: the Hugging Face pre-tokenizer steps
   llama.cpp's regexes for that name reproduce (read in ``src/llama-vocab.cpp`` of llama.cpp
   0.3.36's sdist). This works for any vocabulary, including tokenizers trained for a project.
2. By llama.cpp's own fingerprint: its converter (``conversion/base.py``,
   ``get_vocab_base_pre``) hashes the token ids of a fixed text and knows the name for each model
   llama.cpp was updated with (97 entries, 95 hashes, 84 names in 0.3.36). That identifies an unchanged
   tokenizer of any of those models (DeepSeek, Command-R, Tekken, ...); the hashes and the text
   are read from the converter's source, never copied here.

Anything else is refused before training, with the pre-tokenizer it has. Every export's
``tokenization_parity`` check then compares llama.cpp and HF on probe texts.

The other way, a GGUF file as a model source, needs the structure: :func:`hf_pre_tokenizer`
rebuilds the steps for the names of :data:`PRE_TOKENIZERS` and refuses the rest.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?"
                 r"[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = _LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


def _split(regex: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def _byte_level(use_regex: bool) -> dict[str, Any]:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


@dataclass(frozen=True)
class PreTokenizer:
    """One llama.cpp pre-tokenizer name with the HF steps it reproduces.

    Attributes:
        name: llama.cpp's ``tokenizer.ggml.pre``.
        steps: the HF pre-tokenizer steps, in order (a Sequence when more than one).
        ignore_merges: llama.cpp takes a pre-token that is a whole vocabulary entry as one token
            without merging (its ``ignore_merges`` for this name); HF's BPE has the same flag.
        add_bos: whether llama.cpp adds BOS for this name when a file does not say.
    """

    name: str
    steps: tuple[dict[str, Any], ...]
    ignore_merges: bool = False
    add_bos: bool = False

    def hf(self) -> dict[str, Any]:
        """The tokenizer.json ``pre_tokenizer`` value."""
        steps = copy.deepcopy(list(self.steps))  # callers may edit theirs; the declaration stays
        return steps[0] if len(steps) == 1 else {"type": "Sequence", "pretokenizers": steps}


# gpt-2: GPT-2's own regex inside ByteLevel. llama-bpe (Llama 3.x), qwen2 (Qwen 2, 2.5, 3): their
# tokenizer.json's Split regex, then ByteLevel without its regex; llama.cpp sets ignore_merges and
# add_bos for llama-bpe only. smollm (SmolLM 1 and 2): every digit alone, then GPT-2's regex; llama.cpp's two
# regexes for it are "\p{N}" and GPT-2's.
PRE_TOKENIZERS: Mapping[str, PreTokenizer] = {p.name: p for p in (
    PreTokenizer("gpt-2", (_byte_level(True),)),
    PreTokenizer("llama-bpe", (_split(_LLAMA3_REGEX), _byte_level(False)), ignore_merges=True,
                add_bos=True),
    PreTokenizer("qwen2", (_split(_QWEN2_REGEX), _byte_level(False))),
    PreTokenizer("smollm", ({"type": "Digits", "individual_digits": True}, _byte_level(True))),
)}


def _signature(step: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a step changes the split: trim_offsets and the like only move offsets."""
    kind = step.get("type")
    if kind == "Split":
        pattern = step.get("pattern") or {}
        return (kind, pattern.get("Regex"), pattern.get("String"), step.get("behavior"), step.get("invert"))
    if kind == "ByteLevel":
        return (kind, bool(step.get("add_prefix_space")), step.get("use_regex", True))
    if kind == "Digits":
        return (kind, bool(step.get("individual_digits")))
    return (kind, json.dumps(step, sort_keys=True))


def steps(component: Mapping[str, Any] | None, nested: str) -> list[Mapping[str, Any]]:
    """A tokenizer.json normalizer or pre-tokenizer as a flat list of steps (a Sequence unpacked;
    ``nested``: its key for the steps, "normalizers" or "pretokenizers")."""
    if not component:
        return []
    return list(component[nested]) if component.get("type") == "Sequence" else [component]


def by_structure(tokenizer_json: Mapping[str, Any]) -> str | None:
    """The name whose HF steps this tokenizer.json's pre-tokenizer has, or None."""
    want = [_signature(step) for step in steps(tokenizer_json.get("pre_tokenizer"), "pretokenizers")]
    return next((p.name for p in PRE_TOKENIZERS.values()
                 if [_signature(declared) for declared in p.steps] == want), None)


def name(tokenizer_json: Mapping[str, Any], converter: Path | None) -> str:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer.json: by structure, else by
    llama.cpp's fingerprint (``converter``: its folder, when installed).

    Raises:
        NotImplementedError: naming the pre-tokenizer when neither knows it.
    """
    found = by_structure(tokenizer_json)
    if found is None and converter is not None:
        found = fingerprints(converter).get(fingerprint(tokenizer_json, converter))
    if found is None:
        raise NotImplementedError(
            f"no llama.cpp pre-tokenizer is known for this tokenizer (pre_tokenizer "
            f"{json.dumps(tokenizer_json.get('pre_tokenizer'))[:300]}); llama.cpp's are written for "
            f"{', '.join(PRE_TOKENIZERS)} by their structure and for the unchanged tokenizers of the "
            "models llama.cpp's converter knows")
    return found


def hf_pre_tokenizer(pre: str) -> PreTokenizer:
    """The HF equivalent of llama.cpp's pre-tokenizer ``pre`` (a GGUF file's tokenizer.ggml.pre).

    Raises:
        NotImplementedError: for a name without a declared structure.
    """
    if pre not in PRE_TOKENIZERS:
        raise NotImplementedError(
            f"llama.cpp pre-tokenizer {pre!r} has no Hugging Face equivalent in distill; GGUF "
            f"sources with {', '.join(PRE_TOKENIZERS)} are read")
    return PRE_TOKENIZERS[pre]


# The converter's fingerprint: `chktxt = '...'` and each `if chkhsh == "<sha256>":` followed
# (after comments) by `res = "<name>"`.
_CHKTXT = re.compile(r"^\s*chktxt = ('.*')$", re.M)
_CHKHSH = re.compile(r'if chkhsh == "([0-9a-f]{64})":\s*\n(?:\s*#[^\n]*\n)*\s*res = "([^"]+)"')


@cache
def _converter_source(converter: Path) -> str:
    return (converter / "conversion" / "base.py").read_text("utf-8")


def fingerprints(converter: Path) -> dict[str, str]:
    """llama.cpp's converter's table: hash of the fixed text's token ids -> pre-tokenizer name."""
    return dict(_CHKHSH.findall(_converter_source(converter)))


def fingerprint(tokenizer_json: Mapping[str, Any], converter: Path) -> str:
    """The converter's hash for this tokenizer: sha256 of ``str(ids)`` of its fixed text, encoded
    with special tokens as ``AutoTokenizer.encode`` does (the post-processor applies)."""
    from tokenizers import Tokenizer

    found = _CHKTXT.search(_converter_source(converter))
    if found is None:
        raise RuntimeError(f"llama.cpp's converter in {converter} has no chktxt; its layout changed")
    text = ast.literal_eval(found.group(1))
    ids = Tokenizer.from_str(json.dumps(tokenizer_json)).encode(text).ids
    return hashlib.sha256(str(ids).encode()).hexdigest()
