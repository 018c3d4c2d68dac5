"""Writing GGUF: a saved Hugging Face causal LM as an F16 (or F32) GGUF file with the PyPI
``gguf`` package, and every other type made from it by llama.cpp's own quantizer.

Tensor names come from ``get_tensor_name_map``; llama's Q/K rows are permuted to llama.cpp's rotary
layout; the tokenizer metadata comes from ``gguf_vocab``.
``gguf.quants`` cannot make K-quants, hence ``llama_cpp.llama_model_quantize``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from distill.backends.gguf_vocab import write_tokenizer

THREADS = int(os.environ.get("DISTILL_THREADS", "2"))

BASE_QUANT = "F16"
# HF architecture -> (gguf arch name, permute Q/K rows?). llama.cpp applies llama's rotary
# embedding to interleaved pairs, HF to two halves: convert_hf_to_gguf permutes llama's q/k rows;
# qwen2 uses llama.cpp's NEOX rope (halves), so no permute.
ARCHS = {"LlamaForCausalLM": ("llama", True), "Qwen2ForCausalLM": ("qwen2", False)}


def read_config(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "config.json").read_text(encoding="utf-8"))


def gguf_arch(config: dict[str, Any]) -> tuple[str, bool]:
    for name in config.get("architectures") or ():
        if name in ARCHS:
            return ARCHS[name]
    raise NotImplementedError(f"gguf backend writes {', '.join(ARCHS)}; got "
                              f"{config.get('architectures')}")


def _state_dict(model_dir: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    tensors: dict[str, Any] = {}
    for file in files:
        tensors.update(load_file(file))
    return tensors


def permute_qk(weight: Any, heads: int) -> Any:
    """HF rotary halves -> llama.cpp interleaved pairs, per head (as convert_hf_to_gguf)."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def unpermute_qk(weight: Any, heads: int) -> Any:
    rows = weight.shape[0]
    return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def tensor_names(config: dict[str, Any], hf_names: Any) -> dict[str, str]:
    """HF tensor name -> GGUF tensor name; an unmapped tensor is an error, not a silent drop."""
    import gguf

    arch, _ = gguf_arch(config)
    mapping = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()],
                                       config["num_hidden_layers"])
    names = {}
    for name in hf_names:
        if name.endswith("rotary_emb.inv_freq"):
            continue
        new = mapping.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise NotImplementedError(f"no GGUF name for tensor {name!r}")
        names[name] = new
    return names


def qk_heads(hf_name: str, config: dict[str, Any]) -> int | None:
    """Heads to permute over for llama q/k projections, else None."""
    if hf_name.endswith("q_proj.weight"):
        return config["num_attention_heads"]
    if hf_name.endswith("k_proj.weight"):
        return config.get("num_key_value_heads") or config["num_attention_heads"]
    return None


def write_base(model_dir: Path, path: Path, quant: str = BASE_QUANT) -> None:
    """The F16 (or F32) GGUF of a saved model: 2-D weights in f16, norms and biases in f32 (as
    llama.cpp's converter; its kernels want f32 1-D tensors)."""
    import gguf
    import numpy as np

    config = read_config(model_dir)
    arch, permute = gguf_arch(config)
    writer = gguf.GGUFWriter(str(path), arch)
    _write_hparams(writer, config, arch, quant)
    write_tokenizer(writer, model_dir, config)
    tensors = _state_dict(model_dir)
    for hf_name, gguf_name in tensor_names(config, tensors).items():
        data = tensors[hf_name].astype(np.float32)
        heads = qk_heads(hf_name, config) if permute else None
        if heads is not None:
            data = permute_qk(data, heads)
        half = data.ndim == 2 and quant == "F16"
        writer.add_tensor(gguf_name, data.astype(np.float16) if half else data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_hparams(writer: Any, config: dict[str, Any], arch: str, quant: str) -> None:
    import gguf

    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    writer.add_name(config.get("_name_or_path") or "distill-student")
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "F16"
                         else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if config.get("rope_scaling"):
        raise NotImplementedError(f"rope_scaling {config['rope_scaling']} is not written yet")


def quantize(source: Path, dest: Path, quant: str) -> None:
    """llama.cpp's quantizer (the ``llama-quantize`` tool's code) from the F16 base."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = THREADS
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(),
                                          ctypes.byref(params))
    if code != 0 or not dest.is_file():
        raise RuntimeError(f"llama_model_quantize to {quant} failed with code {code}")
