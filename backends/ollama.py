"""Ollama Modelfiles for GGUF exports: ``ollama create NAME -f model-Q4_K_M.Modelfile``.

Ollama reads the GGUF's ``tokenizer.chat_template`` and maps it to one of its own Go templates
by resemblance, so a Modelfile needs a TEMPLATE only to pin that choice; we write one only for a
format we recognize by rendering (ChatML), never a guessed translation of arbitrary Jinja.
Stop strings are the text of every EOS token the Hugging Face model declares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.backends.gguf_tokens import CONVERSATION
from distill.backends.gguf_vocab import eos_ids

# Ollama's ChatML template: every message, then the assistant's generation prompt.
CHATML_GO = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
             "<|im_start|>assistant\n")


def modelfile_name(gguf_name: str) -> str:
    return f"{Path(gguf_name).stem}.Modelfile"


def write_modelfile(folder: Path, gguf_name: str, tokenizer: Any, model_dir: Path) -> str:
    """Write the Modelfile for ``folder/gguf_name``; returns its file name."""
    lines = [f"FROM ./{gguf_name}"]
    if _is_chatml(tokenizer):
        lines.append(f'TEMPLATE """{CHATML_GO}"""')
    stops = tokenizer.convert_ids_to_tokens(eos_ids(model_dir, tokenizer))
    # json.dumps quotes and escapes as Ollama's parser reads a quoted value.
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in stops]
    name = modelfile_name(gguf_name)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return name


def _chatml(messages: tuple[dict[str, str], ...]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def _is_chatml(tokenizer: Any) -> bool:
    """Whether the chat template renders ChatML exactly, with and without a system turn
    (templates that add a default system prompt, as Qwen2's, are not plain ChatML)."""
    if not tokenizer.chat_template:
        return False
    system = ({"role": "system", "content": "Answer briefly."}, *CONVERSATION)
    try:
        return all(tokenizer.apply_chat_template(list(chat), tokenize=False, add_generation_prompt=True)
                   == _chatml(chat) for chat in (CONVERSATION, system))
    except Exception:  # noqa: BLE001 - a template that refuses a system turn is not ChatML
        return False
