"""Two clean builds of one Distillfile, in two different folders, give byte-identical model files
and artifacts, the same lock, and the same build record (lock hash, stage keys, data and output hashes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from distill.compiler.cli import main
from tests.runtime.train.project import write_project

pytestmark = pytest.mark.slow
ARTIFACTS = ("model.safetensors", "gguf-Q8_0/model-Q8_0.gguf", "gguf-Q8_0/model-F16.gguf", "onnx-int8/model.onnx")


def build(root: Path) -> tuple[dict[str, str], str, dict]:
    path = write_project(root, deploy=[{"gguf": {"quant": ["Q8_0"]}}, {"onnx": {"quant": "int8"}}],
                         train={"max_steps": 4, "effective_batch_size": 4, "max_seq_len": 128},
                         eval={"metrics": ["perplexity", "size"]})
    assert main(["build", str(path), "--offline"]) == 0
    dist = root / "dist" / "tiny-train"
    hashes = {name: hashlib.sha256((dist / name).read_bytes()).hexdigest() for name in ARTIFACTS}
    return hashes, (root / "Distillfile.lock").read_text(), json.loads((dist / "build.json").read_text())


def test_two_clean_builds_are_byte_identical(tmp_path: Path) -> None:
    first, first_lock, first_record = build(tmp_path / "one")
    second, second_lock, second_record = build(tmp_path / "two")
    assert first == second
    assert first_lock == second_lock
    assert first_record == second_record
    assert first_record["lock_sha256"] == hashlib.sha256(first_lock.encode()).hexdigest()
    assert first_record["outputs"]["gguf-Q8_0/model-Q8_0.gguf"] == first["gguf-Q8_0/model-Q8_0.gguf"]
