"""Measure the peak live tensor bytes of one real training micro-step (CPU), for the planner.

``distill.compiler.trainstep.TrainStep`` describes a step; the planner predicts its memory by
arithmetic and ``measure_step`` runs it on real tensors. The protocol below is what both sides
agree on; change one only together with the other.

Protocol:
  1. ``torch.manual_seed(seed)``; the student is ``AutoModelForCausalLM.from_config`` of
     ``AutoConfig.for_model(**config)`` with ``use_cache=False``, ``dtype=step.dtype`` and
     ``attn_implementation=step.attention``, in ``train()`` mode (config dropouts stay active).
  2. The student is made trainable by the build's own ``runtime.train.student.make_trainable``:
     quantized bases (``adapter="qlora"`` means a 4-bit base; ``base_quant`` "8bit"/"4bit") are
     saved as safetensors and reloaded with a bitsandbytes config (nf4 + double quantization,
     or int8), then ``peft.prepare_model_for_kbit_training``; adapters: peft
     ``LoraConfig(r, alpha=2r, step.lora_dropout)`` on ``step.lora_targets``; checkpointing
     non-reentrant.
  3. ``torch.optim.AdamW(trainable, lr=1e-4)`` with torch's default implementation (on CPU the
     single-tensor loop; ``MeasuredStep.optimizer_impl`` records it), or bitsandbytes
     ``AdamW8bit`` for "adamw_8bit".
  4. Inputs ``randint(0, vocab, (b, s))`` int64, ``labels = input_ids.clone()``, no attention
     mask. The loss is the training loop's own (``runtime.train.objective.Objective.loss``): the
     student's final hidden states (HF keeps one position's logits), CE on every next token
     plus, for online KD, forward KL at T = 2 against the teacher's final hidden states (run
     after the student, under ``no_grad``), both through ``token_losses`` in checkpointed
     chunks of ``step.loss_chunk_tokens`` rows. kd "sequence" trains on CE alone; "cached" is
     not measured yet.
     Note (transformers 4.57): with no mask, the packed-sequence check on ``position_ids``
     disables the SDPA ``is_causal`` shortcut, so a (b, 1, s, s) bool causal mask is built; K/V
     are then ``repeat_kv``-ed to all heads and torch's CPU flash kernel saves the mask as float32
     per layer (4·b·s² bytes). GPT-2's attention dropout sends SDPA to the math path (s x s
     probabilities kept). Both are measured as they are, not corrected for.
  5. One unmeasured warm-up step (forward, backward, ``optimizer.step()``,
     ``zero_grad(set_to_none=True)``) creates the optimizer states; the second, identical step
     is measured in three phases: "forward" (teacher + student + loss), "backward",
     "optimizer" (step + zero_grad). Python's cyclic GC is paused while measuring so frees are
     deterministic (refcounting only); ``end_bytes == baseline_bytes`` checks nothing leaked.

What "live bytes" means: the summed ``nbytes`` of every distinct tensor storage alive at that
moment (views share their base's storage and count once). Storages that exist before the step
(weights, bitsandbytes quant states, buffers, optimizer states, teacher, inputs) are found by
walking the model/optimizer object graphs; new ones are seen as outputs of aten ops through a
``TorchDispatchMode`` and forgotten when a weakref to the storage fires. Not counted: scratch
memory a single kernel allocates and frees internally (e.g. GEMM packing buffers) and allocator
overheads. This is the same definition as ``torch.distributed._tools.mem_tracker.MemTracker``
(the tests check the two agree byte for byte), without its module hooks, which break on frozen
parameters.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from distill.compiler.trainstep import TrainStep
from distill.runtime.models import bnb_config, reload_quantized
from distill.runtime.placement import DTYPES, Placement
from distill.runtime.train.livebytes import LiveBytesCounter, reachable_tensors, storage_key
from distill.runtime.train.losses import KD_TEMPERATURE
from distill.runtime.train.objective import Objective, Weights

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# --------------------------------------------------------------------------- building the step


@dataclass
class StepParts:
    """Everything one step touches; what is alive here at rest is the step's baseline."""

    step: TrainStep
    student: torch.nn.Module
    optimizer: torch.optim.Optimizer
    optimizer_impl: str
    input_ids: torch.Tensor
    labels: torch.Tensor
    teacher: torch.nn.Module | None = None
    trainable: list[torch.nn.Parameter] = field(default_factory=list)
    strategy: str = "none"
    objective: Objective | None = None  # the training loop's loss, for causal LMs


