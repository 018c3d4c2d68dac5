"""Loading the Distillfile's models for real: safetensors only, the pinned settings, the chat
template the Distillfile gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from distill.compiler.resolve import ResolvedModel
from distill.compiler.spec import RandomModel, Teacher
from distill.runtime.models import UnsafeWeights, load_model, load_tokenizer

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "vocab_size": 300}


def resolved(kind: str, ref: str) -> ResolvedModel:
    return ResolvedModel("teacher", kind, ref, None, TINY, (), "tok", False)  # type: ignore[arg-type]


def saved(folder: Path, safe: bool) -> Path:
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**TINY)).save_pretrained(folder, safe_serialization=safe)
    return folder


def test_a_local_safetensors_model_loads(tmp_path: Path) -> None:
    saved(tmp_path / "m", safe=True)
    model = load_model(resolved("local", "m"), Teacher(model="m"), tmp_path, "float32", "none", 0)
    assert not model.training and model.config.hidden_size == 32


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    saved(tmp_path / "m", safe=False)
    with pytest.raises(UnsafeWeights, match="no safetensors weights"):
        load_model(resolved("local", "m"), Teacher(model="m"), tmp_path, "float32", None, 0)


def test_a_random_model_is_one_model_per_seed(tmp_path: Path) -> None:
    spec = Teacher(random=RandomModel(config="tiny.json"))
    a, b, c = (load_model(resolved("random", "tiny.json"), spec, tmp_path, "float32", None, seed)
               for seed in (1, 1, 2))
    weight = "model.embed_tokens.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])


def test_the_distillfile_chat_template_wins(tmp_path: Path) -> None:
    (tmp_path / "chat.jinja").write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}")
    spec = Teacher(random=RandomModel(config="tiny.json"), chat_template="chat.jinja")
    tokenizer = load_tokenizer(resolved("random", "tiny.json"), spec, tmp_path, ["a corpus of words"] * 20)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "[user] hi" and tokenizer.eos_token == "<|endoftext|>"
