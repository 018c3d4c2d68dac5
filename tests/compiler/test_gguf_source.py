"""A GGUF file as the student: read at plan time without torch into a content-addressed folder
of config and tokenizer files, pinned in the lock by its digest; a file distill cannot read is a
located error (exit 1) before anything runs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from distill.compiler.cli import main
from tests.smollm2 import SMOLLM2


def _project(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "a.md").write_text("The pump runs for 20 minutes.\n" * 50)
    path = tmp_path / "Distillfile"
    path.write_text("version: 1\nname: p\nsources: [{text: docs/*.md}]\n"
                    "student:\n  model: student.gguf\n"
                    "loss: {mask: all}\nhardware: {device: cpu, ram: 16GiB}\n"
                    "deploy:\n  - gguf: {quant: [Q8_0]}\n")
    return path


def _gguf(path: Path, arch: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(2)
    writer.add_tokenizer_model("gpt2")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_the_real_smollm2_plans_from_its_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _project(tmp_path)
    shutil.copy(SMOLLM2, tmp_path / "student.gguf")
    assert main(["plan", str(path)]) == 0, capsys.readouterr().err
    student = json.loads((tmp_path / "Distillfile.lock").read_text())["models"]["student"]
    assert student["kind"] == "gguf"
    digest = next(f for f in student["files"] if f["path"] == "student.gguf")
    folder = tmp_path / ".distill" / "gguf" / digest["sha256"][:16]
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("llama", 30, 576)
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    assert (tokenizer["eos_token"], tokenizer["bos_token"]) == ("<|im_end|>", "<|im_start|>")
    assert not (folder / "model.safetensors").exists()  # weights wait for the first load
    written = (folder / "tokenizer.json").stat().st_mtime_ns
    assert main(["plan", str(path)]) == 0
    assert (folder / "tokenizer.json").stat().st_mtime_ns == written  # converted once


@pytest.mark.parametrize(("content", "message"), [
    ("gemma", "GGUF architecture 'gemma' is not read as a model source; distill reads llama, qwen2, qwen3"),
    (b"PK\x03\x04" + bytes(32), "student.gguf does not start with the GGUF magic bytes"),
    (b"GGUF\x03\x00\x00\x00" + bytes(5), "student.gguf ends inside its metadata"),
])
def test_an_unreadable_gguf_is_a_located_error(content: str | bytes, message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _project(tmp_path)
    if isinstance(content, str):
        _gguf(tmp_path / "student.gguf", content)
    else:
        (tmp_path / "student.gguf").write_bytes(content)
    started = time.perf_counter()
    code = main(["plan", str(path)])
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: student.model 'student.gguf': " + message in err
    assert not (tmp_path / "Distillfile.lock").exists()
    print(f"refused in {seconds:.2f} s")
