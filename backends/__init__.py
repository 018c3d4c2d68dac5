"""Backends: GGUF (llama.cpp) and ONNX (onnxruntime) code generators."""
