"""Hostile input, at volume: mutated Distillfiles through ``distill validate`` and mutated source
files through ``distill extract``, in this process, counting what a user must never see.

    .venv/bin/python benchmarks/fuzz.py [--files 10000] [--sources 200] [--seed 0]

A run fails (exit 1) on any of:
- a traceback: exit 70 ("internal error") or an exception escaping the CLI;
- an unlocated error: an ``error:`` line that names neither the Distillfile (``path:line:col``)
  nor, for extraction, the source file;
- a run over 5 s (the bound ``validate`` and ``extract`` keep on small inputs).

Distillfiles are the examples, mutated in their data (values swapped for adversarial ones: huge
and tiny numbers, paths into /proc and /dev and out of the project, raising templates, deep
nesting) and in their text (bytes inserted, spans deleted, lines re-indented). Sources are a
small PDF, a markdown file, a JSONL and a SQuAD file, mutated in their bytes and structure
(truncation, flipped bytes, nesting 100,000 deep, a FIFO, a link out of the project). Mutations
are drawn from ``random.Random(seed)``: a failure is replayed with the same seed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from distill.compiler.cli import main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the examples list, PDF builder and path strategies the tests use
from tests.conftest import EXAMPLES  # noqa: E402 - importable once the repo is on sys.path
from tests.runtime.sources.pdf_builders import text_pdf  # noqa: E402 - as above
from tests.strategies import data_paths, parent_of  # noqa: E402 - as above

LIMIT_S = 5.0
ADVERSARIAL: tuple[Any, ...] = (
    0, -1, 1, 10**12, 2**64, 1e-30, 1e308, -1e308, float("inf"), float("nan"), True, None, "", [], {},
    "x" * 5000, "auto", "none", "/proc/self/environ", "/dev/zero", "/etc/passwd", "../../../etc/passwd",
    "loop/**/*.txt", "**/*", "~/.ssh/id_rsa", "{{ raise_exception('boom') }}", "{% for %}", "{chunk} {n} {x}",
    "8GiB", "-8GiB", "1e30TiB", "Q4_K_M", "org/model", "..", "\u202e\u0000", [[[[[[[[[[[]]]]]]]]]]],
)


@dataclass
class Tally:
    """Outcomes by exit code, and the cases that broke a rule (kept to replay them)."""

    codes: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def record(self, code: int, seconds: float, problem: str | None, case: str) -> None:
        self.codes[code] += 1
        self.slowest = max(self.slowest, seconds)
        if problem is not None:
            self.failures.append(f"{case}: {problem}")


def run_cli(argv: list[str]) -> tuple[int, str, float]:
    """``distill ARGV`` in this process: (exit code, stdout+stderr, seconds). An exception that
    escapes the CLI's own handler is reported as exit -1 with its type."""
    out = io.StringIO()
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(argv)
    except Exception as escaped:  # noqa: BLE001 - exactly what this benchmark counts
        return -1, f"{type(escaped).__name__}: {escaped}", time.monotonic() - started
    return code, out.getvalue(), time.monotonic() - started


def problem_of(code: int, output: str, seconds: float, names: tuple[str, ...]) -> str | None:
    """What broke a rule, or ``None``: every error line must name one of ``names``."""
    if code in (-1, 70):
        return f"traceback (exit {code}): {output.strip()[:300]}"
    if seconds > LIMIT_S:
        return f"took {seconds:.1f} s"
    for line in output.splitlines():
        if re.search(r"(^|: )error: ", line) and not any(name in line for name in names):
            return f"unlocated: {line[:300]}"
    return None


# ---------------------------------------------------------------- Distillfiles


def mutate_data(data: Any, rng: random.Random) -> Any:
    for _ in range(rng.randint(1, 3)):
        paths = data_paths(data)
        if not paths:
            break
        path = rng.choice(paths)
        parent, last = parent_of(data, path), path[-1]
        op = rng.choice(["delete", "replace", "replace", "rename", "insert"])
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = rng.choice(ADVERSARIAL)
        elif op == "rename" and isinstance(parent, dict):
            parent[rng.choice(["sede", "Seed", "", "0", "teacher", "x.y"])] = parent.pop(last)
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "trust_remote_code", "revision", "chat_template"])] = rng.choice(ADVERSARIAL)
        else:
            parent.insert(last, rng.choice(ADVERSARIAL))
    return data


def mutate_text(text: str, rng: random.Random) -> str:
    at = rng.randint(0, len(text))
    op = rng.choice(["insert", "delete", "indent", "duplicate"])
    if op == "insert":
        inserted = rng.choice(["\t", ":", "- ", "{", "[", "&a ", "*a", "!!python/object ", "\x00", "  "])
        return text[:at] + inserted + text[at:]
    if op == "delete":
        return text[:at] + text[at + rng.randint(1, 40):]
    lines = text.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    if op == "indent":
        lines[i] = "  " + lines[i] if rng.random() < 0.5 else lines[i].lstrip()
    else:
        lines.insert(i, lines[i])
    return "".join(lines)


