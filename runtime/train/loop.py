"""The training loop, on accelerate: micro-batches and gradient accumulation from the plan, AdamW
(8-bit on GPUs when planned), warmup + schedule, gradient clipping, periodic checkpoints that resume
exactly, validation loss with early stopping, metrics as JSON lines and a loss curve.

Data order is a seeded permutation per epoch (``torch.Generator`` seeded with the run seed and the
epoch), so where the loop stands is three integers (step, epoch, micro-batch) and a resumed run
sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.compiler.plan import Plan
from distill.compiler.spec import Spec
from distill.runtime.train import checkpoint
from distill.runtime.train.checkpoint import LoopState
from distill.runtime.train.data import Encoded, collate
from distill.runtime.train.objective import Objective

Progress = Callable[..., None]  # (name, done, total, note="")


@dataclass(frozen=True)
class Schedule:
    """Batches and steps as the plan sized them."""

    micro_batch: int
    accumulation: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, spec: Spec, plan: Plan, examples: int) -> Schedule:
        micro_batches = math.ceil(examples / plan.micro_batch)
        per_epoch = max(1, math.ceil(micro_batches / plan.accumulation))
        total = spec.train.max_steps or per_epoch * spec.train.epochs
        return cls(plan.micro_batch, plan.accumulation, per_epoch, total, math.ceil(spec.train.warmup * total))


@dataclass(frozen=True)
class TrainResult:
    steps: int
    stopped_early: bool
    best_val: float | None
    metrics: Path


def epoch_batches(examples: int, micro: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's micro-batches as example indices: a permutation seeded by (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(examples, generator=generator).tolist()
    return [order[i:i + micro] for i in range(0, examples, micro)]


def make_optimizer(params: list[torch.nn.Parameter], spec: Spec, plan: Plan) -> torch.optim.Optimizer:
    """AdamW as planned; bitsandbytes' 8-bit states only on CUDA (its CPU path is not what the
    planner measured), torch's AdamW otherwise."""
    lr, decay = spec.train.learning_rate, spec.train.weight_decay
    if plan.optimizer in ("adamw_8bit", "paged_adamw_8bit") and torch.cuda.is_available():
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if plan.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
        return cls(params, lr=lr, weight_decay=decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


def train(objective: Objective, train_set: Sequence[Encoded], val_set: Sequence[Encoded], pad_id: int,
          spec: Spec, plan: Plan, folder: Path, progress: Progress | None = None) -> TrainResult:
    """Train ``objective``'s trainable modules in place, resuming from ``folder``'s newest
    checkpoint when there is one."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    schedule = Schedule.of(spec, plan, len(train_set))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=_mixed_precision(spec))
    params = list(checkpoint.trainable_tensors(objective.trainables()).values())
    optimizer = make_optimizer(params, spec, plan)
    scheduler = get_scheduler(spec.train.scheduler, optimizer, num_warmup_steps=schedule.warmup_steps,
                              num_training_steps=schedule.total_steps)
    objective.student, optimizer = accelerator.prepare(objective.student, optimizer)
    state = _resume(folder / "checkpoints", objective, optimizer, scheduler)
    metrics = _Metrics(folder / "metrics.jsonl", state.step)
    started = time.monotonic()
    while state.step < schedule.total_steps and not state.stopped:
        batches = epoch_batches(len(train_set), schedule.micro_batch, spec.seed, state.epoch)
        while state.micro < len(batches) and state.step < schedule.total_steps and not state.stopped:
            group = batches[state.micro:state.micro + schedule.accumulation]
            record = _optimizer_step(objective, accelerator, optimizer, scheduler, group, train_set, pad_id, spec)
            state.step += 1
            state.micro += len(group)
            metrics.write({"step": state.step, "epoch": state.epoch, **record,
                           "seconds": round(time.monotonic() - started, 3)})
            if progress is not None:
                progress("train", state.step, schedule.total_steps, f"loss {record['loss']:.3f}")
            if state.step % spec.train.checkpoint_every == 0:
                _evaluate(objective, val_set, pad_id, spec, plan, state, metrics, folder)
                checkpoint.save(folder / "checkpoints", objective.trainables(), optimizer, scheduler, state)
        if state.micro >= len(batches):
            state.epoch, state.micro = state.epoch + 1, 0
            if state.step % spec.train.checkpoint_every:
                _evaluate(objective, val_set, pad_id, spec, plan, state, metrics, folder)
    if state.step % spec.train.checkpoint_every:
        if state.micro:  # stopped mid-epoch by max_steps: the epoch-end evaluation did not run
            _evaluate(objective, val_set, pad_id, spec, plan, state, metrics, folder)
        checkpoint.save(folder / "checkpoints", objective.trainables(), optimizer, scheduler, state)
    _finish(objective, folder, spec, state)
    return TrainResult(state.step, state.stopped, state.best_val, metrics.path)


def _mixed_precision(spec: Spec) -> str:
    """Autocast on GPUs only: bf16 unless the Distillfile says otherwise; CPU trains in the
    weights' dtype."""
    if not torch.cuda.is_available():
        return "no"
    return {"auto": "bf16", "fp32": "no", "bf16": "bf16", "fp16": "fp16"}[spec.train.precision]


def _resume(folder: Path, objective: Objective, optimizer: Any, scheduler: Any) -> LoopState:
    restored = checkpoint.load_latest(folder)
    if restored is None:
        return LoopState()
    checkpoint.restore_weights(objective.trainables(), restored.weights)
    optimizer.load_state_dict(restored.optimizer)
    scheduler.load_state_dict(restored.scheduler)
    return restored.state


def _optimizer_step(objective: Objective, accelerator: Any, optimizer: Any, scheduler: Any, group: list[list[int]],
                    data: Sequence[Encoded], pad_id: int, spec: Spec) -> dict[str, float]:
    """Forward and backward over the group's micro-batches (gradients synced on the last one),
    then clip, step, schedule; returns what was logged."""
    sums: dict[str, float] = {}
    for index, micro in enumerate(group):
        examples = [data[i] for i in micro]
        batch = {k: v.to(accelerator.device) for k, v in collate(examples, pad_id).items()}
        sync = index == len(group) - 1
        with accelerator.no_sync(objective.student) if not sync else _nothing():
            with accelerator.autocast():
                loss, parts = objective.loss(batch, examples)
            accelerator.backward(loss / len(group))
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value / len(group)
    params = [p for p in checkpoint.trainable_tensors(objective.trainables()).values()]
    norm = accelerator.clip_grad_norm_(params, spec.train.max_grad_norm)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {**{k: round(v, 6) for k, v in sums.items()}, "lr": lr, "grad_norm": round(float(norm), 6)}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _evaluate(objective: Objective, val_set: Sequence[Encoded], pad_id: int, spec: Spec, plan: Plan,
              state: LoopState, metrics: _Metrics, folder: Path) -> None:
    """Validation loss and early stopping. Checkpoints are saved every ``checkpoint_every`` steps
    and at the end only: a resume from an earlier one recomputes later evaluations identically,
    and saving weights + optimizer states (3x the trainable bytes, fsynced) per epoch would cost
    more than small epochs take."""
    if val_set:
        loss = objective.evaluate(val_set, pad_id, plan.micro_batch)
        state.evals.append({"step": state.step, "val_loss": loss})
        metrics.write({"step": state.step, "epoch": state.epoch, "val_loss": round(loss, 6)})
        _early_stopping(spec, state, loss, objective, folder)


def _early_stopping(spec: Spec, state: LoopState, loss: float, objective: Objective, folder: Path) -> None:
    rule = spec.train.early_stopping
    if state.best_val is None or loss < state.best_val - (rule.min_delta if rule else 0.0):
        state.best_val, state.bad_evals = loss, 0
        if rule is not None:  # the weights early stopping will return to
            _save_weights(objective, folder / "best.safetensors")
        return
    state.bad_evals += 1
    if rule is not None and state.bad_evals >= rule.patience:
        state.stopped = True


def _save_weights(objective: Objective, path: Path) -> None:
    from safetensors.torch import save_file

    from distill.compiler.fsutil import write_atomic_with

    tensors = {k: v.detach().contiguous().cpu() for k, v in checkpoint.trainable_tensors(objective.trainables()).items()}
    write_atomic_with(path, lambda tmp: save_file(tensors, str(tmp)))


def _finish(objective: Objective, folder: Path, spec: Spec, state: LoopState) -> None:
    """Early stopping returns to the best weights; the final trainables are saved either way."""
    from safetensors.torch import load_file

    best = folder / "best.safetensors"
    if state.stopped and best.is_file():
        checkpoint.restore_weights(objective.trainables(), load_file(str(best)))
    _save_weights(objective, folder / "trainable.safetensors")
    from distill.runtime.train.plots import loss_curve

    loss_curve(folder / "metrics.jsonl", folder / "loss.png", spec.name)


class _Metrics:
    """metrics.jsonl, cut back to the resumed step so a resumed run's file equals an
    uninterrupted one's (except the wall-clock seconds)."""

    def __init__(self, path: Path, step: int) -> None:
        self.path = path
        kept = []
        if path.is_file():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
