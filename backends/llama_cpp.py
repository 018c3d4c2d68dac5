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
from typing import Any

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


def open_llama(path: Path | str, n_ctx: int, threads: int, *, logits_all: bool = False, seed: int | None = None) -> Any:
    """llama.cpp's model as verification, evaluation and chat open it: ``n_ctx`` tokens (0: the
    context the GGUF declares), ``threads`` for generation and prompt batches alike, a batch of at
    most 512 tokens (llama.cpp's default), quiet. ``logits_all`` keeps every position's logits
    (perplexity and the logit checks need them, not just the last); ``seed`` samples reproducibly.

    Raises:
        ValueError: llama.cpp cannot load the file (it says only "Failed to load model from file").
    """
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=min(n_ctx, 512) if n_ctx else 512,
                           logits_all=logits_all, n_threads=threads, n_threads_batch=threads, verbose=False,
                           seed=llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed)
