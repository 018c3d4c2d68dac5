"""ONNX int8 recipes: the first that verifies is kept and named; a planted activation outlier (as
SmolLM2's down projections carry) breaks dynamic int8 and falls back to int8 weights computing in
fp32; when no recipe holds, the error names fp32 ONNX and GGUF; MatMulNBits' weight layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from distill.backends import onnx as onnx_backend
from distill.backends import onnx_int8
from distill.backends.base import VerificationError
from distill.backends.onnx_support import INT8_RECIPES
from distill.backends.registry import get_backend
from distill.compiler.spec import OnnxTarget
from tests.backends.test_onnx import _save_tokenizer

# The planted outlier: one MLP channel's gate and up rows scaled by 30 give SiLU(30 g) * 30 u,
# ~900x its neighbours at the down projection's input (SmolLM2-135M: 3079 against a 99.9th
# percentile of 2.5). The channel's down_proj column is zeroed, as trained models pair massive
# activations with weights that cancel them, so the fp32 function keeps its scale.
OUTLIER_CHANNEL, OUTLIER_GAIN = 7, 30.0
# Random init (std 0.02) leaves an MLP's output far below the residual stream's, so losing it
# hardly moves the logits (dynamic int8 with the outlier alone: 0.109 against a bound of 0.127);
# these gains make the MLPs carry the residual as trained ones do. Measured with them: dynamic
# 2.7 (bound 0.128, top-1 0.05), weight-only blocks of 32 0.027 (top-1 0.97). Without outlier
# or gains, dynamic holds: 0.019 (bound 0.127), top-1 1.0.
MLP_GAIN, HEAD_GAIN = 4.0, 2.0
DYNAMIC, WEIGHT_ONLY = (recipe.name for recipe in INT8_RECIPES)


def _llama(folder: Path, outlier: bool) -> Path:
    """A tiny seeded llama (hidden 64, 2 layers, tied embeddings); ``outlier``: with the MLP
    gains and the planted outlier."""
    vocab = _save_tokenizer(folder)
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        "llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=128, bos_token_id=0,
        eos_token_id=0, pad_token_id=1, tie_word_embeddings=True)
    model = transformers.AutoModelForCausalLM.from_config(config)
    if outlier:
        _plant_outlier(model)
    model.save_pretrained(folder)
    return folder


def _plant_outlier(model: torch.nn.Module) -> None:
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(HEAD_GAIN)
        for layer in model.model.layers:
            mlp = layer.mlp
            for weight in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight):
                weight.mul_(MLP_GAIN)
            mlp.gate_proj.weight[OUTLIER_CHANNEL] *= OUTLIER_GAIN
            mlp.up_proj.weight[OUTLIER_CHANNEL] *= OUTLIER_GAIN
            mlp.down_proj.weight[:, OUTLIER_CHANNEL] = 0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("int8")
    return {name: _llama(root / name, name == "outlier") for name in ("plain", "outlier")}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _recipe_check(manifest: dict) -> dict:
    return next(c for c in manifest["verification"] if c["name"] == "int8_recipe")


def test_first_recipe_kept_when_it_holds(models: dict, tmp_path: Path) -> None:
    artifact = get_backend("onnx").export(models["plain"], OnnxTarget("int8"), tmp_path / "out")
    manifest = _manifest(tmp_path / "out")
    assert artifact.extra["int8_recipe"] == manifest["int8_recipe"] == DYNAMIC
    check = _recipe_check(manifest)
    assert check["passed"] and check["detail"].startswith(f"{DYNAMIC}:") and "tried first" not in check["detail"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if "onnx" in p.name) == ["model.onnx"]


def test_outlier_falls_back_to_weight_only(models: dict, tmp_path: Path) -> None:
    artifact = get_backend("onnx").export(models["outlier"], OnnxTarget("int8"), tmp_path / "out")
    manifest = _manifest(tmp_path / "out")
    assert artifact.extra["int8_recipe"] == manifest["int8_recipe"] == WEIGHT_ONLY
    assert all(c["passed"] for c in manifest["verification"])
    check = _recipe_check(manifest)
    # The report says what was kept and why dynamic was not: its logits missed the bound.
    assert check["detail"].startswith(f"{WEIGHT_ONLY}:")
    assert f"tried first: {DYNAMIC} failed logits_max_abs_diff" in check["detail"]
    # What verification ran is what was written: weights in MatMulNBits, no fp32 copy left behind.
    report = get_backend("onnx").verify(artifact, models["outlier"])
    assert report.passed, report.failures()
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"model.onnx", "manifest.json"}
    assert not (tmp_path / "out" / onnx_backend.FP32_SOURCE).exists()
    assert artifact.size < 0.8 * _fp32_size(models["outlier"], tmp_path / "fp32")


def _fp32_size(model_dir: Path, out: Path) -> int:
    return get_backend("onnx").export(model_dir, OnnxTarget("none"), out).size


def test_dynamic_alone_fails_on_the_outlier(models: dict, tmp_path: Path, monkeypatch) -> None:
    # With only dynamic int8 to try, the outlier model cannot be exported at int8: the error names
    # what was tried and the alternatives, and nothing is written.
    monkeypatch.setattr(onnx_backend, "INT8_RECIPES", INT8_RECIPES[:1])
    destination = tmp_path / "deploy" / "model"
    with pytest.raises(VerificationError) as error:
        get_backend("onnx").export(models["outlier"], OnnxTarget("int8"), destination)
    message = str(error.value)
    assert f"no int8 recipe held ({DYNAMIC})" in message
    assert "onnx quant none" in message and "--to onnx:none" in message and "--to gguf:Q8_0" in message
    failed = {c.name for c in error.value.report.failures()}
    assert f"{DYNAMIC}.logits_max_abs_diff" in failed and "int8_recipe" in failed
    assert list(destination.parent.iterdir()) == []


def test_no_recipe_holds(models: dict, tmp_path: Path, monkeypatch) -> None:
    # Every recipe's graph broken (the largest weight negated): each is tried, all are reported.
    real = onnx_int8.quantize

    def broken(source: Path, out: Path, recipe, external: bool) -> None:
        import onnx
        from onnx import numpy_helper

        real(source, out, recipe, external)
        model = onnx.load(str(out))
        largest = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        largest.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(largest), largest.name))
        onnx.save(model, str(out))

    monkeypatch.setattr(onnx_int8, "quantize", broken)
    with pytest.raises(VerificationError, match=r"no int8 recipe held \(dynamic, weight-only-block32\)") as error:
        get_backend("onnx").export(models["plain"], OnnxTarget("int8"), tmp_path / "out")
    names = {c.name for c in error.value.report.failures()}
    assert {f"{r.name}.logits_max_abs_diff" for r in INT8_RECIPES} <= names
    assert "fp32" in str(error.value) and "GGUF" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("rows", [64, 40])  # 40: K padded to whole blocks of 16
def test_weight_only_graph_matches_its_int8_weights(rows: int, tmp_path: Path) -> None:
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    generator = np.random.default_rng(0)
    weight = generator.normal(size=(rows, 24)).astype(np.float32)
    weight[3, 5] = 40.0  # one large weight coarsens its own block of 16 rows only
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 24])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)  # as optimum writes
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    onnx_int8.weight_only(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", 16, external=False)
    x = generator.normal(size=(2, rows)).astype(np.float32)
    got = onnxruntime.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"]
                                       ).run(None, {"x": x})[0]
    quantized, scales = onnx_int8.int8_blocks(weight, 16)
    blocks = -(-rows // 16)
    dequantized = ((quantized.astype(np.float32) - 128) * scales.reshape(24, blocks, 1)).reshape(24, -1)[:, :rows].T
    assert np.abs(dequantized - weight).max() <= scales.max() / 2 + 1e-6  # rounding, half a step
    # Other blocks keep their own scale: 40 / 127 only in the block of row 3, column 5.
    assert scales.reshape(24, blocks)[5, 0] == pytest.approx(40 / 127)
    assert np.abs(scales.reshape(24, blocks)[np.arange(24) != 5]).max() < 5 / 127
    np.testing.assert_allclose(got, x @ dequantized, rtol=1e-5, atol=1e-4)
    nodes = onnx.load(str(tmp_path / "int8.onnx")).graph.node
    assert [(n.op_type, n.domain) for n in nodes] == [("MatMulNBits", "com.microsoft")]
    assert {a.name: a.i for a in nodes[0].attribute}["accuracy_level"] == 1  # fp32 compute
