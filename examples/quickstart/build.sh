#!/usr/bin/env bash
# The quickstart, offline on a CPU: the guide -> docs/guide.pdf -> a teacher trained on it
# (teacher.Distillfile) -> a student distilled from it (Distillfile) -> dist/quickstart/ with a
# Q4_K_M GGUF, an int8 ONNX model and the model card.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${VENV:-$here/../../.venv}"
"$venv/bin/python" "$here/make_pdf.py"
"$venv/bin/distill" build "$here/teacher.Distillfile"
"$venv/bin/distill" build "$here/Distillfile"
