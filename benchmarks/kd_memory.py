"""Peak live bytes and step time of the chunked KD loss against a naive full-vocabulary KL.

    .venv/bin/python benchmarks/kd_memory.py [--rows 2048] [--hidden 512] [--chunk 256]

One forward + backward of an online-teacher KD loss at T = 2 over N rows, for V = 32k and 128k:
  naive        student and teacher logits [N, V] made at once, ``kd_kl_naive`` on them
  unchecked    ``token_losses``' per-chunk sums without the checkpoint (autograd keeps every
               chunk's logits and log-softmax for backward): why ``token_losses`` checkpoints
  chunked      ``token_losses(hidden, head, None, FullRows(...))``, the training loop's loss
The student head is trainable (full fine-tuning), so its [V, H] fp32 gradient is in every peak.
Peaks are live tensor bytes above what exists before the step (weights, hidden rows), counted by
``LiveBytesCounter``; times are a second, uncounted run. Threads are pinned to 2.

Measured here (2 cores, defaults, 4.5 minutes): peak x naive 0.125 (V = 32k) and 0.122
(V = 128k: 1,133 vs 9,254 MiB); time x naive 2.2 and 2.1 (backward recomputes both head matmuls).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import torch

from distill.runtime.train.livebytes import LiveBytesCounter, reachable_tensors
from distill.runtime.train.losses import FullRows, _Terms, token_losses

TEMPERATURE = 2.0
MIB = 2**20


def make_problem(rows: int, hidden: int, vocab: int) -> tuple[torch.Tensor, torch.nn.Linear, FullRows]:
    torch.manual_seed(0)
    student = torch.randn(rows, hidden, requires_grad=True)
    head = torch.nn.Linear(hidden, vocab, bias=False)
    teacher = FullRows(torch.randn(rows, hidden),
                       torch.nn.Linear(hidden, vocab, bias=False).requires_grad_(False))
    return student, head, teacher


def kd_kl_naive(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The baseline: T^2 * KL(teacher || student) over all rows at once, in float32 (both
    log-softmaxes saved for backward, ~24 B x rows x vocab)."""
    student = student_logits.float() / temperature
    teacher = teacher_logits.float() / temperature
    kl = torch.nn.functional.kl_div(torch.log_softmax(student, -1), torch.log_softmax(teacher, -1),
                                    log_target=True, reduction="batchmean")
    return kl * temperature * temperature


def naive(hidden: torch.Tensor, head: torch.nn.Linear, teacher: FullRows, chunk: int) -> torch.Tensor:
    with torch.no_grad():
        teacher_logits = teacher.head(teacher.hidden)
    return kd_kl_naive(head(hidden), teacher_logits, TEMPERATURE)


def unchecked(hidden: torch.Tensor, head: torch.nn.Linear, teacher: FullRows, chunk: int) -> torch.Tensor:
    terms = _Terms(head, None, teacher, TEMPERATURE, "forward")
    sums = sum(terms.chunk_sums(hidden[start:start + chunk], start) for start in range(0, hidden.shape[0], chunk))
    return sums[1] * TEMPERATURE**2 / hidden.shape[0]


def chunked(hidden: torch.Tensor, head: torch.nn.Linear, teacher: FullRows, chunk: int) -> torch.Tensor:
    return token_losses(hidden, head, None, teacher, ce_weight=0.0, kl_weight=1.0, temperature=TEMPERATURE,
                        direction="forward", chunk_tokens=chunk).total


Loss = Callable[[torch.Tensor, torch.nn.Linear, FullRows, int], torch.Tensor]


def step(loss_fn: Loss, problem: tuple[torch.Tensor, torch.nn.Linear, FullRows], chunk: int) -> float:
    """Forward + backward; returns the loss, leaves gradients cleared."""
    hidden, head, teacher = problem
    loss = loss_fn(hidden, head, teacher, chunk)
    loss.backward()
    value = float(loss.detach())
    del loss
    hidden.grad, head.weight.grad = None, None
    return value


def measure(loss_fn: Loss, problem: tuple[torch.Tensor, torch.nn.Linear, FullRows],
            chunk: int) -> tuple[float, int, float]:
    """(loss, peak live bytes above the step's inputs, seconds of an uncounted second run)."""
    gc.collect()
    counter = LiveBytesCounter()
    baseline = counter.track_existing(reachable_tensors(*problem), "inputs")
    with counter:
        value = step(loss_fn, problem, chunk)
    start = time.perf_counter()
    step(loss_fn, problem, chunk)
    return value, counter.peak - baseline, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"KD loss forward+backward, N = {args.rows} rows, H = {args.hidden}, chunk = {args.chunk} rows, "
          f"T = {TEMPERATURE}, fp32, {torch.get_num_threads()} threads")
    print(f"{'vocab':>7} {'variant':>9} {'loss':>10} {'peak MiB':>9} {'x naive':>8} {'N*V*4 B':>8} "
          f"{'seconds':>8} {'x naive':>8}")
    for vocab in (32_000, 128_000):
        problem = make_problem(args.rows, args.hidden, vocab)
        base = None
        for name, loss_fn in (("naive", naive), ("unchecked", unchecked), ("chunked", chunked)):
            value, peak, seconds = measure(loss_fn, problem, args.chunk)
            base = base or (peak, seconds)
            print(f"{vocab:>7,} {name:>9} {value:>10.6f} {peak / MIB:>9.1f} {peak / base[0]:>8.3f} "
                  f"{peak / (args.rows * vocab * 4):>8.2f} {seconds:>8.2f} {seconds / base[1]:>8.2f}")
        del problem
    print("peak = live tensor bytes above weights and hidden rows; includes the head's [V, H] fp32 gradient "
          f"({args.hidden} x V x 4 B). 'N*V*4 B' = peak in units of one fp32 [N, V] logits tensor.")


if __name__ == "__main__":
    main()
