"""The frozen, typed Spec: what a valid Distillfile means.

One dataclass per object in ``distillfile.schema.json`` (``$defs/<ClassName>``), one field per
property, with the same defaults; ``tests/compiler/test_schema_spec_agree.py`` fails when the two
drift. Everything downstream of ``compiler/`` reads these objects, never raw YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Annotated, Literal

from distill.compiler.units import ByteSize, LayerMap

OnError = Literal["fail", "skip"]
Dtype = Literal["auto", "float32", "float16", "bfloat16"]
Quantization = Literal["auto", "none", "8bit", "4bit"]
Auto = Literal["auto"]
GgufQuant = Literal["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"]
Metric = Literal["perplexity", "exact_match", "f1", "token_f1", "rouge_l", "latency", "size"]
AdapterType = Literal["lora", "qlora", "none"]


@dataclass(frozen=True)
class PdfSource:
    pdf: str
    ocr: Literal["auto", "always", "never"] = "auto"
    ocr_lang: str = "eng"
    password_env: str | None = None
    on_error: OnError = "fail"


@dataclass(frozen=True)
class TextSource:
    text: str
    on_error: OnError = "fail"


@dataclass(frozen=True)
class DatasetSource:
    dataset: str
    format: Literal["auto", "squad", "jsonl"] = "auto"
    split: Literal["auto", "train", "val", "test"] = "auto"
    on_error: OnError = "fail"


# The first field of each member is its discriminating key (see ``compiler/codec.py``).
SourceEntry = PdfSource | TextSource | DatasetSource


def source_pattern(source: SourceEntry) -> tuple[str, str]:
    """Which key the entry uses (pdf, text or dataset) and its path or glob."""
    key = fields(source)[0].name
    return key, getattr(source, key)


@dataclass(frozen=True)
class RandomModel:
    config: str
    tokenizer: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class Teacher:
    model: str | None = None
    revision: str | None = None
    random: RandomModel | None = None
    dtype: Dtype = "auto"
    quantization: Quantization = "auto"
    trust_remote_code: bool = False
    chat_template: str | None = None


@dataclass(frozen=True)
class Adapter:
    type: AdapterType = "lora"
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: Auto | tuple[str, ...] = "auto"

    @property
    def scaling(self) -> float:
        """LoRA scales the low-rank update B·A by alpha / r."""
        return self.alpha / self.r


@dataclass(frozen=True)
class EveryLayer:
    every: int


@dataclass(frozen=True)
class FromTeacher:
    """A student that is its teacher with only some decoder layers kept (``compiler/cut.py``)."""

    layers: tuple[int, ...] | EveryLayer


@dataclass(frozen=True)
class Student(Teacher):
    task: Literal["causal-lm", "extractive-qa"] = "causal-lm"
    adapter: Adapter = field(default_factory=Adapter)
    from_teacher: FromTeacher | None = None


@dataclass(frozen=True)
class Synthesis:
    kind: Literal["qa", "conversation"] = "qa"
    pairs_per_chunk: int = 3
    turns: int = 3
    max_new_tokens: int = 512
    temperature: float = 0.7
    prompt: str | None = None
    max_repairs: int = 2
    decoding: Literal["constrained", "free"] = "constrained"
    min_support: float = 0.5
    min_yield: float = 0.1


@dataclass(frozen=True)
class Augmentation:
    paraphrases: int = 0
    typo_rate: float = 0.0


@dataclass(frozen=True)
class Split:
    val: float = 0.1
    test: float = 0.1
    by: Literal["document", "chunk", "question"] = "document"

    @property
    def train(self) -> float:
        return 1.0 - self.val - self.test


@dataclass(frozen=True)
class Data:
    chunk_tokens: int = 512
    overlap_tokens: int = 64
    synthesis: Synthesis | None = None
    augmentation: Augmentation = field(default_factory=Augmentation)
    split: Split = field(default_factory=Split)

    @property
    def teacher_writes(self) -> bool:
        """Whether the teacher writes training data: synthesized items or paraphrases."""
        return self.synthesis is not None or self.augmentation.paraphrases > 0


@dataclass(frozen=True)
class CeLoss:
    weight: float = 1.0


@dataclass(frozen=True)
class KlLoss:
    weight: float = 1.0
    temperature: float = 2.0
    direction: Literal["forward", "reverse", "jsd"] = "forward"
    top_k: Auto | int = "auto"


@dataclass(frozen=True)
class HiddenLoss:
    weight: float = 1.0
    layers: Auto | Annotated[tuple[tuple[int, int], ...], LayerMap] = "auto"
    kind: Literal["mse", "cosine"] = "mse"


@dataclass(frozen=True)
class Loss:
    ce: CeLoss | None = field(default_factory=CeLoss)
    kl: KlLoss | None = None
    hidden: HiddenLoss | None = None
    mask: Literal["answer_only", "all"] = "answer_only"

    @property
    def total_weight(self) -> float:
        terms = (self.ce, self.kl, self.hidden)
        return sum(term.weight for term in terms if term is not None)


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = 3
    min_delta: float = 0.0


@dataclass(frozen=True)
class Train:
    epochs: int = 1
    max_steps: int | None = None
    learning_rate: float = 0.0002
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: float = 0.03
    effective_batch_size: int = 16
    micro_batch_size: Auto | int = "auto"
    max_seq_len: int = 1024
    optimizer: Literal["auto", "adamw", "adamw_8bit", "paged_adamw_8bit"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: Literal["auto", True, False] = "auto"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    early_stopping: EarlyStopping | None = None
    checkpoint_every: int = 200


@dataclass(frozen=True)
class Hardware:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    vram: Annotated[int, ByteSize] | None = None
    ram: Annotated[int, ByteSize] | None = None
    gpus: int = 1
    nodes: int = 1
    strategy: Literal["ddp", "fsdp"] = "ddp"
    tflops: float | None = None

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes


@dataclass(frozen=True)
class GgufTarget:
    quant: tuple[GgufQuant, ...] = ("Q4_K_M",)


@dataclass(frozen=True)
class OnnxTarget:
    quant: Literal["none", "int8"] = "none"


@dataclass(frozen=True)
class DeployTarget:
    gguf: GgufTarget | None = None
    onnx: OnnxTarget | None = None

    @property
    def kind(self) -> Literal["gguf", "onnx"]:
        return "gguf" if self.gguf is not None else "onnx"


@dataclass(frozen=True)
class Gates:
    min_retention: float | None = None
    max_size: Annotated[int, ByteSize] | None = None
    max_perplexity: float | None = None
    min_exact_match: float | None = None
    min_f1: float | None = None
    min_token_f1: float | None = None
    min_rouge_l: float | None = None
    max_latency_ms: float | None = None


@dataclass(frozen=True)
class Eval:
    metrics: Auto | tuple[Metric, ...] = "auto"
    max_examples: int | None = None
    max_new_tokens: int = 64
    teacher: Literal["closed_book", "open_book"] = "closed_book"
    baselines: tuple[Literal["untrained", "ce_only"], ...] = ()
    gates: Gates = field(default_factory=Gates)


@dataclass(frozen=True)
class Spec:
    version: Literal[1]
    name: str
    sources: tuple[SourceEntry, ...]
    student: Student
    seed: int = 0
    teacher: Teacher | None = None
    data: Data = field(default_factory=Data)
    loss: Loss = field(default_factory=Loss)
    train: Train = field(default_factory=Train)
    hardware: Hardware = field(default_factory=Hardware)
    deploy: tuple[DeployTarget, ...] = ()
    eval: Eval = field(default_factory=Eval)

