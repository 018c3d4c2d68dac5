"""Meaning checks: what the schema cannot say about a shape-valid Spec.

Each check yields ``Finding``s addressed by Distillfile path; the front end locates them. Checks
touch the file system (paths exist, stay inside the Distillfile's folder) but never the network
and never import torch.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.compiler.document import DataPath
from distill.compiler.errors import Severity
from distill.compiler.schema import dotted
from distill.compiler.sourcefiles import UnsafeSource, match_source, shown_path
from distill.compiler.spec import DatasetSource, Metric, Spec, Teacher, source_pattern

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PROMPT_FIELDS = {"chunk", "n", "focus"}  # prompts.task_messages fills them
_GATE_METRIC: dict[str, Metric] = {
    "max_perplexity": "perplexity", "min_exact_match": "exact_match", "min_f1": "f1",
    "min_token_f1": "token_f1", "min_rouge_l": "rouge_l", "max_latency_ms": "latency",
    "max_size": "size",
}
_CAUSAL_ONLY_METRICS = ("perplexity", "token_f1", "rouge_l")


@dataclass(frozen=True)
class Finding:
    """A problem at ``path``; when that path is not written in the file (a default), it is
    reported at ``fallback`` if given, else at the nearest written ancestor."""

    path: DataPath
    message: str
    hint: str | None = None
    severity: Severity = "error"
    fallback: DataPath | None = None


Check = Callable[[Spec, Path], Iterator[Finding]]


def check_meaning(spec: Spec, root: Path) -> list[Finding]:
    """Run every check; ``root`` is the folder holding the Distillfile, as the user wrote it (it
    appears in messages; relative paths are read from the current directory)."""
    return [finding for check in CHECKS for finding in check(spec, root)]


def looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; these prefixes can only mean a local folder."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or "\\" in model


def resolve_inside(root: Path, pattern: str) -> Path | None:
    """The absolute path ``pattern`` names: itself when absolute, else under ``root``; ``None``
    when a relative pattern climbs out of ``root`` (``../``)."""
    if os.path.isabs(pattern):
        return Path(pattern)
    base = os.path.normpath(root.absolute())
    joined = Path(os.path.normpath(os.path.join(base, pattern)))
    return joined if joined.is_relative_to(base) else None


def _relative_hint(root: Path) -> str:
    return f"relative paths start at the Distillfile's folder ({root})"


def _outside(path: DataPath, what: str) -> Finding:
    return Finding(path, f"{dotted(path)} {what} points outside the Distillfile's folder",
                   "use a path inside the folder, or an absolute path to read files elsewhere")


def _check_sources(spec: Spec, root: Path) -> Iterator[Finding]:
    for i, source in enumerate(spec.sources):
        key, pattern = source_pattern(source)
        path = ("sources", i, key)
        try:
            matched = match_source(root, pattern)
        except UnsafeSource as refused:
            yield Finding(path, f"{dotted(path)} {refused.message}", refused.hint)
        else:
            if not matched.files and not matched.folders:
                yield Finding(path, f"{dotted(path)} {pattern!r} matches no files",
                              _relative_hint(root))
            elif not matched.files:
                example = shown_path(root, matched.folders[0])
                yield Finding(path, f"{dotted(path)} {pattern!r} matches only folders",
                              f"use a glob for the files inside, e.g. {example}/**/*")
        password_env = getattr(source, "password_env", None)
        if password_env and password_env not in os.environ:
            yield Finding(("sources", i, "password_env"),
                          f"environment variable {password_env} is not set here",
                          "set it before `distill build`; validation does not need it",
                          "warning")


def _check_models(spec: Spec, root: Path) -> Iterator[Finding]:
    for role in ("teacher", "student"):
        model: Teacher | None = getattr(spec, role)
        if model is None:
            continue
        if model.model is not None:
            yield from _check_model_ref(role, model, root)
        if model.random is not None:
            if model.revision is not None:
                yield Finding((role, "revision"), f"{role}.revision applies to hub models only",
                              "remove it; a random model is defined by its config and seed")
            yield from _check_local_file((role, "random", "config"), root, model.random.config,
                                         "config.json")
            if model.random.tokenizer is not None:
                yield from _check_local_file((role, "random", "tokenizer"), root,
                                             model.random.tokenizer, "tokenizer.json")
        if model.chat_template is not None:
            yield from _check_chat_template((role, "chat_template"), root, model.chat_template)


def _check_model_ref(role: str, model: Teacher, root: Path) -> Iterator[Finding]:
    assert model.model is not None
    path = (role, "model")
    if _too_long(model.model):
        yield _long(path)
        return
    local = resolve_inside(root, os.path.expanduser(model.model))
    if local is None:
        yield _outside(path, repr(model.model))
    elif local.is_dir():
        if not (local / "config.json").is_file():
            yield Finding(path, f"{role}.model folder {model.model!r} has no config.json",
                          "point to a folder saved with save_pretrained()")
        if model.revision is not None:
            yield Finding((role, "revision"), f"{role}.revision applies to hub models only",
                          f"{model.model!r} is a local folder; remove the revision")
    elif local.is_file() and local.suffix == ".gguf":
        if model.revision is not None:
            yield Finding((role, "revision"), f"{role}.revision applies to hub models only",
                          f"{model.model!r} is a GGUF file, pinned in the lock by its sha256; remove the revision")
    elif looks_like_path(model.model):
        yield Finding(path, f"{role}.model folder {model.model!r} does not exist",
                      _relative_hint(root))
    elif not _HUB_ID.match(model.model):
        yield Finding(path, f"{role}.model {model.model!r} is neither a local folder nor a hub id",
                      "hub ids look like org/name, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    elif model.revision is None:
        yield Finding(path, f"{role}.model {model.model!r} has no pinned revision",
                      "add `revision: <commit sha>`; until then the lock pins what `main` is at plan time",
                      "warning")


# Linux's limits (NAME_MAX, PATH_MAX): past them every look-up fails with ENAMETOOLONG.
_NAME_MAX, _PATH_MAX = 255, 4096


def _too_long(value: str) -> bool:
    encoded = os.fsencode(value)
    return len(encoded) >= _PATH_MAX or any(len(part) > _NAME_MAX for part in encoded.split(b"/"))


def _long(path: DataPath) -> Finding:
    return Finding(path, f"{dotted(path)} is too long to be a path (at most {_NAME_MAX} bytes a name, "
                   f"{_PATH_MAX} in all)")


def _check_local_file(path: DataPath, root: Path, value: str, inner: str) -> Iterator[Finding]:
    target = None if _too_long(value) else resolve_inside(root, value)
    if _too_long(value):
        yield _long(path)
    elif target is None:
        yield _outside(path, repr(value))
    elif target.is_dir() and not (target / inner).is_file():
        yield Finding(path, f"{dotted(path)} folder {value!r} has no {inner}")
    elif not target.exists():
        yield Finding(path, f"{dotted(path)} {value!r} does not exist", _relative_hint(root))


def _check_chat_template(path: DataPath, root: Path, template: str) -> Iterator[Finding]:
    from jinja2 import TemplateSyntaxError

    if template.endswith(".jinja") and "\n" not in template:
        if _too_long(template):
            yield _long(path)
            return
        target = resolve_inside(root, template)
        if target is None or not target.is_file():
            yield Finding(path, f"{dotted(path)} file {template!r} does not exist"
                          if target else f"{dotted(path)} {template!r} points outside the folder")
            return
        template = target.read_text("utf-8", errors="replace")
    try:
        compiled = _template_environment().from_string(template)
    except TemplateSyntaxError as exc:
        yield Finding(path, f"{dotted(path)} is not a valid Jinja template: {exc.message} "
                      f"(template line {exc.lineno})")
        return
    for prompt in (True, False):  # as synthesis and evaluation render it, and as training does
        try:
            compiled.render(messages=PROBE_CONVERSATION, add_generation_prompt=prompt, bos_token="<s>",
                            eos_token="</s>", tools=None)
        except Exception as exc:  # noqa: BLE001 - a template can raise anything; each is the user's to fix
            yield Finding(path, f"{dotted(path)} fails on a plain user/assistant conversation: "
                          f"{type(exc).__name__}: {exc}", "distill renders user and assistant turns only")
            return


# What distill renders with a chat template: user and assistant turns, alternating.
PROBE_CONVERSATION = ({"role": "user", "content": "What does the pump do?"},
                      {"role": "assistant", "content": "It lifts water."},
                      {"role": "user", "content": "How high?"})


def _template_environment() -> Any:
    """The sandbox transformers renders chat templates in (``apply_chat_template``): trimmed
    blocks, loop controls, ``raise_exception`` and ``strftime_now``; built here because the
    compiler imports no transformers."""
    from datetime import datetime

    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=["jinja2.ext.loopcontrols"])
    environment.globals.update(raise_exception=raise_exception,
                               strftime_now=lambda fmt: datetime.now().strftime(fmt))
    return environment


def _check_from_teacher(spec: Spec, root: Path) -> Iterator[Finding]:
    """A student cut from the teacher (``compiler/cut.py``) needs a teacher with saved weights, is
    a causal LM like it, and lists each kept layer once, in the teacher's order. Whether the
    layers exist is known once the teacher's config is resolved (``distill plan``)."""
    student, path = spec.student, ("student", "from_teacher")
    if student.from_teacher is None:
        return
    if spec.teacher is None:
        yield Finding(path, "student.from_teacher needs a teacher to cut the student from",
                      "add `teacher: {model: ...}` (a hub id, a local folder or a .gguf file)")
    elif spec.teacher.random is not None:
        yield Finding(path, "student.from_teacher cuts the teacher's saved weights, and teacher.random has none",
                      "give the teacher a model (a hub id, a local folder or a .gguf file), or give the "
                      "student its own random config")
    if student.task != "causal-lm":
        yield Finding(("student", "task"), f"student.from_teacher keeps a causal LM's decoder layers; "
                      f"task is {student.task}", "remove task (causal-lm is the default), or give the "
                      "extractive-qa student its own model")
    if student.revision is not None:
        yield Finding(("student", "revision"), "student.revision applies to hub models only",
                      "a student cut from the teacher has the teacher's revision; remove it")
    layers = student.from_teacher.layers
    if isinstance(layers, tuple):
        for i in range(1, len(layers)):
            if layers[i] <= layers[i - 1]:
                where = path + ("layers", i)
                what = (f"repeats layer {layers[i]}" if layers[i] in layers[:i]
                        else f"is layer {layers[i]}, below layer {layers[i - 1]} before it")
                yield Finding(where, f"{dotted(where)} {what}",
                              "list each teacher layer once, in increasing order: the student's layer k "
                              "is the k-th listed")


