"""The Plan: every decision the planner made, with its arithmetic, and what it predicts.

A Plan is data: it prints (``compiler/report.py``), serializes into ``Distillfile.lock`` and is
what ``distill build`` will execute.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.compiler.memory import Term


@dataclass(frozen=True)
class Decision:
    """One choice: what was chosen and why, with the numbers."""

    name: str
    value: str
    why: str


# Which planned phases each build stage runs: the teacher generates in synthesize; the train
# stage caches the teacher's top-k logits (when KD is cached), trains and merges; evaluate loads
# the teacher and the student one after the other.
STAGE_PHASES: dict[str, tuple[str, ...]] = {"synthesize": ("synthesis",),
                                            "train": ("train:", "teacher logits", "merge"),
                                            "evaluate": ("evaluate:",)}


@dataclass(frozen=True)
class PhaseMemory:
    """Predicted peak bytes of one phase, as the sum of its terms; ``host``: it runs in the host's
    memory on a GPU plan (not held against the GPU budget)."""

    phase: str
    terms: tuple[Term, ...]
    host: bool = False

    @property
    def bytes(self) -> int:
        return sum(term.bytes for term in self.terms)


@dataclass(frozen=True)
class ModelSummary:
    role: str
    ref: str
    revision: str | None
    family: str
    params: int
    trainable: int
    tokenizer: str


@dataclass(frozen=True)
class Estimate:
    """A time estimate for a stage: FLOPs over throughput, labelled as what it is."""

    stage: str
    flops: float
    seconds: float | None
    why: str


@dataclass(frozen=True)
class Plan:
    """What ``distill build`` will do, and why it fits.

    Attributes:
        device, budget_bytes, budget_source, processes: the machine planned for.
        models: the resolved teacher and student.
        decisions: the settings chosen, in the order they were decided.
        phases: predicted peak memory per phase.
        micro_batch, accumulation, checkpointing, kd_mode, teacher_quant,
        student_quant, dtype, optimizer: the chosen settings, for the runtime.
        loss_chunk_tokens: rows per chunk of a causal LM's loss; ``None`` for other heads.
        merge_device: where the adapter is merged into the base in float32 ("cuda" when that
            fits the budget, else "cpu"); ``None`` when nothing is merged (full fine-tuning).
        precision: the autocast compute dtype ("bf16", "fp16", or "fp32" for none); with ``device``
            and ``dtype``, where and how every model of the build runs (``runtime/placement.py``).
        teacher_dtype: the teacher's weights dtype; ``None`` without a teacher.
        examples, tokens_per_epoch, optimizer_steps: data volume (estimated where the data does
            not exist yet, and said so in ``data_note``).
        estimates: time per stage (not part of the lock: throughput is measured).
        synthesis_batch: chunks the teacher writes for at once; ``None`` without synthesis.
        lora_targets: the student's adapted linear layers (peft names); empty without an adapter.
        kd_top_k: teacher logits kept per token when ``kd_mode`` is "cached".
        launch: with more than one process, the command that starts training on every machine
            (``distill.compiler.launch``; the Distillfile named as in its folder); else ``None``.
    """

    device: str
    budget_bytes: int
    budget_source: str
    processes: int
    models: tuple[ModelSummary, ...]
    decisions: tuple[Decision, ...]
    phases: tuple[PhaseMemory, ...]
    micro_batch: int
    accumulation: int
    checkpointing: bool
    dtype: str
    teacher_dtype: str | None
    precision: str
    optimizer: str
    teacher_quant: str | None
    student_quant: str
    kd_mode: str
    loss_chunk_tokens: int | None
    merge_device: str | None
    examples: int
    tokens_per_epoch: int
    optimizer_steps: int
    data_note: str
    estimates: tuple[Estimate, ...]
    synthesis_batch: int | None = None
    lora_targets: tuple[str, ...] = ()
    kd_top_k: int | None = None
    launch: tuple[str, ...] | None = None

    @property
    def peak(self) -> PhaseMemory:
        """The largest phase held against the budget."""
        return max((phase for phase in self.phases if not phase.host), key=lambda phase: phase.bytes)

    def stage_peak(self, stage: str) -> PhaseMemory | None:
        """The largest planned device phase a build stage runs (``STAGE_PHASES``), what its
        measured device peak compares with; ``None`` for a stage the plan has no such phase for."""
        if stage.startswith("export:"):  # one phase per export kind: export:onnx:int8 -> "export: onnx:int8"
            target = stage.split(":", 1)[1]
            kind = "gguf" if target.startswith("gguf") else "onnx:int8" if target == "onnx:int8" else "onnx"
            return next((p for p in self.phases if p.phase == f"export: {kind}" and not p.host), None)
        prefixes = STAGE_PHASES.get(stage, ())
        return max((phase for phase in self.phases if phase.phase.startswith(prefixes) and not phase.host),
                   key=lambda phase: phase.bytes, default=None) if prefixes else None
