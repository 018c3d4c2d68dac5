"""Hidden-state distillation: which student layer learns from which teacher layer, and the loss.

Layers are numbered as in HF ``output_hidden_states``: index 0 is the embedding output, i is
the output of block i (1-based).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

HiddenKind = Literal["mse", "cosine"]


def auto_layer_map(student_layers: int, teacher_layers: int) -> tuple[tuple[int, int], ...]:
    """Student block i (1..Ls) -> teacher block round(i * Lt / Ls), spread evenly over depth.

    Rounding is half up in integer arithmetic, (2 i Lt + Ls) // (2 Ls), so ties do not depend
    on float error or banker's rounding; the last student block always meets the last teacher
    block (i = Ls gives Lt). A result of 0 (teacher shallower than half the student) is raised
    to 1: block outputs are never matched to the embeddings.

    Example: 4 student and 12 teacher blocks give ((1, 3), (2, 6), (3, 9), (4, 12)).
    """
    if student_layers <= 0 or teacher_layers <= 0:
        raise ValueError(f"layer counts must be > 0 (got student {student_layers}, teacher {teacher_layers})")
    return tuple((i, max(1, (2 * i * teacher_layers + student_layers) // (2 * student_layers)))
                 for i in range(1, student_layers + 1))


def cut_layer_map(kept: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """A student cut from its teacher (``student.from_teacher``): student block i (1..Ls) is the
    teacher's block ``kept[i - 1] + 1`` (kept layers count from 0, blocks from 1), so each block
    is matched to the very block it was copied from, not to an evenly spaced one.

    Example: layers (0, 1, 5) kept give ((1, 1), (2, 2), (3, 6)).
    """
    if not kept:
        raise ValueError("a cut student keeps at least one layer")
    return tuple((i, layer + 1) for i, layer in enumerate(kept, start=1))


class HiddenProjector(torch.nn.Module):
    """Per layer pair, projects student states to the teacher's width and scores the match.

    One trainable ``nn.Linear(student_width, teacher_width, bias=False)`` per pair when the
    widths differ (initialised by torch's default, so deterministic under ``torch.manual_seed``;
    give its parameters to the optimizer), the identity when they agree. Math runs in float32;
    teacher states are detached (the teacher is frozen).
    """

    def __init__(self, pairs: Sequence[tuple[int, int]], student_width: int, teacher_width: int,
                 kind: HiddenKind) -> None:
        super().__init__()
        if not pairs:
            raise ValueError("HiddenProjector needs at least one (student, teacher) layer pair")
        if kind not in ("mse", "cosine"):
            raise ValueError(f"kind must be 'mse' or 'cosine' (got {kind!r})")
        self.pairs = tuple((int(s), int(t)) for s, t in pairs)
        self.kind = kind
        self.projections = torch.nn.ModuleList(
            torch.nn.Identity() if student_width == teacher_width
            else torch.nn.Linear(student_width, teacher_width, bias=False)
            for _ in self.pairs)

    def forward(self, student_states: Sequence[torch.Tensor], teacher_states: Sequence[torch.Tensor],
                mask: torch.Tensor) -> torch.Tensor:
        """Mean over pairs of the masked loss: MSE over positions and features, or 1 - cosine
        per position averaged over positions.

        Args:
            student_states: HF ``hidden_states``, each [b, s, Hs].
            teacher_states: HF ``hidden_states``, each [b, s, Ht].
            mask: [b, s] bool, True at positions to compare.
        """
        if not bool(mask.any()):
            raise ValueError("mask selects no positions")
        losses = [self._pair_loss(proj(student_states[s][mask].float()), teacher_states[t][mask].detach().float())
                  for proj, (s, t) in zip(self.projections, self.pairs, strict=True)]
        return torch.stack(losses).mean()

    def _pair_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.kind == "mse":
            return F.mse_loss(student, teacher)
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