def _check_loss(spec: Spec, root: Path) -> Iterator[Finding]:
    loss = spec.loss
    if loss.total_weight <= 0:
        yield Finding(("loss",), "loss weights sum to 0; nothing would be learned",
                      "give at least one of ce, kl, hidden a weight > 0")
    for term in ("kl", "hidden"):
        if getattr(loss, term) is not None and spec.teacher is None:
            yield Finding(("loss", term), f"loss.{term} needs a teacher",
                          "add a teacher, or remove this loss term")


def _check_adapter(spec: Spec, root: Path) -> Iterator[Finding]:
    student = spec.student
    kind, quant = student.adapter.type, student.quantization
    if kind == "qlora":
        if quant in ("none", "8bit"):
            yield Finding(("student", "quantization"),
                          f"student.adapter.type qlora needs a 4-bit base, but quantization is {quant}",
                          "set student.quantization to 4bit or auto, or use adapter type lora")
        if student.task != "causal-lm":
            yield Finding(("student", "adapter", "type"), "qlora applies to causal-lm students",
                          "use adapter type lora or none for extractive-qa")
    if kind == "none" and quant in ("8bit", "4bit"):
        yield Finding(("student", "quantization"),
                      f"a {quant} student cannot be fully fine-tuned (quantized weights get no gradients)",
                      "use adapter type qlora (4bit) or lora, or set quantization: none")
    if kind == "lora" and quant == "4bit":
        yield Finding(("student", "adapter", "type"), "LoRA on a 4-bit base is QLoRA",
                      "write adapter type qlora so the plan and the lock say what runs")


