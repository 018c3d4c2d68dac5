"""Backends: GGUF (llama.cpp) and ONNX (onnxruntime) code generators.

Each backend is a plain object satisfying :class:`distill.backends.base.Backend`, picked by name
from :data:`distill.backends.registry.BACKENDS`. Heavy libraries (optimum, onnxruntime, gguf) are
imported inside the functions that need them, so importing this package stays cheap.
"""
