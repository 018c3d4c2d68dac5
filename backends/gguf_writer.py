"""Writing GGUF: a saved Hugging Face causal LM as an F16 (or F32) GGUF file with the PyPI
``gguf`` package, and every other type made from it by llama.cpp's own quantizer.

Tensor names and per-architecture changes come from ``gguf_archs``, the tokenizer metadata from
``gguf_vocab``. ``gguf.quants`` cannot make K-quants, hence ``llama_cpp.llama_model_quantize``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distill.backends.gguf_archs import family, tensor_names
from distill.backends.gguf_vocab import write_tokenizer

THREADS = int(os.environ.get("DISTILL_THREADS", "2"))

BASE_QUANT = "F16"
# llama.cpp special-cases a general.name containing "phi3" (Phi-3's SentencePiece special tokens);
# measured here: with name "phi3-student" it refuses to load our phi3 AND gemma files. So the
# name never comes from the model's folder or hub id.
GENERAL_NAME = "distill-student"


def read_config(model_dir: Path) -> Any:
    """The model's ``transformers`` config (attribute aliases included)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_dir)


def _state_dict(model_dir: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    tensors: dict[str, Any] = {}
    for file in files:
        tensors.update(load_file(file))
    return tensors


def write_base(model_dir: Path, path: Path, quant: str = BASE_QUANT) -> None:
    """The F16 (or F32) GGUF of a saved model: 2-D weights in f16, norms and biases in f32 (as
    llama.cpp's converter; its kernels want f32 1-D tensors)."""
    import gguf
    import numpy as np

    config = read_config(model_dir)
    arch = family(config)
    writer = gguf.GGUFWriter(str(path), arch.gguf)
    writer.add_name(GENERAL_NAME)
    arch.hparams(writer, config)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "F16" else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_tokenizer(writer, model_dir, config)
    tensors = _state_dict(model_dir)
    for hf_name, gguf_name in tensor_names(config, tensors).items():
        data = arch.to_gguf(hf_name, tensors[hf_name].astype(np.float32), config)
        half = data.ndim == 2 and quant == "F16"
        writer.add_tensor(gguf_name, np.ascontiguousarray(data.astype(np.float16) if half else data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


_LOG: list[str] = []
_CALLBACK: list[object] = []  # the ctypes callback, alive as long as llama.cpp may call it


def _captured_log() -> list[str]:
    """Route llama.cpp's log (a line per converted tensor, on stderr by default) into a list of
    recent lines, shown only when quantizing fails. Set once per process: llama.cpp keeps the
    callback's address, so it must never be garbage collected."""
    import ctypes

    import llama_cpp

    if not _CALLBACK:
        @llama_cpp.llama_log_callback
        def keep(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            _LOG.append(text.decode("utf-8", errors="replace"))
            del _LOG[:-50]

        _CALLBACK.append(keep)
        llama_cpp.llama_log_set(keep, ctypes.c_void_p(0))
    return _LOG


def quantize(source: Path, dest: Path, quant: str) -> None:
    """llama.cpp's quantizer (the ``llama-quantize`` tool's code) from the F16 base."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = THREADS
    log = _captured_log()
    log.clear()
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(),
                                          ctypes.byref(params))
    if code != 0 or not dest.is_file():
        tail = "".join(log[-5:]).strip()
        raise RuntimeError(f"llama_model_quantize to {quant} failed with code {code}: {tail}")
