"""Predicted vs measured peak memory of real CPU training steps.

    .venv/bin/python benchmarks/planner_accuracy.py [--quick]

For each configuration the planner's arithmetic (``distill.compiler.distributed.estimate_step``, no
torch) predicts the peak live tensor bytes of one micro-step, and ``distill.runtime.train.memtrace``
runs that step on real tensors and measures it. Prints the table and the worst relative error;
exits 1 if any row is off by more than 3%.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch

from distill.compiler.arch import architecture
from distill.compiler.distributed import estimate_step
from distill.compiler.trainstep import TrainStep
from distill.runtime.train.memtrace import measure_step

BOUND = 0.03  # issue 14: the runtime's own step within 3%
LLAMA = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=2000, tie_word_embeddings=False)
QWEN2 = dict(model_type="qwen2", hidden_size=192, intermediate_size=512, num_hidden_layers=3,
             num_attention_heads=6, num_key_value_heads=2, vocab_size=3000, tie_word_embeddings=True)
GEMMA2 = dict(model_type="gemma2", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=2000)
GEMMA = dict(GEMMA2, model_type="gemma")
# Qwen3 and Gemma 3 add per-head q/k norms; Gemma 3 also has one kv head (as gemma-3-1b) and a
# sliding window shorter than the sequences, global attention on every 3rd layer (two masks).
QWEN3 = dict(model_type="qwen3", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=2000, tie_word_embeddings=True)
GEMMA3 = dict(model_type="gemma3_text", hidden_size=256, intermediate_size=688, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=1, head_dim=64, vocab_size=2000, sliding_window=64,
              sliding_window_pattern=3)
PHI3 = dict(model_type="phi3", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=2000, pad_token_id=0)
BERT = dict(model_type="bert", hidden_size=256, intermediate_size=512, num_hidden_layers=2,
            num_attention_heads=4, vocab_size=2000, max_position_embeddings=512)
DISTILBERT = dict(model_type="distilbert", dim=256, hidden_dim=512, n_layers=2, n_heads=4,
                  vocab_size=2000, max_position_embeddings=512)
GPT2 = dict(model_type="gpt2", n_embd=256, n_layer=2, n_head=4, vocab_size=2000, n_positions=512)
GPT2_NO_DROPOUT = dict(GPT2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Case:
    name: str
    config: dict
    step: TrainStep
    teacher: dict | None = None
    head: str = "causal-lm"


def _cases() -> list[Case]:
    teacher = dict(LLAMA, num_hidden_layers=4)
    lora = dict(adapter="lora", lora_r=8, lora_targets=ALL)
    rows = [
        ("llama full b1 s256", LLAMA, dict(micro_batch=1, seq_len=256)),
        ("llama full b4 s64", LLAMA, dict(micro_batch=4, seq_len=64)),
        ("llama full b4 s256", LLAMA, dict(micro_batch=4, seq_len=256)),
        ("llama full ckpt b2 s256", LLAMA, dict(micro_batch=2, seq_len=256, checkpointing=True)),
        ("llama full eager b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, attention="eager")),
        ("llama full bf16 b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, dtype="bfloat16")),
        ("llama lora b1 s256", LLAMA, dict(micro_batch=1, seq_len=256, **lora)),
        ("llama lora attn-only b4 s128", LLAMA,
         dict(micro_batch=4, seq_len=128, adapter="lora", lora_r=8, lora_targets=ALL[:4])),
        ("llama lora ckpt b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, checkpointing=True, **lora)),
        ("llama lora bf16 b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, dtype="bfloat16", **lora)),
        ("llama qlora b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, **{**lora, "adapter": "qlora"})),
        ("llama lora 8bit b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, base_quant="8bit", **lora)),
        ("qwen2 full b2 s128", QWEN2, dict(micro_batch=2, seq_len=128)),
        ("qwen2 full ckpt b4 s128", QWEN2, dict(micro_batch=4, seq_len=128, checkpointing=True)),
        ("qwen2 lora b4 s64", QWEN2, dict(micro_batch=4, seq_len=64, lora_r=16, adapter="lora", lora_targets=ALL)),
        ("qwen2 full bf16 b1 s512", QWEN2, dict(micro_batch=1, seq_len=512, dtype="bfloat16")),
        ("gpt2 full b1 s256", GPT2, dict(micro_batch=1, seq_len=256)),
        ("gpt2 full b4 s64", GPT2, dict(micro_batch=4, seq_len=64)),
        ("gpt2 full ckpt b2 s128", GPT2, dict(micro_batch=2, seq_len=128, checkpointing=True)),
        ("gpt2 full bf16 b2 s128", GPT2, dict(micro_batch=2, seq_len=128, dtype="bfloat16")),
        ("gpt2 lora b2 s128", GPT2, dict(micro_batch=2, seq_len=128, adapter="lora", lora_r=8,
                                         lora_targets=("c_attn", "c_proj", "c_fc"))),
        ("gpt2 no-dropout b2 s256", GPT2_NO_DROPOUT, dict(micro_batch=2, seq_len=256)),
        ("gemma full ckpt b2 s128", GEMMA, dict(micro_batch=2, seq_len=128, checkpointing=True)),
        ("gemma2 full b2 s128", GEMMA2, dict(micro_batch=2, seq_len=128)),
        ("gemma2 lora b1 s256", GEMMA2, dict(micro_batch=1, seq_len=256, **lora)),
        ("gemma2 full ckpt b2 s128", GEMMA2, dict(micro_batch=2, seq_len=128, checkpointing=True)),
        ("llama full b2 s128 acc2", LLAMA, dict(micro_batch=2, seq_len=128, accumulation=2)),
        ("llama lora b2 s128 acc2", LLAMA, dict(micro_batch=2, seq_len=128, accumulation=2, **lora)),
        ("qwen2 full ckpt b2 s128 acc2", QWEN2, dict(micro_batch=2, seq_len=128, checkpointing=True, accumulation=2)),
        ("gpt2 full b2 s128 acc2", GPT2, dict(micro_batch=2, seq_len=128, accumulation=2)),
        ("llama lora dropout b1 s256", LLAMA, dict(micro_batch=1, seq_len=256, lora_dropout=0.05, **lora)),
        ("llama lora dropout bf16 b1 s256", LLAMA, dict(micro_batch=1, seq_len=256, lora_dropout=0.05,
                                                        dtype="bfloat16", **lora)),
        ("llama qlora dropout acc2 b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, lora_dropout=0.05, accumulation=2,
                                                         **{**lora, "adapter": "qlora"})),
        ("qwen2 lora dropout ckpt b2 s128", QWEN2, dict(micro_batch=2, seq_len=128, lora_dropout=0.05,
                                                        checkpointing=True, **lora)),
        ("gpt2 lora dropout b2 s128", GPT2, dict(micro_batch=2, seq_len=128, adapter="lora", lora_r=8,
                                                 lora_dropout=0.05, lora_targets=("c_attn", "c_proj", "c_fc"))),
        ("qwen3 full b2 s128", QWEN3, dict(micro_batch=2, seq_len=128)),
        ("qwen3 full bf16 b2 s128", QWEN3, dict(micro_batch=2, seq_len=128, dtype="bfloat16")),
        ("qwen3 full ckpt b2 s128", QWEN3, dict(micro_batch=2, seq_len=128, checkpointing=True)),
        ("qwen3 lora b2 s128", QWEN3, dict(micro_batch=2, seq_len=128, **lora)),
        ("qwen3 lora ckpt b2 s128", QWEN3, dict(micro_batch=2, seq_len=128, checkpointing=True, **lora)),
        ("gemma3 full b2 s128", GEMMA3, dict(micro_batch=2, seq_len=128)),
        ("gemma3 full bf16 b2 s128", GEMMA3, dict(micro_batch=2, seq_len=128, dtype="bfloat16")),
        ("gemma3 full ckpt b2 s128", GEMMA3, dict(micro_batch=2, seq_len=128, checkpointing=True)),
        ("gemma3 lora b1 s256", GEMMA3, dict(micro_batch=1, seq_len=256, **lora)),
        ("gemma3 lora ckpt bf16 b2 s128", GEMMA3, dict(micro_batch=2, seq_len=128, checkpointing=True,
                                                       dtype="bfloat16", **lora)),
        ("phi3 full b2 s128", PHI3, dict(micro_batch=2, seq_len=128)),
        ("phi3 lora b1 s256", PHI3, dict(micro_batch=1, seq_len=256, adapter="lora", lora_r=8,
                                         lora_targets=("qkv_proj", "o_proj", "gate_up_proj", "down_proj"))),
        ("phi3 lora dropout b1 s256", PHI3, dict(micro_batch=1, seq_len=256, adapter="lora", lora_r=8,
                                                 lora_dropout=0.05,
                                                 lora_targets=("qkv_proj", "o_proj", "gate_up_proj", "down_proj"))),
    ]
    cases = [Case(name, config, TrainStep(**step)) for name, config, step in rows]
    cases += [Case(name, config, TrainStep(**step), head="extractive-qa") for name, config, step in (
        ("bert qa b4 s128", BERT, dict(micro_batch=4, seq_len=128)),
        ("bert qa lora b2 s256", BERT, dict(micro_batch=2, seq_len=256, adapter="lora", lora_r=8,
                                           lora_targets=("query", "key", "value", "dense"))),
        ("distilbert qa b4 s128", DISTILBERT, dict(micro_batch=4, seq_len=128)),
    )]
    qlora_bf16 = dict(micro_batch=2, seq_len=128, dtype="bfloat16", **{**lora, "adapter": "qlora"})
    cases += [Case(name, config, TrainStep(**step)) for name, config, step in (
        # Several loss chunks per micro-batch (rows = b x (s - 1)).
        ("llama full b2 s256 chunk128", LLAMA, dict(micro_batch=2, seq_len=256, loss_chunk_tokens=128)),
        ("llama lora b4 s512 chunk1024", LLAMA, dict(micro_batch=4, seq_len=512, **lora)),
        ("llama lora bf16 b2 s256 chunk64", LLAMA, dict(micro_batch=2, seq_len=256, dtype="bfloat16",
                                                       loss_chunk_tokens=64, **lora)),
        ("qwen2 full b2 s256 chunk128", QWEN2, dict(micro_batch=2, seq_len=256, loss_chunk_tokens=128)),
        ("qwen2 lora ckpt b4 s128 chunk64", QWEN2, dict(micro_batch=4, seq_len=128, checkpointing=True,
                                                       loss_chunk_tokens=64, lora_r=16, adapter="lora",
                                                       lora_targets=ALL)),
        ("gemma2 lora b2 s256 chunk128", GEMMA2, dict(micro_batch=2, seq_len=256, loss_chunk_tokens=128, **lora)),
        ("gpt2 full b2 s256 chunk128", GPT2, dict(micro_batch=2, seq_len=256, loss_chunk_tokens=128)),
        ("llama qlora bf16 b2 s128", LLAMA, qlora_bf16),
        ("phi3 qlora bf16 b2 s128", PHI3, dict(qlora_bf16, lora_targets=("qkv_proj", "o_proj"))),
        # Under bf16 autocast (CPU autocast here; the planner's precision on GPUs).
        ("llama lora bf16 autocast b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, dtype="bfloat16",
                                                        precision="bf16", **lora)),
        ("llama lora dropout bf16 autocast b1 s256", LLAMA, dict(micro_batch=1, seq_len=256, dtype="bfloat16",
                                                                precision="bf16", lora_dropout=0.05, **lora)),
        ("llama full bf16 autocast b2 s256 chunk128", LLAMA, dict(micro_batch=2, seq_len=256, dtype="bfloat16",
                                                                 precision="bf16", loss_chunk_tokens=128)),
        ("llama full fp32 autocast b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, precision="bf16")),
        ("phi3 qlora bf16 autocast b2 s128", PHI3, dict(qlora_bf16, precision="bf16",
                                                         lora_targets=("qkv_proj", "o_proj"))),
    )]
    cases += [
        Case("llama KD b1 s256", LLAMA, TrainStep(micro_batch=1, seq_len=256, kd="online"), teacher),
        Case("llama KD b2 s128 chunk64", LLAMA,
             TrainStep(micro_batch=2, seq_len=128, kd="online", loss_chunk_tokens=64), teacher),
        Case("llama KD lora b2 s128 chunk32", LLAMA,
             TrainStep(micro_batch=2, seq_len=128, kd="online", loss_chunk_tokens=32, **lora), teacher),
        Case("llama KD bf16 teacher b2 s256 chunk128", LLAMA,
             TrainStep(micro_batch=2, seq_len=256, kd="online", loss_chunk_tokens=128, teacher_dtype="bfloat16",
                       **lora), teacher),
    ]
    return cases


QUICK = ("llama full b4 s64", "llama lora ckpt b2 s128", "qwen2 full b2 s128", "llama KD b2 s128 chunk64",
         "qwen2 full ckpt b2 s128 acc2", "llama lora dropout b1 s256",
         "gpt2 lora b2 s128", "gemma2 full b2 s128", "bert qa b4 s128", "qwen2 full b2 s256 chunk128",
         "phi3 qlora bf16 b2 s128", "llama KD lora b2 s128 chunk32", "qwen3 lora ckpt b2 s128",
         "gemma3 full b2 s128")


def compare(case: Case) -> tuple[int, int, str]:
    """(predicted peak, measured peak, predicted peak phase)."""
    teacher = architecture(case.teacher) if case.teacher else None
    predicted = estimate_step(architecture(case.config), case.head, case.step, "cpu", teacher)
    measured = measure_step(case.config, case.step, case.teacher, head=case.head)
    return predicted.peak, measured.peak_bytes, predicted.peak_phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the rows the tests run")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cases = [c for c in _cases() if not args.quick or c.name in QUICK]
    print(f"{'configuration':<40} {'predicted':>13} {'measured':>13} {'error':>8}  peak phase")
    worst = 0.0
    start = time.perf_counter()
    for case in cases:
        predicted, measured, phase = compare(case)
        error = (predicted - measured) / measured
        worst = max(worst, abs(error))
        print(f"{case.name:<40} {predicted:>13,} {measured:>13,} {error:>+8.2%}  {phase}")
    print(f"{len(cases)} configurations, worst error {worst:.2%} (bound {BOUND:.0%}), "
          f"{time.perf_counter() - start:.0f} s")
    return 0 if worst <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
