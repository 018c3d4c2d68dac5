"""The CLI as a new user meets it, run in-process through ``main`` (and once in a subprocess, to
see what it imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from distill.compiler import frontend
from distill.compiler.cli import main
from distill.compiler.schema import load_schema
from tests.conftest import EXAMPLES, REPO

PDF = REPO / "examples" / "pdf-qa" / "docs" / "kx200-handbook.pdf"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_there_are_at_least_three_examples() -> None:
    assert {p.parent.name for p in EXAMPLES} >= {"pdf-qa", "logit-kd-qa", "extractive-qa"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_examples_validate(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(example))
    assert code == 0, err
    assert "valid (spec sha256" in out
    assert "error" not in err
    assert example.read_text().startswith("# yaml-language-server: $schema=../../distillfile.schema.json")


def test_validate_imports_no_torch() -> None:
    probe = (
        "import sys\n"
        "from distill.compiler.cli import main\n"
        f"codes = [main(['validate', p]) for p in {[str(p) for p in EXAMPLES]!r}]\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'numpy') if m in sys.modules)\n"
        "print(codes, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == f"{[0] * len(EXAMPLES)} []"


def test_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--json", str(EXAMPLES[0]))
    report = json.loads(out)
    assert code == 0 and report["valid"] is True
    assert len(report["spec_hash"]) == 64
    assert report["spec"]["version"] == 1


def test_json_report_for_an_invalid_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "Distillfile"
    path.write_text("version: 1\nname: x\n")
    code, out, err = run(capsys, "validate", "--json", str(path))
    report = json.loads(out)
    assert code == 1 and report["valid"] is False
    assert {d["message"] for d in report["diagnostics"]} == {
        "missing required key 'sources'", "missing required key 'student'"}
    assert "missing required key 'sources'" in err


def test_a_folder_means_its_distillfile(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(EXAMPLES[0].parent))
    assert code == 0 and "valid" in out


@pytest.mark.parametrize(("make", "words"), [
    (lambda p: p, "no such file"),
    (lambda p: (p.mkdir(), p)[1], "is a directory without a Distillfile"),
])
def test_usage_errors_exit_2(make: Any, words: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", str(make(tmp_path / "nothing")))
    assert code == 2
    assert words in err and "Traceback" not in err


def test_unknown_command_and_missing_argument_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "valdate", "x")[0] == 2
    assert run(capsys, "validate")[0] == 2


def test_a_50_mb_file_is_refused_without_reading_it(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "Distillfile"
    with path.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    code, _, err = run(capsys, "validate", str(path))
    assert code == 1
    assert f"{path}:1:1: error: file is 52,428,800 bytes" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("distill 0.")


@pytest.mark.parametrize("command", ["validate", "plan", "extract", "export", "inspect", "schema", "init"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "Usage" in out


def test_schema_prints_the_shipped_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0
    assert json.loads(out) == load_schema()
    assert json.loads((REPO / "distillfile.schema.json").read_text()) == load_schema()


def test_init_from_pdf_writes_a_valid_starter(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "manual.pdf").write_bytes(PDF.read_bytes())
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "init", "--from-pdf", "manual.pdf")
    assert code == 0, err
    text = Path("Distillfile").read_text()
    assert "pdf: 'manual.pdf'" in text and text.count("#") > 10
    assert "by: chunk}   # 1 document(s): split its chunks (by: document needs 3 or more)" in text
    assert json.loads(Path("distillfile.schema.json").read_text()) == load_schema()
    assert run(capsys, "validate", "Distillfile")[0] == 0


def test_init_finds_documents_in_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# A\n")
    (tmp_path / "b.md").write_text("# B\n")
    (tmp_path / "c.txt").write_text("C\n")
    target = tmp_path / "Distillfile"
    code, _, err = run(capsys, "init", "--output", str(target))
    assert code == 0, err
    text = target.read_text()
    assert "- text: '**/*.md'" in text and "- text: '*.txt'" in text and "*.md'\n" in text
    assert "by: document}\n" in text  # three documents: one for each split
    assert run(capsys, "validate", str(target))[0] == 0


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "Distillfile"
    target.write_text("mine")
    (tmp_path / "a.md").write_text("# A\n")
    code, _, err = run(capsys, "init", "--output", str(target))
    assert code == 2 and "already exists" in err and target.read_text() == "mine"
    assert run(capsys, "init", "--output", str(target), "--force")[0] == 0


@pytest.mark.parametrize(("setup", "words"), [
    (lambda d: None, "no documents (.pdf, .md, .txt) found"),
    (lambda d: (d / "x.pdf").write_text("not a pdf"), "is not a PDF"),
])
def test_init_explains_what_is_missing(setup: Any, words: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    setup(tmp_path)
    argv = ["init", "--output", str(tmp_path / "Distillfile")]
    if (tmp_path / "x.pdf").exists():
        argv += ["--from-pdf", str(tmp_path / "x.pdf")]
    code, _, err = run(capsys, *argv)
    assert code == 2 and words in err
    assert not (tmp_path / "Distillfile").exists()


def test_crash_is_reported_as_internal_error(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def broken(path: Path) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(frontend, "compile_file", broken)
    monkeypatch.delenv("DISTILL_DEBUG", raising=False)
    code, _, err = run(capsys, "validate", str(EXAMPLES[0]))
    assert code == 70
    assert "internal error: RuntimeError: boom" in err and "DISTILL_DEBUG=1" in err
    monkeypatch.setenv("DISTILL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["validate", str(EXAMPLES[0])])


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "distill"
    result = subprocess.run([str(script), "validate", str(EXAMPLES[0])], capture_output=True,
                            text=True, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
