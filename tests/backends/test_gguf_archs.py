"""GGUF backend beyond llama and qwen2: tiny seeded GPT-2, Phi-3 (with and without longrope),
Gemma 1/2/3, Mistral, Qwen3 and a Llama 3.x rope scaling (hidden 256, so K-quants are real
K-quants) written by llama.cpp's converter, quantized and verified; settings llama.cpp would compute
differently are refused from config.json alone, before anything is written; a conversion that
drops a Gemma norm shift or Llama 3's rope factors fails verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from distill.backends import gguf_archs, gguf_writer
from distill.backends.base import VerificationError
from distill.backends.registry import get_backend
from distill.compiler.spec import GgufTarget
from tests.backends.test_gguf import _model

# Sliding windows of 8 tokens: shorter than the 16-token probe, so Gemma-2/3's sliding layers are
# really exercised in both llama.cpp and torch; Phi-3's caps the GGUF context at 8.
# Gemma ties lm_head to the embedding, as llama.cpp's gemma assumes. Gemma-2's soft-caps are
# tiny so that they bite on random weights (the default 50 and 30 are far above its scores and
# logits, so they would be the identity): at 0.05 and 0.5, torch's sdpa, which ignores the
# attention cap, is 0.11 away from eager attention.
# Llama 3's rope scaling with a 16-token original context: every rotary frequency whose
# wavelength passes 16 tokens (28 of 32 at head_dim 64) turns 32x slower, inside the probe.
# Phi-3.5's longrope with a 4-token original context: the probe runs on the long factors.
LONGROPE = {"type": "longrope", "long_factor": [1.0 + i / 8 for i in range(32)],
            "short_factor": [1.0 + i / 64 for i in range(32)]}
ARCHS: dict[str, dict[str, Any]] = {
    "gpt2": {}, "phi3": {"sliding_window": 8},
    "phi3-longrope": {"arch": "phi3", "rope_scaling": LONGROPE, "original_max_position_embeddings": 4},
    "llama3-rope": {"arch": "llama", "rope_scaling": {
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}},
    "mistral": {"sliding_window": None},
    "qwen3": {"head_dim": 64},
    "gemma": {"head_dim": 64, "tied": True, "hidden_act": "gelu"},  # exact, as Gemma ships
    "gemma2": {"head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 8, "tied": True,
               "attn_logit_softcapping": 0.05, "final_logit_softcapping": 0.5},
    "gemma3_text": {"head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 8, "tied": True}}


def arch_model(folder: Path, name: str) -> Path:
    """The tiny model of ``ARCHS[name]``."""
    config = dict(ARCHS[name])
    return _model(folder, config.pop("arch", name), **config)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_architecture_exports_verified(arch: str, tmp_path: Path) -> None:
    model = arch_model(tmp_path / arch, arch)
    artifact = get_backend("gguf").export(model, GgufTarget(("Q4_K_M",)), tmp_path / "out")
    checks = {c["name"]: c for c in json.loads((artifact.path.parent / "manifest.json").read_text())["verification"]}
    assert all(c["passed"] for c in checks.values())  # export raises otherwise; recorded, too
    assert checks["F16.logits_top1_agreement"]["detail"].startswith("1.0000")
    assert "equals HF's" in checks["chat_template"]["detail"]
    assert artifact.extra["files"]["Q4_K_M"]["tensor_types"].get("Q4_K", 0) > 0
    if arch == "phi3":
        import gguf

        field = gguf.GGUFReader(artifact.path).fields["phi3.context_length"]
        assert int(field.parts[-1][0]) == 8


def test_an_embedding_wider_than_the_tokenizer_is_written_whole(tmp_path: Path) -> None:
    # Gemma 3's converter would cut the embedding to the tokenizer's size; distill's token table
    # has a row for every embedding row (unused placeholders past the tokenizer), as HF's logits.
    config = dict(ARCHS["gemma3_text"], vocab_size=400)
    model = _model(tmp_path / "gemma3", "gemma3_text", **config)
    artifact = get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    import gguf

    embedding = next(t for t in gguf.GGUFReader(artifact.path).tensors if t.name == "token_embd.weight")
    assert list(embedding.shape) == [256, 400]


def test_every_declared_family_is_exported_here() -> None:
    """A family declared supported without an export test above would be a claim unchecked."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    tested = {MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[ARCHS[name].get("arch", name)] for name in ARCHS}
    # llama and qwen2 (with its own pre-tokenizer) are exported in test_gguf.py.
    assert tested | {"LlamaForCausalLM", "Qwen2ForCausalLM"} == set(gguf_archs.FAMILIES)


