"""What can be known of the resolved models before any weight is loaded, checked at plan time so
that no stage finds it after extraction and synthesis have run: weights distill will load
(safetensors), the student's tokenizer.json, a chat template where the teacher is asked to write
examples, and a teacher that is not the student itself."""

from __future__ import annotations

from collections.abc import Iterator

from distill.compiler.checks import Finding
from distill.compiler.resolve import ResolvedModel
from distill.compiler.spec import Spec, Teacher

# Weight files that unpickle when loaded, and so can run code (torch.load, pickle).
PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def model_findings(spec: Spec, models: dict[str, ResolvedModel]) -> list[Finding]:
    """Every such problem of the resolved models, located where the Distillfile names them."""
    findings = [finding for role, model in models.items() for finding in _weights(role, model)]
    findings += _student_tokenizer(models["student"])
    teacher = models.get("teacher")
    if teacher is not None:
        findings += _chat_template(spec, teacher)
        findings += _same_model(spec, teacher, models["student"])
    return findings


def _weights(role: str, model: ResolvedModel) -> Iterator[Finding]:
    """A local folder must hold safetensors weights; pickled ones are refused now, not when the
    stage that first loads the model starts. (A hub model's weights are fetched only when the
    build loads it; the loader refuses pickles there.)"""
    if model.kind != "local" or model.folder is None or any(model.folder.glob("*.safetensors")):
        return
    pickled = sorted(path.name for pattern in PICKLED for path in model.folder.glob(pattern))
    what = (f"only pickled weights ({', '.join(pickled)}), which can run code when loaded" if pickled
            else "no weights (*.safetensors)")
    yield Finding((role, "model"), f"{role}.model {model.ref!r} holds {what}",
                  "convert once, in a process you trust: AutoModelForCausalLM.from_pretrained(path)"
                  ".save_pretrained(path, safe_serialization=True)" if pickled
                  else "point it at a folder written by save_pretrained()")


def _student_tokenizer(student: ResolvedModel) -> Iterator[Finding]:
    """The chunk stage counts tokens with the student's tokenizer.json (a random student without
    one gets a BPE trained on the sources); a model shipping only slow-tokenizer files cannot."""
    if student.kind != "random" and student.tokenizer_file is None:
        yield Finding(("student", "model"), f"student.model {student.ref!r} has no tokenizer.json, which "
                      "distill counts chunk tokens with", "save its tokenizer once with transformers: "
                      "AutoTokenizer.from_pretrained(path).save_pretrained(path) writes tokenizer.json")


def _chat_template(spec: Spec, teacher: ResolvedModel) -> Iterator[Finding]:
    if spec.data.synthesis is not None and not teacher.chat_template:
        yield Finding(("teacher", "model"), f"teacher {teacher.ref!r} has no chat template, and "
                      "data.synthesis asks the teacher to write examples in a conversation",
                      "use an instruction-tuned teacher, or set teacher.chat_template (Jinja text or a "
                      ".jinja file)", fallback=("teacher", "random"))


def _same_model(spec: Spec, teacher: ResolvedModel, student: ResolvedModel) -> Iterator[Finding]:
    """The same files (and, for random models, the same seed) make the same weights: the student
    would learn to reproduce itself. Legitimate for a smoke test, so a warning. A student cut from
    the teacher shares its files, and is the teacher only when it keeps every layer."""
    if student.kind == "cut":
        if len(student.layers) == teacher.config.get("num_hidden_layers"):
            yield Finding(("student", "from_teacher", "layers"), f"student.from_teacher keeps every layer of "
                          f"the teacher ({student.ref!r}): it starts from the weights it is asked to imitate",
                          "keep fewer layers, e.g. `layers: {every: 2}`", "warning")
        return
    if teacher.files != student.files or _seed(spec.teacher) != _seed(spec.student):
        return
    yield Finding(("student", "model"), f"the student is the teacher ({student.ref!r}): it starts from the "
                  "weights it is asked to imitate", "pick a smaller student, or remove the teacher to "
                  "fine-tune on the sources alone", "warning", fallback=("student", "random"))


def _seed(model: Teacher | None) -> int | None:
    return model.random.seed if model is not None and model.random is not None else None