def _check_deploy(spec: Spec, root: Path) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, target in enumerate(spec.deploy):
        if target.kind in seen:
            yield Finding(("deploy", i), f"a second {target.kind} target (first is deploy[{seen[target.kind]}])",
                          "list every quantization in one target")
        seen.setdefault(target.kind, i)
        if target.kind == "gguf" and spec.student.task != "causal-lm":
            yield Finding(("deploy", i, "gguf"), "gguf needs a causal-lm student (llama.cpp runs "
                          "generative models)", "deploy extractive-qa students to onnx")


def _check_data(spec: Spec, root: Path) -> Iterator[Finding]:
    data, student = spec.data, spec.student
    if data.overlap_tokens >= data.chunk_tokens:
        yield Finding(("data", "overlap_tokens"), f"data.overlap_tokens ({data.overlap_tokens}) "
                      f"must be smaller than data.chunk_tokens ({data.chunk_tokens})")
    if data.split.train <= 0:
        yield Finding(("data", "split"), "data.split val + test leave nothing to train on")
    has_qa = any(isinstance(s, DatasetSource) for s in spec.sources)
    has_docs = not all(isinstance(s, DatasetSource) for s in spec.sources)
    synthesis = data.synthesis
    if synthesis is not None:
        if spec.teacher is None:
            yield Finding(("data", "synthesis"), "data.synthesis needs a teacher to write examples",
                          "add a teacher, or remove data.synthesis")
        if not has_docs:
            yield Finding(("data", "synthesis"), "data.synthesis needs pdf or text sources to read")
        if synthesis.prompt is not None:
            yield from _check_prompt(synthesis.prompt)
        if synthesis.kind == "conversation" and student.task == "extractive-qa":
            yield Finding(("data", "synthesis", "kind"), "an extractive-qa student learns from qa "
                          "pairs, not conversations", "set data.synthesis.kind: qa")
    if data.augmentation.paraphrases > 0 and spec.teacher is None:
        yield Finding(("data", "augmentation", "paraphrases"), "paraphrases are written by the "
                      "teacher; there is none", "add a teacher or set paraphrases: 0")
    if synthesis is None and not has_qa:
        if student.task == "extractive-qa":
            yield Finding(("sources",), "an extractive-qa student needs QA examples: a dataset "
                          "source or data.synthesis", "add `data: {synthesis: {kind: qa}}`")
        elif spec.loss.mask == "answer_only":
            yield Finding(("loss", "mask"), "loss.mask answer_only needs QA examples, but the "
                          "sources are plain documents and nothing synthesizes questions",
                          "set loss.mask: all to learn the documents' text, or add data.synthesis",
                          fallback=("sources",))


