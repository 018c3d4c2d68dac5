"""Qwen3, Gemma 3 and scaled-RoPE configs: counted exactly, refused where a student would differ, planned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from distill.compiler.arch import UnsupportedArchitecture, architecture
from distill.compiler.cli import main
from distill.compiler.pipeline import plan_file
from tests.conftest import FIXTURE_CONFIGS


def _longrope(pairs: int) -> dict[str, Any]:
    # Placeholder factors: their values scale the frequencies but never the number of them
    # (rotary_dim / 2), which is all the planner counts.
    return {"type": "longrope", "short_factor": [1.0] * pairs, "long_factor": [1.0 + i / pairs for i in range(pairs)]}


# Shapes as published in microsoft/Phi-3.5-mini-instruct and microsoft/Phi-4-mini-instruct's
# config.json (both model_type phi3, 128k context by longrope over a 4k original); the factor
# lists are placeholders of the published length, 48 (head_dim 96, and 128 x 0.75 rotated).
PHI35_MINI = dict(model_type="phi3", architectures=["Phi3ForCausalLM"], hidden_size=3072, intermediate_size=8192,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
                  max_position_embeddings=131072, original_max_position_embeddings=4096, rope_theta=10000.0,
                  rope_scaling=_longrope(48), tie_word_embeddings=False, pad_token_id=32000)
PHI4_MINI = dict(PHI35_MINI, num_attention_heads=24, num_key_value_heads=8, vocab_size=200064,
                 partial_rotary_factor=0.75, tie_word_embeddings=True, pad_token_id=199999)
# A Llama 3.x rope_scaling (as llama-3.2-1b's), on a small model.
LLAMA3_ROPE = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64, intermediate_size=96,
                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
                   max_position_embeddings=131072, rope_theta=500000.0,
                   rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
SCALED = {"phi-3.5-mini": PHI35_MINI, "phi-4-mini": PHI4_MINI, "llama3-rope": LLAMA3_ROPE}


def built(config: dict[str, Any]) -> torch.nn.Module:
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config))


@pytest.mark.parametrize("name", sorted(SCALED))
def test_scaled_rope_configs_count_params_and_buffers_exactly(name: str) -> None:
    config, model = SCALED[name], built(SCALED[name])
    arch = architecture(config)
    assert arch.params("causal-lm") == sum(p.numel() for p in model.parameters())
    assert arch.buffer_bytes == sum(b.nbytes for b in model.buffers())


def test_phi4_mini_rotates_three_quarters_of_each_head() -> None:
    arch = architecture(PHI4_MINI)
    assert (arch.head_dim, arch.rotary_dim, arch.buffer_bytes) == (128, 96, 48 * 4)


def test_gemma3_text_has_two_rope_bases_and_two_masks_when_layers_differ() -> None:
    config = json.loads((FIXTURE_CONFIGS / "gemma-3-1b-it" / "config.json").read_text())
    arch = architecture(config)
    assert (arch.rope_bases, arch.attention_masks, arch.qk_norm, arch.logit_softcap) == (2, 2, True, False)
    # fewer layers than the pattern (6): every layer slides, one mask
    assert architecture(dict(config, num_hidden_layers=5)).attention_masks == 1


def test_multimodal_gemma3_is_refused_with_the_text_config_as_hint() -> None:
    config = {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text"}}
    with pytest.raises(UnsupportedArchitecture, match="carries its vision tower") as error:
        architecture(config)
    assert "gemma3_text" in (error.value.hint or "")


STUDENTS = {
    "qwen3-0.6b": FIXTURE_CONFIGS / "qwen3-0.6b" / "config.json",
    "gemma-3-1b-it": FIXTURE_CONFIGS / "gemma-3-1b-it" / "config.json",
}


def _distillfile(tmp_path: Path, student: str, extra: str) -> Path:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "a.md").write_text("The pump runs for twenty minutes.\n" * 200)
    path = tmp_path / "Distillfile"
    path.write_text(f"version: 1\nname: p\nsources: [{{text: docs/*.md}}]\nstudent:\n  {student}\n"
                    "loss: {mask: all}\n" + extra)
    return path


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_distill_plan_plans_a_random_qwen3_or_gemma3_student(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _distillfile(tmp_path, f"random: {{config: {STUDENTS[name]}}}",
                        "hardware: {device: cuda, vram: 16GiB}\ntrain: {max_seq_len: 1024}\n")
    assert main(["plan", str(path)]) == 0, capsys.readouterr().err
    plan = plan_file(path).plan
    assert plan.models[0].params == architecture(json.loads(STUDENTS[name].read_text())).params("causal-lm")
    assert plan.peak.bytes <= plan.budget_bytes


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_lora_on_a_random_qwen3_or_gemma3_student_targets_every_projection(name: str, tmp_path: Path) -> None:
    path = _distillfile(tmp_path, f"random: {{config: {STUDENTS[name]}}}\n  adapter: {{type: lora, r: 16}}",
                        "hardware: {device: cuda, vram: 8GiB}\ntrain: {max_seq_len: 2048}\n")
    plan = plan_file(path).plan
    assert plan.lora_targets == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert plan.peak.bytes <= plan.budget_bytes


def test_distill_plan_plans_a_longrope_phi4_mini_student(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "phi4.json").write_text(json.dumps(PHI4_MINI))
    path = _distillfile(tmp_path, "random: {config: phi4.json}\n  adapter: {type: qlora, r: 16}",
                        "hardware: {device: cuda, vram: 24GiB}\ntrain: {max_seq_len: 4096}\n")
    assert main(["plan", str(path)]) == 0, capsys.readouterr().err
    assert plan_file(path).plan.models[0].params == architecture(PHI4_MINI).params("causal-lm")
