"""Loading the Distillfile's models for real: safetensors only, the pinned settings, the chat
template the Distillfile gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from distill.compiler.resolve import ModelKind, ResolvedModel
from distill.compiler.spec import RandomModel, Teacher
from distill.runtime.models import UnsafeWeights, load_model, load_tokenizer
from distill.runtime.placement import Placement
from distill.runtime.sources.tokenizer import train_byte_bpe

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "vocab_size": 300}


CPU = Placement("cpu", "float32", "fp32")


def resolved(kind: ModelKind, ref: str) -> ResolvedModel:
    return ResolvedModel("teacher", kind, ref, None, TINY, (), "tok", False)


def saved(folder: Path, safe: bool) -> Path:
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**TINY)).save_pretrained(folder, safe_serialization=safe)
    return folder


def test_a_local_safetensors_model_loads(tmp_path: Path) -> None:
    saved(tmp_path / "m", safe=True)
    model = load_model(resolved("local", "m"), Teacher(model="m"), tmp_path, CPU, "none", "teacher")
    assert not model.training and model.config.hidden_size == 32


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    saved(tmp_path / "m", safe=False)
    with pytest.raises(UnsafeWeights, match="no safetensors weights"):
        load_model(resolved("local", "m"), Teacher(model="m"), tmp_path, CPU, None, "teacher")


def test_a_random_model_is_one_model_per_seed(tmp_path: Path) -> None:
    a, b, c = (load_model(resolved("random", "tiny.json"), Teacher(random=RandomModel(config="tiny.json", seed=seed)),
                          tmp_path, CPU, None, "teacher") for seed in (1, 1, 2))
    weight = "model.embed_tokens.weight"
    assert torch.equal(a.state_dict()[weight], b.state_dict()[weight])
    assert not torch.equal(a.state_dict()[weight], c.state_dict()[weight])


def test_the_distillfile_chat_template_wins(tmp_path: Path) -> None:
    (tmp_path / "chat.jinja").write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}")
    spec = Teacher(random=RandomModel(config="tiny.json"), chat_template="chat.jinja")
    tokenizer = load_tokenizer(resolved("random", "tiny.json"), spec, tmp_path, ["a corpus of words"] * 20)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "[user] hi" and tokenizer.eos_token == "<|endoftext|>"


def test_a_random_model_borrows_only_the_tokenizer_of_a_model_folder(tmp_path: Path) -> None:
    from distill.compiler.codec import build_spec
    from distill.compiler.resolve import resolve_models

    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 4}')
    train_byte_bpe(["a corpus of words"], 300).save(str(tmp_path / "teacher" / "tokenizer.json"))
    (tmp_path / "student.json").write_text('{"model_type": "llama", "num_hidden_layers": 2}')
    spec = build_spec({"version": 1, "name": "t", "sources": [{"text": "*.md"}],
                       "student": {"random": {"config": "student.json", "tokenizer": "teacher"}}})
    student = resolve_models(spec, tmp_path, offline=True)["student"]
    assert student.config["num_hidden_layers"] == 2
    assert student.tokenizer_file == tmp_path / "teacher" / "tokenizer.json"
    # shown relative to the project: the lock and stage keys do not depend on where it is checked out
    assert sorted(f.path for f in student.files) == ["student.json", "teacher/tokenizer.json"]


def test_a_random_model_gets_its_tokenizers_special_ids(tmp_path: Path) -> None:
    from distill.runtime.models import align_special_tokens

    spec = Teacher(random=RandomModel(config="tiny.json"))
    model = load_model(resolved("random", "tiny.json"), spec, tmp_path, CPU, None, "teacher")
    tokenizer = load_tokenizer(resolved("random", "tiny.json"), spec, tmp_path, ["a corpus of words"] * 20)
    align_special_tokens(model, tokenizer)
    assert model.config.eos_token_id == model.generation_config.eos_token_id == tokenizer.eos_token_id == 0
    assert model.config.bos_token_id is None and model.config.pad_token_id == tokenizer.pad_token_id == 1


@pytest.mark.parametrize(("model_type", "segments"), [("bert", True), ("distilbert", False), ("llama", False)])
def test_a_tokenizer_trained_for_a_random_model_returns_the_inputs_it_takes(tmp_path: Path, model_type: str,
                                                                           segments: bool) -> None:
    config = {"model_type": model_type, **({"type_vocab_size": 2} if model_type == "bert" else {}), "vocab_size": 300}
    model = ResolvedModel("student", "random", "s.json", None, config, (), "tok", False)
    tokenizer = load_tokenizer(model, Teacher(random=RandomModel(config="s.json")), tmp_path,
                               ["a corpus of words"] * 20)
    assert ("token_type_ids" in tokenizer("a question", "a context")) == segments