def build_causal_lm(config: Mapping[str, Any], dtype: str, attention: str,
                    quant: str = "none", head: str = "causal-lm") -> PreTrainedModel:
    """A randomly initialised causal LM (or extractive-QA encoder, ``head="extractive-qa"``) from a
    config.json dict, optionally bitsandbytes-quantized.

    ``from_config`` cannot quantize, so a quantized model is saved (safetensors) and reloaded
    through ``from_pretrained`` with a ``BitsAndBytesConfig``, as a real checkpoint would be.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForQuestionAnswering

    auto = AutoModelForQuestionAnswering if head == "extractive-qa" else AutoModelForCausalLM
    cfg = AutoConfig.for_model(**dict(config))
    cfg.use_cache = False
    torch_dtype = DTYPES[dtype]
    model = auto.from_config(cfg, dtype=torch_dtype, attn_implementation=attention)
    if quant == "none":
        return model
    # memtrace measures a CPU step (or one under FakeTensorMode): the model stays on the CPU.
    return reload_quantized(model, bnb_config(quant, torch_dtype), Placement("cpu", dtype, "fp32"),
                            attn_implementation=attention)


def _student_quant(step: TrainStep) -> str:
    quant = "4bit" if step.adapter == "qlora" else step.base_quant
    if quant != "none" and step.adapter == "none":
        raise ValueError("a quantized base cannot be trained without an adapter")
    return quant


def _build_student(config: Mapping[str, Any], step: TrainStep, head: str, seed: int) -> torch.nn.Module:
    from distill.runtime.train.student import Lora, make_trainable

    quant = _student_quant(step)
    model = build_causal_lm(config, step.dtype, step.attention, quant, head)
    lora = (Lora(step.lora_r, 2 * step.lora_r, step.lora_dropout, tuple(step.lora_targets))
            if step.adapter != "none" else None)
    return make_trainable(model, quant, lora, step.checkpointing, head, seed)


def _build_teacher(config: Mapping[str, Any], step: TrainStep) -> PreTrainedModel:
    teacher = build_causal_lm(config, step.teacher_dtype, step.attention, step.teacher_quant)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def _make_optimizer(params: list[torch.nn.Parameter], kind: str
                    ) -> tuple[torch.optim.Optimizer, str]:
    """The optimizer and the implementation that will run (torch picks it at step time)."""
    if kind == "adamw":
        from torch.optim.optimizer import _default_to_fused_or_foreach

        fused, foreach = _default_to_fused_or_foreach(params,  # type: ignore[arg-type]  # torch wants list[Tensor]
                                                      differentiable=False, use_fused=False)
        impl = "fused" if fused else "foreach" if foreach else "single_tensor"
        return torch.optim.AdamW(params, lr=1e-4), f"torch.optim.AdamW({impl})"
    if kind == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=1e-4), "bitsandbytes.optim.AdamW8bit"
    raise NotImplementedError(
        f"optimizer {kind!r} is not measured on CPU: paged optimizers need CUDA unified memory; "
        "use 'adamw' or 'adamw_8bit'")


def prepare_step(student_config: Mapping[str, Any], step: TrainStep,
                 teacher_config: Mapping[str, Any] | None = None, seed: int = 0,
                 head: str = "causal-lm") -> StepParts:
    """Builds student, teacher, optimizer and inputs (protocol steps 1-4), nothing run yet.

    With ``head="extractive-qa"`` the student is an encoder with a span head and the labels are
    one start and one end position per sequence (``labels`` holds them as a (b, 2) tensor).
    With ``step.processes`` > 1 the student is wrapped per ``step.strategy`` as one rank of the
    process group already initialized (``wrap_distributed``; torchrun + gloo on CPU); the
    optimizer then sees the wrapped parameters, and ``step.micro_batch`` is this rank's.
    """
    if step.kd == "cached":
        raise NotImplementedError("kd='cached' (top-k logits from disk) is not measured yet")
    if step.kd == "online" and teacher_config is None:
        raise ValueError("kd='online' needs a teacher_config")
    torch.manual_seed(seed)
    student = _build_student(student_config, step, head, seed)
    teacher = _build_teacher(teacher_config, step) if step.kd == "online" and teacher_config is not None else None
    vocab = _vocab(student)
    if teacher is not None and _vocab(teacher) != vocab:
        raise ValueError("online KD needs the teacher and student vocabularies to agree")
    strategy = _strategy(step)
    objective = _objective(student, teacher, step) if head == "causal-lm" else None  # probes the head unwrapped
    student = wrap_distributed(student, strategy)
    if objective is not None:
        objective.engine = student
        if strategy == "fsdp":  # as the loop: the head's weight is a shard, the loss takes full logits
            objective.head = None
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer, impl = _make_optimizer(trainable, step.optimizer)
    input_ids = torch.randint(0, vocab, (step.micro_batch, step.seq_len))
    labels = (torch.randint(0, step.seq_len, (step.micro_batch, 2)) if head == "extractive-qa"
              else input_ids.clone())
    return StepParts(step, student, optimizer, impl, input_ids, labels, teacher, trainable, strategy, objective)


def _vocab(model: Any) -> int:
    """Rows of a transformers model's input embeddings (typed there as a bare Module)."""
    return model.get_input_embeddings().num_embeddings


