"""`distill inspect`: a bare .gguf read from the file itself, anything else refused with its path,
and every artifact shown as tables (or JSON with --json)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from distill.backends.inspect import NO_MANIFEST, describe, print_facts
from distill.compiler.cli import main


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The F16 GGUF of test_gguf's tiny llama (ChatML template, <|im_end|> as EOS), no manifest."""
    from distill.backends.gguf_writer import write_base
    from tests.backends.test_gguf import _model

    folder = tmp_path_factory.mktemp("inspect")
    write_base(_model(folder / "llama", "llama"), folder / "model-F16.gguf")
    return folder / "model-F16.gguf"


def test_a_bare_gguf_is_read_from_the_file(gguf_file: Path) -> None:
    facts = describe(gguf_file)
    assert facts["kind"] == "gguf" and facts["size"] == gguf_file.stat().st_size
    assert (facts["architecture"], facts["name"], facts["file_type"]) == ("llama", "distill-student", "F16")
    # Per layer 7 weights (F16) and 2 norms (F32); then token_embd and output (F16), output_norm.
    assert facts["tensors"] == 21 and facts["tensor_types"] == {"F16": 16, "F32": 5}
    assert facts["size_label"] == "1.3M" and facts["context_length"] == 128 and facts["vocab_size"] == 322
    assert facts["tokenizer"] == {"model": "gpt2", "pre": "gpt-2", "bos": "<|endoftext|> (0)",
                                  "eos": "<|im_end|> (320)", "adds_bos": False}
    template = facts["chat_template"]
    assert template["present"] and template["format"] == "chatml"
    assert template["first_line"].startswith("{% for message in messages %}") and template["chars"] > 150
    assert facts["verification"] == NO_MANIFEST


def test_text_output_is_tables_and_json_the_same_facts(gguf_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(gguf_file)]) == 0
    printed = capsys.readouterr().out
    for title in ("artifact", "tensor_types", "tokenizer", "chat_template"):
        assert f"\n{title}" in f"\n{printed}"
    for value in ("distill-student", "chatml", "gpt-2", "<|im_end|> (320)", "1.3M"):
        assert value in printed
    assert '{"' not in printed and '["' not in printed  # no JSON left in the text output
    assert main(["inspect", "--json", str(gguf_file)]) == 0
    shown = json.loads(capsys.readouterr().out)
    # The facts, printed bare or inside the distill.inspect JSON shape (docs/json.md).
    assert shown.get("facts", shown) == describe(gguf_file)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04" + bytes(20), b"GGUF\x03\x00\x00\x00" + b"\x01" * 5])
def test_a_file_that_is_not_gguf_is_a_usage_error(content: bytes, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"{path}: not a readable GGUF file" in " ".join(error.split())


def test_a_manifest_shows_its_lists_as_tables() -> None:
    manifest = {"kind": "gguf", "quant": "Q4_K_M", "size": 1234567,
                "files": [{"quant": "Q4_K_M", "path": "model-Q4_K_M.gguf", "sha256": "ab12", "size": 1000,
                           "tensor_types": {"Q4_K": 7, "F32": 5}},
                          {"quant": "F16", "path": "model-F16.gguf", "sha256": "cd34", "size": 2000}],
                "ollama": {"template": "[INST] mistral", "warning": None},
                "verification": [{"name": "chat_template", "passed": True, "detail": "equals HF's"}]}
    out = io.StringIO()
    print_facts(Console(file=out, width=200, highlight=False), manifest)
    lines = out.getvalue().splitlines()
    assert any("size" in line and "1,234,567" in line for line in lines)
    assert any("model-Q4_K_M.gguf" in line and "Q4_K: 7, F32: 5" in line for line in lines)
    assert any("model-F16.gguf" in line and "2,000" in line for line in lines)
    assert any("chat_template" in line and "yes" in line and "equals HF's" in line for line in lines)
    # Values are text, never rich markup: the brackets stay.
    assert any("[INST] mistral" in line for line in lines)
    assert any("warning" in line and line.rstrip().endswith("-") for line in lines)