def fuzz_distillfiles(count: int, rng: random.Random, work: Path) -> Tally:
    yaml = YAML(typ="safe", pure=True)
    seeds = []
    for example in EXAMPLES:
        folder = work / "files" / example.parent.name
        shutil.copytree(example.parent, folder, ignore=shutil.ignore_patterns(".distill", "dist"))
        seeds.append((folder, example.read_text("utf-8")))
    tally = Tally()
    for i in range(count):
        folder, seed = rng.choice(seeds)
        if rng.random() < 0.5:
            buffer = io.StringIO()
            yaml.dump(mutate_data(yaml.load(seed), rng), buffer)
            text = buffer.getvalue()
        else:
            text = mutate_text(seed, rng)
        path = folder / "Mutated"
        path.write_text(text, "utf-8")
        code, output, seconds = run_cli(["validate", str(path)])
        tally.record(code, seconds, problem_of(code, output, seconds, (str(path),)), f"distillfile #{i}")
    return tally


# ---------------------------------------------------------------- sources

SOURCE_KINDS = ("pdf", "md", "jsonl", "squad")
PROJECT = """version: 1
name: fuzz
sources:
  - {key}: {pattern}
    on_error: {on_error}
student:
  random: {{config: student.json, seed: 0}}
loss: {{mask: all}}
"""
STUDENT = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 300}


def seed_source(kind: str) -> bytes:
    """A valid source file of ``kind``: its bytes."""
    if kind == "pdf":
        return text_pdf([[f"Line {i} of page {p}: the pump lifts water to 30 metres." for i in range(8)]
                         for p in range(3)])
    if kind == "md":
        return ("# Pump\n\nThe AP-3 pump lifts water to 30 metres.\n\n" * 20).encode()
    if kind == "jsonl":
        rows = [{"question": f"How high, {i}?", "context": "The pump lifts water to 30 metres.", "answer": "30 metres"}
                for i in range(10)]
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    squad = {"data": [{"title": "pump", "paragraphs": [{"context": "The pump lifts water to 30 metres.", "qas": [
        {"id": "1", "question": "How high?", "answers": [{"text": "30 metres", "answer_start": 23}]}]}]}]}
    return json.dumps(squad).encode()


def mutate_bytes(data: bytes, kind: str, rng: random.Random) -> bytes:
    op = rng.choice(["flip", "truncate", "splice", "zero", "deep", "garbage"])
    if op == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 64)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if op == "truncate":
        return data[:rng.randint(0, len(data))]
    if op == "splice":
        at = rng.randint(0, len(data))
        return data[:at] + data[rng.randint(0, len(data)):]
    if op == "zero":
        return b""
    if op == "deep":  # nesting that recursive parsers cannot take
        depth = rng.choice([1000, 100_000])
        nested = b"[" * depth + b"]" * depth
        return nested if kind != "jsonl" else b'{"question": ' + nested + b"}\n"
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))


def fuzz_sources(count: int, rng: random.Random, work: Path) -> Tally:
    seeds = {kind: seed_source(kind) for kind in SOURCE_KINDS}
    tally = Tally()
    for i in range(count):
        kind = SOURCE_KINDS[i % len(SOURCE_KINDS)]
        project = work / f"source-{i}"
        (project / "docs").mkdir(parents=True)
        (project / "student.json").write_text(json.dumps(STUDENT))
        name = {"pdf": "doc.pdf", "md": "doc.md", "jsonl": "qa.jsonl", "squad": "qa.json"}[kind]
        special = _special_file(project / "docs" / name, rng) if rng.random() < 0.05 else None
        if special is None:
            (project / "docs" / name).write_bytes(mutate_bytes(seeds[kind], kind, rng))
        key = {"pdf": "pdf", "md": "text"}.get(kind, "dataset")
        on_error = rng.choice(["fail", "skip"])
        (project / "Distillfile").write_text(PROJECT.format(key=key, pattern=f"docs/{name}", on_error=on_error))
        distillfile = str(project / "Distillfile")
        code, output, seconds = run_cli(["extract", distillfile])
        problem = problem_of(code, output, seconds, (name, distillfile))
        tally.record(code, seconds, problem, f"source #{i} ({kind}, {special or 'mutated'}, on_error {on_error})")
        shutil.rmtree(project)
    return tally


def _special_file(path: Path, rng: random.Random) -> str | None:
    """Not a regular file inside the project: a FIFO, a link out, a link to /dev/zero."""
    choice = rng.choice(["fifo", "link-out", "dev-zero"])
    if choice == "fifo":
        os.mkfifo(path)
    elif choice == "link-out":
        path.symlink_to("/etc/hostname")
    else:
        path.symlink_to("/dev/zero")
    return choice


def report(name: str, tally: Tally, total: int) -> bool:
    codes = ", ".join(f"exit {code}: {n}" for code, n in sorted(tally.codes.items()))
    print(f"{name}: {total} runs ({codes}); slowest {tally.slowest:.2f} s; {len(tally.failures)} failures")
    for failure in tally.failures[:20]:
        print(f"  {failure}")
    return not tally.failures


def run(files: int, sources: int, seed: int) -> bool:
    """Both fuzzers; True when nothing broke a rule."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="distill-fuzz-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        files_ok = report("distillfiles", fuzz_distillfiles(files, random.Random(seed), work), files)
        print(f"  {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        sources_ok = report("sources", fuzz_sources(sources, random.Random(seed), work), sources)
        print(f"  {time.monotonic() - started:.0f} s")
    return files_ok and sources_ok


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    sys.exit(0 if run(arguments.files, arguments.sources, arguments.seed) else 1)

