#!/usr/bin/env bash
# The quickstart, offline on a CPU: the guide -> docs/guide.pdf; SmolLM2-135M-Instruct (unpacked
# by scripts/setup.sh) writes QA pairs from it and teaches a student cut from its own layers
# (Distillfile) -> dist/quickstart/ with a Q8_0 GGUF, an int8 ONNX model and the model card.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${VENV:-$here/../../.venv}"
teacher="$(cd "$venv" && pwd)/share/distill/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$teacher" ] || { echo "error: $teacher is missing; run scripts/setup.sh first" >&2; exit 2; }
ln -sfn "$teacher" "$here/teacher.gguf"
"$venv/bin/python" "$here/make_pdf.py"
"$venv/bin/distill" build "$here/Distillfile"
