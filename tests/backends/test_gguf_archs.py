"""GGUF backend beyond llama and qwen2: tiny seeded GPT-2, Phi-3, Gemma and Gemma-2 (hidden 256,
so K-quants are real K-quants) written, quantized and verified; settings llama.cpp would compute
differently are refused, and a dropped Gemma norm shift fails verification."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

import torch
from distill.backends import gguf_archs
from distill.backends.base import VerificationError, get_backend
from distill.compiler.spec import GgufTarget

from tests.backends.test_gguf import _model

# Sliding windows of 8 tokens: shorter than the 16-token probe, so Gemma-2's alternate-layer
# window is really exercised in both llama.cpp and torch; Phi-3's caps the GGUF context at 8.
# Gemma ties lm_head to the embedding, as llama.cpp's gemma assumes. Gemma-2's soft-caps are
# tiny so that they bite on random weights (the default 50 and 30 are far above its scores and
# logits, so they would be the identity): at 0.05 and 0.5, torch's sdpa, which ignores the
# attention cap, is 0.11 away from eager attention.
ARCHS = {"gpt2": {}, "phi3": {"sliding_window": 8},
         "gemma": {"head_dim": 64, "tied": True, "hidden_act": "gelu"},  # exact, as Gemma ships
         "gemma2": {"head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 8, "tied": True,
                    "attn_logit_softcapping": 0.05, "final_logit_softcapping": 0.5}}


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_architecture_exports_verified(arch: str, tmp_path: Path) -> None:
    model = _model(tmp_path / arch, arch, **ARCHS[arch])
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


def test_gemma_without_norm_shift_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # HF Gemma's RMSNorm multiplies by (1 + w) with w initialized to 0: written unshifted,
    # llama.cpp would multiply every normalized activation by 0.
    gemma = gguf_archs.FAMILIES["GemmaForCausalLM"]
    monkeypatch.setitem(gguf_archs.FAMILIES, "GemmaForCausalLM", dataclasses.replace(gemma, norm_shift=0.0))
    model = _model(tmp_path / "gemma", "gemma", **ARCHS["gemma"])
    with pytest.raises(VerificationError) as error:
        get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    assert "F16.logits_top1_agreement" in {c.name for c in error.value.report.failures()}


@pytest.mark.parametrize(("arch", "config", "words"), [
    ("gemma2", {"head_dim": 64, "query_pre_attn_scalar": 256}, "query_pre_attn_scalar 256 != head_dim 64"),
    ("gemma2", {"head_dim": 64, "query_pre_attn_scalar": 64, "layer_types": ["full_attention"] * 2},
     "llama.cpp alternates"),
    ("gpt2", {"activation_function": "relu"}, "activation_function='relu'"),
    ("gemma", {"head_dim": 64}, "no GGUF name for tensor 'lm_head.weight' in llama.cpp's gemma"),
    ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling")])
def test_what_llama_cpp_would_compute_differently_is_refused(arch: str, config: dict, words: str,
                                                             tmp_path: Path) -> None:
    model = _model(tmp_path / arch, arch, **config)
    with pytest.raises(NotImplementedError, match=words):
        get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    assert not (tmp_path / "out").exists()
