"""Distillation losses.

The KL helpers here are what ``distill.runtime.memtrace`` runs for online KD and what the
planner's memory model describes (``distill.compiler.memory._kd_terms``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

KD_TEMPERATURE = 2.0


def kd_kl_naive(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                temperature: float = KD_TEMPERATURE) -> torch.Tensor:
    """T^2 * KL(teacher || student) at temperature T over all tokens, in float32, at once.

    Holds several (tokens x vocab) float32 tensors: both log-softmaxes (saved for backward) and
    the divided logits, which is why DESIGN.md puts it at ~24 bytes x tokens x vocab.
    """
    vocab = student_logits.shape[-1]
    student = student_logits.float().reshape(-1, vocab) / temperature
    teacher = teacher_logits.float().reshape(-1, vocab) / temperature
    kl = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True,
                  reduction="batchmean")
    return kl * temperature * temperature


class _ChunkedKL(torch.autograd.Function):
    """The KD loss chunk by chunk, with its gradient computed in forward.

    Autograd would save every chunk's log-softmax until backward, so the chunks would not free
    anything; instead each chunk's gradient d(loss)/d(logits) = T * (softmax(s/T) - softmax(t/T))
    / rows is written into one buffer shaped like the student logits (tokens x vocab x the
    student's dtype bytes) and the chunk's float32 temporaries (a few x chunk x vocab x 4 bytes)
    die before the next chunk. Backward scales that buffer in place, so the graph can be
    backpropagated once only (no ``retain_graph``).
    """

    @staticmethod
    def forward(ctx: Any, student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                chunk: int) -> torch.Tensor:
        rows = student.shape[0]
        grad = torch.empty_like(student)
        total = torch.zeros((), dtype=torch.float32, device=student.device)
        for start in range(0, rows, chunk):
            log_p = F.log_softmax(student[start:start + chunk].float() / temperature, -1)
            log_q = F.log_softmax(teacher[start:start + chunk].float() / temperature, -1)
            q = log_q.exp()
            total += (q * (log_q - log_p)).sum()
            grad[start:start + chunk] = (log_p.exp() - q) * (temperature / rows)
            del log_p, log_q, q
        ctx.save_for_backward(grad)
        ctx.used = False
        return total * (temperature * temperature / rows)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.used:
            raise RuntimeError("kd_kl_chunked supports a single backward (no retain_graph)")
        ctx.used = True
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_out), None, None, None


def kd_kl_chunked(student_logits: torch.Tensor, teacher_logits: torch.Tensor, chunk_tokens: int,
                  temperature: float = KD_TEMPERATURE) -> torch.Tensor:
    """Same value and gradient as ``kd_kl_naive``, over slices of ``chunk_tokens`` rows."""
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be > 0 (got {chunk_tokens})")
    vocab = student_logits.shape[-1]
    return _ChunkedKL.apply(student_logits.reshape(-1, vocab),
                            teacher_logits.detach().reshape(-1, vocab), temperature, chunk_tokens)
