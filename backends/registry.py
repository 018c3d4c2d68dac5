"""The backends by name: ``get_backend("gguf")``. Apart from ``base`` so that the backends, which
build on ``base``, and their registry do not import each other."""

from __future__ import annotations

from typing import Any

from distill.backends.base import Backend
from distill.compiler.spec import GgufTarget, OnnxTarget


def _onnx() -> Backend[OnnxTarget]:
    from distill.backends.onnx import OnnxBackend

    return OnnxBackend()


def _gguf() -> Backend[GgufTarget]:
    from distill.backends.gguf import GgufBackend

    return GgufBackend()


# Factories, so that looking a backend up imports only that backend's module.
BACKENDS: dict[str, Any] = {"onnx": _onnx, "gguf": _gguf}


def get_backend(kind: str) -> Backend[Any]:
    """The backend registered under ``kind``.

    Raises:
        KeyError: for a kind with no backend, naming the known ones.
    """
    if kind not in BACKENDS:
        raise KeyError(f"no backend {kind!r}; known: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[kind]()
