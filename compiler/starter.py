"""``distill init``: a commented starter Distillfile, checked by the compiler before it is written."""

from __future__ import annotations

import os
import re
from pathlib import Path

from distill.compiler.document import parse_document
from distill.compiler.errors import UsageError
from distill.compiler.frontend import compile_document

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "dist", ".distill", "__pycache__"}
_DOC_SUFFIXES = {".pdf": "pdf", ".md": "text", ".markdown": "text", ".txt": "text"}

_TEMPLATE = """\
# yaml-language-server: $schema=distillfile.schema.json
# A starter Distillfile written by `distill init` (with a copy of the schema beside it, for editor
# completion). Check it with `distill validate`, see the plan with `distill plan`, run it with
# `distill build`.
version: 1
name: {name}
seed: 0

sources:
{sources}

# The teacher writes grounded QA pairs from each chunk of the documents.
teacher:
  model: Qwen/Qwen2.5-1.5B-Instruct
  # revision: <commit sha>      # pin it; until then the lock records what `main` was
  quantization: auto            # the planner picks 4bit/8bit/none to fit hardware.vram

student:
  model: Qwen/Qwen2.5-0.5B-Instruct
  # revision: <commit sha>
  task: causal-lm
  adapter: {{type: lora, r: 16, alpha: 32}}

data:
  chunk_tokens: 512
  overlap_tokens: 64
  synthesis: {{kind: qa, pairs_per_chunk: 3}}
  split: {{val: 0.1, test: 0.1, by: {split_by}}}{split_note}

loss:
  ce: {{weight: 1.0}}               # cross-entropy on the answer tokens
  kl: {{weight: 0.5, temperature: 2.0}}   # match the teacher's token distribution

train:
  epochs: 2
  effective_batch_size: 16
  max_seq_len: 1024

hardware:
  device: auto
  # vram: 16GiB                 # the budget the plan must fit; probed when left out

deploy:
  - gguf: {{quant: [Q4_K_M]}}     # llama.cpp / Ollama
  - onnx: {{quant: int8}}         # onnxruntime

eval:
  gates: {{min_retention: 0.8}}   # fail the build if the student keeps < 80% of the teacher's score
"""


def starter_text(folder: Path, pdf: Path | None) -> str:
    """A starter Distillfile for ``folder``: from ``pdf`` when given, else from the documents
    found there. Raises ``UsageError`` when there is nothing to learn from."""
    sources, documents = ([_pdf_source(folder, pdf)], 1) if pdf is not None else _found_sources(folder)
    name = re.sub(r"[^a-z0-9._-]+", "-", folder.absolute().name.lower()).strip("-._")[:64]
    # Whole documents go to one split: train, val and test need 3 at least; fewer split chunks.
    by_document = documents >= 3
    return _TEMPLATE.format(
        name=name or "my-distill",
        sources="\n".join(sources),
        split_by="document" if by_document else "chunk",
        split_note="" if by_document else
        f"   # {documents} document(s): split its chunks (by: document needs 3 or more)",
    )


def _pdf_source(folder: Path, pdf: Path) -> str:
    if not pdf.is_file():
        raise UsageError(f"--from-pdf {pdf}: no such file")
    with pdf.open("rb") as handle:
        if handle.read(5) != b"%PDF-":
            raise UsageError(f"--from-pdf {pdf} is not a PDF (it does not start with %PDF-)")
    absolute = pdf.absolute()
    try:
        shown = absolute.relative_to(folder.absolute()).as_posix()
    except ValueError:
        shown = absolute.as_posix()  # outside the folder: only an absolute path may point there
    return f"  - pdf: {_quote(shown)}\n    ocr: auto                   # OCR pages without a text layer"


def _found_sources(folder: Path) -> tuple[list[str], int]:
    """The source entries for the documents under ``folder``, and how many documents they match."""
    kinds: dict[str, set[str]] = {}
    documents = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for filename in filenames:
            suffix = Path(filename).suffix.lower()
            if suffix in _DOC_SUFFIXES:
                documents += 1
                relative = Path(dirpath, filename).relative_to(folder)
                kinds.setdefault(_DOC_SUFFIXES[suffix], set()).add(
                    f"**/*{suffix}" if len(relative.parts) > 1 else f"*{suffix}")
    if not kinds:
        raise UsageError(f"no documents (.pdf, .md, .txt) found in {folder}",
                         hint="pass --from-pdf PATH, or put the documents in that folder first")
    entries = []
    for kind, patterns in sorted(kinds.items()):
        # "**/*.md" also matches top-level files, so it covers "*.md" when both occur.
        kept = {p for p in patterns if "**/" + p not in patterns}
        entries += [f"  - {kind}: {_quote(p)}" for p in sorted(kept)]
    return entries, documents


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def check_starter(text: str, target: Path) -> None:
    """Compile the starter as if it were already at ``target``: init never writes a file that
    `distill validate` would reject."""
    compile_document(parse_document(text, str(target)), target)

