"""Sources a hostile or careless Distillfile may name (issue 16): only regular files inside the
project are read, globs stay finite, every file and the Distillfile itself are size-capped, and
each refusal is a located error at validate time."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distill.compiler import sourcefiles
from distill.compiler.cli import main
from distill.compiler.errors import SpecError
from distill.compiler.frontend import compile_file
from distill.compiler.sourcefiles import UnsafeSource, match_source
from distill.compiler.volume import measure_volume, source_files
from tests.conftest import with_overrides

Project = Callable[[dict[str, Any] | str], Path]


def errors(path: Path) -> list[str]:
    """``file:line:col: message | hint`` for every error validating ``path`` gives."""
    with pytest.raises(SpecError) as raised:
        compile_file(path)
    return [f"{d.location}: {d.message} | {d.hint}" for d in raised.value.diagnostics if d.severity == "error"]


def with_source(min_spec: dict[str, Any], pattern: str) -> dict[str, Any]:
    return with_overrides(min_spec, {"sources": [{"text": pattern}]})


# The secret-reading Distillfile of the issue, written out so that locations are known.
READS_ENVIRON = """version: 1
name: tiny
sources:
  - text: /proc/self/environ
student: {model: org/student, revision: 0123abcd}
loss: {mask: all}
"""


# --- row: a Distillfile reads secrets -------------------------------------------------------------


def test_proc_environ_is_refused_at_validate_time_with_a_location(project: Project) -> None:
    path = project(READS_ENVIRON)
    (error,) = errors(path)
    assert error.startswith(f"{path}:4:5: sources[0].text '/proc/self/environ' points outside the "
                            "Distillfile's folder | sources are read only from inside")


@pytest.mark.parametrize("pattern", ["/dev/zero", "/etc/*", "/proc/self/*"])
def test_absolute_paths_outside_the_project_are_refused(pattern: str, min_spec: dict[str, Any],
                                                        project: Project) -> None:
    (error,) = errors(project(with_source(min_spec, pattern)))
    assert "points outside the Distillfile's folder" in error


def test_absolute_path_to_a_sibling_folder_is_refused(min_spec: dict[str, Any], project: Project,
                                                      tmp_path: Path) -> None:
    elsewhere = tmp_path.parent / f"{tmp_path.name}-docs"
    elsewhere.mkdir()
    (elsewhere / "a.md").write_text("text")
    (error,) = errors(project(with_source(min_spec, str(elsewhere / "*.md"))))
    assert "points outside" in error


def test_absolute_path_inside_the_project_is_read_and_shown_relative(min_spec: dict[str, Any], project: Project,
                                                                     tmp_path: Path) -> None:
    compiled = compile_file(project(with_source(min_spec, str(tmp_path / "docs" / "*.md"))))
    assert [shown for _, _, shown in source_files(compiled.spec, compiled.root)] == ["docs/guide.md"]


def test_a_link_to_a_device_is_refused(min_spec: dict[str, Any], project: Project, tmp_path: Path) -> None:
    (tmp_path / "docs" / "zero.md").symlink_to("/dev/zero")
    (error,) = errors(project(min_spec))
    assert "match 'docs/zero.md' (a link) points outside the Distillfile's folder" in error


def test_a_fifo_is_refused_by_kind(min_spec: dict[str, Any], project: Project, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "docs" / "pipe.md")
    (error,) = errors(project(min_spec))
    assert "match 'docs/pipe.md' is a FIFO, not a regular file" in error


def test_a_socket_is_refused_by_kind(min_spec: dict[str, Any], project: Project, tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "docs" / "sock.md"))
        (error,) = errors(project(min_spec))
    finally:
        server.close()
    assert "match 'docs/sock.md' is a socket, not a regular file" in error


def test_distill_validate_on_proc_environ_exits_1_located(project: Project,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = project(READS_ENVIRON)
    assert main(["validate", str(path)]) == 1
    assert f"{path}:4:5: error: sources[0].text '/proc/self/environ' points outside" in capsys.readouterr().err


# --- row: unbounded inputs hang -------------------------------------------------------------------


def test_double_star_never_enters_a_linked_folder(min_spec: dict[str, Any], project: Project,
                                                  tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "a.txt").write_text("text")
    (loop / "up").symlink_to("..")  # glob.glob(recursive=True) walks loop/up/loop/up/... to ELOOP
    compiled = compile_file(project(with_source(min_spec, "loop/**/*.txt")))
    assert [shown for _, _, shown in source_files(compiled.spec, compiled.root)] == ["loop/a.txt"]


def test_the_number_of_matches_is_capped(min_spec: dict[str, Any], project: Project, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sourcefiles, "MAX_MATCHES", 3)
    for n in range(5):
        (tmp_path / "docs" / f"{n}.md").write_text("text")
    (error,) = errors(project(min_spec))
    assert "'docs/*.md' matches more than 3 files and folders | narrow the pattern" in error


def test_a_file_over_the_size_cap_is_refused_without_reading_it(min_spec: dict[str, Any], project: Project,
                                                                tmp_path: Path) -> None:
    with (tmp_path / "docs" / "huge.md").open("wb") as handle:
        handle.truncate(sourcefiles.MAX_FILE_BYTES + 1)  # sparse: no disk used, nothing to read
    (error,) = errors(project(min_spec))
    assert "match 'docs/huge.md' is 512.0 MiB; a source file may be at most 512 MiB" in error


def test_source_enumeration_lives_in_one_place() -> None:
    from distill.compiler import checks, volume

    assert not hasattr(checks, "glob") and not hasattr(volume, "glob")


def test_glob_syntax_is_kept(tmp_path: Path) -> None:
    for name in ("a.md", "b.txt", ".hidden.md", "sub/c.md", "sub/deeper/d.md", ".git/e.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    def files(pattern: str) -> list[str]:
        return [p.relative_to(tmp_path).as_posix() for p in match_source(tmp_path, pattern).files]

    assert files("*.md") == ["a.md"]
    assert files("**/*.md") == ["a.md", "sub/c.md", "sub/deeper/d.md"]
    assert files(".*.md") == [".hidden.md"]
    assert files("sub/**") == ["sub/c.md", "sub/deeper/d.md"]
    assert files("s?b/[cd].md") == ["sub/c.md"]
    assert match_source(tmp_path, "sub").folders == (tmp_path / "sub",)
    with pytest.raises(UnsafeSource, match="points outside"):
        match_source(tmp_path, "sub/../../x")


def test_distill_validate_dev_null_is_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/dev/null"]) == 2
    assert "error: /dev/null is not a regular file" in capsys.readouterr().err


def _limit_memory() -> None:
    """A validate that reads /dev/zero whole dies here instead of taking the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


def test_distill_validate_dev_zero_is_bounded() -> None:
    done = subprocess.run([sys.executable, "-m", "distill.compiler.cli", "validate", "/dev/zero"],
                          capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory, check=False)
    assert done.returncode == 2, done.stderr
    assert "/dev/zero is not a regular file" in done.stderr


# --- row: a SQuAD file nested 100,000 deep --------------------------------------------------------


def test_deeply_nested_dataset_counts_as_unreadable_in_the_plan(min_spec: dict[str, Any], project: Project,
                                                                tmp_path: Path) -> None:
    (tmp_path / "docs" / "deep.json").write_text('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (tmp_path / "docs" / "deep.jsonl").write_text(json.dumps({"question": "q", "answers": ["a"], "context": "a"})
                                                  + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    spec = with_overrides(min_spec, {"sources": [{"dataset": "docs/deep.json"}, {"dataset": "docs/deep.jsonl"}]})
    compiled = compile_file(project(spec))
    assert measure_volume(compiled.spec, compiled.root).examples == 0
