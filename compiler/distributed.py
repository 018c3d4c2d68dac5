"""Per-rank memory of data-parallel training: DDP replicas and FSDP shards, from shapes alone.

``distill.compiler.memory.process_step`` predicts one process; ``distribute`` rewrites its
phases for ``step.processes`` ranks of the strategy the runtime uses (accelerate's defaults, as
``distill.runtime.train.memtrace.wrap_distributed`` builds them):

- DDP keeps a full replica per rank and, with ``gradient_as_bucket_view=False`` (the default),
  copies every gradient into flat bucket buffers that live as long as the model: one more
  trainable-sized copy, in every phase.
- FSDP (FULL_SHARD, one unit per decoder layer, the root unit holding embeddings, final norm and
  head, ``use_orig_params=True``) keeps 1/N of every unit's flat parameter (padded to a multiple
  of N), its gradient and the optimizer states of the trainable elements in it. A unit that holds
  any trainable parameter gets a gradient for its whole flat shard, frozen elements included
  (so LoRA saves optimizer states, not gradients). The root stays all-gathered from forward to
  the end of backward; one layer unit at a time is all-gathered (no prefetch, accelerate's
  default) and is counted in backward, where it meets most of the saved activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distill.compiler.arch import Architecture, Head, Linear
from distill.compiler.memory import (
    StepMemory,
    Term,
    cpu_adamw_temporaries,
    kbit_step,
    layer_modules,
    lora_head_copy,
    module_tensors,
    optimizer_state_bytes,
    outer_tensors,
    process_step,
    trainable_params,
)
from distill.compiler.trainstep import TrainStep

F32 = 4
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Phases where the root unit is all-gathered, and those that also hold one all-gathered layer.
ROOT_GATHERED = ("forward", "backward", "recompute", "backward end")
LAYER_GATHERED = ("recompute",)
# Terms of the backward phase that are gone once backward reaches the last decoder layer.
LOSS_TERMS = ("final norm", "loss rows", "rows gradient", "loss chunk backward", "logit softcap", "teacher rows",
              "head gradient", "head gradient so far")


@dataclass(frozen=True)
class Unit:
    """One FSDP flat parameter: its tensors in module order as (elements, trainable, bytes each)."""

    name: str
    tensors: tuple[tuple[int, bool, int], ...]

    @property
    def numel(self) -> int:
        return sum(n for n, _, _ in self.tensors)

    @property
    def bytes_per_element(self) -> int:
        return max(b for _, _, b in self.tensors)

    def padded(self, world: int) -> int:
        """Elements after padding to a multiple of ``world`` (equal shards)."""
        return math.ceil(self.numel / world) * world

    @property
    def trains(self) -> bool:
        return any(t for _, t, _ in self.tensors)


def units(arch: Architecture, step: TrainStep, head: Head) -> tuple[Unit, Unit]:
    """(root, one layer): the flat parameters FSDP builds with transformer auto-wrap, each
    tensor in module registration order (``memory.layer_modules``, ``memory.outer_tensors``)."""
    e = DTYPE_BYTES[step.dtype]
    full = step.adapter == "none"
    layer: list[tuple[int, bool, int]] = []
    for module in layer_modules(arch):
        layer += [(n, full, e) for n in module_tensors(module)]
        if not full and isinstance(module, Linear) and module.name in step.lora_targets:  # lora_A, lora_B: fp32
            layer += [(step.lora_r * module.fan_in, True, F32), (step.lora_r * module.fan_out, True, F32)]
    before, after = outer_tensors(arch, head)
    root = [(n, full, e) for n in (*before, *after)]
    if not full:  # the root trains (and gets a whole-shard gradient) when peft trains a head copy
        root += [(n, True, e) for n in lora_head_copy(arch, head)]
    return Unit("root", tuple(root)), Unit("layer", tuple(layer))


def rank_pieces(unit: Unit, world: int, rank: int) -> list[int]:
    """Elements of each trainable tensor that fall in ``rank``'s shard of ``unit``."""
    size = unit.padded(world) // world
    lo, hi = rank * size, (rank + 1) * size
    pieces, start = [], 0
    for n, trainable, _ in unit.tensors:
        if trainable:
            pieces.append(max(0, min(hi, start + n) - max(lo, start)))
        start += n
    return pieces


@dataclass(frozen=True)
class RankShare:
    """What one FSDP rank holds, in bytes, and the elements its optimizer walks."""

    params: int
    grads: int
    trainable: int
    tensors: int
    pieces: tuple[int, ...]
    root_gathered: int
    layer_gathered: int


