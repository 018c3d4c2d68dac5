"""Architectures from config.json alone: shapes, parameter counts, linear-layer inventories.

The planner must size a model before any weight is downloaded, so every count here is arithmetic on
the config; ``tests/planner/test_arch.py`` checks them against what transformers builds, exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from distill.compiler.errors import DistillError

Head = Literal["causal-lm", "extractive-qa", "masked-lm", "base"]

DECODERS = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text", "gpt2")
ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert")
SUPPORTED = DECODERS + ENCODERS


class UnsupportedArchitecture(DistillError):
    """A model_type the planner has no shape model for."""


@dataclass(frozen=True)
class Linear:
    """One weight matrix repeated in every layer: ``count`` matrices of ``fan_in x fan_out``."""

    name: str
    fan_in: int
    fan_out: int
    bias: bool

    @property
    def params(self) -> int:
        return self.fan_in * self.fan_out + (self.fan_out if self.bias else 0)


@dataclass(frozen=True)
class Architecture:
    """The shapes of a transformer, read from its config."""

    family: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int
    tied_embeddings: bool
    norm_params: int            # parameters of one norm: h (RMSNorm) or 2h (LayerNorm)
    norms_per_layer: int
    linears: tuple[Linear, ...]  # per layer, in module order
    embedding_shapes: tuple[int, ...]  # elements of each embedding tensor (token, position, ...)
    final_norm: bool
    gated_mlp: bool
    is_encoder: bool
    buffer_bytes: int = 0       # non-parameter tensors the model registers (RoPE, masks, ids)
    dropout: float = 0.0        # the largest dropout probability active in training
    logit_softcap: bool = False  # gemma2: logits = cap x tanh(logits / cap)
    qk_norm: bool = False       # qwen3, gemma3: an RMSNorm over head_dim on q and one on k, per layer
    rotary_dim: int = 0         # elements of each head RoPE rotates: head_dim x partial_rotary_factor
    rope_bases: int = 1         # gemma3 rotates global layers at one base, sliding ones at another
    attention_masks: int = 1    # (b, 1, s, s) masks a forward builds: a full and a sliding one when layers differ

    @property
    def embedding_params(self) -> int:
        return sum(self.embedding_shapes)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def head_norm_params(self) -> int:
        """Per layer: q_norm and k_norm, head_dim weights each (shared by all heads)."""
        return 2 * self.head_dim if self.qk_norm else 0

    @property
    def layer_params(self) -> int:
        return (sum(linear.params for linear in self.linears) + self.norms_per_layer * self.norm_params
                + self.head_norm_params)

    @property
    def linear_names(self) -> tuple[str, ...]:
        """peft target names that select every linear layer (one name may select several)."""
        return tuple(dict.fromkeys(linear.name for linear in self.linears))

    def head_params(self, head: Head) -> int:
        """Parameters above the last layer: final norm, LM head, QA or MLM head."""
        final = self.norm_params if self.final_norm else 0
        if head == "causal-lm":
            return final + (0 if self.tied_embeddings else self.vocab * self.hidden)
        if head == "extractive-qa":
            return final + self.hidden * 2 + 2  # start/end logits
        if head == "masked-lm":
            return final + _mlm_head_params(self)
        return final + (self.hidden * self.hidden + self.hidden if self.family in _POOLED else 0)

    def params(self, head: Head) -> int:
        """Total parameters of the model with ``head``, counting tied weights once."""
        return self.embedding_params + self.layers * self.layer_params + self.head_params(head)

    def linear_params(self) -> int:
        """Parameters in the layers' linear weights: what 8-bit/nf4 quantization and LoRA touch."""
        return self.layers * sum(linear.fan_in * linear.fan_out for linear in self.linears)


_POOLED = ("bert", "roberta", "xlm-roberta")  # their bare model carries a pooler


def _mlm_head_params(arch: Architecture) -> int:
    h, v = arch.hidden, arch.vocab
    # transform (dense + LayerNorm) then a decoder tied to the embeddings, with its own bias
    return h * h + h + 2 * h + v


def architecture(config: dict[str, Any]) -> Architecture:
    """Shapes of a supported model from its config.json contents."""
    family = config.get("model_type", "")
    if family == "gemma3":
        # AutoModelForCausalLM builds Gemma3ForConditionalGeneration from this config: the
        # SigLIP vision tower and projector train and are held beside the text model.
        raise UnsupportedArchitecture(
            "model_type 'gemma3' is multimodal Gemma 3: a causal LM built from it carries its vision tower",
            hint="use a text-only config (model_type gemma3_text, as gemma-3-1b ships, or this one's text_config)")
    builder = _BUILDERS.get(family)
    if builder is None:
        raise UnsupportedArchitecture(
            f"model_type {family!r} is not supported by the planner",
            hint=f"supported: {', '.join(SUPPORTED)}")
    try:
        built = builder(config)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError) as error:
        missing = f"it has no {error.args[0]!r}" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"
        raise UnsupportedArchitecture(f"its config.json is not a {family} config ({missing})",
                                      hint="use the config.json the model was saved with") from None
    problem = _implausible(built)
    if problem is not None:
        raise UnsupportedArchitecture(f"its config.json is not a {family} config ({problem})",
                                      hint="use the config.json the model was saved with")
    return built