def _check_prompt(prompt: str) -> Iterator[Finding]:
    path = ("data", "synthesis", "prompt")
    try:
        parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(prompt)
                  if name is not None]
    except ValueError as exc:
        yield Finding(path, f"data.synthesis.prompt is not a valid template: {exc}",
                      "write literal braces as {{ and }}")
        return
    fields = {name for name, _, _ in parsed}
    for name, spec, conversion in parsed:
        if spec or conversion:  # "{n:>999999999}" would build a gigabyte of padding per request
            shown = f"!{conversion}" if conversion else f":{spec}"
            yield Finding(path, f"data.synthesis.prompt formats {{{name}}} ({shown})",
                          "placeholders are plain {chunk}, {n} and {focus}")
            return
    if "chunk" not in fields:
        yield Finding(path, "data.synthesis.prompt must contain {chunk}, where the text goes")
    for name in sorted(fields - _PROMPT_FIELDS):
        yield Finding(path, f"data.synthesis.prompt uses unknown placeholder {{{name}}}",
                      "placeholders are {chunk}, {n} and {focus}; write literal braces as {{ and }}")


def _check_train(spec: Spec, root: Path) -> Iterator[Finding]:
    train, hardware = spec.train, spec.hardware
    micro = train.micro_batch_size
    if train.effective_batch_size % hardware.world_size:
        yield Finding(("train", "effective_batch_size"), f"train.effective_batch_size "
                      f"({train.effective_batch_size}) is not a multiple of the {hardware.world_size} "
                      "processes (hardware.gpus x hardware.nodes)",
                      "every process takes an equal share of each optimizer step")
    elif micro != "auto":
        step = micro * hardware.world_size
        if train.effective_batch_size % step:
            yield Finding(("train", "micro_batch_size"), f"train.effective_batch_size "
                          f"({train.effective_batch_size}) is not a multiple of micro_batch_size x "
                          f"processes ({micro} x {hardware.world_size} = {step})",
                          "change one of them, or set micro_batch_size: auto")
    if train.early_stopping is not None and spec.data.split.val <= 0:
        yield Finding(("train", "early_stopping"), "early stopping needs a validation split",
                      "set data.split.val > 0")
    if hardware.device == "cpu":
        if train.precision == "fp16":
            yield Finding(("train", "precision"), "fp16 mixed precision needs a GPU",
                          "use bf16 or fp32 on cpu")
        if train.optimizer == "paged_adamw_8bit":
            yield Finding(("train", "optimizer"), "paged optimizers page CUDA memory; the device is cpu",
                          "use adamw or auto")
        elif train.optimizer == "adamw_8bit":
            yield Finding(("train", "optimizer"), "adamw_8bit keeps bitsandbytes' 8-bit states on a GPU; "
                          "the device is cpu", "use adamw or auto")