def fsdp_share(arch: Architecture, step: TrainStep, head: Head, rank: int) -> RankShare:
    world = step.processes
    root, layer = units(arch, step, head)
    all_units = [root] + [layer] * arch.layers
    params = sum(u.padded(world) // world * u.bytes_per_element for u in all_units)
    grads = sum(u.padded(world) // world * u.bytes_per_element for u in all_units if u.trains)
    pieces = [p for u in all_units for p in rank_pieces(u, world, rank)]
    return RankShare(params, grads, sum(pieces), len(pieces), tuple(pieces),
                     root.padded(world) * root.bytes_per_element, layer.padded(world) * layer.bytes_per_element)


def estimate_step(arch: Architecture, head: Head, step: TrainStep, device: str = "cpu",
                  teacher: Architecture | None = None) -> StepMemory:
    """Peak live bytes of each phase of one micro-step on the rank holding the most: one
    process's phases (``memory.process_step``), distributed over ``step.processes`` ranks."""
    step = kbit_step(step)  # as process_step sees it: a quantized base computes in float32
    return distribute(process_step(arch, head, step, device, teacher), arch, head, step, device)


def distribute(memory: StepMemory, arch: Architecture, head: Head, step: TrainStep, device: str) -> StepMemory:
    """The phases of one rank (the one holding the most) under ``step.strategy``."""
    if step.processes <= 1:
        return memory
    if step.strategy == "ddp":
        trainable, param_bytes = trainable_params(arch, step, head)
        buckets = Term("DDP buckets", trainable * param_bytes, f"gradient_as_bucket_view=False: {trainable:,} "
                       f"trainable x {param_bytes} B copied for all-reduce")
        return StepMemory({name: (*terms, buckets) for name, terms in memory.phases.items()})
    ranks = [_fsdp_phases(memory, arch, head, step, device, r) for r in range(step.processes)]
    return max(ranks, key=lambda m: m.peak)


def _fsdp_phases(memory: StepMemory, arch: Architecture, head: Head, step: TrainStep, device: str,
                 rank: int) -> StepMemory:
    n = step.processes
    share = fsdp_share(arch, step, head, rank)
    _, param_bytes = trainable_params(arch, step, head)
    shard = f"1/{n} shard"
    states = optimizer_state_bytes(share.trainable, share.tensors, param_bytes, step.optimizer)
    if device == "cpu":
        temp = cpu_adamw_temporaries(list(share.pieces)) * param_bytes
        temp_why = f"single-tensor AdamW over rank {rank}'s pieces"
    else:
        temp, temp_why = share.trainable * param_bytes, "foreach AdamW: one shard-sized list of sqrt(v)"
    replaced = {
        "weights": Term(f"parameters ({shard})", share.params, f"flat parameters padded to a multiple of {n}, / {n}"),
        "adapter weights": None,  # inside the layer units' flat parameters
        "optimizer states": Term(f"optimizer states ({shard})", states.bytes,
                                 f"rank {rank}: {share.trainable:,} trainable elements of its shards"),
        "gradients": Term(f"gradients ({shard})", share.grads,
                          "whole flat shard of every unit that trains (frozen elements too)"),
        # FSDP reduce-scatters every micro-step (the loop uses no no_sync): what accumulates is
        # the sharded gradient.
        "earlier gradients": Term(f"earlier gradients ({shard})", share.grads, "accumulated in the shards"),
        "optimizer temporaries": Term("optimizer temporaries", temp, temp_why),
    }
    root = Term("all-gathered root", share.root_gathered,
                "embeddings, final norm, head: unsharded forward to backward end")
    layer = Term("all-gathered layer", share.layer_gathered, "one decoder layer's flat parameter, unsharded")
    layer_grad = Term("layer gradient (unsharded)", share.layer_gathered,
                      "the flat gradient of the layer in backward, before its reduce-scatter")
    phases = {}
    for name, terms in memory.phases.items():
        kept = [replaced.get(t.name, t) for t in terms]
        # recompute's own terms already hold the layer's gradients as they are made
        extra = ([root] if name in ROOT_GATHERED else []) + ([layer] if name in LAYER_GATHERED else [])
        phases[name] = tuple(t for t in kept if t is not None) + tuple(extra)
        if name == "backward" and "recompute" not in memory.phases:
            phases["backward (layer)"] = _layer_backward(phases[name], arch, head, step, (layer, layer_grad))
    return StepMemory(phases)


def _layer_backward(backward: tuple[Term, ...], arch: Architecture, head: Head, step: TrainStep,
                    gathered: tuple[Term, Term]) -> tuple[Term, ...]:
    """Backward in the last decoder layer: the loss buffers are gone, that layer is all-gathered
    with its unsharded gradient, the head's gradient waits for the root's reduce-scatter (full
    fine-tuning) and the hidden-state gradient flows down (t x h x e)."""
    e, t = DTYPE_BYTES[step.dtype], step.tokens
    kept = tuple(term for term in backward if term.name not in LOSS_TERMS)
    head_params = arch.head_params(head)
    head_grad = (Term("head gradient (unsharded)", head_params * e, f"{head_params:,} x {e} B"),) \
        if step.adapter == "none" else ()
    hidden = Term("hidden gradient", t * arch.hidden * e, f"{t:,} tokens x {arch.hidden} x {e} B")
    return (*kept, *gathered, *head_grad, hidden)