def _strategy(step: TrainStep) -> str:
    if step.processes == 1:
        return "none"
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() != step.processes:
        raise RuntimeError(f"step.processes={step.processes} needs an initialized process group of that size "
                           "(run under torchrun with init_process_group('gloo'))")
    return step.strategy


def wrap_distributed(model: torch.nn.Module, strategy: str) -> torch.nn.Module:
    """The student as accelerate's ``prepare`` wraps it with default settings (one rank).

    "ddp": ``DistributedDataParallel(model)`` with default kwargs, as accelerate passes none
    unless a ``DistributedDataParallelKwargs`` handler is given: ``gradient_as_bucket_view``
    False (gradients are copied into flat bucket buffers of every trainable parameter), 25 MiB
    buckets, buffers broadcast each forward.
    "fsdp": FSDP1 with the kwargs accelerate's plugin passes for ``--use_fsdp
    --fsdp_sharding_strategy FULL_SHARD --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP
    --fsdp_use_orig_params true``: one unit per class in ``_no_split_modules`` (the decoder
    layer), the root unit holding the rest; no backward or forward prefetch (accelerate's
    default), ``limit_all_gathers``, no CPU offload, no mixed precision. Exception:
    ``sync_module_states`` is False, as torch refuses it for CPU modules ("The module has CPU
    parameters or buffers when `sync_module_states=True`"); every rank builds the same seeded
    weights instead.
    """
    if strategy == "none":
        return model
    if strategy == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    if strategy != "fsdp":
        raise ValueError(f"strategy must be none, ddp or fsdp (got {strategy!r})")
    from distill.runtime.train.sharding import fsdp_wrap

    return fsdp_wrap(model, torch.device("cpu"))  # memtrace measures CPU ranks (gloo)


# --------------------------------------------------------------------------- running and measuring


def _objective(student: torch.nn.Module, teacher: torch.nn.Module | None, step: TrainStep) -> Objective:
    """The training loop's loss for this step (``runtime/train/objective.py``): CE on every next
    token, plus forward KL at T = 2 against an online teacher, chunked as planned, under the
    step's autocast (CPU autocast for bf16)."""
    from distill.runtime.train.student import causal_head

    weights = Weights(ce=1.0, kl=1.0 if teacher is not None else 0.0, temperature=KD_TEMPERATURE, direction="forward",
                      hidden=0.0, chunk_tokens=step.loss_chunk_tokens)
    objective = Objective(student, "causal-lm", causal_head(student), weights,
                          Placement("cpu", step.dtype, step.precision))
    if teacher is not None:
        objective.teacher, objective.teacher_head = teacher, causal_head(teacher)
    return objective


