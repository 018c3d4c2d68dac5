"""Two clean builds of one Distillfile, in two different folders, give byte-identical model files
and artifacts, and the same lock (stage keys, data and output hashes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from distill.compiler.cli import main
from tests.runtime.train.project import write_project

pytestmark = pytest.mark.slow
ARTIFACTS = ("model/model.safetensors", "gguf-Q8_0/model-Q8_0.gguf", "gguf-Q8_0/model-F16.gguf", "onnx-int8/model.onnx")


def build(root: Path) -> tuple[dict[str, str], dict]:
    path = write_project(root, deploy=[{"gguf": {"quant": ["Q8_0"]}}, {"onnx": {"quant": "int8"}}],
                         train={"max_steps": 4, "effective_batch_size": 4, "max_seq_len": 128},
                         eval={"metrics": ["perplexity", "size"]})
    assert main(["build", str(path), "--offline"]) == 0
    dist = root / "dist" / "tiny-train"
    hashes = {name: hashlib.sha256((dist / name).read_bytes()).hexdigest() for name in ARTIFACTS}
    return hashes, json.loads((root / "Distillfile.lock").read_text())


def test_two_clean_builds_are_byte_identical(tmp_path: Path) -> None:
    first, first_lock = build(tmp_path / "one")
    second, second_lock = build(tmp_path / "two")
    assert first == second
    assert first_lock["build"] == second_lock["build"]
    assert first_lock["models"] == second_lock["models"]
