"""Parameter counts from config arithmetic equal what transformers builds, exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from distill.compiler.arch import Head, UnsupportedArchitecture, architecture
from tests.conftest import FIXTURE_CONFIGS

FIXTURES = sorted(FIXTURE_CONFIGS.glob("*/config.json"))

TINY: dict[str, dict[str, Any]] = {
    "llama": dict(model_type="llama", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=300, mlp_bias=True,
                  attention_bias=True),
    "mistral": dict(model_type="mistral", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, vocab_size=300),
    "qwen2": dict(model_type="qwen2", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=300, tie_word_embeddings=False),
    "phi3": dict(model_type="phi3", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=300, pad_token_id=0),
    "gemma": dict(model_type="gemma", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, head_dim=32, vocab_size=300),
    "gemma2": dict(model_type="gemma2", hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=24, vocab_size=300),
    # No head_dim: Qwen3Config's default is 128, not hidden / heads.
    "qwen3": dict(model_type="qwen3", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=300),
    # Layers 0, 1 sliding and 2 global (pattern 3): both RoPE bases, both masks.
    "gemma3_text": dict(model_type="gemma3_text", hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=24, vocab_size=300,
                        sliding_window=16, sliding_window_pattern=3, tie_word_embeddings=False),
    "gpt2": dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=128),
    "bert": dict(model_type="bert", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, vocab_size=300, max_position_embeddings=128),
    "roberta": dict(model_type="roberta", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, vocab_size=300, max_position_embeddings=130, type_vocab_size=1),
    "distilbert": dict(model_type="distilbert", dim=64, hidden_dim=96, n_layers=2, n_heads=4,
                       vocab_size=300, max_position_embeddings=128),
}
AUTO = {"causal-lm": transformers.AutoModelForCausalLM, "extractive-qa": transformers.AutoModelForQuestionAnswering,
        "masked-lm": transformers.AutoModelForMaskedLM, "base": transformers.AutoModel}


def built_params(config: dict[str, Any], head: str) -> int:
    cfg = transformers.AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AUTO[head].from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def head_of(config: dict[str, Any]) -> Head:
    """The head the config's ``architectures`` entry names (each fixture names one)."""
    name = config["architectures"][0]
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal-lm"
    assert name.endswith("ForMaskedLM"), name
    return "masked-lm"


def test_the_fixture_configs_are_there() -> None:
    assert len(FIXTURES) >= 5, f"expected the real model configs in {FIXTURE_CONFIGS}"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.parent.name)
def test_fixture_configs_count_exactly(path: Path) -> None:
    config = json.loads(path.read_text())
    cfg = transformers.AutoConfig.from_pretrained(path.parent)
    with torch.device("meta"):
        model = getattr(transformers, config["architectures"][0])(cfg)
    expected = sum(p.numel() for p in model.parameters())
    assert architecture(config).params(head_of(config)) == expected
    assert architecture(config).buffer_bytes == sum(b.nbytes for b in model.buffers())


ENCODER_FAMILIES = ("bert", "roberta", "distilbert")
# Every head transformers has for each family (it has no QA head for gemma, gemma2, gemma3_text, phi3).
HEADS = [(family, head) for family in sorted(TINY) for head in (
    ("extractive-qa", "masked-lm", "base") if family in ENCODER_FAMILIES else
    ("causal-lm", "base") if family in ("gemma", "gemma2", "gemma3_text", "phi3") else
    ("causal-lm", "extractive-qa", "base"))]


@pytest.mark.parametrize(("family", "head"), HEADS)
def test_tiny_configs_count_exactly(family: str, head: str) -> None:
    config = TINY[family]
    assert architecture(config).params(head) == built_params(config, head)


@pytest.mark.parametrize("family", sorted(TINY))
def test_tiny_configs_count_buffers_exactly(family: str) -> None:
    """fp32 models: RoPE frequencies, causal masks, position and type ids, Gemma 3's embedding scale."""
    config = TINY[family]
    head = "masked-lm" if family in ENCODER_FAMILIES else "causal-lm"
    with torch.device("meta"):
        model = AUTO[head].from_config(transformers.AutoConfig.for_model(**config))
    assert architecture(config).buffer_bytes == sum(b.nbytes for b in model.buffers())


def test_unsupported_architecture_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedArchitecture, match="'mamba' is not supported"):
        architecture({"model_type": "mamba"})