def _forward_loss(parts: StepParts) -> torch.Tensor:
    """The loss of one micro-batch as the loop computes it (teacher under no grad, student, the
    chunked loss). Returns only the loss: outputs die with this frame."""
    if parts.objective is None:  # extractive QA: (start, end) per sequence
        out = parts.student(input_ids=parts.input_ids, start_positions=parts.labels[:, 0],
                            end_positions=parts.labels[:, 1])
        return out.loss
    # No attention mask (every token real): see protocol step 4. The models take None for it; the
    # loop's batches, which the loss is typed for, always carry one.
    batch: dict[str, Any] = {"input_ids": parts.input_ids, "attention_mask": None, "labels": parts.labels}
    loss, _ = parts.objective.loss(batch, ())
    return loss


def run_step(parts: StepParts, counter: LiveBytesCounter | None = None) -> float:
    """One optimizer step: ``step.accumulation`` micro-steps (each loss divided by it, as the
    loop does, gradients accumulating), then the optimizer, in the three measured phases
    (forward and backward cover every micro-step); returns the last loss value."""
    phase = counter.phase if counter is not None else lambda name: contextlib.nullcontext()
    accumulation = parts.step.accumulation
    for _ in range(accumulation):
        with phase("forward"):
            loss = _forward_loss(parts)
        value = float(loss.detach())
        with phase("backward"):
            (loss / accumulation).backward() if accumulation > 1 else loss.backward()
            del loss
    # FSDP leaves .grad None on parameters outside this rank's shard.
    missing = sum(p.grad is None for p in parts.trainable) if parts.strategy != "fsdp" else 0
    if missing:
        raise RuntimeError(f"{missing} trainable parameters got no gradient")
    with phase("optimizer"):
        parts.optimizer.step()
        parts.optimizer.zero_grad(set_to_none=True)
    return value


@dataclass(frozen=True)
class MeasuredStep:
    """Live tensor bytes of one measured step (see the module docstring for the protocol).

    Attributes:
        peak_bytes: max live bytes over the whole step (baseline included).
        phase_peaks: max live bytes within "forward", "backward" and "optimizer".
        phase_ends: live bytes when each phase ends; "forward" minus ``baseline_bytes`` is
            what the forward leaves for backward (saved activations, loss).
        baseline_bytes: live bytes when the step starts (weights, quant states, buffers,
            optimizer states, teacher, inputs).
        end_bytes: live bytes after ``zero_grad``; equal to ``baseline_bytes`` when nothing leaks.
        by_category: live bytes per category at the peak: parameters (with quant states and
            other module-held tensors), buffers, optimizer_states, teacher, inputs, gradients,
            activations (made in forward, incl. teacher logits), temporaries (made in backward
            or optimizer, incl. checkpoint recomputation), untracked.
        baseline_by_category: the same split at the start of the step.
        phase_by_category: the split at each phase's peak.
        peak_phase, peak_op: where the peak happened (the aten op that allocated it).
        untracked_bytes: storages first seen as op inputs; 0 when the trace is complete.
        optimizer_impl: the optimizer implementation that ran.
        trainable_params: trained elements (numel).
    """

    peak_bytes: int
    phase_peaks: dict[str, int]
    phase_ends: dict[str, int]
    baseline_bytes: int
    end_bytes: int
    by_category: dict[str, int]
    baseline_by_category: dict[str, int]
    phase_by_category: dict[str, dict[str, int]]
    peak_phase: str
    peak_op: str
    untracked_bytes: int
    optimizer_impl: str
    trainable_params: int

    @property
    def peak_over_baseline(self) -> int:
        return self.peak_bytes - self.baseline_bytes


def _track_baseline(counter: LiveBytesCounter, parts: StepParts) -> None:
    # Order matters: a storage keeps the first category it is registered under (the optimizer
    # references the parameters; tied weights share one storage).
    counter.track_existing((p for p in parts.student.parameters()), "parameters")
    counter.track_existing((b for b in parts.student.buffers()), "buffers")
    counter.track_existing(reachable_tensors(parts.student), "parameters")
    if parts.teacher is not None:
        counter.track_existing(reachable_tensors(parts.teacher), "teacher")
    counter.track_existing(reachable_tensors(parts.optimizer), "optimizer_states")
    counter.track_existing(iter((parts.input_ids, parts.labels)), "inputs")


