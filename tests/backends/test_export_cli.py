"""`distill export MODEL_DIR --to onnx[:int8]`: a verified artifact, or a clear refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from distill.compiler.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        "bert", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        vocab_size=100, max_position_embeddings=64)
    transformers.AutoModelForQuestionAnswering.from_config(config).save_pretrained(folder)
    return folder


def test_export_writes_a_verified_artifact(model_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qa-int8"
    assert main(["export", str(model_dir), "--to", "onnx:int8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ok   logits" in printed or "ok   start_logits" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quant"] == "int8" and all(c["passed"] for c in manifest["verification"])


@pytest.mark.parametrize(("to", "words"), [("tflite", "no backend 'tflite'"),
                                           ("onnx:int4", "onnx quantizations are none, int8"),
                                           ("onnx:none,int8", "(one at a time)"),
                                           ("gguf:Q3_K", "gguf quantizations are Q4_K_M")])
def test_unknown_targets_are_usage_errors(model_dir: Path, tmp_path: Path, to: str, words: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(model_dir), "--to", to, "--out", str(tmp_path / "x")]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_pickled_weights_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    assert main(["export", str(tmp_path), "--to", "onnx"]) == 2
    assert "has no .safetensors weights" in capsys.readouterr().err


def test_inspect_shows_the_manifest_or_the_file(model_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qa"
    assert main(["export", str(model_dir), "--to", "onnx", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", "--json", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["format"] == "distill.inspect/1" and shown["artifact"] == str(out)
    assert shown["facts"]["quant"] == "none"
    (out / "manifest.json").unlink()
    assert main(["inspect", str(out / "model.onnx")]) == 0
    printed = capsys.readouterr().out
    assert "opset" in printed and "start_logits" in printed
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    assert main(["inspect", str(tmp_path / "junk.onnx")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err


def test_export_to_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.backends.test_gguf import _model

    model = _model(tmp_path / "llama", "llama")
    out = tmp_path / "gguf"
    assert main(["export", str(model), "--to", "gguf:Q4_K_M,Q8_0", "--out", str(out)]) == 0
    models = {f"model-{quant}" for quant in ("F16", "Q4_K_M", "Q8_0")}
    assert {p.name for p in out.iterdir()} == {f"{m}.{ext}" for m in models for ext in ("gguf", "Modelfile")} | {
        "manifest.json"}
    assert "FAIL" not in capsys.readouterr().out
