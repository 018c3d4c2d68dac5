"""ONNX backend across every family and rope scaling it declares (``onnx_support``): each exported
fp32 and int8 and verified against torch; what it refuses, refused from config.json alone, at
plan time and at export; the declarations cannot claim a family no export here covers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from distill.backends import onnx as onnx_backend
from distill.backends import onnx_support
from distill.backends.base import load_reference
from distill.backends.registry import get_backend
from distill.compiler.arch import rope_type
from distill.compiler.spec import OnnxTarget
from tests.backends.test_gguf import _model
from tests.backends.test_onnx import _save_tokenizer

LLAMA3 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}
# Phi-3.5-style LongRoPE with its switch at 24 tokens: verify()'s 16-token probe and its 8
# generated tokens stay on the short factors, as they do for a real model (switch at 4096), and
# test_longrope_switch_is_in_the_graph prompts past it. Long factors far from the short ones
# (1..32; Phi-3-mini-128k's reach 64.8), so a graph with the wrong set is far off.
SWITCH = 24
LONGROPE = {"type": "longrope", "long_factor": [1.0 + i for i in range(32)],
            "short_factor": [1.0 + 0.01 * i for i in range(32)]}
# name: (model_type, overrides of test_gguf._model's hidden 256, 2 layers, 4 heads, 2 kv heads).
# Tied embeddings (as Llama-3.2-1B, Qwen2.5/3 small, Gemma and GPT-2 ship; here for all): the last
# hidden state still carries the input token's embedding, so top-1 has a trained model's margin.
# Untied random heads are near ties that int8 flips: untied llama3 and qwen3 measured 0.89 int8
# top-1 agreement, under the backend's 0.90 gate. Each case also pins what optimum gets wrong:
# Gemma-2's soft-caps small enough to bite (sdpa would drop them: 0.11 off), Qwen3's head_dim
# 128 != 256 / 4 and Phi-3's 2 kv heads (optimum's ORT wrapper would feed a wrong empty cache),
# sliding windows of 8 inside the 16-token probe.
CAUSAL: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", {"tied": True, "rope_scaling": LLAMA3}),
    "mistral": ("mistral", {"tied": True, "sliding_window": 8,
                            "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "qwen2": ("qwen2", {"tied": True, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                       "original_max_position_embeddings": 32}}),
    "qwen3": ("qwen3", {"tied": True, "head_dim": 128}),
    "gemma": ("gemma", {"tied": True, "head_dim": 64, "hidden_act": "gelu"}),
    "gemma2": ("gemma2", {"tied": True, "head_dim": 64, "query_pre_attn_scalar": 64, "sliding_window": 8,
                          "attn_logit_softcapping": 0.05, "final_logit_softcapping": 0.5}),
    "gemma3_text": ("gemma3_text", {"tied": True, "head_dim": 64, "query_pre_attn_scalar": 64,
                                    "sliding_window": 8}),
    "phi3": ("phi3", {"tied": True, "original_max_position_embeddings": SWITCH, "rope_scaling": LONGROPE}),
    "gpt2": ("gpt2", {"tied": True}),
}
QA = ("bert", "roberta", "distilbert")
QUANTS = ("none", "int8")


def _qa_model(folder: Path, model_type: str) -> Path:
    """A tiny seeded extractive-QA model (hidden 64, 2 layers) with a trained byte-level BPE."""
    vocab = _save_tokenizer(folder)
    torch.manual_seed(0)
    # DistilBERT names its sizes dim / hidden_dim; RoBERTa's positions start after padding_idx 1.
    sizes = ({"dim": 64, "hidden_dim": 128} if model_type == "distilbert"
             else {"hidden_size": 64, "intermediate_size": 128})
    config = transformers.AutoConfig.for_model(model_type, num_hidden_layers=2, num_attention_heads=4,
                                               vocab_size=vocab, max_position_embeddings=66, **sizes)
    transformers.AutoModelForQuestionAnswering.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("families")
    built = {name: _model(root / name, arch, **config) for name, (arch, config) in CAUSAL.items()}
    return built | {name: _qa_model(root / name, name) for name in QA}


Export = Callable[[str, str], Path]


@pytest.fixture(scope="module")
def export(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Export:
    """Export (verified, or it raises) a model once per quant; the exported folder."""
    out = tmp_path_factory.mktemp("exports")

    def folder(name: str, quant: str) -> Path:
        if not (out / f"{name}-{quant}").is_dir():
            get_backend("onnx").export(models[name], OnnxTarget(quant), out / f"{name}-{quant}")
        return out / f"{name}-{quant}"
    return folder


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("name", [*CAUSAL, *QA])
def test_family_exports_verified(name: str, quant: str, export: Export) -> None:
    manifest = json.loads((export(name, quant) / "manifest.json").read_text())
    checks = {c["name"]: c for c in manifest["verification"]}
    assert all(c["passed"] for c in checks.values())
    if quant == "none":  # kernel summation order only: measured 6e-8 (BERT) to 4.3e-6 (Gemma)
        diff = checks["start_logits_max_abs_diff" if name in QA else "logits_max_abs_diff"]["detail"]
        assert float(diff.split()[0]) < 1e-5


def test_longrope_switch_is_in_the_graph(models: dict, tmp_path: Path, monkeypatch) -> None:
    # A prompt past the switch is rotated with the long factors in torch; the graph must agree.
    # Traced as transformers writes it, the graph keeps the short factors of its 16-token dummy.
    from optimum.onnxruntime import ORTModelForCausalLM

    reference = load_reference(transformers.AutoModelForCausalLM, models["phi3"])
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, reference.config.vocab_size, (2, SWITCH + 8), generator=generator)
    mask = torch.ones_like(ids)

    def diff(out: Path) -> float:
        onnx_backend.export_optimum(models["phi3"], out, onnx_support.CAUSAL)
        graph = ORTModelForCausalLM.from_pretrained(out, session_options=onnx_backend.session_options())
        onnx_backend.size_cache_from_graph(graph)
        with torch.no_grad():
            return float((graph(input_ids=ids, attention_mask=mask).logits
                          - reference(input_ids=ids, attention_mask=mask).logits).abs().max())

    assert diff(tmp_path / "switching") < 1e-5
    monkeypatch.setattr(onnx_backend, "_longrope_in_graph", lambda model: None)
    assert diff(tmp_path / "traced") > 1e-2


@pytest.mark.parametrize(("name", "heads", "head_dim"), [("phi3", 2, 64), ("qwen3", 2, 128)])
def test_first_cache_sized_from_the_graph(name: str, heads: int, head_dim: int, export: Export) -> None:
    from optimum.onnxruntime import ORTModelForCausalLM

    graph = ORTModelForCausalLM.from_pretrained(export(name, "none"),
                                                session_options=onnx_backend.session_options())
    assert (graph.num_key_value_heads, graph.embed_size_per_head) != (heads, head_dim)  # optimum's guess
    onnx_backend.size_cache_from_graph(graph)
    assert (graph.num_key_value_heads, graph.embed_size_per_head) == (heads, head_dim)


def _config(model_type: str, head: str = "ForCausalLM", **extra: Any) -> dict[str, Any]:
    return {"model_type": model_type, "architectures": [f"{model_type.title()}{head}"], **extra}


@pytest.mark.parametrize(("config", "quant", "words"), [
    (_config("llama", rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "none",
     "rope_scaling type 'dynamic' \\(llama\\) recomputes its frequencies .* use one of default, linear"),
    (_config("qwen2", rope_scaling={"rope_type": "mrope"}), "int8",
     "'mrope' .* is not one the ONNX export is verified with"),
    (_config("falcon"), "none", "model_type 'falcon' .* pick a student of llama, mistral"),
    (_config("gemma3", "ForConditionalGeneration"), "none", "model_type 'gemma3' .* gemma3_text"),
    (_config("bert", "ForMaskedLM"), "int8", "'bert' only with a question-answering head .* extractive-qa"),
    (_config("llama", "ForQuestionAnswering"), "none", "'llama' as question-answering .* bert, roberta"),
    (_config("llama"), "int4", "quant 'int4' .* use none \\(fp32\\) or int8"),
])
def test_refusal(config: dict, quant: str, words: str) -> None:
    reason = onnx_support.refusal(config, quant)
    assert reason is not None and "\n" not in reason
    assert re.search(words, reason), reason


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("fixtures/configs/*/config.json")),
                         ids=lambda path: path.parent.name)
def test_real_configs_are_taken(path: Path) -> None:
    # distilbert-base-uncased names its pretraining head; the plan passes the student's task.
    config = json.loads(path.read_text())
    task = onnx_support.QA if config["model_type"] in onnx_support.MODEL_TYPES[onnx_support.QA] else None
    assert onnx_support.refusal(config, "int8", task) is None


def test_export_refuses_before_writing(tmp_path: Path) -> None:
    # config.json alone: the refusal comes before anything is loaded, traced or written.
    model = tmp_path / "model"
    model.mkdir()
    config = _config("llama", rope_scaling={"type": "dynamic", "factor": 2.0})
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotImplementedError, match="rope_scaling type 'dynamic'"):
        get_backend("onnx").export(model, OnnxTarget("none"), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_every_declaration_has_an_export_test() -> None:
    assert set(onnx_support.MODEL_TYPES[onnx_support.CAUSAL]) == {arch for arch, _ in CAUSAL.values()}
    assert set(onnx_support.MODEL_TYPES[onnx_support.QA]) == set(QA)
    assert set(onnx_support.ROPE_TYPES) == {rope_type(config) for _, config in CAUSAL.values()}
    assert set(onnx_support.QUANTS) == set(QUANTS)
    assert onnx_support.task_of(_config("bert", "ForQuestionAnswering")) == onnx_support.QA
