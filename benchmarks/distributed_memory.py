"""Predicted vs measured per-rank peak memory of DDP and FSDP training steps (torchrun, gloo, CPU).

    .venv/bin/python benchmarks/distributed_memory.py [--cases NAME ...]

For each configuration, ``torchrun --nproc_per_node 2`` runs this file as a worker: every rank
measures its own step with ``distill.runtime.train.memtrace.measure_step`` (the student wrapped in DDP
or FSDP as accelerate wraps it, see ``wrap_distributed``) and writes its peak; the planner's
arithmetic (``distill.compiler.distributed.estimate_step`` with ``processes=2``) predicts the rank
that holds the most. Prints predicted vs each rank's measured peak; exits 1 if any rank is off by
more than 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distill.compiler.trainstep import TrainStep

BOUND = 0.10
WORLD = 2
LLAMA = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=2000, tie_word_embeddings=False)
QWEN2 = dict(model_type="qwen2", hidden_size=192, intermediate_size=512, num_hidden_layers=3,
             num_attention_heads=6, num_key_value_heads=2, vocab_size=3000, tie_word_embeddings=True)
# q/k norms (2 x head_dim per layer, after o_proj) inside each layer's flat parameter.
QWEN3 = dict(model_type="qwen3", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=2000, tie_word_embeddings=False)
GEMMA3 = dict(model_type="gemma3_text", hidden_size=256, intermediate_size=688, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=1, head_dim=64, vocab_size=2000,
              sliding_window=64, sliding_window_pattern=2)
ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA = dict(adapter="lora", lora_r=8, lora_targets=ALL)


@dataclass(frozen=True)
class Case:
    name: str
    config: dict
    step: dict  # TrainStep fields; processes and strategy are added


CASES = (
    Case("llama full ddp b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, strategy="ddp")),
    Case("llama full fsdp b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, strategy="fsdp")),
    Case("llama lora ddp b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, strategy="ddp", **LORA)),
    Case("llama lora fsdp b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, strategy="fsdp", **LORA)),
    Case("qwen2 full fsdp b4 s64", QWEN2, dict(micro_batch=4, seq_len=64, strategy="fsdp")),
    Case("qwen2 lora fsdp b2 s128", QWEN2, dict(micro_batch=2, seq_len=128, strategy="fsdp", **LORA)),
    Case("qwen2 full ddp ckpt b2 s128", QWEN2, dict(micro_batch=2, seq_len=128, strategy="ddp", checkpointing=True)),
    Case("llama full fsdp ckpt b2 s128", LLAMA, dict(micro_batch=2, seq_len=128, strategy="fsdp", checkpointing=True)),
    Case("qwen3 full fsdp b2 s128", QWEN3, dict(micro_batch=2, seq_len=128, strategy="fsdp")),
    Case("gemma3_text full fsdp b2 s128", GEMMA3, dict(micro_batch=2, seq_len=128, strategy="fsdp")),
)


def _train_step(case: Case) -> TrainStep:
    from distill.compiler.trainstep import TrainStep

    return TrainStep(processes=WORLD, **case.step)


def predict(case: Case) -> tuple[int, str]:
    """(predicted per-rank peak, its phase), no torch."""
    from distill.compiler.arch import architecture
    from distill.compiler.distributed import estimate_step

    memory = estimate_step(architecture(case.config), "causal-lm", _train_step(case), "cpu")
    return memory.peak, memory.peak_phase


def _worker(case: Case, out: Path) -> None:
    """One rank: measure its step, write {"rank", "peak", ...} to out/rank<r>.json."""
    import torch
    import torch.distributed as dist

    from distill.runtime.train.memtrace import measure_step

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    measured = measure_step(case.config, _train_step(case))
    (out / f"rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "peak": measured.peak_bytes, "phase": measured.peak_phase,
         "by_category": measured.by_category, "untracked": measured.untracked_bytes}))
    dist.barrier()
    dist.destroy_process_group()


def measure(case: Case, timeout: float = 300) -> list[dict]:
    """Runs the case under torchrun with WORLD processes; each rank's measurement."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "case.json").write_text(json.dumps(asdict(case)))
        torchrun = Path(sys.executable).with_name("torchrun")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        done = subprocess.run([str(torchrun), "--nproc_per_node", str(WORLD), "--master_port", str(_free_port()),
                               __file__, "--worker", str(out)],
                              capture_output=True, text=True, timeout=timeout, env=env)
        ranks = sorted(out.glob("rank*.json"))
        if done.returncode != 0 or len(ranks) != WORLD:
            raise RuntimeError(f"torchrun failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return [json.loads(path.read_text()) for path in ranks]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", help="names of the cases to run (default: all)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        _worker(Case(**json.loads((args.worker / "case.json").read_text())), args.worker)
        return 0
    cases = [c for c in CASES if not args.cases or c.name in args.cases]
    print(f"{'configuration (2 ranks)':<30} {'predicted':>12} {'rank 0':>12} {'rank 1':>12} {'error':>8}  peak phase")
    worst, start = 0.0, time.perf_counter()
    for case in cases:
        predicted, phase = predict(case)
        ranks = measure(case)
        errors = [(predicted - r["peak"]) / r["peak"] for r in ranks]
        error = max(errors, key=abs)
        worst = max(worst, abs(error))
        print(f"{case.name:<30} {predicted:>12,} {ranks[0]['peak']:>12,} {ranks[1]['peak']:>12,} "
              f"{error:>+8.2%}  {phase}")
    print(f"{len(cases)} configurations x {WORLD} ranks, worst error {worst:.2%} (bound {BOUND:.0%}), "
          f"{time.perf_counter() - start:.0f} s")
    return 0 if worst <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