class _Counter(LiveBytesCounter):
    """The live-bytes counter, told of FSDP's storage resizes: FSDP1 frees and re-allocates an
    unsharded flat parameter by resizing its storage in place (``_free_storage`` /
    ``_alloc_storage``), which on CPU bypasses the dispatcher."""

    def resized(self, tensor: torch.Tensor) -> None:
        self._add(tensor, self._new_category)  # a tracked storage only has its size updated
        self._note_peak("<fsdp storage resize>")

    def survivors(self, known: set[int]) -> list[torch.Tensor]:
        """A tensor on every live storage not in ``known`` (storage keys)."""
        alive = (entry.ref() for key, entry in self._live.items() if key not in known and entry.ref)
        return [torch.empty(0, dtype=torch.uint8).set_(storage) for storage in alive if storage is not None]


@contextlib.contextmanager
def _fsdp_resizes(counter: _Counter) -> Iterator[None]:
    from torch.distributed.fsdp import _flat_param as flat

    free, alloc = flat._free_storage, flat._alloc_storage

    def freed(tensor: torch.Tensor) -> None:
        free(tensor)
        counter.resized(tensor)

    def allocated(tensor: torch.Tensor, size: torch.Size) -> None:
        alloc(tensor, size)
        counter.resized(tensor)

    flat._free_storage, flat._alloc_storage = freed, allocated
    try:
        yield
    finally:
        flat._free_storage, flat._alloc_storage = free, alloc


def _hidden_buffers(parts: StepParts) -> list[torch.Tensor]:
    """Storages that outlive a step but no Python object we walk holds: DDP's gradient buckets
    (owned by its C++ Reducer). Found by tracing one more warm-up step, which is also when DDP
    rebuilds its buckets in gradient-ready order (its second iteration)."""
    counter = _Counter()
    _track_baseline(counter, parts)
    with counter, _fsdp_resizes(counter):
        run_step(parts, counter)
    gc.collect()
    known = {storage_key(t) for t in reachable_tensors(parts.student, parts.optimizer, parts.teacher)}
    known |= {storage_key(t) for t in (parts.input_ids, parts.labels)}
    return counter.survivors(known)


def measure(parts: StepParts) -> MeasuredStep:
    """Runs the warm-up step, then measures the next one (protocol step 5). Under a strategy a
    second, traced warm-up finds DDP's buckets, counted from the start as "comm_buffers"."""
    run_step(parts)
    hidden = _hidden_buffers(parts) if parts.strategy != "none" else []
    gc.collect()
    counter = _Counter()
    _track_baseline(counter, parts)
    counter.track_existing(iter(hidden), "comm_buffers")
    baseline, baseline_split = counter.current, dict(counter.by_category)
    hooks = [p.register_post_accumulate_grad_hook(
        lambda p: counter.relabel(p.grad, "gradients")) for p in parts.trainable]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with counter, _fsdp_resizes(counter) if parts.strategy == "fsdp" else contextlib.nullcontext():
            run_step(parts, counter)
    finally:
        if gc_was_enabled:
            gc.enable()
        for hook in hooks:
            hook.remove()
    return MeasuredStep(
        peak_bytes=counter.peak, phase_peaks=dict(counter.phase_peaks),
        phase_ends=dict(counter.phase_ends), baseline_bytes=baseline,
        end_bytes=counter.current, by_category=_nonzero(counter.peak_by_category),
        baseline_by_category=_nonzero(baseline_split),
        phase_by_category={k: _nonzero(v) for k, v in counter.phase_by_category.items()},
        peak_phase=counter.peak_phase, peak_op=counter.peak_op,
        untracked_bytes=counter.untracked_bytes, optimizer_impl=parts.optimizer_impl,
        trainable_params=sum(p.numel() for p in parts.trainable))


def _nonzero(split: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in split.items() if v}


def measure_step(student_config: dict, step: TrainStep, teacher_config: dict | None = None,
                 seed: int = 0, head: str = "causal-lm") -> MeasuredStep:
    """Builds the step ``step`` describes and measures its peak live tensor bytes on CPU.

    Args:
        student_config: config.json contents of the student (causal LM).
        step: the micro-step to run.
        teacher_config: config.json contents of the teacher, required when ``step.kd`` is
            "online".
        seed: seeds weights and inputs.
        head: "causal-lm", or "extractive-qa" for an encoder trained on answer spans.

    Returns:
        The measurement of the second (post-warm-up) step; with ``step.processes`` > 1, this
        rank's measurement of the third.
    """
    return measure(prepare_step(student_config, step, teacher_config, seed, head))
