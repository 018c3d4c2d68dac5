"""What one micro-batch's loss is: CE on the learned tokens, KL to the teacher (online, or from the
top-k cache), hidden-state matching through learned projections, with the Distillfile's weights.

Rows: the loss runs on the positions whose next token is learned (labels shifted by one, as HF
does), gathered in row-major (example, position) order; the cache stores its rows in that same
order, so ``TopKCache.rows`` lines up with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from distill.runtime.placement import Placement
from distill.runtime.train.data import Encoded, collate
from distill.runtime.train.hidden import HiddenProjector
from distill.runtime.train.losses import Direction, FullRows, TopKRows, token_losses
from distill.runtime.train.student import Head, causal_forward, final_rows

if TYPE_CHECKING:
    from distill.runtime.train.teacher_cache import TopKCache


def _identity(rows: torch.Tensor) -> torch.Tensor:
    return rows


@dataclass(frozen=True)
class Weights:
    """The Distillfile's loss weights and KL settings, resolved for this run (KL off when the
    plan's KD mode gives no teacher logits)."""

    ce: float
    kl: float
    temperature: float
    direction: Direction
    hidden: float
    chunk_tokens: int


@dataclass
class Objective:
    """The student, what teaches it, how the loss is weighted, and where it all runs."""

    student: Any
    task: str
    head: Head | None
    weights: Weights
    placement: Placement
    teacher: Any = None
    teacher_head: Head | None = None
    cache: TopKCache | None = None
    projector: HiddenProjector | None = None
    engine: Any = None  # the student as the loop runs it (DDP/FSDP-wrapped); the student itself when alone

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = self.student

    def trainables(self) -> dict[str, torch.nn.Module]:
        modules = {"student": self.student}
        if self.projector is not None:
            modules["projector"] = self.projector
        return modules

    def loss(self, batch: dict[str, torch.Tensor],
             examples: Sequence[Encoded]) -> tuple[torch.Tensor, dict[str, float]]:
        """The micro-batch's weighted loss and its parts (floats, for the metrics), computed under
        the plan's autocast: the student, the teacher, the chunked loss and the projector all see
        the same precision (backward runs outside it, as torch.autocast wants)."""
        with self.placement.autocast():
            return self._loss(batch, examples)

    def _loss(self, batch: dict[str, torch.Tensor],
              examples: Sequence[Encoded]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.task == "extractive-qa":
            loss = self.engine(**batch).loss * self.weights.ce
            return loss, {"loss": float(loss.detach()), "ce": float(loss.detach())}
        out = causal_forward(self.engine, batch, self.head, hidden=self.projector is not None)
        mask = batch["labels"][:, 1:] != -100
        rows, targets = out.rows[:, :-1][mask], batch["labels"][:, 1:][mask]
        teacher_out = self._teacher_forward(batch)
        signal = self._signal(teacher_out, mask, examples)
        parts = token_losses(rows, self.head or _identity, targets if self.weights.ce > 0 else None, signal,
                             ce_weight=self.weights.ce, kl_weight=self.weights.kl if signal is not None else 0.0,
                             temperature=self.weights.temperature, direction=self.weights.direction,
                             chunk_tokens=self.weights.chunk_tokens)
        total, logged = parts.total, {}
        if self.projector is not None and teacher_out is not None:
            hidden = self.projector(out.hidden_states, teacher_out.hidden_states, batch["attention_mask"].bool())
            total = total + self.weights.hidden * hidden
            logged["hidden"] = float(hidden.detach())
        logged.update({key: float(value) for key, value in (("ce", parts.ce), ("kl", parts.kl)) if value is not None})
        return total, {"loss": float(total.detach()), **logged}

    def _teacher_forward(self, batch: dict[str, torch.Tensor]) -> Any:
        online = self.teacher is not None and (self.cache is None or self.projector is not None)
        if not online:
            return None
        with torch.no_grad():
            if self.projector is None and self.teacher_head is not None:
                return final_rows(self.teacher, batch)
            return causal_forward(self.teacher, batch, self.teacher_head, hidden=self.projector is not None)

    def _signal(self, teacher_out: Any, mask: torch.Tensor, examples: Sequence[Encoded]) -> TopKRows | FullRows | None:
        if self.weights.kl <= 0:
            return None
        if self.cache is not None:
            return self.cache.rows([example.id for example in examples], mask.device)
        if teacher_out is None:
            return None
        return FullRows(teacher_out.rows[:, :-1][mask], self.teacher_head or _identity)

    def evaluate(self, data: Sequence[Encoded], pad_id: int, micro: int) -> float:
        """Mean CE per learned token (causal) or per example (extractive) on ``data``: the
        validation loss early stopping watches; no teacher involved."""
        device = self.placement.torch_device
        total, count = 0.0, 0
        was_training = self.engine.training
        self.engine.eval()
        with torch.no_grad(), self.placement.autocast():
            for start in range(0, len(data), micro):
                batch = {k: v.to(device) for k, v in collate(data[start:start + micro], pad_id).items()}
                loss, weight = self._eval_batch(batch)
                total, count = total + loss * weight, count + weight
        self.engine.train(was_training)
        return total / max(count, 1)

    def _eval_batch(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        if self.task == "extractive-qa":
            return float(self.engine(**batch).loss), int(batch["input_ids"].shape[0])
        out = causal_forward(self.engine, batch, self.head, hidden=False)
        mask = batch["labels"][:, 1:] != -100
        rows, targets = out.rows[:, :-1][mask], batch["labels"][:, 1:][mask]
        parts = token_losses(rows, self.head or _identity, targets, None, ce_weight=1.0, kl_weight=0.0,
                             temperature=1.0, direction="forward", chunk_tokens=self.weights.chunk_tokens)
        return float(parts.total), int(targets.numel())
