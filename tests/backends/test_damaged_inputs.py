"""Damaged files handed to the standalone commands are usage errors naming the file (exit 2),
never a library's traceback: weights whose safetensors header does not parse, a file that is not
GGUF, a GGUF cut short."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from distill.compiler.cli import main
from tests.smollm2 import SMOLLM2


def test_export_names_weights_that_are_not_safetensors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 32}))
    (folder / "model.safetensors").write_bytes(b"garbage" * 10)
    assert main(["export", str(folder), "--to", "onnx", "--out", str(tmp_path / "out")]) == 2
    assert f"{folder / 'model.safetensors'} is not a readable safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("make, words", [
    (lambda path: path.write_bytes(b"garbage"), "is not a readable GGUF file"),
    (lambda path: path.write_bytes(SMOLLM2.read_bytes()[:2_000_000]), "llama.cpp cannot load"),
])
def test_chat_names_a_file_llama_cpp_cannot_load(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], object],
                                                   words: str) -> None:
    path = tmp_path / "model.gguf"
    make(path)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))
    assert main(["chat", str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err and str(path) in err
