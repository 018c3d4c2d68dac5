"""A GGUF file as a teacher or student: a Hugging Face model folder made from it once.

Users have GGUF files from Ollama and llama.cpp. ``teacher.model`` or ``student.model`` may name
one; distill then works on a folder made from it, named by the file's sha256 (so one file is
converted once, and a changed file is a new folder):

* at plan time, without torch: ``config.json``, ``tokenizer.json``, ``tokenizer_config.json``
  and ``generation_config.json`` from the GGUF metadata (:func:`metadata_files`);
* at the first load: ``model.safetensors``, every tensor dequantized to fp32 by gguf-py and each
  architecture's change undone by :mod:`distill.backends.gguf_archs`, the same inverse of
  llama.cpp's converter that verifies distill's own exports (:func:`write_weights`). fp32 because
  llama.cpp computes with the dequantized values in fp32; 4 bytes per parameter on disk.

Why not transformers' GGUF loader: its tokenizer is wrong for SmolLM2-135M-Instruct three ways
(EOS ``<|im_start|>``, a BOS added to every encoding, the digit splitting dropped), and its config
import pulls in torch (5.8 s) where the plan runs without it.

What is read is declared here and refused otherwise, at plan time: the architectures of
:data:`ARCHITECTURES`, a byte-level BPE (``gpt2``) tokenizer with a pre-tokenizer of
:data:`distill.backends.gguf_pretokenizers.PRE_TOKENIZERS`, and no rope scaling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distill.backends.gguf_metadata import GgufMetadata
from distill.backends.gguf_pretokenizers import PreTokenizer, hf_pre_tokenizer
from distill.compiler.records.record import read_json

# llama.cpp architecture -> the HF architecture class it came from. Mistral's GGUF files say
# "llama" too: a Mistral without a sliding window is a Llama.
ARCHITECTURES: Mapping[str, str] = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                                    "qwen3": "Qwen3ForCausalLM"}
# GGUF key (after "<arch>.") -> HF config key, the inverse of what llama.cpp's converter writes.
CONFIG_KEYS: Mapping[str, str] = {
    "context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size",
    "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps", "rope.freq_base": "rope_theta",
    "attention.key_length": "head_dim",
}
FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")
WEIGHTS = "model.safetensors"
# llama.cpp's token types (gguf.TokenType): control tokens are HF's special added tokens,
# user-defined ones added tokens matched in raw text.
_CONTROL, _USER_DEFINED = 3, 4


def refusal(meta: GgufMetadata) -> str | None:
    """Why distill cannot read this GGUF file as a model, in one line; None when it can."""
    arch = meta.fields.get("general.architecture")
    if arch not in ARCHITECTURES:
        return f"GGUF architecture {arch!r} is not read as a model source; distill reads {', '.join(ARCHITECTURES)}"
    if "rope_freqs.weight" in meta.tensors or any(k.startswith(f"{arch}.rope.scaling") for k in meta.fields):
        return (f"this {arch} GGUF has rope scaling (Llama 3.1+ rope factors), which its metadata does "
                "not give back as a config; use the Hugging Face model instead")
    rotary, heads = meta.fields.get(f"{arch}.rope.dimension_count"), _head_dim(meta)
    if rotary is not None and rotary != heads:
        return f"rotary dimension {rotary} != head dimension {heads}: a partial rotary {arch} is not read"
    model = meta.fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        return (f"GGUF tokenizer {model!r} is not read; distill rebuilds byte-level BPE (gpt2) "
                "tokenizers from GGUF metadata")
    try:
        hf_pre_tokenizer(str(meta.fields.get("tokenizer.ggml.pre", "default")))
    except NotImplementedError as error:
        return str(error)
    return None


def _head_dim(meta: GgufMetadata) -> int:
    arch = meta.fields["general.architecture"]
    key_length = meta.fields.get(f"{arch}.attention.key_length")
    return int(key_length or meta.fields[f"{arch}.embedding_length"] // meta.fields[f"{arch}.attention.head_count"])


def config(meta: GgufMetadata) -> dict[str, Any]:
    """The HF config.json of a file :func:`refusal` accepts."""
    arch = meta.fields["general.architecture"]
    found = {hf: meta.fields[f"{arch}.{key}"] for key, hf in CONFIG_KEYS.items() if f"{arch}.{key}" in meta.fields}
    found["head_dim"] = _head_dim(meta)
    specials = _special_ids(meta)
    return {"architectures": [ARCHITECTURES[arch]], "model_type": arch, **found,
            "vocab_size": len(meta.fields["tokenizer.ggml.tokens"]),
            # llama.cpp reuses token_embd when the file has no output tensor.
            "tie_word_embeddings": "output.weight" not in meta.tensors,
            "hidden_act": "silu", "torch_dtype": "float32",
            **{f"{name}_token_id": specials.get(name) for name in ("bos", "eos", "pad")}}


def _special_ids(meta: GgufMetadata) -> dict[str, int]:
    return {name: int(meta.fields[f"tokenizer.ggml.{name}_token_id"])
            for name in ("bos", "eos", "eot", "unknown", "padding")
            if f"tokenizer.ggml.{name}_token_id" in meta.fields}


def tokenizer_json(meta: GgufMetadata) -> dict[str, Any]:
    """tokenizer.json for a byte-level BPE GGUF vocabulary: its tokens and merges, the
    pre-tokenizer llama.cpp runs for its ``tokenizer.ggml.pre``, and BOS/EOS added as llama.cpp
    adds them."""
    tokens: list[str] = meta.fields["tokenizer.ggml.tokens"]
    types: list[int] = meta.fields.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    pre = hf_pre_tokenizer(str(meta.fields.get("tokenizer.ggml.pre", "default")))
    added = [{"id": i, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": kind == _CONTROL}
             for i, (token, kind) in enumerate(zip(tokens, types, strict=True)) if kind in (_CONTROL, _USER_DEFINED)]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": pre.hf(), "post_processor": _post_processor(meta, pre),
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": pre.ignore_merges, "vocab": {t: i for i, t in enumerate(tokens)},
                      "merges": [merge.split(" ", 1) for merge in meta.fields["tokenizer.ggml.merges"]]}}


def _adds(meta: GgufMetadata, pre: PreTokenizer) -> tuple[int | None, int | None]:
    """The BOS and EOS ids llama.cpp puts around a text: the file's add_bos/add_eos flags, else
    llama.cpp's default for the pre-tokenizer."""
    ids = _special_ids(meta)
    bos = meta.fields.get("tokenizer.ggml.add_bos_token", pre.add_bos)
    eos = meta.fields.get("tokenizer.ggml.add_eos_token", False)
    return (ids.get("bos") if bos else None), (ids.get("eos") if eos else None)


