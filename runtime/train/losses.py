"""Distillation losses.

``token_losses`` is the training loop's loss: CE plus a T^2-scaled KD divergence (forward KL,
reverse KL or JSD) against a cached top-k teacher (``TopKRows``) or an online one
(``FullRows``), chunked over rows so memory does not grow with rows x vocab. The planner's
memory model describes it (``distill.compiler.memory._loss_terms``) and
``distill.runtime.train.memtrace`` measures it inside the loop's step; change them only together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

KD_TEMPERATURE = 2.0


# --------------------------------------------------------------------------- training-loop losses

Direction = Literal["forward", "reverse", "jsd"]
Head = Callable[[torch.Tensor], torch.Tensor]
"""Hidden rows [n, H] -> logits [n, V]: the model's lm_head plus any final logit softcap."""

DIRECTIONS: tuple[Direction, ...] = ("forward", "reverse", "jsd")
# Floor of a tail bucket's probability: the teacher's 1 - sum(exp(top-k logprobs)) is ~0 or
# slightly negative from rounding when the top-k holds (nearly) all the mass (fp16 logprobs
# carry ~1e-3 relative error), and log(0) would make the bucket's KL term infinite.
TAIL_EPS = 1e-6
_LOG_HALF = math.log(0.5)


@dataclass(frozen=True)
class TopKRows:
    """A cached teacher: per row, its top-k token ids and their log-probabilities at temperature T.

    Attributes:
        indices: [N, k] int64 or int32 token ids.
        logprobs: [N, k] float16/float32, ``log_softmax(teacher_logits / T)`` at ``indices``.
        tail: [N] float32 log of the mass outside the top-k, computed before ``logprobs`` were
            rounded; ``None`` implies ``1 - sum(exp(logprobs))``. Stored beside fp16 log-probs it
            matters: their ~0.1% rounding alone would put ~1e-3 of mass in the tail of a top-k
            that holds everything (measured: KL off by 3.5% on a tiny model at k = V).
    """

    indices: torch.Tensor
    logprobs: torch.Tensor
    tail: torch.Tensor | None = None


@dataclass(frozen=True)
class FullRows:
    """An online teacher: its hidden rows [N, Ht] and its head; logits are made chunk by chunk
    under ``no_grad``."""

    hidden: torch.Tensor
    head: Head


@dataclass(frozen=True)
class LossParts:
    """``total`` is the differentiable weighted sum; ``ce`` and ``kl`` are detached means per row
    (``kl`` already T^2-scaled), None when that term is off."""

    total: torch.Tensor
    ce: torch.Tensor | None
    kl: torch.Tensor | None


