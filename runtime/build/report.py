"""The build report: a model card (``README.md``, with the Hugging Face Hub's YAML front matter), the
same facts as ``report.json``, the loss curve (``loss.png``) and a size-vs-quality plot
(``size_vs_quality.png``) in the build's output folder.

Every number comes from the inputs (lock, data card, training metrics, evaluation, gates, export
manifests, stage records) and the merged student's config.json beside the card (its architecture);
nothing is estimated here, and anything missing is said to be missing.

Determinism: two builds of the same inputs give byte-identical files, except the stage seconds
and, on a GPU, the stages' measured CUDA peaks. Those are the only measured run facts; they sit
in report.json under ``"device_peaks"`` and ``"timings"`` (the last two keys) and in the README's
build-stage table, nowhere else. No timestamps are written; the PNGs are
saved without the "Software" metadata, so equal inputs give equal bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.compiler.fsutil import write_atomic, write_atomic_with
from distill.compiler.records.data_card import DataCard
from distill.compiler.records.evaluation import Evaluation, Sample
from distill.compiler.records.lock import Lock
from distill.compiler.records.manifest import Manifest
from distill.compiler.records.record import read_json
from distill.compiler.records.report import (
    REPORT,
    GateResult,
    HeldPeak,
    PlannedPeak,
    Report,
    ReportArtifact,
    StageRow,
)
from distill.runtime.synthesis.card import teacher_yield_lines
from distill.runtime.train.plots import read_records

MIB = 1 << 20
# Metric columns in the order the card shows them, with their number formats: ratios in [0, 1]
# get 4 decimals (a 0.1-point change in F1 shows), perplexity 3, speeds 1.
METRICS = {"perplexity": ".3f", "exact_match": ".4f", "f1": ".4f", "token_f1": ".4f", "rouge_l": ".4f",
           "latency_ms": ".1f", "tokens_per_s": ".1f"}
# The quality axis of the plot: the first of these any model has. Perplexity falls as quality
# rises, so it is plotted as 1/perplexity.
QUALITY = ("token_f1", "f1", "perplexity")
MISSING = "not measured"
# The Hub's pipeline tag per student task (Spec.student.task; the evaluation branches on the same).
PIPELINE = {"causal-lm": "text-generation", "extractive-qa": "question-answering"}
# The model-index's metrics: (metric id on hf.co/metrics, name shown). Latency and size measure
# this machine and the export, not the weights uploaded, and stay in the card's table.
HUB_METRICS = {"perplexity": ("perplexity", "perplexity (per token)"),
               "exact_match": ("exact_match", "exact match (SQuAD normalization)"),
               "f1": ("f1", "F1 (SQuAD normalization)"), "token_f1": ("f1", "token F1 (SQuAD normalization)"),
               "rouge_l": ("rouge", "ROUGE-L F-measure (rouge-score)")}
# The evaluation's name for the merged student, and the folder beside the card that holds it (the
# build's report stage links it there before writing the report: runtime/build/run.py).
STUDENT = "student"


@dataclass(frozen=True)
class StageRun:
    """A stage of this build as the report sees it: its cache key, what it took when it ran (a
    cached stage keeps its first run's seconds), the plan's peak for it and the CUDA allocator's
    peaks ({allocated, reserved} bytes) where it ran on a GPU."""

    stage: str
    key: str
    seconds: float
    predicted_peak: PlannedPeak | None = None
    device_peak: dict[str, int] | None = None


@dataclass(frozen=True)
class ReportInputs:
    """What a finished build knows about itself (see the module docstring of each producer).

    Attributes:
        name: the Distillfile's name.
        spec: the spec as data (``codec.to_data(spec)``); spec_sha256 its hash.
        lock: Distillfile.lock (sources, models, chosen settings, tools).
        plan: the plan as data (decisions with their arithmetic, phases), time estimates left out.
        data_card: data_card.json of the synthesize stage; None when there was none.
        metrics: training's metrics.jsonl, or None.
        loss_png: training's loss curve, copied as loss.png, or None.
        evaluation: evaluation.json; None when evaluation did not run.
        gates: every gate checked.
        artifacts: one per export (kind, path relative to the report folder, manifest).
        stages: one per stage, in graph order.
    """

    name: str
    spec: dict[str, Any]
    spec_sha256: str
    lock: Lock
    plan: dict[str, Any]
    data_card: DataCard | None
    metrics: Path | None
    loss_png: Path | None
    evaluation: Evaluation | None
    gates: tuple[GateResult, ...]
    artifacts: tuple[ReportArtifact, ...]
    stages: tuple[StageRun, ...]


def write_report(folder: Path, inputs: ReportInputs) -> None:
    """Write README.md, report.json, and the PNGs there is data for, each atomically."""
    training = training_summary(inputs.metrics)
    loss_png = inputs.loss_png if inputs.loss_png is not None and inputs.loss_png.is_file() else None
    has_loss = loss_png is not None
    if loss_png is not None:
        data = loss_png.read_bytes()
        write_atomic_with(folder / "loss.png", lambda tmp: tmp.write_bytes(data))
    quality = quality_points(inputs.evaluation)
    if quality["points"]:
        _plot(folder / "size_vs_quality.png", quality, inputs.name)
    report(inputs, training).write(folder / REPORT)
    card = model_card(inputs, training, quality, has_loss, architecture(folder))
    write_atomic(folder / "README.md", card)


# ---------------------------------------------------------------- facts


def training_summary(metrics: Path | None) -> dict[str, Any] | None:
    """First and last train loss, best and last validation loss with their steps; None without
    a metrics file."""
    if metrics is None or not metrics.is_file():
        return None
    records = read_records(metrics)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    summary: dict[str, Any] = {"records": len(records), "steps": max((r["step"] for r in records), default=0)}
    if train:
        summary["first"] = {k: train[0][k] for k in ("step", "loss") if k in train[0]}
        summary["last"] = {k: train[-1][k] for k in ("step", "loss", "ce", "kl", "hidden", "lr") if k in train[-1]}
    if val:
        best = min(val, key=lambda r: r["val_loss"])
        summary["best_val"] = {"step": best["step"], "val_loss": best["val_loss"]}
        summary["last_val"] = {"step": val[-1]["step"], "val_loss": val[-1]["val_loss"]}
    return summary


def quality_points(evaluation: Evaluation | None) -> dict[str, Any]:
    """The plot's data: the first quality metric some model measured above 0, and (label, MiB,
    quality) per model that has it and a size; models left out are listed with the reason. No
    metric when none was measurable: an F1 of 0 for every model ranks nothing, and a plot of
    them all on one line says less than the sentence the card writes instead."""
    models = evaluation.models if evaluation else ()
    metric = next((m for m in QUALITY if any(x.metrics.get(m) for x in models)), None)
    points, left_out = [], []
    for model in models if metric else ():
        value = model.metrics.get(metric) if metric else None
        size = model.size_bytes
        if value is None or not size or (metric == "perplexity" and value <= 0):
            left_out.append(f"{model.name}: {'no size' if not size else f'no {metric}'}")
            continue
        points.append((model.name, size / MIB, 1.0 / value if metric == "perplexity" else value))
    label = {"perplexity": "1 / perplexity"}.get(metric or "", metric or "")
    return {"metric": metric, "label": label, "points": points, "left_out": left_out}


def report(inputs: ReportInputs, training: dict[str, Any] | None) -> Report:
    """All the inputs' facts; stage seconds and CUDA peaks only under "device_peaks" and
    "timings", the last two keys."""
    return Report(
        name=inputs.name, spec_sha256=inputs.spec_sha256, spec=inputs.spec, lock=inputs.lock, plan=inputs.plan,
        data_card=inputs.data_card, training=training, evaluation=inputs.evaluation, gates=inputs.gates,
        artifacts=inputs.artifacts, stages=tuple(StageRow(s.stage, s.key, s.predicted_peak) for s in inputs.stages),
        device_peaks={s.stage: _held(s.device_peak, s.predicted_peak) for s in inputs.stages if s.device_peak},
        timings={s.stage: s.seconds for s in inputs.stages})


def _held(peak: dict[str, int], predicted: PlannedPeak | None) -> HeldPeak:
    """A stage's CUDA peaks beside its plan: reserved over predicted says how well the plan held
    (the planner's phase includes the CUDA context, which the allocator does not count)."""
    if predicted is None:
        return HeldPeak(peak["allocated"], peak["reserved"])
    return HeldPeak(peak["allocated"], peak["reserved"], predicted.bytes, round(peak["reserved"] / predicted.bytes, 4))


def _plot(png: Path, quality: dict[str, Any], title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, Agg when saved
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.subplots()
    for label, mib, value in quality["points"]:
        axes.scatter([mib], [value], zorder=3)
        axes.annotate(label, (mib, value), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xscale("log")
    # Plain numbers (0.5, 100), not 5x10^-1, at 1-2-5 steps: a span within one decade may have
    # no power of ten in it, and labels at every minor tick (2, 3, ... 9) run into each other.
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(_one_two_five))
    axes.margins(x=0.15)  # room for the last point's label
    axes.set_xlabel("size (MiB, log scale)")
    axes.set_ylabel(quality["label"])
    # Every quality value is >= 0 and one is > 0: from 0, the axis shows how far from nothing
    # each model is, rather than a +-0.04 window around equal points.
    axes.set_ylim(bottom=0)
    axes.set_title(f"{title}: size vs quality")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    write_atomic_with(png, lambda tmp: figure.savefig(tmp, format="png", metadata={"Software": None}))


def _one_two_five(value: float, _position: int) -> str:
    """A minor tick's label on a log axis: shown at 2 and 5 times a power of ten, else blank."""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 5) else ""


# ---------------------------------------------------------------- the card


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def fmt_metric(name: str, value: Any) -> str:
    if value is None:
        return MISSING
    return format(value, METRICS.get(name, ".4g")) if isinstance(value, (int, float)) else str(value)


def model_card(inputs: ReportInputs, training: dict[str, Any] | None, quality: dict[str, Any],
               has_loss: bool, model_type: str | None) -> str:
    sections = [[front_matter(inputs, model_type)], _header(inputs), _built_from(inputs.lock),
                _decisions(inputs.plan), _data(inputs.data_card), _training(training, has_loss),
                _evaluation(inputs.evaluation), _plot_section(quality), _gates(inputs.gates),
                _artifacts(inputs.artifacts, inputs.name), _stages(inputs.stages), _tools(inputs.lock)]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def front_matter(inputs: ReportInputs, model_type: str | None) -> str:
    """The Hub's YAML metadata, rendered by huggingface_hub (``ModelCard(text).data`` reads it
    back). Left out rather than guessed: ``license`` (the Distillfile has no such field and the
    lock does not record the student's; the card says so), ``datasets`` (sources are files in the
    Distillfile's folder, never Hub datasets), ``base_model`` for a local or random student."""
    from huggingface_hub import ModelCardData

    pipeline = PIPELINE[(inputs.spec.get("student") or {}).get("task", "causal-lm")]  # the Spec's default
    results = _eval_results(inputs.evaluation, inputs.name, pipeline)
    data = ModelCardData(base_model=_hub_student(inputs.lock), tags=_tags(inputs, model_type),
                         pipeline_tag=pipeline, library_name="transformers",
                         model_name=inputs.name if results else None, eval_results=results or None)
    return f"---\n{data.to_yaml()}\n---"


def _hub_student(lock: Lock) -> str | None:
    student = lock.models.get("student")
    return student.ref if student is not None and student.kind == "hub" else None


def _tags(inputs: ReportInputs, architecture: str | None) -> list[str]:
    """distill; knowledge-distillation when a teacher taught; the export kinds; the architecture."""
    tags = ["distill"] + (["knowledge-distillation"] if "teacher" in inputs.lock.models else [])
    return tags + sorted({a.kind for a in inputs.artifacts}) + ([architecture] if architecture else [])


def architecture(folder: Path) -> str | None:
    """The merged student's model_type, from the config.json beside the card; None without one."""
    config = folder / "config.json"
    return read_json(config).get("model_type") if config.is_file() else None


def _eval_results(evaluation: Evaluation | None, name: str, pipeline: str) -> list[Any]:
    """The merged student's quality metrics on the build's held-out split, as the model-index's
    results. That split is no Hub dataset: its type names it, ``<name>-<split>``."""
    from huggingface_hub import EvalResult

    student = evaluation.model(STUDENT) if evaluation else None
    if evaluation is None or student is None:
        return []
    measured, split = student.metrics, evaluation.split
    return [EvalResult(task_type=pipeline, dataset_type=f"{name}-{split}", dataset_split=split,
                       dataset_name=f"{name} held-out {split} split", metric_type=HUB_METRICS[m][0],
                       metric_name=HUB_METRICS[m][1], metric_value=measured[m])
            for m in HUB_METRICS if measured.get(m) is not None]


def _model_line(lock: Lock, role: str) -> str:
    model = lock.models.get(role)
    if model is None:
        return f"no {role} recorded in the lock"
    return f"`{model.ref}` (revision {model.revision or 'not recorded'})"


def _header(inputs: ReportInputs) -> list[str]:
    has_teacher = "teacher" in inputs.lock.models
    origin = (f"distilled from teacher {_model_line(inputs.lock, 'teacher')}" if has_teacher
              else "trained without a teacher")
    return [f"# {inputs.name}", "",
            f"Student {_model_line(inputs.lock, 'student')}, {origin} by distill.", "",
            f"Spec sha256: `{inputs.spec_sha256}`. This card, report.json and the plots are written from the "
            "build's records only; stage seconds are the only facts that differ between identical builds.", "",
            "License: not set. The Distillfile has no license field and the build does not record the student's "
            "license; the weights derive from the student (and, through what it learned, from the teacher and "
            "the sources): add `license:` to the front matter above once you know what those allow."]


def _built_from(lock: Lock) -> list[str]:
    lines = ["## Built from", "", "### Sources", ""]
    lines += _table(["file", "sha256", "bytes"], [[s.path, f"`{s.sha256}`", f"{s.size:,}"] for s in lock.sources]
                    ) if lock.sources else ["No source files recorded."]
    lines += ["", "### Models", ""]
    rows = [[role, m.ref, m.revision or "not recorded", m.kind, m.tokenizer] for role, m in sorted(lock.models.items())]
    lines += _table(["role", "model", "revision", "kind", "tokenizer"], rows) if rows else ["No models recorded."]
    return lines


def _decisions(plan: dict[str, Any]) -> list[str]:
    decisions = plan.get("decisions") or []
    if not decisions:
        return ["## Plan", "", "No plan decisions recorded."]
    lines = ["## Plan", "", f"Device {plan.get('device', 'not recorded')} ({plan.get('dtype', '?')} weights, "
             f"{plan.get('precision', '?')} compute), memory budget "
             f"{plan.get('budget_bytes', 0) / 2**30:.2f} GiB ({plan.get('budget_source', 'source not recorded')}).", ""]
    return lines + [f"- **{d.get('name')}** = {d.get('value')}: {d.get('why')}" for d in decisions]


def _data(card: DataCard | None) -> list[str]:
    if card is None:
        return ["## Training data", "", "No data card (the synthesize stage did not run or left none)."]
    lines = ["## Training data", "", f"From {card.inputs.chunks} chunks and "
             f"{card.inputs.dataset_examples} dataset examples.", ""]
    lines += _table(["split", "examples", "by origin"], [
        [name, count, ", ".join(f"{k} {v}" for k, v in card.origins.get(name, {}).items()) or "-"]
        for name, count in card.examples.items()])
    lines += teacher_yield_lines(card.generation.teacher_yield)
    lines += [f"**Warning:** {warning}" for warning in card.generation.warnings]
    by_stage = ", ".join(f"{k} {v}" for k, v in card.rejected.by_stage.items()) or "none"
    lines += ["", f"Rejected: {card.rejected.total} ({by_stage})."]
    reasons = card.rejected.by_reason
    if reasons:
        rows = [[r.stage, r.reason, r.count] for r in reasons[:10]]
        lines += [""] + _table(["stage", "reason", "count"], rows)
        if len(reasons) > 10:
            lines.append(f"... and {len(reasons) - 10} more reasons (report.json has them all).")
    return lines


def _training(summary: dict[str, Any] | None, has_loss: bool) -> list[str]:
    lines = ["## Training", ""]
    if summary is None:
        lines.append("No training metrics (metrics.jsonl missing).")
    else:
        lines.append(f"- {summary['steps']} optimizer steps, {summary['records']} metric records.")
        if "first" in summary:
            last = summary["last"]
            parts = ", ".join(f"{k} {last[k]:.4f}" for k in ("ce", "kl", "hidden") if k in last)
            lines.append(f"- Train loss {summary['first']['loss']:.4f} at step {summary['first']['step']} -> "
                         f"{last['loss']:.4f} at step {last['step']}" + (f" ({parts})." if parts else "."))
        if "best_val" in summary:
            best, final = summary["best_val"], summary["last_val"]
            lines.append(f"- Validation loss: best {best['val_loss']:.4f} at step {best['step']}, last "
                         f"{final['val_loss']:.4f} at step {final['step']}.")
        else:
            lines.append("- No validation loss was recorded.")
    lines += ["", "![loss curve](loss.png)" if has_loss else "No loss curve (loss.png missing)."]
    return lines


def _evaluation(evaluation: Evaluation | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if evaluation is None or not evaluation.models:
        return lines + ["No evaluation results (evaluation.json missing or empty): no metrics or retention."]
    models = evaluation.models
    decoding = ", ".join(f"{k} {v}" for k, v in sorted(vars(evaluation.decoding).items()))
    lines += [f"{evaluation.examples} examples of the {evaluation.split} split, task {evaluation.task}; "
              f"decoding: {decoding}.", ""]
    shown = [m for m in METRICS if any(m in x.metrics for x in models)]
    shown += sorted({m for x in models for m in x.metrics} - set(shown))
    rows = []
    for model in models:
        kept = evaluation.retention.get(model.name) or {}
        rows.append([model.name, model.kind, model.precision,
                     f"{model.params:,}" if model.params is not None else MISSING,
                     f"{model.size_bytes / MIB:.2f}" if model.size_bytes is not None else MISSING,
                     *[fmt_metric(m, model.metrics.get(m)) for m in shown],
                     ", ".join(f"{k} {v:.3f}" for k, v in sorted(kept.items())) or "-"])
    lines += _table(["model", "kind", "precision", "params", "size (MiB)", *shown, "retention"], rows)
    if evaluation.retention:
        lines += ["", "Retention: a metric divided by the reference model's, as evaluation.json reports it."]
    lines += [f"Note: {note}" for note in evaluation.notes]
    return lines + _samples(evaluation.samples)


def _samples(samples: Sequence[Sample]) -> list[str]:
    """A few test questions with every model's answer, greedy as measured, for a reader to judge."""
    if not samples:
        return []
    lines = ["", "### Sample answers", "", "Test questions with the reference answer and each model's answer "
             "(the evaluation's own greedy generations)."]
    for sample in samples:
        lines += ["", f"**{_cell(sample.question)}** Reference: {_cell(sample.reference)}", ""]
        lines += _table(["model", "answer"], [[name, answer or "(nothing)"] for name, answer in sample.answers.items()])
    return lines


def _plot_section(quality: dict[str, Any]) -> list[str]:
    lines = ["## Size vs quality", ""]
    if quality["metric"] is None:
        return lines + ["No size-vs-quality plot: no quality metric was measurable "
                        f"(none of {', '.join(QUALITY)} above 0 for any model)."]
    if not quality["points"]:
        return lines + [f"No size-vs-quality plot: no model has both a size and {quality['metric']}."]
    lines += [f"Quality is {quality['label']}; size in MiB on a log scale.", "",
              "![size vs quality](size_vs_quality.png)"]
    return lines + ([""] + [f"Not plotted: {x}." for x in quality["left_out"]] if quality["left_out"] else [])


def _gates(gates: Sequence[GateResult]) -> list[str]:
    if not gates:
        return ["## Gates", "", "No gate results (none declared, or evaluation did not run)."]
    failed = sum(not g.passed for g in gates)
    rows = [[g.gate, g.model, fmt_metric(g.gate, g.value), fmt_metric(g.gate, g.threshold),
             "PASS" if g.passed else "FAIL", g.message] for g in gates]
    return ["## Gates", "", f"{len(gates) - failed} of {len(gates)} passed.", ""] + _table(
        ["gate", "model", "value", "threshold", "result", "message"], rows)


def _artifacts(artifacts: Sequence[ReportArtifact], name: str) -> list[str]:
    if not artifacts:
        return ["## Artifacts", "", "No artifacts were exported."]
    lines = ["## Artifacts"]
    for artifact in artifacts:
        manifest = artifact.manifest
        folder = _folder(artifact.path, manifest)
        lines += ["", f"### {artifact.kind}: `{folder}`", ""]
        lines += _table(["file", "quant", "bytes", "sha256"], [
            [f.path, f.quant or manifest.quant, f"{f.size:,}", f"`{f.sha256}`"] for f in manifest.files])
        checks = manifest.verification
        passed = sum(c.passed for c in checks)
        lines += ["", f"Verification: {passed} of {len(checks)} checks passed.", ""]
        lines += _table(["check", "result", "detail"], [
            [c.name, "ok" if c.passed else "FAIL", c.detail] for c in checks])
        lines += ["", "How to run it:", "", *_how_to_run(artifact.kind, folder, manifest, name)]
    return lines


def _folder(path: str, manifest: Manifest) -> str:
    """The export folder: ``path`` may name it or the model file in it."""
    return str(Path(path).parent) if Path(path).name == manifest.model else str(path)


def _how_to_run(kind: str, folder: str, manifest: Manifest, name: str) -> list[str]:
    model = f"{folder}/{manifest.model}"
    if kind == "gguf":
        from distill.backends.run_commands import llama_cpp_command

        lines = ["```sh", f"{llama_cpp_command(manifest, model)}   # llama.cpp", f"distill chat {folder}"]
        lines += [f"ollama create {name} -f {folder}/{f.modelfile}"
                  for f in manifest.files if f.modelfile and f.path == manifest.model]
        lines += ["```", "", "```python", "from llama_cpp import Llama", f"llm = Llama(model_path={model!r})",
                  'print(llm.create_chat_completion([{"role": "user", "content": "Hello"}]))', "```"]
        ollama = manifest.ollama
        if ollama and ollama.warning:
            lines += ["", f"**Ollama:** {ollama.warning}"]
        elif ollama and ollama.template:
            lines += ["", f"The Modelfile's TEMPLATE is Ollama's {ollama.template} format, checked against the "
                      "model's own chat template on probe conversations."]
        return lines
    if kind == "onnx":
        qa = manifest.task == "question-answering"
        cls = "ORTModelForQuestionAnswering" if qa else "ORTModelForCausalLM"
        lines = ["```python", f"from optimum.onnxruntime import {cls}", "from transformers import AutoTokenizer",
                 f"model = {cls}.from_pretrained({folder!r}, file_name={manifest.model!r})",
                 f"tokenizer = AutoTokenizer.from_pretrained({folder!r})  # or the source model folder"]
        if not qa:  # the cache fix is distill.backends.onnx.load_exported's, so this runs what was verified
            lines += ["# optimum sizes the first (empty) cache from config.json, wrongly for GQA Phi-3/Gemma-2",
                      "# and head_dim != hidden/heads (Qwen3, Gemma-2); take the graph's kv heads and head dim:",
                      'past = next(i for i in model.session.get_inputs() if i.name.startswith("past_key_values."))',
                      "model.num_key_value_heads, model.embed_size_per_head = past.shape[1], past.shape[3]",
                      'ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}],',
                      '                                    add_generation_prompt=True, return_tensors="pt")',
                      "print(tokenizer.decode(model.generate(ids, max_new_tokens=64)[0, ids.shape[1]:]))"]
        return lines + ["```"] + ([] if qa else ["", f"Or: `distill chat {folder}`."])
    return [f"No instructions for artifact kind {kind!r}."]


def _stages(stages: Sequence[StageRun]) -> list[str]:
    if not stages:
        return ["## Build stages", "", "No stage records."]
    rows = [[s.stage, f"`{s.key[:12]}`", f"{s.seconds:.2f}", _mib(s.predicted_peak.bytes) if s.predicted_peak else "",
             _measured_peak(s)] for s in stages]
    total = sum(s.seconds for s in stages)
    return ["## Build stages", "",
            *_table(["stage", "key", "seconds", "planned peak (MiB)", "CUDA reserved / allocated (MiB)"], rows),
            "", f"{total:.2f} s in all; seconds are wall-clock and differ between runs (report.json keeps them "
            "under \"timings\"); a stage cached from an earlier build shows the seconds it took then. The planned "
            "peak is the plan's largest phase for the stage (CUDA context included on a GPU); the CUDA peaks are "
            "the caching allocator's, in report.json under \"device_peaks\"."]


def _mib(size: int) -> str:
    return f"{size / MIB:,.0f}"


def _measured_peak(stage: StageRun) -> str:
    peak = stage.device_peak
    if not peak:
        return "" if not stage.predicted_peak else "not on a GPU"
    return f"{_mib(peak['reserved'])} / {_mib(peak['allocated'])}"


def _tools(lock: Lock) -> list[str]:
    tools = lock.tools
    if not tools:
        return ["## Tools", "", "No tool versions recorded in the lock."]
    return ["## Tools", "", ", ".join(f"{k} {v}" for k, v in sorted(tools.items())) + "."]