# Shapes beyond any real model (the largest today: hidden 16k-25k, 128-160 layers, vocab 262k),
# with headroom; past them the planner's arithmetic means nothing.
_SHAPE_LIMITS = {"hidden": 2**20, "intermediate": 2**22, "layers": 2**12, "heads": 2**12, "kv_heads": 2**12,
                 "head_dim": 2**14, "vocab": 2**24}


def _implausible(arch: Architecture) -> str | None:
    """Why these shapes cannot be a model's, or ``None``: every size a positive integer under its
    limit, whole heads, and query heads shared evenly by the key/value heads."""
    for name, limit in _SHAPE_LIMITS.items():
        value = getattr(arch, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
            return f"{name} must be an integer from 1 to {limit} (got {value!r})"
    if arch.heads % arch.kv_heads:
        return f"{arch.heads} attention heads cannot be shared by {arch.kv_heads} key/value heads"
    if not arch.is_encoder and arch.head_dim * arch.heads != arch.hidden and arch.head_dim == arch.hidden // arch.heads:
        return f"hidden size {arch.hidden} is not a whole number of {arch.heads} heads"
    return None


# What the config classes default to for keys a config.json may omit (transformers 4.57).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma": {"head_dim": 256, "tie_word_embeddings": True},
    "gemma2": {"head_dim": 256, "tie_word_embeddings": True, "final_logit_softcapping": 30.0},
    "gemma3_text": {"head_dim": 256, "tie_word_embeddings": True},
    "qwen3": {"head_dim": 128},
}
SANDWICH_NORMS = ("gemma2", "gemma3_text")  # norms after attention and MLP too: 4 per layer
QK_NORMS = ("qwen3", "gemma3_text")


def _decoder(config: dict[str, Any], family: str) -> Architecture:
    config = {**_DEFAULTS.get(family, {}), **config}
    h, heads = config["hidden_size"], config["num_attention_heads"]
    d = config.get("head_dim") or h // heads
    rotary = int(d * config.get("partial_rotary_factor", 1.0))  # Phi-4-mini rotates 0.75 of each head
    bases = 2 if family == "gemma3_text" else 1
    return Architecture(
        family=family, hidden=h, intermediate=config["intermediate_size"], layers=config["num_hidden_layers"],
        heads=heads, kv_heads=config.get("num_key_value_heads") or heads, head_dim=d, vocab=config["vocab_size"],
        max_positions=config.get("max_position_embeddings", 0),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)), norm_params=h,
        norms_per_layer=4 if family in SANDWICH_NORMS else 2, linears=_decoder_linears(config, family, d),
        embedding_shapes=(config["vocab_size"] * h,), final_norm=True, gated_mlp=True, is_encoder=False,
        buffer_bytes=_rope_buffer_bytes(rotary, bases) + (4 if family == "gemma3_text" else 0),
        dropout=float(config.get("attention_dropout") or 0.0),
        logit_softcap=family in SANDWICH_NORMS and config.get("final_logit_softcapping") is not None,
        qk_norm=family in QK_NORMS, rotary_dim=rotary, rope_bases=bases,
        attention_masks=len(_layer_types(config, family)))


def _layer_types(config: dict[str, Any], family: str) -> set[str]:
    """The kinds of attention the layers use, by the config classes' rules when config.json lists none."""
    layers = config["num_hidden_layers"]
    if config.get("layer_types"):
        return set(config["layer_types"][:layers])
    if family in SANDWICH_NORMS:  # every 2nd (gemma2) or 6th (gemma3) layer global, the rest sliding
        period = 2 if family == "gemma2" else config.get("sliding_window_pattern", 6)
        return {"full" if (i + 1) % period == 0 else "sliding" for i in range(layers)}
    if family in ("qwen2", "qwen3") and config.get("use_sliding_window") and config.get("sliding_window"):
        return {"sliding" if i >= config.get("max_window_layers", 28) else "full" for i in range(layers)}
    return {"full"}


def _decoder_linears(config: dict[str, Any], family: str, d: int) -> tuple[Linear, ...]:
    h, f = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    qkv_bias = family == "qwen2" or bool(config.get("attention_bias"))
    o_bias = bool(config.get("attention_bias")) and family != "qwen2"
    mlp_bias = bool(config.get("mlp_bias"))
    if family == "phi3":  # fused projections, same parameter count as separate ones
        return (Linear("qkv_proj", h, heads * d + 2 * kv * d, False), Linear("o_proj", heads * d, h, False),
                Linear("gate_up_proj", h, 2 * f, False), Linear("down_proj", f, h, False))
    return (Linear("q_proj", h, heads * d, qkv_bias), Linear("k_proj", h, kv * d, qkv_bias),
            Linear("v_proj", h, kv * d, qkv_bias), Linear("o_proj", heads * d, h, o_bias),
            Linear("gate_proj", h, f, mlp_bias), Linear("up_proj", h, f, mlp_bias),
            Linear("down_proj", f, h, mlp_bias))


