"""What differs between the architectures the GGUF backend writes: llama.cpp's architecture name,
its hyperparameter keys, and how a Hugging Face tensor must change to mean the same to llama.cpp.

Each transform has its inverse (``from_gguf``): verifying a quantized file runs torch on the
weights read back from it. Configs are ``transformers`` config objects, whose attribute aliases
give GPT-2's ``n_embd``/``n_layer``/``n_head`` the common names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    """One HF architecture as llama.cpp sees it.

    Attributes:
        gguf: llama.cpp's architecture name.
        hparams: writes the architecture's hyperparameters.
        activation: (config attribute, the values llama.cpp's graph for this arch computes).
        permute_qk: llama.cpp applies llama's rotary embedding to interleaved pairs, HF to two
            halves, so llama's q/k rows are permuted (qwen2, phi3 and gemma use llama.cpp's NEOX
            rope, on halves, so no permute).
        norm_shift: added to every norm weight (Gemma's RMSNorm multiplies by ``1 + w``,
            llama.cpp's by ``w``).
        transposed: HF tensor suffixes stored [in, out] (GPT-2's Conv1D); llama.cpp wants [out, in].
    """

    gguf: str
    hparams: Callable[[Any, Any], None]
    activation: tuple[str, tuple[str, ...]]
    permute_qk: bool = False
    norm_shift: float = 0.0
    transposed: tuple[str, ...] = ()

    def to_gguf(self, hf_name: str, data: Any, config: Any) -> Any:
        """The HF tensor (numpy, fp32) as llama.cpp expects it."""
        if hf_name.endswith(self.transposed):
            data = data.T
        if self.norm_shift and hf_name.endswith("norm.weight"):
            data = data + self.norm_shift
        heads = qk_heads(hf_name, config) if self.permute_qk else None
        return data if heads is None else _permute(data, heads)

    def from_gguf(self, hf_name: str, data: Any, config: Any) -> Any:
        """The inverse of :meth:`to_gguf` (``data`` already shaped as llama.cpp stores it)."""
        heads = qk_heads(hf_name, config) if self.permute_qk else None
        if heads is not None:
            data = _unpermute(data, heads)
        if self.norm_shift and hf_name.endswith("norm.weight"):
            data = data - self.norm_shift
        return data.T if hf_name.endswith(self.transposed) else data


def head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _decoder(writer: Any, config: Any, context: int | None = None) -> None:
    """The hyperparameters every rotary, RMSNorm decoder here shares."""
    heads, dim = config.num_attention_heads, head_dim(config)
    if getattr(config, "rope_scaling", None):
        raise NotImplementedError(f"rope_scaling {config.rope_scaling} is not written yet")
    writer.add_context_length(context or config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_key_length(dim)
    writer.add_value_length(dim)
    writer.add_rope_dimension_count(int(dim * getattr(config, "partial_rotary_factor", 1.0)))
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))


def _phi3(writer: Any, config: Any) -> None:
    """HF Phi-3 attends within ``sliding_window`` tokens on every layer; llama.cpp has that
    disabled for Phi (it attends to the whole context, measured: top-1 0.67 at window 8 over 16
    tokens). Within the window the two are the same computation (query q sees keys k with
    q - k < window, i.e. all of them), so the GGUF declares a context of at most the window."""
    window = config.sliding_window or config.max_position_embeddings
    _decoder(writer, config, context=min(config.max_position_embeddings, window))
    if getattr(config, "original_max_position_embeddings", None):
        writer.add_rope_scaling_orig_ctx_len(config.original_max_position_embeddings)


def _gemma2(writer: Any, config: Any) -> None:
    """Gemma-2 adds soft-capping and sliding-window attention on alternate layers.

    llama.cpp scales queries by ``head_dim**-0.5`` except for the 27B shape, HF by
    ``query_pre_attn_scalar**-0.5``: other scalars would silently compute another model.
    Likewise llama.cpp hard-codes the layer pattern (sliding, full, sliding, ...).
    """
    _decoder(writer, config)
    if config.query_pre_attn_scalar != head_dim(config):
        raise NotImplementedError(f"Gemma-2 query_pre_attn_scalar {config.query_pre_attn_scalar} "
                                  f"!= head_dim {head_dim(config)}: llama.cpp would scale queries differently")
    alternating = ["sliding_attention" if i % 2 == 0 else "full_attention"
                   for i in range(config.num_hidden_layers)]
    if getattr(config, "layer_types", alternating) != alternating:
        raise NotImplementedError(f"Gemma-2 layer_types {config.layer_types}: llama.cpp alternates "
                                  "sliding and full attention, starting with sliding")
    writer.add_attn_logit_softcapping(float(config.attn_logit_softcapping))
    writer.add_final_logit_softcapping(float(config.final_logit_softcapping))
    writer.add_sliding_window(config.sliding_window)


def _gpt2(writer: Any, config: Any) -> None:
    """Learned positions and LayerNorm; GPT-2 configs carry ``n_positions`` and maybe ``n_ctx``
    (the attribute aliases map ``max_position_embeddings`` to ``n_positions``)."""
    writer.add_context_length(getattr(config, "n_ctx", None) or config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.n_inner or 4 * config.hidden_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_layer_norm_eps(float(config.layer_norm_epsilon))


# gelu_new and gelu_pytorch_tanh are the tanh approximation, which is ggml_gelu. HF Gemma's MLP
# reads hidden_act (Gemma-2's hidden_activation); Gemma checkpoints say "gelu" (exact), which
# differs from the tanh form by at most 4.7e-4 (at x = +-2.7), left to the F16 logits check.
_SILU = ("hidden_act", ("silu",))
FAMILIES = {
    "LlamaForCausalLM": Family("llama", _decoder, _SILU, permute_qk=True),
    "Qwen2ForCausalLM": Family("qwen2", _decoder, _SILU),
    "Phi3ForCausalLM": Family("phi3", _phi3, _SILU),
    "GemmaForCausalLM": Family("gemma", _decoder, ("hidden_act", ("gelu_pytorch_tanh", "gelu")), norm_shift=1.0),
    "Gemma2ForCausalLM": Family("gemma2", _gemma2, ("hidden_activation", ("gelu_pytorch_tanh",)), norm_shift=1.0),
    "GPT2LMHeadModel": Family("gpt2", _gpt2, ("activation_function", ("gelu_new",)),
                              transposed=("attn.c_attn.weight", "attn.c_proj.weight",
                                          "mlp.c_fc.weight", "mlp.c_proj.weight")),
}


def family(config: Any) -> Family:
    """The family of a config, after checking its activation is the one llama.cpp computes.

    Raises:
        NotImplementedError: for another architecture or activation.
    """
    for name in config.architectures or ():
        if name in FAMILIES:
            found = FAMILIES[name]
            key, allowed = found.activation
            value = getattr(config, key, None)
            if value not in allowed:
                raise NotImplementedError(f"{name} with {key}={value!r}: llama.cpp's {found.gguf} "
                                          f"computes {allowed[0]}")
            return found
    raise NotImplementedError(f"gguf backend writes {', '.join(FAMILIES)}; got {config.architectures}")


def tensor_names(config: Any, hf_names: Any) -> dict[str, str]:
    """HF tensor name -> GGUF tensor name; an unmapped tensor is an error, not a silent drop.
    An ``lm_head`` tied to the embedding is left out: llama.cpp reuses ``token_embd``."""
    import gguf

    arch = family(config).gguf
    mapping = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    names = {}
    for name in hf_names:
        if name.endswith("rotary_emb.inv_freq") or (name == "lm_head.weight" and config.tie_word_embeddings):
            continue
        new = mapping.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise NotImplementedError(f"no GGUF name for tensor {name!r} in llama.cpp's {arch}")
        names[name] = new
    return names


def qk_heads(hf_name: str, config: Any) -> int | None:
    """Heads to permute over for q/k projections, else None."""
    if hf_name.endswith("q_proj.weight"):
        return config.num_attention_heads
    if hf_name.endswith("k_proj.weight"):
        return getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return None


def _permute(weight: Any, heads: int) -> Any:
    """HF rotary halves -> llama.cpp interleaved pairs, per head (as convert_hf_to_gguf)."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _unpermute(weight: Any, heads: int) -> Any:
    rows = weight.shape[0]
    return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))
