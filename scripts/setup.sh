#!/usr/bin/env bash
# Set up a fresh machine for distill: system packages, a virtual environment in .venv, torch (CPU
# build, first: any other torch spec pulls several GB of CUDA wheels), then the project and its
# test extras at the versions measured to install together (constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(tesseract-ocr poppler-utils fonts-dejavu-core camlidl-doc debian-reference-en gnuplot-doc)
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
else
  echo "setup: no apt-get here; install ${APT_PACKAGES[*]} with your package manager" >&2
fi

# pip's configured local indexes print one harmless warning per package; keep the log readable.
pip_quiet() {
  .venv/bin/pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

[ -x .venv/bin/python ] || python3 -m venv .venv
pip_quiet install -q torch==2.13.0
# llama-cpp-python compiles llama.cpp from source; the multimodal (llava) part is not needed.
export CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF"
pip_quiet install -q -c constraints.txt -e ".[test]"
.venv/bin/pip check
echo "setup: done; run .venv/bin/distill --help"
