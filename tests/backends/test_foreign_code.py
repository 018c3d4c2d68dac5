"""No code shipped in a model folder ever runs: every ``from_pretrained`` says
``trust_remote_code``, and folders whose loading would need their own code are refused with a
usage error (exit 2) before transformers is asked, whatever is typed at its prompt."""

from __future__ import annotations

import ast
import io
import json
import sys
from pathlib import Path

import pytest

from distill.backends.base import foreign_code
from distill.compiler.cli import main
from distill.compiler.errors import UsageError
from distill.compiler.records.manifest import ExportSource, Manifest
from distill.runtime.chat import Settings, open_session
from tests.conftest import REPO

# A module that leaves a mark when it is imported: the proof that foreign code ran.
PAYLOAD = "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('ran')\n"


def _crafted(folder: Path, model_type: str = "evilnet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": model_type, "architectures": ["EvilForCausalLM"], "vocab_size": 16,
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                     "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}}))
    for name in ("configuration_evil.py", "modeling_evil.py"):
        (folder / name).write_text(PAYLOAD)
    (folder / "model.safetensors").write_bytes(b"\0" * 8)
    return folder


@pytest.mark.parametrize("target", ["gguf:F16", "onnx"])
def test_export_refuses_a_folder_that_ships_its_own_code(tmp_path: Path, target: str,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = _crafted(tmp_path / "evil")
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 4))  # a user who would say yes to transformers
    code = main(["export", str(folder), "--to", target, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs code it ships (configuration_evil.EvilConfig, modeling_evil.EvilForCausalLM)" in err
    assert not (folder / "RAN").exists()
    assert not (tmp_path / "out").exists()


def test_chat_refuses_a_crafted_onnx_export(tmp_path: Path) -> None:
    folder = _crafted(tmp_path / "export")
    Manifest(kind="onnx", model="model.onnx", quant="none", files=(), source=ExportSource(str(folder), "0" * 64),
             verification=(), tools={}, task="text-generation-with-past").write(folder / "manifest.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}))
    with pytest.raises(UsageError, match="never runs code from a model folder"):
        open_session(folder, None, Settings())
    assert not (folder / "RAN").exists()


def test_a_family_transformers_implements_loads_its_own_classes(tmp_path: Path) -> None:
    """Hub folders of natively supported families often keep an old auto_map; with
    ``trust_remote_code=False`` transformers uses its own classes, so nothing is refused."""
    assert foreign_code(_crafted(tmp_path / "llama", model_type="llama")) is None


@pytest.mark.parametrize("config, words", [
    ('{"model_type": "foo"}', "model_type 'foo' is not a family transformers implements"),
    ('{"model_type": "llama",', "cannot be read as JSON"),
])
def test_export_names_an_unloadable_config(tmp_path: Path, config: str, words: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    (folder / "model.safetensors").write_bytes(b"\0" * 8)
    assert main(["export", str(folder), "--to", "gguf:F16", "--out", str(tmp_path / "out")]) == 2
    assert words in capsys.readouterr().err


def _from_pretrained_calls() -> list[tuple[str, int, ast.Call]]:
    calls = []
    for folder in ("compiler", "runtime", "backends"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "from_pretrained"):
                    calls.append((str(path.relative_to(REPO)), node.lineno, node))
    return calls


def test_every_from_pretrained_says_whether_to_trust_remote_code() -> None:
    """transformers' default (``None``) asks on a terminal and runs the code on "y": every call
    must decide, from the Distillfile or as ``False``."""
    calls = _from_pretrained_calls()
    assert len(calls) >= 8  # the scan finds the loaders (a renamed folder must not pass vacuously)
    undecided = [f"{path}:{line}" for path, line, call in calls
                 if not any(keyword.arg == "trust_remote_code" for keyword in call.keywords)]
    assert undecided == []