def _post_processor(meta: GgufMetadata, pre: PreTokenizer) -> dict[str, Any] | None:
    bos, eos = _adds(meta, pre)
    if bos is None and eos is None:
        return None
    tokens = meta.fields["tokenizer.ggml.tokens"]
    specials = {tokens[i]: {"id": tokens[i], "ids": [i], "tokens": [tokens[i]]} for i in (bos, eos) if i is not None}

    def template(sequence: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [{"Sequence": {"id": sequence, "type_id": 0}}]
        if bos is not None:
            items.insert(0, {"SpecialToken": {"id": tokens[bos], "type_id": 0}})
        if eos is not None:
            items.append({"SpecialToken": {"id": tokens[eos], "type_id": 0}})
        return items

    return {"type": "TemplateProcessing", "single": template("A"), "pair": template("A") + template("B"),
            "special_tokens": specials}


def tokenizer_config(meta: GgufMetadata) -> dict[str, Any]:
    """tokenizer_config.json: the special tokens by text, the chat template, the context."""
    tokens, ids = meta.fields["tokenizer.ggml.tokens"], _special_ids(meta)
    named = {"bos": "bos_token", "eos": "eos_token", "unknown": "unk_token", "padding": "pad_token"}
    arch = meta.fields["general.architecture"]
    found: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
                             "model_max_length": meta.fields.get(f"{arch}.context_length")}
    found.update({hf: tokens[ids[key]] for key, hf in named.items() if key in ids})
    if "tokenizer.chat_template" in meta.fields:
        found["chat_template"] = meta.fields["tokenizer.chat_template"]
    return found


def generation_config(meta: GgufMetadata) -> dict[str, Any]:
    """generation_config.json: where ``generate`` stops, llama.cpp's EOS and EOT both."""
    ids = _special_ids(meta)
    stops = list(dict.fromkeys(ids[key] for key in ("eos", "eot") if key in ids))
    return {"bos_token_id": ids.get("bos"), "eos_token_id": stops[0] if len(stops) == 1 else stops,
            "pad_token_id": ids.get("padding")}


def metadata_files(meta: GgufMetadata) -> dict[str, str]:
    """The folder's small files, by name, as text."""
    made = (config(meta), tokenizer_json(meta), tokenizer_config(meta), generation_config(meta))
    return {name: json.dumps(content, ensure_ascii=False, indent=1) for name, content in zip(FILES, made, strict=True)}


def write_weights(gguf_path: Path, folder: Path) -> None:
    """``model.safetensors`` beside the folder's config: every tensor of ``gguf_path``
    dequantized to fp32, in HF names and layout (atomic: a cut-short run leaves no file)."""
    from safetensors.torch import save_file

    from distill.compiler.fsutil import write_atomic_with

    model_config = read_json(folder / "config.json")
    weights = dequantized(gguf_path, model_config, _hf_names(model_config))
    write_atomic_with(folder / WEIGHTS, lambda tmp: save_file(weights, str(tmp), metadata={"format": "pt"}))


def _hf_names(model_config: dict[str, Any]) -> list[str]:
    """The model's tensor names, from its class built on the meta device (no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**model_config))
    return list(model.state_dict())


def dequantized(gguf_path: Path, model_config: dict[str, Any], hf_names: Any) -> dict[str, Any]:
    """HF tensor name -> fp32 torch tensor, dequantized from ``gguf_path`` with each
    architecture's change undone (q/k permutation, Gemma's norm shift, GPT-2's transposes). A tied
    ``lm_head`` is not among them: it is the embedding."""
    import gguf
    import numpy as np
    import torch

    from distill.backends.gguf_archs import family, tensor_names

    arch = family(model_config)
    stored = {t.name: t for t in gguf.GGUFReader(gguf_path).tensors}
    loaded = {}
    for hf_name, gguf_name in tensor_names(model_config, hf_names).items():
        tensor = stored[gguf_name]
        # dequantize gives the [rows, row width] shape llama.cpp stores.
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        loaded[hf_name] = torch.from_numpy(np.ascontiguousarray(arch.from_gguf(hf_name, data, model_config)))
    return loaded
