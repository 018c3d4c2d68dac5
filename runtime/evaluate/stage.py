"""The evaluate stage: every candidate (teacher, student, each exported artifact) on the same test
examples with the same decoding, written to ``evaluation.json``.

Comparability rules, decided here once:
    * Greedy decoding, the same ``max_new_tokens``, the same stop ids (the tokenizer's EOS plus
      the model folder's declared EOS ids), prompts from the tokenizer's chat template (generation
      prompt on), token ids from the HF tokenizer fed to every runtime as ids.
    * HF models (teacher, student) run where the plan places every model of the build, on its
      device in its dtype (``placement``); artifacts run at their own precision on their own CPU
      runtimes (that is what is being measured).
    * Perplexity retention is computed only between candidates whose scored token rows are
      identical (same tokenizer, same template); otherwise each model's own per-token perplexity
      is reported and a note says why the ratio is missing.
    * Latency: after one warm-up run, the median of 3 timed greedy runs of 32 new tokens on a fixed
      prompt (stop ids ignored, so every candidate generates exactly 32), threads pinned; wall time
      includes the prompt's prefill. Extractive QA: median ms of one forward pass on a fixed pair.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from distill.compiler.codec import canonical_json, to_data
from distill.compiler.fsutil import write_atomic
from distill.compiler.records.evaluation import (
    EVALUATION,
    Answer,
    Decoding,
    Evaluation,
    Measurement,
    ModelResult,
    Sample,
)
from distill.compiler.records.examples import Example
from distill.compiler.spec import Eval
from distill.runtime.evaluate import footprint
from distill.runtime.evaluate.cases import CausalCase, Prepared, QACase, max_positions, prepare, read_records
from distill.runtime.evaluate.metrics import best_span, exact_match, latency, mean, perplexity, rouge_l, token_f1
from distill.runtime.evaluate.runners import Runner, open_runner
from distill.runtime.placement import Placement

Task = Literal["causal-lm", "extractive-qa"]
Step = Callable[[int, int], None]  # (examples done, total) of the candidate being measured
AUTO_METRICS = {"causal-lm": ("perplexity", "token_f1", "rouge_l", "size", "latency"),
                "extractive-qa": ("exact_match", "f1", "size", "latency")}
APPLICABLE = {"causal-lm": frozenset({"perplexity", "exact_match", "f1", "token_f1", "rouge_l", "size", "latency"}),
              "extractive-qa": frozenset({"exact_match", "f1", "size", "latency"})}
# Retention ratios: higher is better for all; perplexity is inverted (reference / model).
RETAINED = ("perplexity", "exact_match", "f1", "token_f1", "rouge_l")
LATENCY_TOKENS, LATENCY_RUNS, LATENCY_WARMUP = 32, 3, 1
QA_MAX_ANSWER_TOKENS = 30


@dataclass(frozen=True)
class Candidate:
    """A model to evaluate.

    Attributes:
        name: "teacher", "student", "gguf:Q4_K_M", "onnx:int8", ...
        kind: hf (a saved model folder), gguf (the .gguf file), onnx (the exported folder).
        tokenizer_dir: an HF tokenizer folder (for artifacts: the merged student they came from).
        placement: where and how an hf model runs (the plan's, for the teacher its own dtype);
            ``None`` for artifacts, which run on their own CPU runtimes.
        quant: bitsandbytes quantization an hf model is loaded with (the teacher's as planned:
            the build's teacher is the one it scores), "none" otherwise.
        open_book: each question is asked with the text it was asked about (``cases.with_context``).
    """

    name: str
    kind: Literal["hf", "gguf", "onnx"]
    path: Path
    tokenizer_dir: Path
    placement: Placement | None = None
    quant: str = "none"
    open_book: bool = False


CACHE_VERSION = 2  # raise when what a measurement computes changes (2: rouge_l is rouge-score's)
SAMPLES = 5  # test questions the evaluation shows with every model's answer


def resolve_metrics(eval_spec: Eval, task: Task) -> tuple[list[str], list[str]]:
    """The metrics to measure and notes on requested ones that do not apply to the task."""
    requested = AUTO_METRICS[task] if eval_spec.metrics == "auto" else tuple(eval_spec.metrics)
    wanted = [m for m in requested if m in APPLICABLE[task]]
    notes = [f"metric {m!r} does not apply to {task}; not measured" for m in requested if m not in APPLICABLE[task]]
    return wanted, notes


def evaluate(candidates: Sequence[Candidate], test: Path, task: Task, eval_spec: Eval, out: Path, *,
             max_new_tokens: int = 64, threads: int = 2, cache: Path | None = None,
             progress: Callable[..., None] | None = None) -> Evaluation:
    """Evaluate every candidate on ``test`` (``test.jsonl``); writes ``out/evaluation.json`` and
    ``out/predictions.jsonl`` atomically and returns the evaluation.

    ``cache``: a folder of earlier measurements keyed by the content of the candidate's files and
    tokenizer, the test split and every setting; a candidate found there is not run again (a build
    that only adds a deploy target measures only the new artifact), and a note says so.
    ``progress("evaluate <name>", done, total)`` follows each measured candidate's examples.

    Raises:
        ValueError: duplicate candidate names, an empty test split, or a GGUF candidate for
            extractive QA.
    """
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique: {names}")
    records = read_records(Path(test), eval_spec.max_examples)
    if not records:
        raise ValueError(f"{test} holds no examples to evaluate")
    wanted, notes = resolve_metrics(eval_spec, task)
    if eval_spec.max_examples is not None and eval_spec.max_examples < _count_lines(Path(test)):
        notes.append(f"evaluated a seeded sample of {len(records)} test examples (max_examples)")
    prepared: dict[tuple[Path, int, bool], Prepared] = {}
    models: list[ModelResult] = []
    rows: dict[str, list[Any]] = {}
    predictions: list[tuple[str, Answer]] = []
    for candidate in candidates:
        max_len = max_positions(Path(candidate.tokenizer_dir), Path(candidate.path))
        key = (Path(candidate.tokenizer_dir).resolve(), max_len, candidate.open_book)
        if key not in prepared:
            prepared[key] = prepare(Path(candidate.tokenizer_dir), records, task, max_len, candidate.open_book)
            notes += [f"{candidate.name}: {note}" for note in prepared[key].notes]
        cases = prepared[key]
        step = functools.partial(progress, f"evaluate {candidate.name}") if progress else lambda done, total: None
        metrics, answers = _measured(candidate, cases, task, wanted, max_new_tokens, threads, cache,
                                     [test, eval_spec.max_examples], notes, step)
        models.append(_model_entry(candidate, metrics))
        rows[candidate.name] = [c.scored for c in cases.cases if isinstance(c, CausalCase)]
        predictions += [(candidate.name, answer) for answer in answers]
    retention = _retention(models, rows, notes, {c.name for c in candidates if c.open_book})
    notes += _coverage_notes(models, wanted, task)
    notes += [f"{c.name}: asked open-book (each question with the text it was asked about)"
              for c in candidates if c.open_book]
    evaluation = Evaluation(
        split="test", examples=len(records), task=task,
        decoding=Decoding(greedy=True, max_new_tokens=max_new_tokens, threads=threads,
                          prompt="chat template of tokenizer_dir, generation prompt on",
                          hf="each on its placement (models[].device, models[].precision)",
                          latency_new_tokens=LATENCY_TOKENS, latency_runs=LATENCY_RUNS),
        models=tuple(models), retention=retention, samples=samples(records, predictions), notes=tuple(notes))
    out = Path(out)
    write_atomic(out / "predictions.jsonl", "".join(json.dumps({"model": model, **asdict(answer)}, ensure_ascii=False)
                                                    + "\n" for model, answer in predictions))
    evaluation.write(out / EVALUATION)
    return evaluation


def samples(records: Sequence[Example], predictions: Sequence[tuple[str, Answer]]) -> tuple[Sample, ...]:
    """The first ``SAMPLES`` test questions that were generated for, each with its reference and
    every model's answer (in candidate order), for a reader to compare."""
    answers: dict[str, dict[str, str]] = {}
    for model, answer in predictions:
        answers.setdefault(answer.id, {})[model] = answer.prediction
    return tuple(Sample(id=r.id, question=r.question, reference=r.answer, answers=answers[r.id])
                 for r in records if r.id in answers)[:SAMPLES]


def _coverage_notes(models: Sequence[ModelResult], wanted: Sequence[str], task: Task) -> list[str]:
    """Say which requested metrics a model ended up without (no scorable example, no question)."""
    notes = []
    if task == "extractive-qa" and "latency" in wanted:
        notes.append("extractive-qa latency_ms is per question: one forward pass over a fixed question and context")
    keys = {"latency": "latency_ms"}
    for model in models:
        missing = [m for m in wanted if m != "size" and keys.get(m, m) not in model.metrics]
        if missing:
            notes.append(f"{model.name}: {', '.join(missing)} not measured (no test example it applies to)")
    return notes


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


def _model_entry(candidate: Candidate, metrics: dict[str, float]) -> ModelResult:
    """Size, precision and device are always recorded (cheap, file reads only): gates and reports
    need them."""
    kind, path, placement = candidate.kind, Path(candidate.path), candidate.placement
    precision = placement.dtype if placement is not None else footprint.precision(kind, path)
    return ModelResult(name=candidate.name, kind=kind, path=str(path), params=footprint.params(kind, path),
                       size_bytes=footprint.size_bytes(kind, path), precision=precision,
                       device=placement.device if placement is not None else "cpu", metrics=metrics)


def _n_ctx(prepared: Prepared, max_new_tokens: int) -> int:
    """llama.cpp context (tokens) large enough for the longest row or prompt + generation."""
    lengths = [len(prepared.latency_ids) + LATENCY_TOKENS]
    for case in prepared.cases:
        if isinstance(case, CausalCase):
            lengths += [len(case.scored[0])] if case.scored else []
            lengths += [len(case.prompt) + max_new_tokens] if case.prompt else []
    return max(lengths) + 1


def _measured(candidate: Candidate, prepared: Prepared, task: Task, wanted: Sequence[str], max_new_tokens: int,
              threads: int, cache: Path | None, inputs: list[Any], notes: list[str], step: Step
              ) -> tuple[dict[str, float], list[Answer]]:
    """``_measure``, or its result from ``cache`` when the same model met the same test."""
    if cache is None:
        return _measure(candidate, prepared, task, wanted, max_new_tokens, threads, step)
    key = _cache_key(candidate, task, wanted, max_new_tokens, threads, inputs)
    entry = cache / f"{key}.json"
    if entry.is_file():
        notes.append(f"{candidate.name}: measured by an earlier build (same files, test split and settings; "
                     "latency included)")
        stored = Measurement.read(entry)
        return stored.metrics, list(stored.answers)
    metrics, answers = _measure(candidate, prepared, task, wanted, max_new_tokens, threads, step)
    Measurement(metrics, tuple(answers)).write(entry)
    return metrics, answers


def _cache_key(candidate: Candidate, task: Task, wanted: Sequence[str], max_new_tokens: int, threads: int,
               inputs: list[Any]) -> str:
    import hashlib

    from distill.compiler.digest import digest_file

    def digests(path: Path) -> list[Any]:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        return [(f.name, digest_file(f, f.name).sha256) for f in files]

    test, max_examples = inputs
    key = [CACHE_VERSION, candidate.kind, digests(Path(candidate.path)), digests(Path(candidate.tokenizer_dir)),
           digests(Path(test)), max_examples, task, list(wanted), max_new_tokens, threads, LATENCY_TOKENS, LATENCY_RUNS,
           to_data(candidate.placement), candidate.quant, candidate.open_book]
    return hashlib.sha256(canonical_json(key).encode("utf-8")).hexdigest()


def _measure(candidate: Candidate, prepared: Prepared, task: Task, wanted: Sequence[str], max_new_tokens: int,
             threads: int, step: Step) -> tuple[dict[str, float], list[Answer]]:
    """Open the candidate's runner, measure, close it (one model in memory at a time)."""
    runner = open_runner(candidate.kind, Path(candidate.path), task, threads, _n_ctx(prepared, max_new_tokens),
                         candidate.placement, f"{candidate.name} (evaluation)", candidate.quant)
    try:
        if task == "extractive-qa":
            metrics, answers = _measure_qa(runner, prepared, wanted, step)
        else:
            metrics, answers = _measure_causal(runner, prepared, wanted, max_new_tokens, step)
        if "latency" in wanted:
            metrics.update(_latency(runner, prepared, task))
        return metrics, answers
    finally:
        runner.close()


def _measure_causal(runner: Runner, prepared: Prepared, wanted: Sequence[str], max_new_tokens: int,
                    step: Step) -> tuple[dict[str, float], list[Answer]]:
    cases = [c for c in prepared.cases if isinstance(c, CausalCase)]
    rows = [c.scored for c in cases if c.scored is not None] if "perplexity" in wanted else []
    generates = bool({"token_f1", "rouge_l", "exact_match", "f1"} & set(wanted))
    prompts = [(c, c.prompt) for c in cases if c.prompt is not None] if generates else []
    total = len(rows) + len(prompts)  # one step per scored row, then one per generated answer
    metrics: dict[str, float] = {}
    if rows:
        scored = []
        for row in rows:
            scored.append(runner.nll(*row))
            step(len(scored), total)
        value = perplexity(sum(s for s, _ in scored), sum(n for _, n in scored))
        if value is not None:
            metrics["perplexity"] = value
    answers: list[Answer] = []
    if not generates:
        return metrics, answers
    for case, prompt in prompts:  # a "document" record asks nothing: it has no prompt
        ids, _ = runner.generate(prompt, max_new_tokens, prepared.stop)
        text = prepared.tokenizer.decode(ids, skip_special_tokens=True).strip()
        answers.append(Answer(case.id, text, case.reference))
        step(len(rows) + len(answers), total)
    scores = {"exact_match": exact_match, "f1": token_f1, "token_f1": token_f1, "rouge_l": rouge_l}
    for name, score in scores.items():
        value = mean([score(a.prediction, a.reference) for a in answers])
        if name in wanted and value is not None:
            metrics[name] = value
    return metrics, answers


def _measure_qa(runner: Runner, prepared: Prepared, wanted: Sequence[str], step: Step
                ) -> tuple[dict[str, float], list[Answer]]:
    answers: list[Answer] = []
    for case in prepared.cases:
        assert isinstance(case, QACase)
        start, end, _ = runner.qa_logits(case.ids, case.token_type_ids)
        span = best_span(start, end, case.context_mask, QA_MAX_ANSWER_TOKENS)
        text = case.context[case.offsets[span[0]][0]:case.offsets[span[1]][1]] if span else ""
        answers.append(Answer(case.id, text, case.reference))
        step(len(answers), len(prepared.cases))
    metrics: dict[str, float] = {}
    for name, score in (("exact_match", exact_match), ("f1", token_f1)):
        value = mean([score(a.prediction, a.reference) for a in answers])
        if name in wanted and value is not None:
            metrics[name] = value
    return metrics, answers


def _latency(runner: Runner, prepared: Prepared, task: Task) -> dict[str, float]:
    seconds = []
    for run in range(LATENCY_WARMUP + LATENCY_RUNS):
        if task == "extractive-qa":
            elapsed = runner.qa_logits(prepared.latency_ids, prepared.latency_types)[2]
        else:
            ids, elapsed = runner.generate(prepared.latency_ids, LATENCY_TOKENS, ())
            if len(ids) != LATENCY_TOKENS:
                raise RuntimeError(f"latency run generated {len(ids)} tokens, expected {LATENCY_TOKENS}")
        seconds += [elapsed] if run >= LATENCY_WARMUP else []
    if task == "extractive-qa":
        return {"latency_ms": latency(seconds, 1)["latency_ms"]}  # per question
    return latency(seconds, LATENCY_TOKENS)


def _retention(models: list[ModelResult], rows: dict[str, list[Any]], notes: list[str],
               open_book: set[str]) -> dict[str, dict[str, float]]:
    """Each model's metrics over the reference's: the teacher when there is one, else the student.
    Perplexities compare only between identical scored rows: not with a model asked open-book."""
    by_name = {m.name: m for m in models}
    reference = next((name for name in ("teacher", "student") if name in by_name), None)
    if reference is None:
        notes.append("no teacher or student among the candidates: no retention computed")
        return {}
    base = by_name[reference].metrics
    retention: dict[str, dict[str, float]] = {}
    for model in models:
        if model.name == reference:
            continue
        ratios = {}
        for metric in RETAINED:
            value, ref = model.metrics.get(metric), base.get(metric)
            if value is None or ref is None:
                continue
            if metric == "perplexity":
                if reference in open_book:
                    notes.append(f"{model.name}: {reference} read each question's text (open book), so "
                                 "perplexities are not comparable; no perplexity retention")
                    continue
                if rows[model.name] != rows[reference]:
                    notes.append(f"{model.name}: tokenization differs from {reference}'s, so per-token "
                                 f"perplexities are not comparable; no perplexity retention")
                    continue
                ratios[metric] = ref / value
            elif ref > 0:
                ratios[metric] = value / ref
            else:
                notes.append(f"{model.name}: {reference} scored {metric} 0, so its {metric} retention is undefined")
        retention[model.name] = ratios
    return retention
