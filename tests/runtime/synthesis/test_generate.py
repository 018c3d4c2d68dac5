"""The real teacher path: HFGenerator on a tiny random llama with a trained tokenizer, and
``distill synthesize`` with a garbage-writing random teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from distill.compiler.cli import main
from distill.runtime.sources.tokenizer import SPECIAL_TOKENS, train_byte_bpe
from distill.runtime.synthesis.generate import HFGenerator, Request

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 400, "max_position_embeddings": 1024,
        "tie_word_embeddings": True}
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
TEXT = "\n\n".join(f"Section {i}. Pump P{i} runs for {10 + i} minutes and draws {30 + i} watts. "
                   f"Clean its filter every {i + 1} weeks with warm water." for i in range(12))


def tiny_teacher() -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**TINY)).eval()
    eos, pad = SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_byte_bpe([TEXT], TINY["vocab_size"]),
                                        eos_token=eos, pad_token=pad)
    tokenizer.chat_template = TEMPLATE
    return model, tokenizer


def requests() -> list[Request]:
    prompts = ["Pump?", "Write three questions about the filter and the water, please.", "Watts of P3 and P4?"]
    return [Request(f"chunk{i}:qa:0", ({"role": "user", "content": p},)) for i, p in enumerate(prompts)]


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_a_reply_does_not_depend_on_its_batch(temperature: float) -> None:
    model, tokenizer = tiny_teacher()
    generator = HFGenerator(model, tokenizer, max_new_tokens=12, temperature=temperature, seed=5)
    together = generator.generate(requests())
    alone = [generator.generate([request])[0] for request in requests()]
    reversed_batch = generator.generate(requests()[::-1])[::-1]
    assert together == alone == reversed_batch
    assert all(reply for reply in together)


def test_sampling_follows_the_seed() -> None:
    model, tokenizer = tiny_teacher()
    replies = {seed: HFGenerator(model, tokenizer, 16, 1.0, seed).generate(requests()) for seed in (1, 1, 2)}
    again = HFGenerator(model, tokenizer, 16, 1.0, 1).generate(requests())
    assert replies[1] == again and replies[1] != replies[2]


def test_a_teacher_without_chat_template_is_refused() -> None:
    model, tokenizer = tiny_teacher()
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        HFGenerator(model, tokenizer, 8, 0.0, 0)


def garbage_project(root: Path) -> Path:
    """A random teacher that writes garbage, with the yield gate off (``min_yield: 0``): every
    chunk is asked and rejected, and the stage ends with no training data."""
    (root / "docs").mkdir()
    (root / "docs" / "manual.md").write_text("# Manual\n\n" + TEXT + "\n")
    (root / "tiny.json").write_text(json.dumps(TINY))
    (root / "Distillfile").write_text(f"""version: 1
name: garbage-teacher
sources:
  - text: docs/*.md
teacher:
  random: {{config: tiny.json}}
  chat_template: {json.dumps(TEMPLATE)}
student:
  random: {{config: tiny.json}}
  adapter: {{type: none}}
data:
  chunk_tokens: 128
  overlap_tokens: 16
  synthesis: {{kind: qa, pairs_per_chunk: 2, max_new_tokens: 16, max_repairs: 1, min_yield: 0}}
  split: {{val: 0.1, test: 0.1, by: chunk}}
train: {{effective_batch_size: 4, max_seq_len: 256}}
hardware: {{device: cpu, ram: 8GiB}}
""")
    return root / "Distillfile"


@pytest.mark.slow
def test_a_garbage_teacher_rejects_everything_and_stops_clearly(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synthesize", str(garbage_project(tmp_path)), "--offline"]) == 8
    err = capsys.readouterr().err
    assert "no training data survived synthesis" in err and "rejected.jsonl" in err
    folder = tmp_path / ".distill" / "synthesize"
    chunks = (tmp_path / ".distill" / "extract" / "chunks.jsonl").read_text().splitlines()
    rejected = [json.loads(line) for line in (folder / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == len(chunks) > 1
    assert all(r["stage"] == "generate" and r["reason"].startswith("no usable item after 2 attempt(s)")
               for r in rejected)
    assert json.loads((folder / "data_card.json").read_text())["generation"]["requests"] == 2 * len(chunks)