def _compute_dtype(tensor: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; float32 and float64 stay (float64 keeps tests exact)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def topk_logprobs(teacher_logits: torch.Tensor, k: int, temperature: float) -> TopKRows:
    """The top-k of ``log_softmax(teacher_logits / T)`` over the last dim, computed in float32.

    Leading dims are kept ([..., V] -> [..., k]); the caller may store ``logprobs`` as fp16.
    """
    if not 0 < k <= teacher_logits.shape[-1]:
        raise ValueError(f"k must be in 1..{teacher_logits.shape[-1]} (got {k})")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    logprobs = F.log_softmax(_compute_dtype(teacher_logits) / temperature, dim=-1)
    values, indices = logprobs.topk(k, dim=-1)
    rest = logprobs.scatter(-1, indices, float("-inf"))
    tail = torch.logsumexp(rest, dim=-1).clamp_min(math.log(TAIL_EPS))
    return TopKRows(indices=indices, logprobs=values, tail=tail)


def divergence(log_t: torch.Tensor, log_s: torch.Tensor, direction: Direction) -> torch.Tensor:
    """Per-row divergence between two log-distributions over the last dim (summed over it).

    forward = KL(t || s), reverse = KL(s || t), jsd = 0.5 KL(t || m) + 0.5 KL(s || m) with
    m = (t + s) / 2, its log taken as logsumexp(log t, log s) + log 0.5 so it never underflows.
    """
    if direction == "forward":
        return (log_t.exp() * (log_t - log_s)).sum(-1)
    if direction == "reverse":
        return (log_s.exp() * (log_s - log_t)).sum(-1)
    log_m = torch.logaddexp(log_t, log_s) + _LOG_HALF
    return 0.5 * ((log_t.exp() * (log_t - log_m)).sum(-1) + (log_s.exp() * (log_s - log_m)).sum(-1))


def _with_tail(top: torch.Tensor) -> torch.Tensor:
    """[n, k] log-probabilities of the top-k ids -> [n, k + 1], the last column the tail bucket:
    log(max(1 - sum(exp(top)), TAIL_EPS)), i.e. the mass of every other token. For the student
    it is differentiable (through the k probabilities), so pushing mass into or out of the
    tail is rewarded as the teacher's tail says."""
    tail = (1.0 - top.exp().sum(-1, keepdim=True)).clamp_min(TAIL_EPS)
    return torch.cat([top, tail.log()], dim=-1)


def _teacher_logprobs(teacher: TopKRows | FullRows, rows: slice, log_s: torch.Tensor,
                      temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) log-probabilities of one chunk over the same support.

    FullRows: the full vocabulary; the teacher's logits are made here under no_grad and die
    with the chunk. TopKRows: k + 1 buckets, the cached ids and one tail for everything else.
    The bucket KL is the exact KL between the two distributions coarsened to those k + 1
    outcomes; it is <= the full KL (data processing) and equals it when the teacher's tail is
    ~0 or the student spreads its tail like the teacher, so a large k loses little.
    """
    if isinstance(teacher, FullRows):
        with torch.no_grad():
            logits = _compute_dtype(teacher.head(teacher.hidden[rows]))
            return F.log_softmax(logits / temperature, dim=-1), log_s
    indices = teacher.indices[rows].long()
    top = _compute_dtype(teacher.logprobs[rows]).to(log_s.dtype)
    if teacher.tail is None:
        log_t = _with_tail(top)
    else:
        log_t = torch.cat([top, teacher.tail[rows].to(log_s.dtype).unsqueeze(-1)], dim=-1)
    return log_t, _with_tail(log_s.gather(-1, indices))


@dataclass(frozen=True)
class _Terms:
    """What one chunk computes, shared by every chunk of a ``token_losses`` call."""

    head: Head
    targets: torch.Tensor | None
    teacher: TopKRows | FullRows | None
    temperature: float
    direction: Direction

    def chunk_sums(self, hidden: torch.Tensor, start: int) -> torch.Tensor:
        """[CE sum, KL sum] over the chunk's rows (0 for a term that is off), unscaled."""
        rows = slice(start, start + hidden.shape[0])
        logits = _compute_dtype(self.head(hidden))
        zero = logits.new_zeros(())
        ce = zero if self.targets is None else F.cross_entropy(logits, self.targets[rows], reduction="sum")
        if self.teacher is None:
            return torch.stack([ce, zero])
        log_s = F.log_softmax(logits / self.temperature, dim=-1)
        log_t, log_s = _teacher_logprobs(self.teacher, rows, log_s, self.temperature)
        return torch.stack([ce, divergence(log_t, log_s, self.direction).sum()])


def token_losses(hidden: torch.Tensor, head: Head, targets: torch.Tensor | None,
                 teacher: TopKRows | FullRows | None, *, ce_weight: float, kl_weight: float,
                 temperature: float, direction: Direction, chunk_tokens: int) -> LossParts:
    """CE and T^2-scaled KD divergence over N supervised rows, ``chunk_tokens`` rows at a time.

    Rows are positions already gathered and shifted by the caller (masks are the caller's).
    Each chunk runs under non-reentrant activation checkpointing: forward keeps only the
    chunk's two sums, backward recomputes the chunk's logits (student, and teacher for
    FullRows) and frees them before the next chunk. Gradients reach ``hidden`` and whatever
    parameters ``head`` uses, through ordinary autograd (grad scalers, accumulation, DDP hooks
    see a normal backward).

    Measured (``benchmarks/kd_memory.py``, N = 2048, H = 512, V = 128k, chunk 256, fp32 CPU):
    peak above the inputs 1,133 MiB (1.13 x one [N, V] fp32 tensor, of which the head's
    [V, H] gradient is 0.25) against 9,254 MiB (9.25 x) for ``kd_kl_naive`` on full logits and
    2,754 MiB (2.75 x) for the same chunks without checkpointing, whose saved log-softmaxes
    add up to N x V again. The price is time: 2.1 x the naive step, as backward redoes the
    student and teacher head matmuls (6 instead of 4 per chunk; mm is 2/3 of the profile).
    A custom autograd Function that computes the gradient inside forward (Liger-style) would
    skip that recompute with the same peak, but it has to name the head's parameters and
    write their gradients itself, which an arbitrary ``Head`` callable does not allow.

    Args:
        hidden: [N, H] student hidden rows.
        head: student head, hidden rows -> logits.
        targets: [N] int64 next-token ids; needed when ``ce_weight > 0``.
        teacher: cached top-k rows, online full rows, or None (no KD).
        ce_weight: weight of the CE mean per row (0 turns it off).
        kl_weight: weight of T^2 x divergence mean per row (0, or no teacher, turns it off).
        temperature: T > 0, applied to both student and teacher logits (TopKRows hold
            log-probabilities already at T).
        direction: "forward" KL(teacher || student), "reverse" KL(student || teacher), or
            "jsd" (beta 0.5).
        chunk_tokens: rows per chunk (> 0).

    Returns:
        LossParts with the differentiable total and detached per-row means.

    Raises:
        ValueError: bad weights, temperature, direction, chunk size or shapes, or no active term.
    """
    use_ce, use_kl = ce_weight > 0, kl_weight > 0 and teacher is not None
    _check_args(hidden, targets if use_ce else None, teacher if use_kl else None, ce_weight, kl_weight,
                temperature, direction, chunk_tokens)
    terms = _Terms(head, targets if use_ce else None, teacher if use_kl else None, temperature, direction)
    sums = torch.stack([
        checkpoint(terms.chunk_sums, hidden[start:start + chunk_tokens], start, use_reentrant=False)
        for start in range(0, hidden.shape[0], chunk_tokens)
    ]).sum(0)
    means = sums / hidden.shape[0]
    ce = means[0] if use_ce else None
    kl = means[1] * (temperature * temperature) if use_kl else None
    total = sum(w * term for w, term in ((ce_weight, ce), (kl_weight, kl)) if term is not None)
    assert isinstance(total, torch.Tensor)  # _check_args refused a loss with no active term
    return LossParts(total=total, ce=None if ce is None else ce.detach(), kl=None if kl is None else kl.detach())


def _check_args(hidden: torch.Tensor, targets: torch.Tensor | None, teacher: TopKRows | FullRows | None,
                ce_weight: float, kl_weight: float, temperature: float, direction: str,
                chunk_tokens: int) -> None:
    """Raises ValueError for arguments ``token_losses`` cannot use (targets/teacher: active only)."""
    if ce_weight < 0 or kl_weight < 0:
        raise ValueError(f"loss weights must be >= 0 (got ce {ce_weight}, kl {kl_weight})")
    if ce_weight > 0 and targets is None:
        raise ValueError("ce_weight > 0 needs targets")
    if targets is None and teacher is None:
        raise ValueError("no active loss: set ce_weight > 0, or kl_weight > 0 with a teacher")
    if temperature <= 0 or chunk_tokens <= 0:
        raise ValueError(f"temperature and chunk_tokens must be > 0 (got {temperature}, {chunk_tokens})")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS} (got {direction!r})")
    rows = hidden.shape[0]
    if hidden.dim() != 2 or rows == 0:
        raise ValueError(f"hidden must be [N, H] rows with N > 0 (got shape {tuple(hidden.shape)})")
    shapes = {"targets": targets, "teacher hidden": getattr(teacher, "hidden", None),
              "teacher indices": getattr(teacher, "indices", None)}
    for name, tensor in shapes.items():
        if tensor is not None and tensor.shape[0] != rows:
            raise ValueError(f"{name} has {tensor.shape[0]} rows, hidden has {rows}")
    if isinstance(teacher, TopKRows) and teacher.indices.shape != teacher.logprobs.shape:
        raise ValueError(f"top-k indices {tuple(teacher.indices.shape)} and logprobs "
                         f"{tuple(teacher.logprobs.shape)} differ in shape")
