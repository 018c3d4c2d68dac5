"""Activation memory of HF decoder layers in training, per token, in bytes.

Counted from what each module saves for backward in transformers 4.57 with PyTorch 2.13, and
checked tensor by tensor against traced CPU steps (``benchmarks/planner_accuracy.py``).
Symbols: h hidden, q = heads x head_dim, kv = kv_heads x head_dim, f intermediate, a heads,
s sequence length, e bytes of the compute dtype, r LoRA rank.

What the trace showed, and the model below encodes (llama, mistral, qwen2; qwen3 and gemma3 add
per-head q/k norms, ``head_norm_bytes``):
  * residual stream: the post-attention sum and the layer output, e*h each;
  * RMSNorm computes in fp32: the fp32 copy of x (a copy only when e != 4), rsqrt (4 B), the
    normalized x in e when the norm weight trains, and the e-sized output;
  * q after RoPE; k and v as SDPA gets them: HF passes a boolean causal mask, so SDPA cannot use
    its GQA path and HF repeats k and v to all heads (e*q each, copies when kv < q); SDPA keeps
    its output and an fp32 logsumexp per head, and turns the boolean mask into an e-typed additive
    mask per layer (e*s per token);
  * gated MLP: gate, act(gate), up, act*up (e*f each; act*up only feeds down_proj, kept when
    down_proj trains);
  * LoRA: each adapted matrix keeps its fp32 A-output (4*r) and, on a 16-bit base, the fp32 copy
    of its input that peft casts to the adapter dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from distill.compiler.arch import Architecture
from distill.compiler.trainstep import TrainStep

F32 = 4
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def rms_norm_bytes(hidden: int, e: int, weight_trains: bool, output_saved: bool, groups: int = 1) -> int:
    """Per token. HF RMSNorm computes in fp32: x in fp32 (x itself when e = 4, else a copy) and
    one rsqrt per normalized group (1, or the heads of a q_norm/k_norm) are kept for backward;
    the normalized x in e when the weight trains; the e-sized output when the next linear keeps
    its input (it trains, or carries an adapter). In fp32 the kept x is the residual stream
    itself, so no residual term is counted apart."""
    return F32 * hidden + F32 * groups + (e * hidden if weight_trains else 0) + \
        (e * hidden if output_saved else 0)


def gemma_norm_bytes(hidden: int, e: int, weight_trains: bool, output_saved: bool, groups: int = 1) -> int:
    """Per token. Gemma's RMSNorm stays in fp32 to the end, x * rsqrt * (1 + w): it keeps fp32 x,
    one rsqrt per group, the fp32 normalized x when the weight trains, and the output cast back
    to e when the next linear keeps it. Not counted: the fp32 (1 + w) each call keeps, per layer
    rather than per token (4 x (4h + 2 x head_dim) B per gemma3 layer: 0.5 MB for gemma-3-1b)."""
    return F32 * hidden + F32 * groups + (F32 * hidden if weight_trains else 0) + \
        (e * hidden if output_saved else 0)


def mlp_backward_freed(arch: Architecture, step: TrainStep) -> int:
    """Per token: what a recomputed layer no longer holds when its MLP's backward peaks. With
    sandwich norms (gemma2, gemma3) the post-feedforward norm's backward runs first and frees
    what it kept (traced: a gemma3 full checkpointed step over-predicted by exactly that)."""
    if arch.norms_per_layer != 4:
        return 0
    return norm_of(arch)(arch.hidden, DTYPE_BYTES[step.dtype], step.adapter == "none", output_saved=False)


def post_norm_backward_bytes(arch: Architecture, step: TrainStep) -> int:
    """Per token: the working set of a sandwich post-feedforward norm's backward, which runs in
    fp32: the incoming gradient (e x h), its fp32 copy when e != 4, and four fp32 h-sized
    temporaries (traced on gemma3 LoRA checkpointed steps at fp32 and bf16, within 10 B/token)."""
    e = DTYPE_BYTES[step.dtype]
    return e * arch.hidden + F32 * arch.hidden * (4 + (1 if e != F32 else 0))


def norm_of(arch: Architecture) -> Callable[..., int]:
    return gemma_norm_bytes if arch.family in ("gemma", "gemma2", "gemma3_text") else rms_norm_bytes


def head_norm_bytes(arch: Architecture, step: TrainStep) -> int:
    """Per token per layer: Qwen3's and Gemma 3's q_norm and k_norm, one rsqrt per head each. RoPE
    multiplies their outputs by constant cos/sin, so neither output is kept (SDPA keeps the
    rotated q and k, counted with the attention)."""
    if not arch.qk_norm:
        return 0
    norm, e, full = norm_of(arch), DTYPE_BYTES[step.dtype], step.adapter == "none"
    return norm(arch.q_dim, e, full, False, arch.heads) + norm(arch.kv_dim, e, full, False, arch.kv_heads)


def _adapted(step: TrainStep, *names: str) -> bool:
    return step.adapter != "none" and any(name in step.lora_targets for name in names)


# Linears fed by a layer's input (its attention's projections): in the first layer under a frozen
# embedding that input needs no gradient.
ATTENTION_INPUTS = ("q_proj", "k_proj", "v_proj", "qkv_proj", "c_attn", "query", "key", "value",
                    "q_lin", "k_lin", "v_lin")


def lora_bytes(arch: Architecture, step: TrainStep) -> int:
    """Per token per layer: each adapted matrix's A-output, and what its input leaves: without
    adapter dropout, the input's fp32 copy on a 16-bit base (peft casts it to the adapter's
    dtype); with dropout, the dropped fp32 input lora_A keeps and the dropout's mask, fp32 on a
    CPU, where dropout multiplies by a mask in its input's dtype (measured; CUDA's fused dropout
    keeps a 1-byte mask, which this over-counts by 3 B per input element).

    Under 16-bit autocast lora_A runs in the autocast dtype: it keeps autocast's 16-bit copy of
    its input (whatever the base's dtype; the fp32 input it was cast from is not kept for it)
    and its A-output is 16-bit (measured: a bf16 LoRA step under bf16 autocast holds 10% less,
    all of it here)."""
    e = DTYPE_BYTES[step.dtype]
    a = 2 if step.precision != "fp32" else F32  # the adapter's compute dtype
    if step.lora_dropout > 0:
        kept = F32 + a  # the dropout's mask, and the dropped input lora_A keeps
    elif a != F32:
        kept = a
    else:
        kept = F32 if e != F32 else 0  # the fp32 cast of a 16-bit input; an fp32 input is the layer's own
    return sum(a * step.lora_r + kept * lin.fan_in for lin in arch.linears if _adapted(step, lin.name))


def first_layer_masks(arch: Architecture, step: TrainStep) -> int:
    """Per token: with adapter dropout, the first layer's attention adapters keep no dropout mask
    (their input needs no gradient under a frozen embedding)."""
    if step.adapter == "none" or step.lora_dropout <= 0:
        return 0
    return F32 * sum(lin.fan_in for lin in arch.linears if lin.name in ATTENTION_INPUTS and _adapted(step, lin.name))


def decoder_layer_bytes(arch: Architecture, step: TrainStep) -> int:
    """Saved activations of one decoder layer, per token, without checkpointing."""
    e, h, q, f, a, s = (DTYPE_BYTES[step.dtype], arch.hidden, arch.q_dim, arch.intermediate,
                        arch.heads, step.seq_len)
    full = step.adapter == "none"
    norm = norm_of(arch)
    norms = norm(h, e, full, _input_kept(step, e, "q_proj", "k_proj", "v_proj", "qkv_proj")) + \
        norm(h, e, full, _input_kept(step, e, "gate_proj", "up_proj", "gate_up_proj")) + \
        head_norm_bytes(arch, step)
    if arch.norms_per_layer == 4:  # gemma2, gemma3: post-attention and post-feedforward norms keep their inputs
        norms += 2 * norm(h, e, full, output_saved=False)
    if step.attention == "sdpa":
        scores = F32 * a + e * s               # logsumexp + the additive mask SDPA builds
    else:  # eager: the fp32 softmax output, its copy in e when e != 4 (fed to the PV matmul)
        scores = F32 * a * s + (e * a * s if e != F32 else 0)
    # q, k and v (repeated to all heads: a copy, except with one kv head, where repeat_kv's
    # expand + reshape is a view of the kv-sized tensor), and the output.
    kv = arch.kv_dim if arch.kv_heads == 1 else q
    attention = 2 * e * q + 2 * e * kv + scores
    if arch.family == "phi3" and arch.kv_heads == arch.heads:
        # Traced (Phi-3-mini is MHA): without GQA repeat_kv copies nothing, and the views RoPE and
        # SDPA keep hold the fused qkv output whole, 2 x e x q more than the copies GQA makes.
        attention += 2 * e * q
    if arch.family == "phi3" and _input_kept(step, e, "o_proj"):
        attention += e * q  # its attention output is copied once more before o_proj, which keeps it
    mlp = 3 * e * f + (e * f if _input_kept(step, e, "down_proj") else 0)
    return norms + attention + mlp + lora_bytes(arch, step)


def _input_kept(step: TrainStep, e: int, *consumers: str) -> bool:
    """Whether a tensor feeding these linears is kept in its own dtype: a trained linear keeps its
    input; an adapter keeps it too when it is fp32 already, has no dropout and runs without
    autocast (else it keeps its own copy: ``lora_bytes``)."""
    return step.adapter == "none" or (e == F32 and step.lora_dropout <= 0 and step.precision == "fp32"
                                      and _adapted(step, *consumers))


def first_layer_discount(arch: Architecture, step: TrainStep) -> int:
    """Per token: with a frozen embedding the first layer's input needs no grad, so its first
    norm keeps neither x nor rsqrt, and its attention adapters no dropout mask."""
    return 0 if step.adapter == "none" else F32 * arch.hidden + F32 + first_layer_masks(arch, step)


def gpt2_layer_bytes(arch: Architecture, step: TrainStep) -> int:
    """One GPT-2 block, per token (traced the same way as the llama family).

    LayerNorm keeps its fp32 mean and rstd (8 B) and its output when the next Conv1D keeps its
    input; c_attn's output backs q, k and v (3h); with attention dropout SDPA takes its math path
    and keeps the scaled q and k (2h), the softmax, its dropout mask and the dropped
    probabilities (3 x a x s) and a merged-heads copy (h); without dropout it keeps its output, an
    fp32 logsumexp per head and the additive mask (e x s). Residual dropout keeps an e-sized mask
    per sublayer (native_dropout on CPU); both residual sums are kept; gelu_new keeps the fc output,
    x/2, tanh, 1 + tanh (4f) and their product when c_proj keeps its input.
    """
    e, h, f, a, s = DTYPE_BYTES[step.dtype], arch.hidden, arch.intermediate, arch.heads, step.seq_len
    ln_1_out = e * h if _input_kept(step, e, "c_attn") else 0
    ln_2_out = e * h if _input_kept(step, e, "c_fc") else 0
    product = e * f if _input_kept(step, e, "c_proj") else 0
    layer_norms = 2 * 2 * F32 + ln_1_out + ln_2_out
    if arch.dropout > 0:
        # The math path, as traced: at 16 bits it runs in fp32 (fp32 q, k, v and probabilities);
        # at fp32 with one sequence it keeps c_attn's output and scaled q and k, with several it
        # keeps contiguous q, k, v.
        if e != F32:
            qkv, probabilities = 3 * F32 * h, 3 * F32 * a * s
        else:
            qkv, probabilities = (5 if step.micro_batch == 1 else 3) * e * h, 3 * e * a * s
        merged = e * h if _input_kept(step, e, "c_proj") else 0  # the merged heads, kept by c_proj
        attention = qkv + probabilities + merged + 2 * e * h  # residual masks
    else:
        attention = 3 * e * h + e * h + F32 * a + e * s
    residuals = 2 * e * h
    mlp = 4 * e * f + product
    return layer_norms + attention + residuals + mlp + lora_bytes(arch, step)


def encoder_layer_bytes(arch: Architecture, step: TrainStep) -> int:
    """One BERT-style layer, per token (traced with dropout, the configs' default, which sends
    SDPA to its math path): contiguous q, k^T, v (3h), the softmax, its dropout mask and the
    dropped probabilities (3 x a x s), the merged context (h); per sublayer a dropout mask, the
    residual sum LayerNorm keeps, its fp32 mean and rstd and its output (3h + 8); the intermediate
    output and its GELU (2f). Without dropout SDPA keeps q, k, v, its output and a logsumexp."""
    e, h, f, a, s = DTYPE_BYTES[step.dtype], arch.hidden, arch.intermediate, arch.heads, step.seq_len
    if arch.dropout > 0:
        attention = 3 * e * h + 3 * e * a * s + e * h
        sublayers = 2 * (3 * e * h + 2 * F32)
    else:
        attention = 4 * e * h + F32 * a
        sublayers = 2 * (2 * e * h + 2 * F32)
    return attention + sublayers + 2 * e * f + lora_bytes(arch, step)


@dataclass(frozen=True)
class Activations:
    """Per-token bytes kept for backward, split by where they live.

    Attributes:
        layer: one layer, without checkpointing.
        first_layer_discount: what the first layer does not keep when the embedding is frozen.
        head_forward: after the last layer, alive when the loss is computed (final norm,
            embedding dropout), per token.
        head_backward: of those, what backward still needs, per token.
        shared: bytes once per micro-step (RoPE tables, position ids).
        checkpoint_shared: bytes ``checkpoint()`` keeps besides the layer inputs (the boolean
            causal masks, b x s^2 each: a full and a sliding-window one where layers differ, and
            the position ids).
    """

    layer: int
    first_layer_discount: int
    head_forward: int
    head_backward: int
    shared: int
    checkpoint_shared: int


def model_activations(arch: Architecture, step: TrainStep) -> Activations:
    e, h, s, b = DTYPE_BYTES[step.dtype], arch.hidden, step.seq_len, step.micro_batch
    full = step.adapter == "none"
    checkpoint_shared = arch.attention_masks * b * s * s + 8 * s
    if arch.is_encoder:
        # Embeddings: their sum, LayerNorm output (+ fp32 mean, rstd), dropout mask and output
        # (the first layer's input); a frozen embedding keeps only that output. The all-ones fp32
        # attention mask is shared by every layer.
        embedding = (4 * e * h + 2 * F32) if full else e * h
        mask = F32 * b * s
        return Activations(encoder_layer_bytes(arch, step), first_layer_masks(arch, step), embedding, embedding,
                           mask, mask)
    if arch.family == "gpt2":
        embedding = ((2 if arch.dropout > 0 else 1) * e * h) if full else 0  # dropout mask + output
        head = e * h + 2 * F32 + embedding
        positions = 8 * s + (8 * b * s if b > 1 else 0)  # arange, and its per-sequence copy
        return Activations(gpt2_layer_bytes(arch, step), 0 if full else 2 * F32 + first_layer_masks(arch, step), head,
                           head - (0 if full else e * h), positions, checkpoint_shared)
    norm = norm_of(arch)
    # RoPE's cos and sin, (1, s, rotary_dim) in e each, per base
    rope = arch.rope_bases * 2 * s * arch.rotary_dim * e
    return Activations(decoder_layer_bytes(arch, step), first_layer_discount(arch, step),
                       norm(h, e, full, output_saved=True), norm(h, e, full, output_saved=full),
                       rope, checkpoint_shared)