def _check_hardware(spec: Spec, root: Path) -> Iterator[Finding]:
    hardware = spec.hardware
    if hardware.device == "cpu" and hardware.vram is not None:
        yield Finding(("hardware", "vram"), "hardware.vram is ignored when device is cpu",
                      "the cpu budget is hardware.ram", "warning")
    if hardware.strategy == "fsdp" and hardware.world_size == 1:
        yield Finding(("hardware", "strategy"), "fsdp with one process shards nothing",
                      "set hardware.gpus > 1, or leave strategy at ddp", "warning")


def _check_eval(spec: Spec, root: Path) -> Iterator[Finding]:
    evaluation, task = spec.eval, spec.student.task
    metrics = evaluation.metrics
    if metrics != "auto" and task == "extractive-qa":
        for i, metric in enumerate(metrics):
            if metric in _CAUSAL_ONLY_METRICS:
                yield Finding(("eval", "metrics", i), f"{metric} applies to causal-lm students",
                              "extractive-qa students are scored with exact_match and f1")
    gates = evaluation.gates
    for gate, metric in _GATE_METRIC.items():
        if getattr(gates, gate) is None:
            continue
        if metrics != "auto" and metric not in metrics:
            yield Finding(("eval", "gates", gate), f"gate {gate} needs metric {metric}, which "
                          "eval.metrics leaves out", f"add {metric} to eval.metrics")
        if task == "extractive-qa" and metric in _CAUSAL_ONLY_METRICS:
            yield Finding(("eval", "gates", gate), f"{metric} applies to causal-lm students")
    if gates.min_retention is not None and spec.teacher is None:
        yield Finding(("eval", "gates", "min_retention"), "min_retention compares with a teacher; "
                      "there is none", "add a teacher or remove this gate")
    exam = any(isinstance(source, DatasetSource) and source.split == "test" for source in spec.sources)
    if any(getattr(gates, g) is not None for g in (*_GATE_METRIC, "min_retention")) \
            and spec.data.split.test <= 0 and not exam:
        yield Finding(("eval", "gates"), "gates need a test split to measure on",
                      "set data.split.test > 0, or give a dataset source split: test")
    yield from _check_references(spec)


def _check_references(spec: Spec) -> Iterator[Finding]:
    """The open-book teacher and the baseline students need what they are compared on."""
    evaluation, loss = spec.eval, spec.loss
    if evaluation.teacher == "open_book" and spec.teacher is None:
        yield Finding(("eval", "teacher"), "eval.teacher open_book scores a teacher; there is none",
                      "add a teacher, or remove eval.teacher")
    if evaluation.teacher == "open_book" and spec.student.task == "extractive-qa":
        yield Finding(("eval", "teacher"), "open_book applies to causal-lm students: an extractive-qa "
                      "model always reads the context", "remove eval.teacher")
    if "ce_only" in evaluation.baselines and (loss.ce is None or loss.ce.weight <= 0):
        yield Finding(("eval", "baselines"), "the ce_only baseline trains with the CE term alone, and "
                      "loss.ce is off", "add loss.ce, or remove ce_only")
    elif "ce_only" in evaluation.baselines and loss.kl is None and loss.hidden is None:
        yield Finding(("eval", "baselines"), "the ce_only baseline would be the student itself: its "
                      "loss is CE alone", "remove ce_only, or add loss.kl or loss.hidden")


CHECKS: tuple[Check, ...] = (
    _check_sources, _check_models, _check_from_teacher, _check_loss, _check_adapter, _check_deploy, _check_data,
    _check_train, _check_hardware, _check_eval,
)
