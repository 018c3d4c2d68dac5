"""Tiny seeded models for the evaluate tests: a byte-level BPE trained on the spot with a ChatML
template (as tests/backends/test_gguf.py builds them), a llama student (hidden 256, so GGUF
export is realistic), a smaller llama teacher on the same tokenizer, and a 3-example test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from distill.compiler.records.examples import Example
from distill.compiler.records.record import lines_text
from distill.runtime.sources.tokenizer import train_byte_bpe

TEXT = ["the quick brown fox jumps over the lazy dog; a model learns what its teacher knows.",
        "What does the pump do? The pump moves water for 20 minutes. Hello, world!"] * 20
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")
RECORDS = [
    Example(id="a", group="g", origin="teacher", question="What does the pump do?", answer="It moves water.",
            messages=({"role": "user", "content": "What does the pump do?"},
                      {"role": "assistant", "content": "It moves water."}), context="The pump moves water.",
            source="guide.md", sha256="0" * 64),
    Example(id="b", group="g", origin="teacher", question="How long does it run?", answer="20 minutes",
            messages=({"role": "user", "content": "How long does it run?"},
                      {"role": "assistant", "content": "20 minutes"}), context="It runs 20 minutes.",
            source="guide.md", sha256="0" * 64),
    Example(id="c", group="g", origin="document", question="", answer="", messages=(),
            context="the quick brown fox jumps over the lazy dog.", source="guide.md", sha256="0" * 64),
]


def save_tokenizer(folder: Path) -> transformers.PreTrainedTokenizerFast:
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=train_byte_bpe(TEXT, 320), eos_token="<|im_end|>", pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    return tokenizer


def save_llama(folder: Path, hidden: int = 256, seed: int = 0, **overrides: Any) -> Path:
    tokenizer = save_tokenizer(folder)
    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(
        "llama", hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
        max_position_embeddings=256, bos_token_id=0, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=1, **overrides)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="package")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)  # building tiny models; 2 shared cores are often busy
    root = tmp_path_factory.mktemp("evaluate-models")
    return {"student": save_llama(root / "student"), "teacher": save_llama(root / "teacher", hidden=64, seed=1)}


@pytest.fixture(scope="package")
def test_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("split") / "test.jsonl"
    path.write_text(lines_text(RECORDS), encoding="utf-8")
    return path


@pytest.fixture(scope="package")
def gguf_f16(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from distill.backends.export import export_verified, parse_target

    out = tmp_path_factory.mktemp("gguf") / "out"
    artifact, _ = export_verified(models["student"], parse_target("gguf:F16"), out)
    return artifact.path
