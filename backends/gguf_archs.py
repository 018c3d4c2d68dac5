"""What the GGUF backend takes, declared once: the Hugging Face architectures, rope scalings and
settings llama.cpp computes as transformers does, and how each architecture's tensors change on
the way into GGUF (to undo it when verifying a quantized file).

llama.cpp's own converter writes the file (``gguf_writer``); this module is what distill adds:

* :func:`refusal` says, from config.json alone, why a model cannot be exported. ``distill plan``
  calls it before anything is trained (``compiler/support.py``) and the export calls it again, so
  the two cannot disagree. It refuses settings the converter would write without complaint but
  llama.cpp would then compute differently (a query scale, a layer pattern, an activation).
* :meth:`Family.from_gguf` undoes the converter's tensor changes: verifying a quantized file runs
  torch on the weights read back from it.

Configs here are the raw config.json dicts (what the planner reads), not transformers objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distill.compiler.arch import rope_type

Check = Callable[[dict[str, Any]], "str | None"]


@dataclass(frozen=True)
class Family:
    """One HF architecture as llama.cpp sees it.

    Attributes:
        model_type: the HF model_type (a config without ``architectures`` builds its class).
        gguf: llama.cpp's architecture name.
        activation: (config key, the values llama.cpp's graph for this arch computes).
        rope_types: ``rope_scaling`` types llama.cpp reproduces for this arch (besides none).
        checks: further settings llama.cpp would compute differently, each a reason or None.
        permute_qk: llama.cpp applies llama's rotary embedding to interleaved pairs, HF to two
            halves, so the converter permutes llama's q/k rows (qwen, phi3 and gemma use
            llama.cpp's NEOX rope, on halves: no permute).
        norm_shift: added to every norm weight (Gemma's RMSNorm multiplies by ``1 + w``,
            llama.cpp's by ``w``).
        transposed: HF tensor suffixes stored [in, out] (GPT-2's Conv1D); llama.cpp wants [out, in].
    """

    model_type: str
    gguf: str
    activation: tuple[str, tuple[str, ...]]
    rope_types: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    permute_qk: bool = False
    norm_shift: float = 0.0
    transposed: tuple[str, ...] = ()

    def from_gguf(self, hf_name: str, data: Any, config: dict[str, Any]) -> Any:
        """The HF tensor (numpy, fp32) from ``data`` as the GGUF stores it."""
        heads = qk_heads(hf_name, config) if self.permute_qk else None
        if heads is not None:
            data = _unpermute(data, heads)
        if self.norm_shift and hf_name.endswith("norm.weight"):
            data = data - self.norm_shift
        return data.T if hf_name.endswith(self.transposed) else data


def head_dim(config: dict[str, Any]) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def window_below_context(config: dict[str, Any]) -> int | None:
    """``sliding_window`` when it is below the context, for the families that attend within it on
    every layer (those whose checks include :func:`_window_within_longrope`), which llama.cpp
    does not; else None."""
    window, context = config.get("sliding_window"), config.get("max_position_embeddings")
    found = next((FAMILIES[name] for name in architectures(config) if name in FAMILIES), None)
    if found and _window_within_longrope in found.checks and window and context and window < context:
        return int(window)
    return None


def _no_sliding_window(config: dict[str, Any]) -> str | None:
    """Qwen's optional sliding window: llama.cpp's qwen2/qwen3 graphs attend to everything."""
    if config.get("use_sliding_window"):
        return "use_sliding_window: true (llama.cpp's graph for it attends to the whole context)"
    return None


def _window_within_longrope(config: dict[str, Any]) -> str | None:
    """Phi-3 and Mistral attend within ``sliding_window`` tokens on every layer; llama.cpp does not
    (measured for phi3: top-1 0.67 at window 8 over 16 tokens). Within the window the two are the
    same computation, so the GGUF declares a context of at most the window (``gguf_writer``). With
    rope scaling that cap would change the scaling llama.cpp derives from the context length."""
    window = window_below_context(config)
    if window and rope_type(config) != "default":
        return (f"sliding_window {window} below max_position_embeddings "
                f"{config.get('max_position_embeddings')} together with {rope_type(config)} rope scaling")
    return None


def _gemma_query_scale(config: dict[str, Any]) -> str | None:
    """llama.cpp scales Gemma-2/3 queries by ``head_dim**-0.5``, except for the 27B shapes, where it
    uses ``(hidden / heads)**-0.5``; HF by ``query_pre_attn_scalar**-0.5``."""
    scalar, dim = config.get("query_pre_attn_scalar", head_dim(config)), head_dim(config)
    big = config["num_hidden_layers"] in (46, 62) and scalar == config["hidden_size"] // config["num_attention_heads"]
    if scalar != dim and not big:
        return f"query_pre_attn_scalar {scalar} != head_dim {dim} (llama.cpp would scale queries by head_dim)"
    return None


def _layer_pattern(every: int) -> Check:
    """llama.cpp hard-codes which layers attend within the window (every ``every``-th layer
    attends to everything, as HF's default ``layer_types``); HF reads ``layer_types``."""
    def check(config: dict[str, Any]) -> str | None:
        expected = ["sliding_attention" if (i + 1) % every else "full_attention"
                    for i in range(config["num_hidden_layers"])]
        given = config.get("layer_types")
        if given is not None and list(given) != expected:
            return f"layer_types {given} (llama.cpp's pattern is {expected})"
        return None
    return check


def _no_attention_softcap(config: dict[str, Any]) -> str | None:
    if config.get("attn_logit_softcapping"):
        return "attn_logit_softcapping (llama.cpp's gemma3 has none)"
    return None


# gelu_new and gelu_pytorch_tanh are the tanh approximation, which is ggml_gelu. HF Gemma's MLP
# reads hidden_act (Gemma-2/3's hidden_activation); Gemma checkpoints say "gelu" (exact), which
# differs from the tanh form by at most 4.7e-4 (at x = +-2.7), left to the F16 logits check.
_SILU = ("hidden_act", ("silu",))
_GEMMA_NEXT = ("hidden_activation", ("gelu_pytorch_tanh",))
FAMILIES = {
    "LlamaForCausalLM": Family("llama", "llama", _SILU, rope_types=("llama3",), permute_qk=True),
    "MistralForCausalLM": Family("mistral", "llama", _SILU, checks=(_window_within_longrope,),
                                 permute_qk=True),
    "Qwen2ForCausalLM": Family("qwen2", "qwen2", _SILU, checks=(_no_sliding_window,)),
    "Qwen3ForCausalLM": Family("qwen3", "qwen3", _SILU, checks=(_no_sliding_window,)),
    "Phi3ForCausalLM": Family("phi3", "phi3", _SILU, rope_types=("longrope",),
                              checks=(_window_within_longrope,)),
    "GemmaForCausalLM": Family("gemma", "gemma", ("hidden_act", ("gelu_pytorch_tanh", "gelu")),
                               norm_shift=1.0),
    "Gemma2ForCausalLM": Family("gemma2", "gemma2", _GEMMA_NEXT, norm_shift=1.0,
                                checks=(_gemma_query_scale, _layer_pattern(2))),
    "Gemma3ForCausalLM": Family("gemma3_text", "gemma3", _GEMMA_NEXT, norm_shift=1.0,
                                checks=(_gemma_query_scale, _layer_pattern(6), _no_attention_softcap)),
    "GPT2LMHeadModel": Family("gpt2", "gpt2", ("activation_function", ("gelu_new",)),
                              transposed=("attn.c_attn.weight", "attn.c_proj.weight",
                                          "mlp.c_fc.weight", "mlp.c_proj.weight")),
}


def architectures(config: dict[str, Any]) -> list[str]:
    """The config's architecture classes; without any, the causal LM its model_type builds."""
    return list(config.get("architectures") or (
        name for name, found in FAMILIES.items() if found.model_type == config.get("model_type")))


def refusal(config: dict[str, Any]) -> str | None:
    """Why llama.cpp cannot run this model as transformers does, in one line; None when it can."""
    names = architectures(config)
    found = next((FAMILIES[name] for name in names if name in FAMILIES), None)
    if found is None:
        shown = ", ".join(names) or f"model_type {config.get('model_type')!r}"
        return f"the gguf backend takes {', '.join(FAMILIES)}; this model is {shown}"
    key, allowed = found.activation
    value = config.get(key, allowed[0])
    if value not in allowed:
        return f"{key}={value!r}: llama.cpp's {found.gguf} computes {allowed[0]}"
    scaling = rope_type(config)
    if scaling not in ("default", *found.rope_types):
        takes = ", ".join(found.rope_types) or "none"
        return f"rope_scaling {scaling!r}: llama.cpp's {found.gguf} is checked here with {takes}"
    return next((reason for check in found.checks if (reason := check(config))), None)


def family(config: dict[str, Any]) -> Family:
    """The family of a config llama.cpp runs as transformers does.

    Raises:
        NotImplementedError: with :func:`refusal`'s reason otherwise.
    """
    reason = refusal(config)
    if reason is not None:
        raise NotImplementedError(reason)
    return next(FAMILIES[name] for name in architectures(config) if name in FAMILIES)


def tensor_names(config: dict[str, Any], hf_names: Any) -> dict[str, str]:
    """HF tensor name -> GGUF tensor name; an unmapped tensor is an error, not a silent drop.
    An ``lm_head`` tied to the embedding is left out: llama.cpp reuses ``token_embd``."""
    import gguf

    arch = family(config).gguf
    layers = config.get("num_hidden_layers") or config["n_layer"]
    mapping = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], layers)
    tied = config.get("tie_word_embeddings", True)
    names = {}
    for name in hf_names:
        if name.endswith("rotary_emb.inv_freq") or (name == "lm_head.weight" and tied):
            continue
        new = mapping.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise NotImplementedError(f"no GGUF name for tensor {name!r} in llama.cpp's {arch}")
        names[name] = new
    return names


def qk_heads(hf_name: str, config: dict[str, Any]) -> int | None:
    """Heads to permute over for q/k projections, else None."""
    if hf_name.endswith("q_proj.weight"):
        return config["num_attention_heads"]
    if hf_name.endswith("k_proj.weight"):
        return config.get("num_key_value_heads") or config["num_attention_heads"]
    return None


def _unpermute(weight: Any, heads: int) -> Any:
    """llama.cpp's interleaved rotary pairs -> HF's halves, per head (the inverse of the
    converter's ``LlamaModel.permute``)."""
    rows = weight.shape[0]
    return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))
