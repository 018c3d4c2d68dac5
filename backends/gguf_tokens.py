"""Tokenizer-level GGUF checks: the Hugging Face tokenizer against what llama.cpp reports from
the exported file (``gguf_child``): plain tokenization, the chat template, and where generation
stops. They depend on the vocabulary metadata only, so they run once, on the primary file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distill.backends.base import Check
from distill.backends.gguf_child import FORCED_MAX_TOKENS
from distill.backends.gguf_vocab import eos_ids

# Each probe aims at a place where pre-tokenizers differ: digit grouping (1-3 digits, one by one,
# or none), characters NFKC would fold (½ ², ligatures) and digits outside ASCII (Arabic-Indic,
# Devanagari, full-width), emoji sequences with joiners, code with operators and indentation,
# runs of spaces, tabs and newlines. A real SmolLM2 with a plain byte-level pre-tokenizer passed the
# first six and tokenized 5 of 6 strings like these differently from its original GGUF.
PROBE_TEXTS = ("the quick brown fox jumps over the lazy dog", "Hello, world! 123 4567",
               "  two  spaces\tand a tab\nnew line", "what its teacher knows: don't, won't",
               "Ünïcödé — ß, 漢字, emoji 🙂", "a model learns; the model learned.",
               "3.14159 1,000,000 2026-12-05 0x1F 123456789", "½ cup, x² + y³, ﬁle, ① ⅷ",
               "٣٤٥ and ४२ and １２３", "👩‍👩‍👧 🏳️‍🌈 🇫🇷 👍🏽",
               "def f(x):\n    return x**2 != y // 3  # ok\n\tif a<=b: pass",
               "end.\n\n\n   \t  \n  trailing   ")
# No system turn: several templates (Gemma's) refuse one. Two user turns and an assistant turn
# exercise the loop, the role switch and the generation prompt.
CONVERSATION = ({"role": "user", "content": "What does a student model learn?"},
                {"role": "assistant", "content": "What its teacher knows, in fewer weights."},
                {"role": "user", "content": "Ünïcödé, tabs\tand 123?"})


def request(model_dir: Path, tokenizer: Any) -> dict[str, Any]:
    """What the llama.cpp child must measure: the probe texts, the conversation, and the ids to
    force (every HF EOS id, then one ordinary token as the control)."""
    return {"texts": list(PROBE_TEXTS), "chat": list(CONVERSATION),
            "stop_ids": [*eos_ids(model_dir, tokenizer), _control_id(tokenizer)]}


def _control_id(tokenizer: Any) -> int:
    """The highest id that is no special token: an ordinary token, which must not end a
    generation (otherwise a stop at EOS proves nothing)."""
    special = set(tokenizer.all_special_ids)
    return next(i for i in range(len(tokenizer) - 1, -1, -1) if i not in special)


def checks(model_dir: Path, tokenizer: Any, facts: dict[str, Any]) -> list[Check]:
    return [_tokenization(tokenizer, facts["tokens"]), _chat(tokenizer, facts["chat"]),
            _eos_stop(model_dir, tokenizer, facts["stops"])]


def _tokenization(tokenizer: Any, got: list[list[int]]) -> Check:
    want = [tokenizer(text, add_special_tokens=False).input_ids for text in PROBE_TEXTS]
    same = sum(a == b for a, b in zip(got, want, strict=True))
    bad = next((t for t, a, b in zip(PROBE_TEXTS, got, want, strict=True) if a != b), None)
    return Check("tokenization_parity", same == len(PROBE_TEXTS),
                 f"{same}/{len(PROBE_TEXTS)} probe texts tokenize identically"
                 + (f"; first mismatch {bad!r}" if bad else ""))


def _chat(tokenizer: Any, got: dict[str, Any] | None) -> Check:
    """llama.cpp's rendering of :data:`CONVERSATION` (with the generation prompt) equals
    ``apply_chat_template``'s, character for character and token for token."""
    if not tokenizer.chat_template:
        return Check("chat_template", got is None,
                     "not applicable: the model has no chat template"
                     + ("" if got is None else ", yet the GGUF has one"))
    if got is None:
        return Check("chat_template", False, "the GGUF has no tokenizer.chat_template")
    want = tokenizer.apply_chat_template(list(CONVERSATION), tokenize=False, add_generation_prompt=True)
    want_ids = tokenizer(want, add_special_tokens=False).input_ids
    if got["rendered"] != want:
        at = len(os.path.commonprefix([got["rendered"], want]))
        return Check("chat_template", False, f"renderings differ from character {at}: llama.cpp "
                     f"{got['rendered'][at:at + 30]!r}, HF {want[at:at + 30]!r}")
    builtin = ("same" if got["builtin"] == want else "not a built-in format (llama-cli needs --jinja)"
               if got["builtin"] is None else "renders differently (llama-cli needs --jinja)")
    return Check("chat_template", got["ids"] == want_ids,
                 f"Jinja rendering of a {len(CONVERSATION)}-turn conversation equals HF's "
                 f"({len(want)} chars); token ids {'equal' if got['ids'] == want_ids else 'DIFFER'} "
                 f"({len(got['ids'])} vs {len(want_ids)}); llama.cpp built-in renderer: {builtin}")


def _eos_stop(model_dir: Path, tokenizer: Any, got: dict[str, Any]) -> Check:
    """llama.cpp's EOS is one the HF model declares, and a greedy generation forced to emit each
    declared EOS id ends right there, while one forced to emit an ordinary token runs on."""
    wanted = eos_ids(model_dir, tokenizer)
    if not wanted:
        return Check("eos_stop", True, "not applicable: the model declares no EOS token")
    control = str(_control_id(tokenizer))
    missed = [i for i in wanted if got["ended"][str(i)] != ["stop", 0]]
    control_runs = got["ended"][control] == ["length", FORCED_MAX_TOKENS]
    extra = sorted(set(got["eog"]) - set(wanted))
    passed = got["eos"] in wanted and not missed and control_runs
    detail = (f"llama.cpp EOS {got['eos']}, HF declares {wanted}; forced generations "
              + (f"run past {missed}" if missed else "stop at each")
              + ("" if control_runs else f"; control token {control} ended it too: {got['ended'][control]}")
              + (f"; llama.cpp also stops at {extra}" if extra else ""))
    return Check("eos_stop", passed, detail)
