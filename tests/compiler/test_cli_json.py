"""Every ``--json`` output has one versioned shape, the same keys whether the command succeeded or
failed, and the shapes docs/json.md documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from distill.compiler.cli import JSON_KEYS, JSON_VERSION, main
from tests.conftest import EXAMPLES

REPO = Path(__file__).resolve().parents[2]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_validate_has_the_same_keys_for_valid_and_invalid_files(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    code, valid = run_json(capsys, "validate", "--json", str(EXAMPLES[0]))
    assert code == 0 and valid["ok"] is True and valid["valid"] is True and valid["error"] is None
    path = tmp_path / "Distillfile"
    path.write_text("version: 1\nname: x\n")
    code, invalid = run_json(capsys, "validate", "--json", str(path))
    assert code == 1 and invalid.keys() == valid.keys()
    assert invalid["ok"] is False and invalid["valid"] is False and invalid["spec"] is None
    assert invalid["file"] == str(path) and invalid["error"]["exit_code"] == 1
    assert {d["message"] for d in invalid["diagnostics"]} == {
        "missing required key 'sources'", "missing required key 'student'"}
    assert valid["format"] == invalid["format"] == f"distill.validate/{JSON_VERSION}"


def test_plan_json_is_an_error_object_when_planning_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("The pump runs for twenty minutes.\n")
    config = REPO / "tests" / "fixtures" / "configs" / "llama-3.2-1b" / "config.json"
    path = tmp_path / "Distillfile"
    path.write_text(f"version: 1\nname: p\nsources: [{{text: a.md}}]\nstudent:\n  random: {{config: {config}}}\n"
                    "loss: {mask: all}\nhardware: {device: cuda, vram: 1GiB}\n")
    code, failed = run_json(capsys, "plan", "--json", str(path))
    assert code == 3 and failed["ok"] is False and failed["plan"] is None
    assert failed["error"]["exit_code"] == 3 and "nothing fits" in failed["error"]["message"]
    assert set(failed) == {"format", "ok", "error", *JSON_KEYS["plan"]}
    path.write_text(path.read_text().replace("vram: 1GiB", "vram: 80GiB"))
    code, planned = run_json(capsys, "plan", "--json", str(path))
    assert code == 0 and planned.keys() == failed.keys() and planned["plan"]["micro_batch"] >= 1


def test_docs_json_md_documents_every_shape() -> None:
    text = (REPO / "docs" / "json.md").read_text()
    for command, keys in JSON_KEYS.items():
        section = text.split(f"## distill {command} --json", 1)[1].split("\n## ", 1)[0]
        assert f"distill.{command}/{JSON_VERSION}" in section, command
        documented = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
        assert documented == {"format", "ok", "error", *keys}, (command, documented)
