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
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.compiler.plan import Plan
from distill.compiler.spec import Spec
from distill.runtime.placement import Misplaced, Placement
from distill.runtime.progress import Progress
from distill.runtime.train import checkpoint
from distill.runtime.train.checkpoint import LoopState
from distill.runtime.train.data import Encoded, collate
from distill.runtime.train.objective import Objective


@dataclass(frozen=True)
class Schedule:
    """Batches and steps as the plan sized them."""

    micro_batch: int
    accumulation: int
    processes: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, spec: Spec, plan: Plan, examples: int) -> Schedule:
        micro_batches = usable(math.ceil(examples / plan.micro_batch), plan.processes)
        per_epoch = max(1, math.ceil(micro_batches / (plan.accumulation * plan.processes)))
        total = spec.train.max_steps or per_epoch * spec.train.epochs
        return cls(plan.micro_batch, plan.accumulation, plan.processes, per_epoch, total,
                   math.ceil(spec.train.warmup * total))

    @property
    def group(self) -> int:
        """Micro-batches per optimizer step, over all processes."""
        return self.accumulation * self.processes


def usable(micro_batches: int, processes: int) -> int:
    """Micro-batches of an epoch that are used: a multiple of the process count, so every rank
    runs as many forward/backward passes as the others (DDP hangs otherwise); at most
    ``processes - 1`` micro-batches an epoch are left out, and a different set each epoch."""
    return micro_batches - micro_batches % processes if processes > 1 else micro_batches


@dataclass(frozen=True)
class TrainResult:
    """``steps`` run of ``total_steps`` scheduled (fewer when stopped early); ``resumed_from``: the
    checkpoint step an interrupted run continued from (0: it started afresh)."""

    steps: int
    stopped_early: bool
    best_val: float | None
    metrics: Path
    total_steps: int
    resumed_from: int = 0


