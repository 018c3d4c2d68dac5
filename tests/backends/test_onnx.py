"""ONNX backend: tiny seeded llama (causal LM with past key values) and BERT (extractive QA)
exported fp32 and int8, verified against torch; corrupted exports fail and leave nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers

from distill.backends import onnx as onnx_backend
from distill.backends import onnx_int8
from distill.backends.base import Artifact, VerificationError, sha256_file
from distill.backends.registry import BACKENDS, get_backend
from distill.compiler.spec import OnnxTarget
from distill.runtime.sources.tokenizer import train_byte_bpe

TEXT = ["the quick brown fox jumps over the lazy dog; a model learns what its teacher knows."] * 20


def _save_tokenizer(folder: Path) -> int:
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=train_byte_bpe(TEXT, 320), eos_token="<|endoftext|>",
        pad_token="<|pad|>")
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("models")
    llama, bert = root / "llama", root / "bert"
    vocab = _save_tokenizer(llama)
    _save_tokenizer(bert)
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        "llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab,
        max_position_embeddings=128, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(llama)
    config = transformers.AutoConfig.for_model(
        "bert", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, vocab_size=vocab, max_position_embeddings=64)
    transformers.AutoModelForQuestionAnswering.from_config(config).save_pretrained(bert)
    return {"llama": llama, "bert": bert}


@pytest.fixture(scope="module")
def exports(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[tuple[str, str], Artifact]:
    out = tmp_path_factory.mktemp("exports")
    backend = get_backend("onnx")
    return {(name, quant): backend.export(models[name], OnnxTarget(quant), out / f"{name}-{quant}")
            for name in models for quant in ("none", "int8")}


CAUSAL = {"sha256", "logits_max_abs_diff", "logits_top1_agreement"}
QA = {"sha256", "start_logits_max_abs_diff", "start_logits_top1_agreement",
      "end_logits_max_abs_diff", "end_logits_top1_agreement", "answer_spans"}


@pytest.mark.parametrize("quant", ["none", "int8"])
@pytest.mark.parametrize("name", ["llama", "bert"])
def test_export_verifies(name: str, quant: str, exports: dict, models: dict) -> None:
    artifact = exports[name, quant]
    assert artifact.path.is_file() and artifact.kind == "onnx" and artifact.quant == quant
    assert artifact.sha256 == sha256_file(artifact.path)
    report = get_backend("onnx").verify(artifact, models[name])
    assert report.passed, report.failures()
    names = {check.name for check in report.checks}
    if name == "llama":
        generation = "greedy_generation" if quant == "none" else "greedy_generation_runs"
        assert names == CAUSAL | {generation}
        assert artifact.extra["task"] == "text-generation-with-past"
    else:
        assert names == QA
        assert artifact.extra["task"] == "question-answering"


def test_fp32_parity_is_tight(exports: dict, models: dict) -> None:
    checks = {c.name: c for c in get_backend("onnx").verify(exports["llama", "none"],
                                                            models["llama"]).checks}
    assert float(checks["logits_max_abs_diff"].detail.split()[0]) < 1e-5
    assert checks["greedy_generation"].detail.startswith("1.0000")


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_int8_is_smaller(name: str, exports: dict) -> None:
    assert exports[name, "int8"].size < 0.6 * exports[name, "none"].size


@pytest.mark.parametrize("quant", ["none", "int8"])
def test_manifest(quant: str, exports: dict, models: dict) -> None:
    artifact = exports["llama", quant]
    folder = artifact.path.parent
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "onnx" and manifest["quant"] == quant
    assert manifest["model"] == "model.onnx" and manifest["opset"] == artifact.extra["opset"] >= 14
    assert manifest["task"] == "text-generation-with-past"
    on_disk = {f.name for f in folder.iterdir() if f.name != "manifest.json"}
    assert {f["path"] for f in manifest["files"]} == on_disk
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256_file(folder / entry["path"])
        assert entry["size"] == (folder / entry["path"]).stat().st_size
    assert {"config.json", "model.onnx"} <= on_disk
    model_entry = next(f for f in manifest["files"] if f["path"] == "model.onnx")
    assert model_entry["sha256"] == artifact.sha256
    assert manifest["source"]["config_sha256"] == sha256_file(models["llama"] / "config.json")
    assert manifest["verification"] and all(c["passed"] for c in manifest["verification"])


def _negate_largest_weight(folder: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / "model.onnx"))
    largest = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    largest.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(largest), largest.name))
    onnx.save(model, str(folder / "model.onnx"))


@pytest.mark.parametrize("quant", ["none", "int8"])
@pytest.mark.parametrize("name", ["llama", "bert"])
def test_wrong_export_fails_and_leaves_nothing(name: str, quant: str, models: dict,
                                               tmp_path: Path, monkeypatch) -> None:
    real = onnx_backend.export_optimum

    def broken(model_dir: Path, out: Path, task: str) -> None:
        real(model_dir, out, task)
        _negate_largest_weight(out)

    monkeypatch.setattr(onnx_backend, "export_optimum", broken)
    destination = tmp_path / "deploy" / "model"
    with pytest.raises(VerificationError) as error:
        get_backend("onnx").export(models[name], OnnxTarget(quant), destination)
    assert not error.value.report.passed
    assert any("max_abs_diff" in c.name for c in error.value.report.failures())
    assert list(destination.parent.iterdir()) == []  # no destination, no temp folder left


def test_failed_export_keeps_previous(exports: dict, models: dict, tmp_path: Path,
                                      monkeypatch) -> None:
    destination = tmp_path / "model"
    shutil.copytree(exports["bert", "none"].path.parent, destination)
    before = {f.name: sha256_file(f) for f in destination.iterdir()}

    def broken(source: Path, out: Path, recipe: object, external: bool) -> None:
        shutil.copy(source, out)
        _negate_largest_weight(out.parent)

    monkeypatch.setattr(onnx_int8, "quantize", broken)
    with pytest.raises(VerificationError):
        get_backend("onnx").export(models["bert"], OnnxTarget("int8"), destination)
    assert {f.name: sha256_file(f) for f in destination.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_verify_detects_corrupted_file(exports: dict, models: dict, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(exports["llama", "none"].path.parent, folder)
    model = folder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    model.write_bytes(bytes(data))
    artifact = Artifact(model, "onnx", "none", exports["llama", "none"].sha256, len(data),
                        exports["llama", "none"].extra)
    report = get_backend("onnx").verify(artifact, models["llama"])
    assert [c.name for c in report.failures()] == ["sha256"]
    # The same corrupt bytes, claimed by their own hash: the logits (or the load) must fail.
    model.write_bytes(bytes(data[: len(data) // 2]))
    truncated = Artifact(model, "onnx", "none", sha256_file(model), len(data) // 2,
                         exports["llama", "none"].extra)
    report = get_backend("onnx").verify(truncated, models["llama"])
    assert not report.passed and report.checks[0].passed


def test_registry_and_task_detection(models: dict) -> None:
    assert set(BACKENDS) >= {"onnx"}
    backend = get_backend("onnx")
    assert callable(backend.export) and callable(backend.verify)
    with pytest.raises(KeyError, match="known: gguf, onnx"):
        get_backend("tflite")
    assert onnx_backend.detect_task(models["llama"]) == "text-generation-with-past"
    assert onnx_backend.detect_task(models["bert"]) == "question-answering"