@pytest.mark.parametrize(("arch", "broken", "check"), [
    # Gemma's RMSNorm multiplies by (1 + w) with w initialized to 0: written unshifted,
    # llama.cpp would multiply every normalized activation by 0.
    ("gemma3_text", "gemma.Gemma3Model.norm_shift", "F16.logits_max_abs_diff"),
    ("llama3-rope", "llama.LlamaModel.generate_extra_tensors", "F16.logits_max_abs_diff")])
def test_a_conversion_bug_fails_verification(arch: str, broken: str, check: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    module, cls, method = broken.split(".")
    conversion = gguf_writer._conversion()
    __import__(f"{conversion.__name__}.{module}")
    target = getattr(getattr(conversion, module), cls)
    monkeypatch.setattr(target, method, lambda *args, **kwargs: 0.0 if method == "norm_shift" else iter(()))
    model = arch_model(tmp_path / arch, arch)
    with pytest.raises(VerificationError) as error:
        get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    assert check in {c.name for c in error.value.report.failures()}, error.value.report.failures()


def _config(architecture: str, **settings: Any) -> dict[str, Any]:
    return {"architectures": [architecture], "hidden_size": 256, "num_attention_heads": 4,
            "num_hidden_layers": 2, "max_position_embeddings": 128, **settings}


@pytest.mark.parametrize(("config", "words"), [
    (_config("Gemma2ForCausalLM", head_dim=64, query_pre_attn_scalar=256),
     "query_pre_attn_scalar 256 != head_dim 64"),
    (_config("Gemma2ForCausalLM", head_dim=64, query_pre_attn_scalar=64,
             layer_types=["full_attention"] * 2), "llama.cpp's pattern"),
    (_config("Gemma3ForCausalLM", head_dim=64, query_pre_attn_scalar=64,
             layer_types=["sliding_attention", "sliding_attention"], attn_logit_softcapping=50.0),
     "attn_logit_softcapping"),
    (_config("GPT2LMHeadModel", activation_function="relu"), "activation_function='relu'"),
    (_config("LlamaForCausalLM", rope_scaling={"rope_type": "yarn", "factor": 4.0}),
     "rope_scaling 'yarn'"),
    (_config("Qwen3ForCausalLM", use_sliding_window=True), "use_sliding_window"),
    (_config("Phi3ForCausalLM", sliding_window=32, rope_scaling=LONGROPE), "sliding_window 32"),
    (_config("MambaForCausalLM"), "this model is MambaForCausalLM")])
def test_what_llama_cpp_would_compute_differently_is_refused(config: dict, words: str) -> None:
    assert words in (gguf_archs.refusal(config) or "")


def test_a_refused_model_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    model = _model(tmp_path / "llama", "llama", rope_scaling={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(NotImplementedError, match="rope_scaling 'linear'"):
        get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_real_configs_are_declared_supported() -> None:
    """The families users pick, from their published configs (tests/fixtures/configs)."""
    from tests.conftest import FIXTURE_CONFIGS

    for name in ("llama-3.2-1b", "mistral-7b-v0.3", "qwen2.5-0.5b", "qwen3-0.6b", "gemma-2-2b-it",
                 "gemma-3-1b-it", "phi-3-mini-4k-instruct", "distilgpt2", "gpt2-large"):
        config = json.loads((FIXTURE_CONFIGS / name / "config.json").read_text())
        assert gguf_archs.refusal(config) is None, name
