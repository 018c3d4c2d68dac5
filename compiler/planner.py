"""The planner: a pure function from (Spec, resolved models, budget, data volume) to a Plan.

Every choice is recorded as a ``Decision`` with its arithmetic. The search prefers quality and
speed first (unquantized models, no checkpointing, large micro-batches) and gives them up one at a
time until the predicted peak of every phase fits the budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from distill.compiler.arch import Architecture, Head, architecture
from distill.compiler.distributed import estimate_step
from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.hardware import Budget
from distill.compiler.launch import launch_command
from distill.compiler.memory import DTYPE_BYTES, lora_params, loss_chunk_bytes_per_row, trainable_params
from distill.compiler.phases import (
    PROMPT_OVERHEAD_TOKENS,
    cuda_overheads,
    evaluation_terms,
    export_terms,
    generation_terms,
    merge_terms,
    teacher_forward_terms,
)
from distill.compiler.plan import Decision, Estimate, ModelSummary, PhaseMemory, Plan
from distill.compiler.resolve import ResolvedModel
from distill.compiler.spec import AdapterType, Spec
from distill.compiler.trainstep import DEFAULT_LOSS_CHUNK, ComputeDtype, KdMode, Optimizer, Precision, Quant, TrainStep
from distill.compiler.units import format_size
from distill.compiler.volume import DataVolume

TRACED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gpt2", "gemma", "gemma2", "gemma3_text", "phi3",
                   "bert", "roberta", "xlm-roberta", "distilbert")
BOUND_TRACED = 0.05
# Training throughput assumed as a share of the device rate: measured CPU matmul rate, or the
# declared peak of a GPU (typical model FLOPs utilization of fine-tuning is 30-50%).
UTILIZATION = 0.4
DEFAULT_TOP_K = 64
# One chunk of the loss holds 8-48 B x rows x vocab at once (CE .. online KD): give it at most
# 2% of the budget.
LOSS_CHUNK_SHARE = 0.02


class DoesNotFit(DistillError):
    """No setting fits the budget; the hint names the smallest change that would."""

    exit_code = ExitCode.DOES_NOT_FIT


@dataclass
class _Choice:
    """One point of the search and what it predicts."""

    teacher_quant: Quant | None
    student_quant: Quant
    optimizer: Optimizer
    micro_batch: int
    checkpointing: bool
    phases: list[PhaseMemory] = field(default_factory=list)

    @property
    def peak(self) -> PhaseMemory:
        return max((p for p in self.phases if not p.host), key=lambda p: p.bytes)


@dataclass(frozen=True)
class _Setting:
    spec: Spec
    student: Architecture
    head: Head
    teacher: Architecture | None
    budget: Budget
    dtype: ComputeDtype
    teacher_dtype: ComputeDtype | None
    precision: Precision
    kd_mode: KdMode
    loss_chunk: int | None
    targets: tuple[str, ...]
    merge_device: str | None = None


def make_plan(spec: Spec, models: dict[str, ResolvedModel], budget: Budget, volume: DataVolume) -> Plan:
    """Decide every setting the build needs and predict its memory; raises ``DoesNotFit``."""
    student = architecture(models["student"].config)
    head: Head = "extractive-qa" if spec.student.task == "extractive-qa" else "causal-lm"
    teacher = architecture(models["teacher"].config) if "teacher" in models else None
    decisions: list[Decision] = []
    if teacher is not None and models["student"].kind == "cut":
        _cut_layers(models["student"], student, teacher, decisions)
    dtype = _dtype(spec, budget, decisions)
    teacher_dtype = _teacher_dtype(spec, dtype, decisions) if teacher is not None else None
    precision = _precision(spec, budget, dtype, decisions)
    kd_mode = _kd_mode(spec, models, decisions, _passes(spec, volume))
    targets = student.linear_names if spec.student.adapter.targets == "auto" else tuple(spec.student.adapter.targets)
    setting = _Setting(spec, student, head, teacher, budget, dtype, teacher_dtype, precision, kd_mode,
                       _loss_chunk(spec, student, head, budget, dtype, teacher_dtype, kd_mode, decisions), targets)
    setting = replace(setting, merge_device=_merge_device(setting, decisions))
    choice = _search(setting)
    if choice is None:
        raise _does_not_fit(setting)
    synthesis = _synthesis(setting, choice.teacher_quant)
    _record(setting, choice, decisions, synthesis)
    return _assemble(setting, choice, decisions, models, volume, synthesis[0] if synthesis is not None else None)


def _cut_layers(cut: ResolvedModel, student: Architecture, teacher: Architecture,
                decisions: list[Decision]) -> None:
    """What a student cut from the teacher keeps, and its size against the teacher's: every
    parameter of a decoder layer goes with it, embeddings, final norm and head stay."""
    kept, full = student.params("causal-lm"), teacher.params("causal-lm")
    decisions.append(Decision("student layers", ",".join(map(str, cut.layers)),
                              f"student.from_teacher: {len(cut.layers)} of the teacher's {teacher.layers} decoder "
                              f"layers with its embeddings, final norm and head, initialised from its weights: "
                              f"{kept:,} of its {full:,} parameters ({kept / full:.0%})"))


def _dtype(spec: Spec, budget: Budget, decisions: list[Decision]) -> ComputeDtype:
    if spec.student.dtype != "auto":
        return spec.student.dtype
    dtype: ComputeDtype = "bfloat16" if budget.device == "cuda" else "float32"
    why = ("bf16 halves weights and activations on GPUs" if budget.device == "cuda" else
           "CPUs run fp32 matmuls fastest; bf16 would halve memory but is emulated on most CPUs")
    decisions.append(Decision("dtype", dtype, f"student.dtype auto on {budget.device}: {why}"))
    return dtype


def _teacher_dtype(spec: Spec, dtype: ComputeDtype, decisions: list[Decision]) -> ComputeDtype:
    """The teacher's weights dtype: as declared, else the student's (one autocast, logits and
    hidden states compared at one precision)."""
    assert spec.teacher is not None  # called only when the models include a teacher
    asked = spec.teacher.dtype
    if asked != "auto":
        return asked
    decisions.append(Decision("teacher dtype", dtype, "teacher.dtype auto: the student's, so both compute alike"))
    return dtype


def _precision(spec: Spec, budget: Budget, dtype: ComputeDtype, decisions: list[Decision]) -> Precision:
    """The autocast compute dtype of training and of the teacher's forward passes: "bf16",
    "fp16", or "fp32" (no autocast: everything computes in the weights' dtype)."""
    asked = spec.train.precision
    if asked == "fp16" and budget.device == "cpu":
        raise DistillError("train.precision fp16 needs a GPU: CPUs have no fp16 autocast for training",
                           hint="use train.precision: bf16 (CPUs autocast bf16), or hardware.device: cuda")
    if spec.train.optimizer in ("adamw_8bit", "paged_adamw_8bit") and budget.device == "cpu":
        raise DistillError(f"train.optimizer {spec.train.optimizer} keeps bitsandbytes' 8-bit states on a GPU, "
                           "and the plan runs on the CPU", hint="use train.optimizer: adamw or auto")
    if dtype == "float16" and spec.student.adapter.type == "none" and asked in ("auto", "fp16"):
        # fp16 autocast needs a gradient scaler, and the scaler refuses float16 gradients: the
        # weights it updates must be float32 masters (LoRA adapters are, whatever the base).
        raise DistillError("full fine-tuning of float16 weights cannot use fp16 mixed precision: its gradient "
                           "scaler needs float32 weights to update",
                           hint="set student.dtype: float32 with train.precision: fp16, or use bfloat16, or an adapter")
    if asked != "auto":
        decisions.append(Decision("precision", asked, f"train.precision {asked}: set in the Distillfile"))
        return asked
    precision: Precision
    if budget.device == "cpu":
        precision, why = "fp32", "CPUs compute in the weights' dtype (no autocast)"
    elif dtype == "float16":
        precision, why = "fp16", "float16 weights compute in fp16 autocast, with a gradient scaler"
    else:
        precision, why = "bf16", ("bf16 autocast on GPUs: matmuls in bf16, reductions and losses in fp32 "
                                  f"({dtype} weights)")
    decisions.append(Decision("precision", precision, f"train.precision auto on {budget.device}: {why}"))
    return precision


def _passes(spec: Spec, volume: DataVolume) -> float:
    """How many times training reads the train split: ``epochs``, or what ``max_steps`` x the
    effective batch amounts to over the (estimated) train examples."""
    if spec.train.max_steps is None:
        return float(spec.train.epochs)
    train_examples = max(1, int(volume.examples * spec.data.split.train))
    return spec.train.max_steps * spec.train.effective_batch_size / train_examples


def _kd_mode(spec: Spec, models: dict[str, ResolvedModel], decisions: list[Decision], passes: float) -> KdMode:
    loss = spec.loss
    if "teacher" not in models:
        return "none"
    same = models["teacher"].tokenizer == models["student"].tokenizer
    compared = f"teacher tokenizer {models['teacher'].tokenizer[:28]} vs student {models['student'].tokenizer[:28]}"
    if loss.kl is None and loss.hidden is None:
        mode: KdMode = "sequence" if spec.data.synthesis is not None else "none"
        decisions.append(Decision("KD mode", mode, "no logit or hidden-state loss: the student learns "
                                  "from the teacher's synthesized text" if mode == "sequence" else "no KD terms"))
        return mode
    if not same:
        raise DistillError(
            f"loss.kl/loss.hidden need the teacher and student to share a tokenizer, and they differ ({compared})",
            hint="remove loss.kl and loss.hidden: the student still learns from the teacher's "
                 "synthesized data (sequence-level KD), or pick models of one tokenizer family")
    if loss.hidden is not None:
        mode, why = "online", "hidden-state matching needs the teacher's hidden states at every step"
    elif loss.kl is not None and loss.kl.top_k != "auto":
        mode, why = "cached", f"loss.kl.top_k {loss.kl.top_k} asks for cached top-k logits"
    elif passes > 1:
        mode, why = "cached", (f"{passes:.3g} passes over the train split: caching top-{DEFAULT_TOP_K} logits runs "
                               f"the teacher once instead of {passes:.3g} times")
    else:
        mode, why = "online", (f"{passes:.3g} pass over the train split: the teacher runs at most once either way, "
                               "online is exact (full vocabulary)")
    decisions.append(Decision("KD mode", mode, f"tokenizers identical ({compared}); {why}"))
    return mode


def _loss_chunk(spec: Spec, student: Architecture, head: Head, budget: Budget, dtype: ComputeDtype,
                teacher_dtype: ComputeDtype | None, kd_mode: KdMode, decisions: list[Decision]) -> int | None:
    """Rows per chunk of a causal LM's loss: as many as keep one chunk's temporaries within
    LOSS_CHUNK_SHARE of the budget, a power of two, at most DEFAULT_LOSS_CHUNK."""
    if head != "causal-lm":
        return None
    probe = TrainStep(micro_batch=1, seq_len=1, dtype=dtype, kd="online" if kd_mode == "online" else "none")
    per_row = max(loss_chunk_bytes_per_row(probe, student.vocab, DTYPE_BYTES[teacher_dtype or dtype]))
    rows = max(16, int(budget.memory * LOSS_CHUNK_SHARE) // per_row)
    chunk = min(2 ** int(math.log2(rows)), DEFAULT_LOSS_CHUNK)
    decisions.append(Decision("loss chunk", f"{chunk} rows",
                              f"{chunk} rows x {per_row / student.vocab:g} B x {student.vocab:,} vocab = "
                              f"{format_size(chunk * per_row)} <= {LOSS_CHUNK_SHARE:.0%} of "
                              f"{format_size(budget.memory)} (at most {DEFAULT_LOSS_CHUNK:,}); full logits would "
                              "hold that per token of the micro-batch"))
    return chunk


def _merge_phase(setting: _Setting, host: bool) -> PhaseMemory:
    spec = setting.spec
    adapter = TrainStep(micro_batch=1, seq_len=1, adapter="lora", lora_r=spec.student.adapter.r,
                        lora_targets=setting.targets)
    terms = merge_terms(setting.student, setting.head, lora_params(setting.student, adapter), spec.train.max_seq_len)
    return PhaseMemory("merge (host)", terms, host=True) if host else _on_device(setting, PhaseMemory("merge", terms))


def _merge_device(setting: _Setting, decisions: list[Decision]) -> str | None:
    """Where the adapter is merged in float32: on the plan's device when that fits its budget,
    else in the host's memory (a GPU's float32 copy of a 3.8B student alone is 14 GiB)."""
    if setting.spec.student.adapter.type == "none":
        return None
    device = setting.budget.device
    phase = _merge_phase(setting, host=False)
    if device == "cpu" or phase.bytes <= setting.budget.memory:
        decisions.append(Decision("merge device", device, f"the float32 merge needs {format_size(phase.bytes)} "
                                  f"<= {format_size(setting.budget.memory)}" if device == "cuda" else
                                  "the plan runs on the CPU"))
        return device
    decisions.append(Decision("merge device", "cpu", f"the float32 merge needs {format_size(phase.bytes)} > "
                              f"{format_size(setting.budget.memory)} of GPU memory: the student moves to the host's "
                              "memory to merge (slower, same result)"))
    return "cpu"


def _options(setting: _Setting) -> Iterator[tuple[Quant | None, Quant, Optimizer]]:
    """(teacher quant, student quant, optimizer), best quality first."""
    spec = setting.spec
    teacher_q: list[Quant | None] = [None]
    if setting.teacher is not None:
        assert spec.teacher is not None  # the teacher's architecture comes from its spec
        asked = spec.teacher.quantization
        teacher_q = ["none", "8bit", "4bit"] if asked == "auto" else [asked]
    adapter, quant = spec.student.adapter.type, spec.student.quantization
    student_q: list[Quant]
    if adapter == "qlora":
        student_q = ["4bit"]
    elif quant == "auto":
        student_q = ["none", "8bit"] if adapter == "lora" else ["none"]
    else:
        student_q = [quant]
    optimizers: list[Optimizer] = [spec.train.optimizer] if spec.train.optimizer != "auto" else (
        ["adamw", "adamw_8bit"] if setting.budget.device == "cuda" else ["adamw"])
    for tq in teacher_q:
        for sq in student_q:
            for optimizer in optimizers:
                yield tq, sq, optimizer


def _micro_batches(spec: Spec, processes: int) -> list[int]:
    per_process = max(1, spec.train.effective_batch_size // processes)
    if spec.train.micro_batch_size != "auto":
        return [spec.train.micro_batch_size]
    return [m for m in range(per_process, 0, -1) if per_process % m == 0]


def _step(setting: _Setting, tq: Quant | None, sq: Quant, optimizer: Optimizer, m: int, ckpt: bool) -> TrainStep:
    spec = setting.spec
    adapter = spec.student.adapter.type
    per_process = max(1, spec.train.effective_batch_size // setting.budget.processes)
    return TrainStep(
        micro_batch=m, seq_len=spec.train.max_seq_len, dtype=setting.dtype, precision=setting.precision,
        accumulation=max(1, per_process // m),
        adapter=adapter, lora_r=spec.student.adapter.r, lora_targets=setting.targets,
        lora_dropout=spec.student.adapter.dropout if adapter != "none" else 0.0,
        base_quant="none" if adapter == "qlora" else sq, checkpointing=ckpt, optimizer=optimizer,
        kd=setting.kd_mode if setting.kd_mode in ("online", "cached") else "none",
        loss_chunk_tokens=setting.loss_chunk or DEFAULT_LOSS_CHUNK, top_k=_top_k(spec),
        teacher_dtype=setting.teacher_dtype or setting.dtype, teacher_quant=tq or "none",
        processes=setting.budget.processes, strategy=spec.hardware.strategy)


def _top_k(spec: Spec) -> int:
    kl = spec.loss.kl
    return kl.top_k if kl is not None and kl.top_k != "auto" else DEFAULT_TOP_K


def _phases(setting: _Setting, choice: _Choice, synthesis: PhaseMemory | None) -> list[PhaseMemory]:
    """Every phase of the build for one choice; ``synthesis`` depends only on the teacher's
    quantization, so the search computes it once per quantization."""
    step = _step(setting, choice.teacher_quant, choice.student_quant, choice.optimizer,
                 choice.micro_batch, choice.checkpointing)
    memory = estimate_step(setting.student, setting.head, step, setting.budget.device, setting.teacher)
    phases = [_on_device(setting, PhaseMemory(f"train: {name}", terms)) for name, terms in memory.phases.items()]
    spec, teacher = setting.spec, setting.teacher
    if setting.merge_device is not None:
        phases.append(_merge_phase(setting, host=setting.merge_device != setting.budget.device))
    phases += _evaluation_phases(setting, choice.teacher_quant)
    phases += _export_phases(setting)
    if synthesis is not None:
        phases.append(synthesis)
    if teacher is not None and setting.kd_mode == "cached":
        top_k = _top_k(spec)
        phases.append(_on_device(setting, PhaseMemory("teacher logits", teacher_forward_terms(
            teacher, step.teacher_dtype, choice.teacher_quant or "none", step.tokens, top_k))))
    return phases


def _export_phases(setting: _Setting) -> list[PhaseMemory]:
    """Each deploy target's verified export, on the CPU: in host memory, held against the budget
    only when the plan runs on the CPU."""
    host = setting.budget.device != "cpu"
    kinds = dict.fromkeys("gguf" if t.gguf is not None else
                          ("onnx:int8" if t.onnx is not None and t.onnx.quant == "int8" else "onnx")
                          for t in setting.spec.deploy)
    return [PhaseMemory(f"export: {kind}" + (" (host)" if host else ""),
                        export_terms(setting.student, setting.head, kind), host=host) for kind in kinds]


def _evaluation_phases(setting: _Setting, teacher_quant: Quant | None) -> list[PhaseMemory]:
    """The evaluate stage's HF models, one at a time on the plan's device: the teacher as planned
    (its dtype and quantization), the merged student in the plan's dtype."""
    seq = setting.spec.train.max_seq_len
    phases = [_on_device(setting, PhaseMemory("evaluate: student", evaluation_terms(
        setting.student, setting.head, setting.dtype, "none", seq)))]
    if setting.teacher is not None:
        phases.insert(0, _on_device(setting, PhaseMemory("evaluate: teacher", evaluation_terms(
            setting.teacher, "causal-lm", setting.teacher_dtype or setting.dtype, teacher_quant or "none", seq))))
    return phases


def _synthesis(setting: _Setting, teacher_quant: Quant | None) -> tuple[int, PhaseMemory] | None:
    """Teacher generation at the largest batch (of 32, 16, ... 1) that fits, with its phase;
    ``None`` when the build synthesizes nothing."""
    spec, teacher = setting.spec, setting.teacher
    if teacher is None or spec.data.synthesis is None:
        return None
    prompt = spec.data.chunk_tokens + PROMPT_OVERHEAD_TOKENS
    for size in SYNTHESIS_BATCHES:
        phase = _on_device(setting, PhaseMemory(f"synthesis (batch {size})", generation_terms(
            teacher, setting.teacher_dtype or setting.dtype, teacher_quant or "none", size, prompt,
            spec.data.synthesis.max_new_tokens)))
        if phase.bytes <= setting.budget.memory:
            break
    return size, phase


def _synthesis_phase(setting: _Setting, teacher_quant: Quant | None) -> PhaseMemory | None:
    synthesis = _synthesis(setting, teacher_quant)
    return synthesis[1] if synthesis is not None else None


def _on_device(setting: _Setting, phase: PhaseMemory) -> PhaseMemory:
    """A phase with the device's fixed costs added (none on CPU)."""
    if setting.budget.device != "cuda":
        return phase
    return PhaseMemory(phase.phase, phase.terms + cuda_overheads(phase.bytes))


SYNTHESIS_BATCHES = (32, 16, 8, 4, 2, 1)


def _search(setting: _Setting) -> _Choice | None:
    spec = setting.spec
    if spec.train.gradient_checkpointing != "auto":
        ckpt_options = [bool(spec.train.gradient_checkpointing)]
    else:  # encoders' checkpointed steps are not traced yet: never chosen for them
        ckpt_options = [False] if setting.student.is_encoder else [False, True]
    synthesis = {tq: _synthesis_phase(setting, tq) for tq, _, _ in _options(setting)}
    for tq, sq, optimizer in _options(setting):
        fits: dict[bool, _Choice] = {}
        for ckpt in ckpt_options:
            for m in _micro_batches(spec, setting.budget.processes):
                choice = _Choice(tq, sq, optimizer, m, ckpt)
                choice.phases = _phases(setting, choice, synthesis[tq])
                if choice.peak.bytes <= setting.budget.memory:
                    fits[ckpt] = choice
                    break
        if fits:
            plain, checkpointed = fits.get(False), fits.get(True)
            # Checkpointing costs a third more compute; take it only for a 2x larger micro-batch.
            if plain is None or (checkpointed is not None and plain.micro_batch < 4
                                 and checkpointed.micro_batch >= 2 * plain.micro_batch):
                return checkpointed
            return plain
    return None


def _record(setting: _Setting, choice: _Choice, decisions: list[Decision],
            synthesis: tuple[int, PhaseMemory] | None) -> None:
    spec, budget = setting.spec, setting.budget
    peak = max((p for p in choice.phases if p.phase.startswith("train")), key=lambda p: p.bytes)
    if setting.teacher is not None:
        assert spec.teacher is not None  # the teacher's architecture comes from its spec
        decisions.append(Decision("teacher quantization", choice.teacher_quant or "none",
                                  _quant_why(spec.teacher.quantization, choice.teacher_quant)))
    base_why = ("student.adapter.type qlora: LoRA on an nf4 base, set in the Distillfile"
                if spec.student.adapter.type == "qlora"
                else _quant_why(spec.student.quantization, choice.student_quant))
    decisions.append(Decision("student base", choice.student_quant, base_why))
    per_process = spec.train.effective_batch_size // budget.processes
    accumulation = per_process // choice.micro_batch
    n = budget.processes
    per_rank = "per rank: " if n > 1 else ""
    decisions.append(Decision(
        "batch", f"{per_rank}micro {choice.micro_batch} x accumulation {accumulation} x {n} process(es)",
        f"{per_rank}micro {choice.micro_batch} x accumulation {accumulation} x {n} process(es) = "
        f"{choice.micro_batch * accumulation * n} = effective_batch_size {spec.train.effective_batch_size}; "
        f"the largest micro-batch whose {'per-rank ' if n > 1 else ''}peak {format_size(peak.bytes)} ({peak.phase}) "
        f"fits {format_size(budget.memory)}"))
    if n > 1:
        hw = spec.hardware
        decisions.append(Decision("strategy", hw.strategy, _strategy_why(hw.strategy, hw.gpus, hw.nodes)))
    decisions.append(Decision(
        "gradient checkpointing", "on" if choice.checkpointing else "off",
        "set in the Distillfile" if spec.train.gradient_checkpointing != "auto" else
        ("needed to fit, or it doubles the micro-batch (costs ~1/3 more compute)" if choice.checkpointing
         else "not needed: the activations fit")))
    decisions.append(Decision("optimizer", choice.optimizer,
                              "set in the Distillfile" if spec.train.optimizer != "auto" else
                              "AdamW with states in the parameters' dtype" if choice.optimizer == "adamw"
                              else "8-bit states to fit"))
    if synthesis is not None:
        assert spec.data.synthesis is not None  # _synthesis sizes a batch only for it
        size, phase = synthesis
        decisions.append(Decision("synthesis batch", str(size),
                                  f"the largest of {', '.join(map(str, SYNTHESIS_BATCHES))} whose generation peak "
                                  f"{format_size(phase.bytes)} (teacher + KV cache of {size} x "
                                  f"{setting.spec.data.chunk_tokens + PROMPT_OVERHEAD_TOKENS} prompt + "
                                  f"{spec.data.synthesis.max_new_tokens} new tokens) fits "
                                  f"{format_size(budget.memory)}"))
    if setting.student.family not in TRACED_FAMILIES or (setting.student.is_encoder and choice.checkpointing):
        untraced = setting.student.family + (" with checkpointing" if setting.student.is_encoder else "")
        decisions.append(Decision("memory model", "approximate",
                                  f"{untraced} is not traced; traced within {BOUND_TRACED:.0%} for "
                                  f"{', '.join(TRACED_FAMILIES)} (benchmarks/planner_accuracy.py)"))


def _strategy_why(strategy: str, gpus: int, nodes: int) -> str:
    where = f"{gpus} process(es) x {nodes} node(s)"
    if strategy == "ddp":
        return f"{where}; every rank holds a full replica plus DDP's gradient buckets (one more trainable-sized copy)"
    return (f"{where}; FULL_SHARD: parameters, gradients and optimizer states 1/{gpus * nodes} per rank, plus the "
            "all-gathered root (embeddings, head) and one all-gathered decoder layer")


def _quant_why(asked: str, chosen: str | None) -> str:
    if asked != "auto":
        return "set in the Distillfile"
    return "full precision fits" if chosen == "none" else f"{chosen} needed: higher precision does not fit"


def _does_not_fit(setting: _Setting) -> DoesNotFit:
    """The smallest plan's peak, and the changes that would make one fit."""
    spec, budget = setting.spec, setting.budget
    options = list(_options(setting))
    tq, sq, optimizer = options[-1]
    smallest = _Choice(tq, sq, optimizer, 1, spec.train.gradient_checkpointing is not False)
    smallest.phases = _phases(setting, smallest, _synthesis_phase(setting, tq))
    peak = smallest.peak
    key = "hardware.vram" if budget.device == "cuda" else "hardware.ram"
    changes = [f"{key} >= {_round_up(peak.bytes)}"]
    if spec.student.adapter.type != "qlora" and spec.student.task == "causal-lm":
        if _search(_respec(setting, _with_adapter(spec, "qlora"))) is not None:
            changes.append("student.adapter.type: qlora")
    length = spec.train.max_seq_len // 2
    while length >= 64:
        if _search(_respec(setting, _with_seq_len(spec, length))) is not None:
            changes.append(f"train.max_seq_len <= {length}")
            break
        length //= 2
    return DoesNotFit(
        f"nothing fits in {format_size(budget.memory)} ({budget.memory_source}): the smallest plan "
        f"(micro-batch 1, checkpointing, most quantized) peaks at {format_size(peak.bytes)} in {peak.phase}",
        hint=", or ".join(changes))


def _respec(setting: _Setting, spec: Spec) -> _Setting:
    """The setting for another spec, its merge re-decided (an adapter may now be merged)."""
    changed = replace(setting, spec=spec)
    return replace(changed, merge_device=_merge_device(changed, []))


def _round_up(n_bytes: int) -> str:
    """Up to the next half GiB: 18.3 GiB -> 18.5GiB."""
    return f"{math.ceil(n_bytes / 2**29) / 2:g}GiB"


def _with_adapter(spec: Spec, kind: AdapterType) -> Spec:
    student = replace(spec.student, adapter=replace(spec.student.adapter, type=kind), quantization="auto")
    return replace(spec, student=student)


def _with_seq_len(spec: Spec, length: int) -> Spec:
    return replace(spec, train=replace(spec.train, max_seq_len=length))


def _assemble(setting: _Setting, choice: _Choice, decisions: list[Decision],
              models: dict[str, ResolvedModel], volume: DataVolume, synthesis_batch: int | None) -> Plan:
    spec, budget = setting.spec, setting.budget
    step = _step(setting, choice.teacher_quant, choice.student_quant, choice.optimizer,
                 choice.micro_batch, choice.checkpointing)
    trainable, _ = trainable_params(setting.student, step, setting.head)
    summaries = [ModelSummary("student", models["student"].ref, models["student"].revision,
                              setting.student.family, setting.student.params(setting.head), trainable,
                              models["student"].tokenizer)]
    if setting.teacher is not None:
        summaries.insert(0, ModelSummary("teacher", models["teacher"].ref, models["teacher"].revision,
                                         setting.teacher.family, setting.teacher.params("causal-lm"), 0,
                                         models["teacher"].tokenizer))
    train_examples = int(volume.examples * spec.data.split.train)
    steps = spec.train.max_steps or max(
        1, math.ceil(train_examples * spec.train.epochs / spec.train.effective_batch_size))
    per_process = spec.train.effective_batch_size // budget.processes
    return Plan(
        device=budget.device, budget_bytes=budget.memory, budget_source=budget.memory_source,
        processes=budget.processes, models=tuple(summaries), decisions=tuple(decisions),
        phases=tuple(choice.phases), micro_batch=choice.micro_batch,
        accumulation=per_process // choice.micro_batch, checkpointing=choice.checkpointing,
        dtype=setting.dtype, teacher_dtype=setting.teacher_dtype, precision=setting.precision,
        optimizer=choice.optimizer,
        teacher_quant=choice.teacher_quant,
        student_quant=choice.student_quant, kd_mode=setting.kd_mode, loss_chunk_tokens=setting.loss_chunk,
        merge_device=setting.merge_device,
        examples=volume.examples, tokens_per_epoch=volume.tokens, optimizer_steps=steps,
        data_note=volume.note, estimates=tuple(_estimates(setting, choice, volume, steps)),
        synthesis_batch=synthesis_batch,
        lora_targets=setting.targets if spec.student.adapter.type != "none" else (),
        kd_top_k=_top_k(spec) if setting.kd_mode == "cached" else None,
        launch=launch_command("Distillfile", spec.hardware.gpus, spec.hardware.nodes))


def _estimates(setting: _Setting, choice: _Choice, volume: DataVolume, steps: int) -> Iterator[Estimate]:
    """FLOPs per stage over throughput x utilization; ``seconds`` is None when no rate is known."""
    spec, budget = setting.spec, setting.budget
    rate = budget.tflops * 1e12 * UTILIZATION * budget.processes if budget.tflops else None
    label = (f"{budget.tflops:.3g} TFLOP/s x {UTILIZATION:.0%} utilization x {budget.processes} "
             f"({budget.tflops_source})" if rate else budget.tflops_source)
    n_student = setting.student.params(setting.head)
    tokens = steps * spec.train.effective_batch_size * min(spec.train.max_seq_len,
                                                           max(1, volume.tokens // max(1, volume.examples)))
    per_token = (6 if spec.student.adapter.type == "none" else 4) + (2 if choice.checkpointing else 0)
    flops = per_token * n_student * tokens
    why = f"{per_token} x {n_student / 1e6:,.1f}M params x {tokens:,} tokens"
    if "ce_only" in spec.eval.baselines:  # the baseline trains the same steps without a teacher
        yield Estimate("train:ce_only", flops, flops / rate if rate else None, f"{why}; {label}")
    if setting.teacher is not None and setting.kd_mode in ("online", "cached"):
        n_teacher = setting.teacher.params("causal-lm")
        teacher_tokens = tokens if setting.kd_mode == "online" else tokens // max(1, spec.train.epochs)
        flops += 2 * n_teacher * teacher_tokens
        why += f" + teacher forward 2 x {n_teacher / 1e6:,.1f}M x {teacher_tokens:,}"
    yield Estimate("train", flops, flops / rate if rate else None, f"{why}; {label}")
    if setting.teacher is not None and spec.data.synthesis is not None:
        chunks = max(1, volume.examples // max(1, spec.data.synthesis.pairs_per_chunk))
        generated = chunks * (spec.data.chunk_tokens + PROMPT_OVERHEAD_TOKENS + spec.data.synthesis.max_new_tokens)
        n_teacher = setting.teacher.params("causal-lm")
        flops = 2 * n_teacher * generated
        yield Estimate("synthesize", flops, flops / rate if rate else None,
                       f"2 x {n_teacher / 1e6:,.1f}M x {generated:,} tokens; a lower bound: decoding is "
                       f"memory-bound; {label}")