def epoch_batches(examples: int, micro: int, seed: int, epoch: int, processes: int = 1) -> list[list[int]]:
    """The epoch's micro-batches as example indices: a permutation seeded by (seed, epoch), the
    same on every rank (each rank takes its share of every optimizer step's group)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(examples, generator=generator).tolist()
    batches = [order[i:i + micro] for i in range(0, examples, micro)]
    return batches[:usable(len(batches), processes)]


def make_optimizer(params: list[torch.nn.Parameter], spec: Spec, plan: Plan) -> torch.optim.Optimizer:
    """AdamW as planned: bitsandbytes' 8-bit states (planned on CUDA only), else torch's AdamW
    with states in the trained weights' dtype."""
    lr, decay = spec.train.learning_rate, spec.train.weight_decay
    if plan.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if plan.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
        return cls(params, lr=lr, weight_decay=decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


def train(objective: Objective, train_set: Sequence[Encoded], val_set: Sequence[Encoded], pad_id: int,
          spec: Spec, plan: Plan, folder: Path, progress: Progress | None = None) -> TrainResult:
    """Train ``objective``'s trainable modules in place, resuming from ``folder``'s newest
    checkpoint when there is one."""
    from transformers import get_scheduler

    schedule = Schedule.of(spec, plan, len(train_set))
    accelerator = make_accelerator(objective.placement)
    fsdp = spec.hardware.strategy == "fsdp" and plan.processes > 1
    if fsdp:
        from distill.runtime.train.sharding import fsdp_wrap

        objective.engine = fsdp_wrap(objective.student, objective.placement.torch_device)
        # The head's weight is a shard outside the model's forward: the loss takes full logits.
        objective.head = None
    params = list(checkpoint.trainable_tensors(objective.trainables()).values())
    optimizer = make_optimizer(params, spec, plan)
    scheduler = get_scheduler(spec.train.scheduler, optimizer, num_warmup_steps=schedule.warmup_steps,
                              num_training_steps=schedule.total_steps)
    if not fsdp:  # DDP (accelerate wraps the model when there are several processes)
        objective.engine, optimizer = accelerator.prepare(objective.student, optimizer)
    state = LoopState() if fsdp else _resume(folder / "checkpoints", objective, optimizer, scheduler)
    resumed_from = state.step
    run = _Run(objective, accelerator, optimizer, scheduler, spec, plan, folder,
               _Metrics(folder / "metrics.jsonl", state.step, accelerator.is_main_process), params, fsdp)
    started = time.monotonic()
    while state.step < schedule.total_steps and not state.stopped:
        batches = epoch_batches(len(train_set), schedule.micro_batch, spec.seed, state.epoch, schedule.processes)
        while state.micro < len(batches) and state.step < schedule.total_steps and not state.stopped:
            group = batches[state.micro:state.micro + schedule.group]
            mine = group[accelerator.process_index::schedule.processes]
            record = _optimizer_step(run, mine, train_set, pad_id)
            state.step += 1
            state.micro += len(group)
            run.metrics.write({"step": state.step, "epoch": state.epoch, **record,
                               "seconds": round(time.monotonic() - started, 3)})
            if progress is not None and accelerator.is_main_process:
                progress("train", state.step, schedule.total_steps,
                         f"loss {record['loss']:.3f} lr {record['lr']:.1e} epoch {state.epoch + 1}/{spec.train.epochs}")
            if state.step % spec.train.checkpoint_every == 0:
                _evaluate(run, val_set, pad_id, state)
                _checkpoint(run, state)
        if state.micro >= len(batches):
            state.epoch, state.micro = state.epoch + 1, 0
            if state.step % spec.train.checkpoint_every:
                _evaluate(run, val_set, pad_id, state)
    if state.step % spec.train.checkpoint_every:
        if state.micro:  # stopped mid-epoch by max_steps: the epoch-end evaluation did not run
            _evaluate(run, val_set, pad_id, state)
        _checkpoint(run, state)
    _finish(run, state)
    return TrainResult(state.step, state.stopped, state.best_val, run.metrics.path, schedule.total_steps, resumed_from)


@dataclass
class _Run:
    """What every step of one training run shares."""

    objective: Objective
    accelerator: Any
    optimizer: Any
    scheduler: Any
    spec: Spec
    plan: Plan
    folder: Path
    metrics: _Metrics
    params: list[torch.nn.Parameter]  # the trainables, as the optimizer holds them (clipped every step)
    fsdp: bool = False


def make_accelerator(placement: Placement) -> Any:
    """accelerate's Accelerator for this run, on the plan's device at its precision (an fp16
    plan gets accelerate's gradient scaler); the process group comes from the launcher's
    environment (torchrun / accelerate launch)."""
    from accelerate import Accelerator

    device = placement.torch_device  # a cuda plan without CUDA fails here, named (accelerate would use the CPU)
    accelerator = Accelerator(cpu=placement.device == "cpu", mixed_precision=placement.mixed_precision)
    if accelerator.device.type != device.type:
        raise Misplaced(f"training should run on {device.type}, and accelerate chose {accelerator.device}",
                        hint="this is a bug in distill; please report it")
    return accelerator


def _checkpoint(run: _Run, state: LoopState) -> None:
    """The main process writes (the folder is shared); the others wait for it."""
    if _sharded(run):
        return  # FSDP checkpoints need a sharded state format: not written yet (see the issue note)
    if run.accelerator.is_main_process:
        checkpoint.save(run.folder / "checkpoints", run.objective.trainables(), run.optimizer, run.scheduler, state)
    run.accelerator.wait_for_everyone()


def _sharded(run: _Run) -> bool:
    return run.fsdp


def _resume(folder: Path, objective: Objective, optimizer: Any, scheduler: Any) -> LoopState:
    restored = checkpoint.load_latest(folder)
    if restored is None:
        return LoopState()
    checkpoint.restore_weights(objective.trainables(), restored.weights)
    optimizer.load_state_dict(restored.optimizer)
    scheduler.load_state_dict(restored.scheduler)
    return restored.state


def _optimizer_step(run: _Run, micros: list[list[int]], data: Sequence[Encoded], pad_id: int) -> dict[str, float]:
    """Forward and backward over this rank's micro-batches of the step (gradients synced on the
    last one), then clip, step, schedule; returns what was logged, averaged over ranks."""
    objective, accelerator = run.objective, run.accelerator
    sums: dict[str, float] = {}
    for index, micro in enumerate(micros):
        examples = [data[i] for i in micro]
        batch = {k: v.to(accelerator.device) for k, v in collate(examples, pad_id).items()}
        sync = index == len(micros) - 1
        # FSDP reduce-scatters every micro-batch into its sharded gradients (no ``no_sync``: that
        # would keep whole gradients between micro-batches, which the planner does not budget).
        with accelerator.no_sync(objective.engine) if not sync and not run.fsdp else nullcontext():
            loss, parts = objective.loss(batch, examples)
            accelerator.backward(loss / len(micros))
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value / len(micros)
    _sync_side_modules(run)
    norm = accelerator.clip_grad_norm_(run.params, run.spec.train.max_grad_norm)
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    logged = {k: float(accelerator.reduce(torch.tensor(v, device=accelerator.device), "mean")) for k, v in sums.items()}
    return {**{k: round(v, 6) for k, v in logged.items()}, "lr": lr, "grad_norm": round(float(norm), 6)}


def _sync_side_modules(run: _Run) -> None:
    """Average the gradients of trainables outside the DDP/FSDP-wrapped student (the hidden-state
    projector) over ranks, as DDP does for the student's."""
    if run.accelerator.num_processes == 1:
        return
    for name, module in run.objective.trainables().items():
        if name == "student":
            continue
        for param in module.parameters():
            if param.grad is not None:
                param.grad = run.accelerator.reduce(param.grad, "mean")


def _evaluate(run: _Run, val_set: Sequence[Encoded], pad_id: int, state: LoopState) -> None:
    """Validation loss and early stopping. Every rank evaluates the whole (small) validation set
    with the same weights, so all reach the same early-stopping decision without talking.
    Checkpoints are saved every ``checkpoint_every`` steps and at the end only: a resume from an
    earlier one recomputes later evaluations identically, and saving weights + optimizer states
    (3x the trainable bytes, fsynced) per epoch would cost more than small epochs take."""
    if val_set:
        loss = run.objective.evaluate(val_set, pad_id, run.plan.micro_batch)
        state.evals.append({"step": state.step, "val_loss": loss})
        run.metrics.write({"step": state.step, "epoch": state.epoch, "val_loss": round(loss, 6)})
        _early_stopping(run, state, loss)


def _early_stopping(run: _Run, state: LoopState, loss: float) -> None:
    rule = run.spec.train.early_stopping
    if state.best_val is None or loss < state.best_val - (rule.min_delta if rule else 0.0):
        state.best_val, state.bad_evals = loss, 0
        if rule is not None:  # the weights early stopping will return to
            _save_weights(run, run.folder / "best.safetensors")
        return
    state.bad_evals += 1
    if rule is not None and state.bad_evals >= rule.patience:
        state.stopped = True


def _save_weights(run: _Run, path: Path) -> None:
    from safetensors.torch import save_file

    from distill.compiler.fsutil import write_atomic_with

    tensors = {k: v.detach().contiguous().cpu() for k, v in _full_trainables(run).items()}
    if run.accelerator.is_main_process:
        write_atomic_with(path, lambda tmp: save_file(tensors, str(tmp)))
    run.accelerator.wait_for_everyone()


def _full_trainables(run: _Run) -> dict[str, torch.Tensor]:
    """Trainable tensors by name, whole: FSDP's are gathered from every rank's shard first."""
    wanted = checkpoint.trainable_tensors(run.objective.trainables())
    if not _sharded(run):
        return dict(wanted)
    from distill.runtime.train.sharding import full_state

    full = full_state(run.objective.engine, run.objective.placement.torch_device)
    if not run.accelerator.is_main_process:
        return {}
    return {name: full[name.split("/", 1)[1]] if name.startswith("student/") else tensor
            for name, tensor in wanted.items()}


def _finish(run: _Run, state: LoopState) -> None:
    """Early stopping returns to the best weights; the final trainables are saved either way."""
    from safetensors.torch import load_file

    best = run.folder / "best.safetensors"
    if state.stopped and best.is_file() and not _sharded(run):
        checkpoint.restore_weights(run.objective.trainables(), load_file(str(best)))
    _save_weights(run, run.folder / "trainable.safetensors")
    if run.accelerator.is_main_process:
        from distill.runtime.train.plots import loss_curve

        # Titled without the build's name: a renamed build keeps its trained student (the name is
        # not in the train stage's key, runtime/build/slices.py).
        loss_curve(run.folder / "metrics.jsonl", run.folder / "loss.png", "training loss")


class _Metrics:
    """metrics.jsonl, cut back to the resumed step so a resumed run's file equals an
    uninterrupted one's (except the wall-clock seconds)."""

    def __init__(self, path: Path, step: int, writer: bool = True) -> None:
        self.path, self.writer = path, writer
        if not writer:
            return
        from distill.compiler.records.record import lines_text
        from distill.runtime.train.plots import read_records

        kept = [record for record in read_records(path) if record["step"] <= step]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lines_text(kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.writer:  # one process writes the metrics of a distributed run
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
