"""Where llama.cpp's own Python tools are on this machine: its converter (``conversion/``), its
``gguf-py`` and its reference vocabularies (``models/ggml-vocab-*``), unpacked by
``scripts/setup.sh`` from the sdist of the installed llama-cpp-python, so the converter, the
quantizer and the runtime that verifies distill's files are one llama.cpp version.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

# DISTILL_LLAMA_CPP_CONVERTER overrides where setup put them.
CONVERTER_ENV = "DISTILL_LLAMA_CPP_CONVERTER"


def converter_dir() -> Path:
    """llama.cpp's converter for the installed llama-cpp-python (same llama.cpp version)."""
    if os.environ.get(CONVERTER_ENV):
        return Path(os.environ[CONVERTER_ENV])
    try:
        version = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        version = "missing"
    return Path(sys.prefix) / "share" / "distill" / f"llama.cpp-{version}"


def converter_missing() -> str | None:
    """Why the converter cannot be used here, or None."""
    folder = converter_dir()
    if not (folder / "conversion" / "__init__.py").is_file():
        return (f"llama.cpp's converter is not in {folder} (scripts/setup.sh puts it there from the "
                f"llama-cpp-python sdist; or set {CONVERTER_ENV})")
    return None


def installed_converter() -> Path | None:
    """The converter's folder when it is there."""
    return None if converter_missing() else converter_dir()