def rope_type(config: Mapping[str, Any]) -> str:
    """The config's rope scaling type, ``"default"`` without scaling. Older configs say ``type``,
    newer ``rope_type``; Phi-3 configs ship ``"su"``, transformers' (and llama.cpp's converter's)
    old name for longrope."""
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    return "longrope" if kind == "su" else str(kind)


def _rope_buffer_bytes(rotary_dim: int, bases: int) -> int:
    """The fp32 ``inv_freq`` of each RoPE base: one frequency per rotated pair, ceil(rotary_dim / 2).

    Every rope_scaling type transformers 4.57 has (linear, dynamic, llama3, longrope, yarn)
    rescales those same frequencies; longrope switches to its long factors only past
    ``original_max_position_embeddings`` (a second table, 2 x rotary_dim B, kept from then on).
    Gemma 3 adds to these its embedding scale sqrt(h), a scalar in the model's dtype (the caller
    counts it as fp32: 2 B over in a 16-bit model).
    """
    return bases * ((rotary_dim + 1) // 2) * 4


def _gpt2(config: dict[str, Any]) -> Architecture:
    h, heads = config["n_embd"], config["n_head"]
    f = config.get("n_inner") or 4 * h
    positions = config.get("n_positions") or config.get("n_ctx") or 1024
    # peft's target "c_proj" selects both the attention and the MLP projection.
    linears = (Linear("c_attn", h, 3 * h, True), Linear("c_proj", h, h, True),
               Linear("c_fc", h, f, True), Linear("c_proj", f, h, True))
    dropout = max(config.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop"))
    return Architecture(
        family="gpt2", hidden=h, intermediate=f, layers=config["n_layer"], heads=heads,
        kv_heads=heads, head_dim=h // heads, vocab=config["vocab_size"], max_positions=positions,
        tied_embeddings=bool(config.get("tie_word_embeddings", True)), norm_params=2 * h,
        norms_per_layer=2, linears=linears, embedding_shapes=(config["vocab_size"] * h, positions * h),
        final_norm=True, gated_mlp=False, is_encoder=False,
        # each attention layer registers a bool causal mask of positions^2 and an fp32 scalar
        buffer_bytes=config["n_layer"] * (positions**2 + 4), dropout=float(dropout))


def _bert(config: dict[str, Any]) -> Architecture:
    h, f, heads = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"]
    positions = config["max_position_embeddings"]
    types = config.get("type_vocab_size", 2)
    # peft's target "dense" selects the attention output, intermediate and output projections.
    linears = (Linear("query", h, h, True), Linear("key", h, h, True), Linear("value", h, h, True),
               Linear("dense", h, h, True), Linear("dense", h, f, True), Linear("dense", f, h, True))
    return Architecture(
        family=config["model_type"], hidden=h, intermediate=f, layers=config["num_hidden_layers"],
        heads=heads, kv_heads=heads, head_dim=h // heads, vocab=config["vocab_size"],
        max_positions=positions, tied_embeddings=True, norm_params=2 * h, norms_per_layer=2,
        linears=linears,
        embedding_shapes=(config["vocab_size"] * h, positions * h, types * h, h, h),
        final_norm=False, gated_mlp=False, is_encoder=True,
        buffer_bytes=2 * positions * 8,  # position_ids and token_type_ids, int64
        dropout=float(max(config.get("hidden_dropout_prob", 0.1), config.get("attention_probs_dropout_prob", 0.1))))


def _distilbert(config: dict[str, Any]) -> Architecture:
    h, f, heads = config["dim"], config["hidden_dim"], config["n_heads"]
    positions = config["max_position_embeddings"]
    linears = (Linear("q_lin", h, h, True), Linear("k_lin", h, h, True), Linear("v_lin", h, h, True),
               Linear("out_lin", h, h, True), Linear("lin1", h, f, True), Linear("lin2", f, h, True))
    return Architecture(
        family="distilbert", hidden=h, intermediate=f, layers=config["n_layers"], heads=heads,
        kv_heads=heads, head_dim=h // heads, vocab=config["vocab_size"], max_positions=positions,
        tied_embeddings=True, norm_params=2 * h, norms_per_layer=2, linears=linears,
        embedding_shapes=(config["vocab_size"] * h, positions * h, h, h), final_norm=False,
        gated_mlp=False, is_encoder=True, buffer_bytes=positions * 8,  # position_ids, int64
        dropout=float(max(config.get("dropout", 0.1), config.get("attention_dropout", 0.1))))


_BUILDERS: dict[str, Callable[[dict[str, Any]], Architecture]] = {
    **{family: partial(_decoder, family=family)
       for family in ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text")},
    "gpt2": _gpt2, "bert": _bert, "roberta": _bert, "xlm-roberta": _bert, "distilbert": _distilbert,
}
