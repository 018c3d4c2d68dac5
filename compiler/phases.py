"""Memory of the stages around training: teacher generation (synthesis), teacher-logit caching,
and the fixed costs of a CUDA device. Estimates from shapes; unlike the training step they are
not yet traced (say so where they are printed)."""

from __future__ import annotations

from distill.compiler.arch import Architecture, Head
from distill.compiler.memory import DTYPE_BYTES, F32, Term, layer_transient, weight_bytes
from distill.compiler.trainstep import ComputeDtype, Quant

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


def generation_terms(teacher: Architecture, dtype: ComputeDtype, quant: Quant, batch: int,
                     prompt_tokens: int, new_tokens: int) -> tuple[Term, ...]:
    """Teacher weights, the KV cache of ``batch`` sequences at full length, one decode step's
    logits in fp32 and the prefill's largest transient (one layer's MLP on the prompt)."""
    e = DTYPE_BYTES[dtype]
    length = prompt_tokens + new_tokens
    kv = 2 * teacher.layers * teacher.kv_dim * e * batch * length
    return (weight_bytes(teacher, "causal-lm", dtype, quant),
            Term("KV cache", kv, f"2 x {teacher.layers} layers x {teacher.kv_dim} x {e} B x "
                 f"{batch} seqs x {length} tokens"),
            Term("decode logits", batch * teacher.vocab * F32, f"{batch} x {teacher.vocab:,} x 4 B"),
            layer_transient(teacher, batch * prompt_tokens, e))


def teacher_forward_terms(teacher: Architecture, dtype: ComputeDtype, quant: Quant, tokens: int,
                          top_k: int) -> tuple[Term, ...]:
    """Caching top-k teacher logits: weights, one layer's transient, the micro-batch's logits and
    the fp16 values + int32 indices kept."""
    e = DTYPE_BYTES[dtype]
    return (weight_bytes(teacher, "causal-lm", dtype, quant),
            layer_transient(teacher, tokens, e),
            Term("teacher logits", tokens * teacher.vocab * (e + F32),
                 f"{tokens:,} x {teacher.vocab:,} x ({e} + 4 fp32 for top-k)"),
            Term("top-k", tokens * top_k * 6, f"{tokens:,} x {top_k} x (2 B value + 4 B index)"))


# The merge's check runs the first PROBE_SEQUENCES training examples, cut to PROBE_TOKENS tokens,
# through the adapter model and the merged one (``runtime/train/run.py``): enough to see a wrong
# merge in every layer, while their float32 logits stay small (4 x 128 x 128k vocab x 4 B = 256 MiB).
PROBE_SEQUENCES = 4
PROBE_TOKENS = 128


def merge_terms(student: Architecture, head: Head, adapter_params: int, seq_len: int) -> tuple[Term, ...]:
    """Merging adapters (``runtime/train/merge.py``): a quantized base is dequantized and the
    whole model turned to float32, the merge adds s x B x A to each adapted weight one matrix at
    a time, and the probe's logits of the adapter model and of the merged one are compared."""
    params = student.params(head)
    largest = max(linear.fan_in * linear.fan_out for linear in student.linears)
    vocab = 2 if head == "extractive-qa" else student.vocab
    per_sequence = min(seq_len, PROBE_TOKENS)
    tokens = PROBE_SEQUENCES * per_sequence
    return (Term("float32 model", params * F32, f"{params:,} params x 4 B"),
            Term("adapters", adapter_params * F32, f"{adapter_params:,} x 4 B"),
            Term("merge delta", largest * F32, f"s x B x A of the largest matrix: {largest:,} x 4 B"),
            Term("probe logits", 2 * tokens * vocab * F32,
                 f"adapter model and merged: 2 x {PROBE_SEQUENCES} x {per_sequence:,} tokens x {vocab:,} x 4 B"))


def evaluation_terms(model: Architecture, head: Head, dtype: ComputeDtype, quant: Quant,
                     seq_len: int) -> tuple[Term, ...]:
    """Evaluating an HF model (``runtime/evaluate/runners.py``): its weights as planned, one
    sequence at a time with eager attention under inference mode: a layer's working set, one
    layer's attention scores in float32 and the sequence's logits in float32."""
    e = DTYPE_BYTES[dtype]
    vocab = 2 if head == "extractive-qa" else model.vocab
    scores = model.heads * seq_len * seq_len * (e + F32)
    return (weight_bytes(model, head, dtype, quant),
            layer_transient(model, seq_len, e),
            Term("attention scores", scores, f"{model.heads} heads x {seq_len:,}^2 x ({e} + 4 softmax) B"),
            Term("logits", seq_len * vocab * (e + F32), f"{seq_len:,} tokens x {vocab:,} x ({e} + 4) B"))


# Host bytes per parameter of a verified export (the model read from its fp32 or bf16
# safetensors, converted, written, and run again beside torch to verify it), measured by
# ``benchmarks/export_memory.py`` as the slope between a 16M and a 68M model: GGUF (F16 file,
# llama.cpp's quantizer, verification in llama.cpp) 8.6 B, ONNX fp32 (optimum's export,
# verification in onnxruntime) 16.6 B. int8 is not measured (its verification refuses random
# weights there); it is planned as the fp32 export plus its int8 copy, one byte per weight.
EXPORT_BYTES_PER_PARAM = {"gguf": 8.6, "onnx": 16.6, "onnx:int8": 17.6}


def export_terms(student: Architecture, head: Head, kind: str) -> tuple[Term, ...]:
    """One verified export of the merged student (backends run on the CPU, in host memory)."""
    params = student.params(head)
    per = EXPORT_BYTES_PER_PARAM[kind]
    return (Term("export", int(params * per), f"{params:,} params x {per} B (benchmarks/export_memory.py)"),)
