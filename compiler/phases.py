"""Memory of the stages around training: teacher generation (synthesis), teacher-logit caching,
and the fixed costs of a CUDA device. Estimates from shapes; unlike the training step they are
not yet traced (say so where they are printed)."""

from __future__ import annotations

from distill.compiler.arch import Architecture
from distill.compiler.memory import DTYPE_BYTES, F32, Term, layer_transient, weight_bytes

# Measured on common setups, not here (no GPU in this environment): the CUDA context and
# cuBLAS/cuDNN handles take 300-600 MiB outside PyTorch's allocator; the caching allocator's
# fragmentation adds ~10% over the live tensors. Assumptions, printed as such.
CUDA_CONTEXT_BYTES = 512 * 2**20
FRAGMENTATION = 0.10
# Instruction template + chunk, in tokens, around each synthesis prompt.
PROMPT_OVERHEAD_TOKENS = 200


def cuda_overheads(tensor_peak: int) -> tuple[Term, ...]:
    return (Term("CUDA context", CUDA_CONTEXT_BYTES, "assumed 512 MiB (context, cuBLAS handles)"),
            Term("fragmentation", int(tensor_peak * FRAGMENTATION),
                 f"assumed {FRAGMENTATION:.0%} of the tensor peak"))


def generation_terms(teacher: Architecture, dtype: str, quant: str, batch: int,
                     prompt_tokens: int, new_tokens: int) -> tuple[Term, ...]:
    """Teacher weights, the KV cache of ``batch`` sequences at full length, one decode step's
    logits in fp32 and the prefill's largest transient (one layer's MLP on the prompt)."""
    e = DTYPE_BYTES[dtype]
    length = prompt_tokens + new_tokens
    kv = 2 * teacher.layers * teacher.kv_dim * e * batch * length
    return (weight_bytes(teacher, "causal-lm", dtype, quant),  # type: ignore[arg-type]
            Term("KV cache", kv, f"2 x {teacher.layers} layers x {teacher.kv_dim} x {e} B x "
                 f"{batch} seqs x {length} tokens"),
            Term("decode logits", batch * teacher.vocab * F32, f"{batch} x {teacher.vocab:,} x 4 B"),
            layer_transient(teacher, batch * prompt_tokens, e))


def teacher_forward_terms(teacher: Architecture, dtype: str, quant: str, tokens: int,
                          top_k: int) -> tuple[Term, ...]:
    """Caching top-k teacher logits: weights, one layer's transient, the micro-batch's logits and
    the fp16 values + int32 indices kept."""
    e = DTYPE_BYTES[dtype]
    return (weight_bytes(teacher, "causal-lm", dtype, quant),  # type: ignore[arg-type]
            layer_transient(teacher, tokens, e),
            Term("teacher logits", tokens * teacher.vocab * (e + F32),
                 f"{tokens:,} x {teacher.vocab:,} x ({e} + 4 fp32 for top-k)"),
            Term("top-k", tokens * top_k * 6, f"{tokens:,} x {top_k} x (2 B value + 4 B index)"))
