"""The stages of ``distill build`` for one planned Distillfile:

    extract -> synthesize -> train (teacher logits, training, merge) -> export:<target> ...
            -> evaluate -> report

Each stage's key is its slice of the build (``slices.SLICES``) and it runs on a view of the build
that holds that slice alone. Changing ``deploy`` changes only the export keys (and evaluation's),
so a rebuild re-runs the exports and what reads them (evaluation, report), never training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from distill.compiler.codec import to_data
from distill.compiler.pipeline import Planned
from distill.compiler.records.stage import StageMeta
from distill.compiler.spec import DeployTarget
from distill.runtime.build.graph import META, Stage
from distill.runtime.build.slices import key_inputs, view
from distill.runtime.progress import Progress

ERROR_FILE = "DISTILL_WORKER_ERROR"  # where a worker started by `distill build` leaves its error
CE_ONLY_STAGE = "train:ce_only"  # trains the CE-only baseline (eval.baselines)


def target_name(target: DeployTarget) -> str:
    """``gguf:Q4_K_M,Q8_0`` or ``onnx:int8``: the ``--to`` form of a deploy entry."""
    if target.gguf is not None:
        return "gguf:" + ",".join(target.gguf.quant)
    assert target.onnx is not None  # the schema makes a deploy entry one of the two
    return f"onnx:{target.onnx.quant}"


def build_stages(planned: Planned, progress: Progress | None, offline: bool = False) -> list[Stage]:
    spec = planned.compiled.spec
    about = Abouts(planned)

    def key(stage: str, build: Planned = planned) -> Callable[[], dict[str, Any]]:
        return partial(key_inputs, build, stage)

    def launched(stage: str) -> Callable[[Path, Mapping[str, Path]], dict[str, Any]]:
        return partial(_here_or_launched, planned, stage, progress=progress, offline=offline)

    stages = [
        Stage("extract", 3, (), key("extract"), partial(_extract, view(planned, "extract")), about.extract),
        Stage("synthesize", 2, ("extract",), key("synthesize"), launched("synthesize"), about.synthesize),
        Stage("train", 2, ("extract", "synthesize"), key("train"), launched("train"), about.train),
    ]
    baselines = []
    if "ce_only" in spec.eval.baselines:
        baselines.append(CE_ONLY_STAGE)
        stages.append(Stage(CE_ONLY_STAGE, 2, ("extract", "synthesize"), key("train", ce_only(planned)),
                            launched(CE_ONLY_STAGE), about.ce_only))
    exports = []
    for target in spec.deploy:
        name = f"export:{target_name(target)}"
        exports.append(name)
        stages.append(Stage(name, 1, ("train",), partial(to_data, target), partial(_export, target),
                            partial(about.export, target)))
    stages.append(Stage("evaluate", 3, ("extract", "synthesize", "train", *baselines, *exports), key("evaluate"),
                        partial(_evaluate, view(planned, "evaluate"), progress=progress), about.evaluate))
    return stages


@dataclass(frozen=True)
class Abouts:
    """What each stage will do, in the words of its announcement line: the plan's numbers."""

    planned: Planned

    def extract(self) -> str:
        files = self.planned.volume.files
        return f"{len(files)} source file(s), {sum(f.size for f in files):,} bytes"

    def synthesize(self) -> str:
        spec, plan = self.planned.compiled.spec, self.planned.plan
        if not self.planned.compiled.spec.data.teacher_writes:
            return "dataset examples only: nothing for a teacher to write"
        synthesis, teacher = spec.data.synthesis, self.planned.models["teacher"].ref
        writes = (f"{synthesis.pairs_per_chunk} QA pairs per chunk" if synthesis and synthesis.kind == "qa" else
                  f"{synthesis.turns}-turn conversations per chunk" if synthesis else
                  f"{spec.data.augmentation.paraphrases} paraphrase(s) per training question")
        return f"teacher {teacher} on {plan.device} ({plan.teacher_dtype}) writes {writes}"

    def train(self) -> str:
        # No step count here: the plan's is estimated before extraction; the bar counts the real steps.
        spec, plan, student = self.planned.compiled.spec, self.planned.plan, self.planned.models["student"]
        processes = f" x {plan.processes} processes" if plan.processes > 1 else ""
        batch = f"{plan.micro_batch} x {plan.accumulation}{processes}"
        length = f"at most {spec.train.max_steps} steps" if spec.train.max_steps else f"{spec.train.epochs} epoch(s)"
        teaching = f", teacher logits {plan.kd_mode}" if plan.kd_mode != "none" else ""
        return (f"student {student.ref} on {plan.device} ({plan.dtype}, {plan.precision} compute), "
                f"batches of {batch}, {length}{teaching}")

    def ce_only(self) -> str:
        return (f"the CE-only baseline (eval.baselines): student {self.planned.models['student'].ref} trained "
                "again on the same data with the same plan, the CE term alone")

    def export(self, target: DeployTarget) -> str:
        return f"{target_name(target)} from the merged student, then verified against it"

    def evaluate(self) -> str:
        spec = self.planned.compiled.spec
        asked = "teacher (open book)" if spec.eval.teacher == "open_book" else "teacher"
        teacher = [asked] * ("teacher" in self.planned.models)
        baselines = [f"student:{name}" for name in spec.eval.baselines]
        models = teacher + ["student", *baselines] + [target_name(t) for t in spec.deploy]
        metrics = ", ".join(spec.eval.metrics) if isinstance(spec.eval.metrics, tuple) else "the task's metrics"
        return f"{', '.join(models)} on the held-out split ({metrics})"


def _extract(planned: Planned, folder: Path, up: Mapping[str, Path]) -> dict[str, Any]:
    from distill.runtime.sources.run import extract_and_chunk

    extracted = extract_and_chunk(planned.compiled, planned.models["student"], folder)
    report = extracted.corpus.report
    return {"pages": report.pages, "chunks": report.chunks, "examples": report.examples,
            "skipped": len(report.skipped), "tokenizer": extracted.tokenizer}


def synthesize_in_process(planned: Planned, folder: Path, up: Mapping[str, Path], progress: Progress | None
                          ) -> dict[str, Any]:
    from distill.runtime.sources.run import read_extracted
    from distill.runtime.synthesis.run import synthesize_planned

    card = synthesize_planned(planned, read_extracted(up["extract"]), folder, progress)
    generation = card.generation
    return {"examples": card.examples, "rejected": card.rejected.total,
            "teacher_yield": to_data(generation.teacher_yield), "warnings": generation.warnings}


def train_in_process(planned: Planned, folder: Path, up: Mapping[str, Path], progress: Progress | None
                     ) -> dict[str, Any]:
    from accelerate import PartialState

    from distill.runtime.sources.run import extracted_texts
    from distill.runtime.synthesis.run import teacher_key
    from distill.runtime.train.run import drop_resume_state, train_planned

    trained = train_planned(planned, up["synthesize"], folder, extracted_texts(up["extract"]), progress,
                            teacher_key(planned))
    if PartialState().is_main_process:  # every rank has finished: train_planned ends waiting for all
        drop_resume_state(folder)
    return {"steps": trained.result.steps, "total_steps": trained.result.total_steps,
            "resumed_from": trained.result.resumed_from, "stopped_early": trained.result.stopped_early,
            "best_val": trained.result.best_val, "merge_max_abs_diff": trained.merge.max_abs_diff,
            "merge_base_diff": trained.merge.base_diff,
            "skipped": len(trained.skipped)}


def ce_only(planned: Planned) -> Planned:
    """The build as its CE-only baseline trains: the same data and plan, the loss's CE term alone
    (no teacher in the loop)."""
    spec = planned.compiled.spec
    alone = replace(spec, loss=replace(spec.loss, kl=None, hidden=None))
    return replace(planned, compiled=replace(planned.compiled, spec=alone))


def train_ce_only_in_process(planned: Planned, folder: Path, up: Mapping[str, Path], progress: Progress | None
                             ) -> dict[str, Any]:
    return train_in_process(ce_only(planned), folder, up, progress)


IN_PROCESS = {"synthesize": synthesize_in_process, "train": train_in_process, CE_ONLY_STAGE: train_ce_only_in_process}
SLICE_OF = {"synthesize": "synthesize", "train": "train", CE_ONLY_STAGE: "train"}  # the slice a stage runs on


def run_in_process(planned: Planned, stage: str, folder: Path, up: Mapping[str, Path], progress: Progress | None
                   ) -> dict[str, Any]:
    """The stage's work in this process, on its view of the build (each launched worker runs this too)."""
    return IN_PROCESS[stage](view(planned, SLICE_OF[stage]), folder, up, progress)


def _here_or_launched(planned: Planned, stage: str, folder: Path, up: Mapping[str, Path], *,
                      progress: Progress | None, offline: bool) -> dict[str, Any]:
    """In this process, or, for a multi-process plan, in one worker per process started on this
    machine with the plan's launch command (``compiler/launch.py``, one node). Synthesis needs
    the teacher: with nothing to generate it stays here.
    A multi-node training is started by the cluster's scheduler (``distill launch-cmd``)."""
    import os

    stays = stage == "synthesize" and not planned.compiled.spec.data.teacher_writes
    if planned.plan.processes == 1 or "WORLD_SIZE" in os.environ or stays:
        return run_in_process(planned, stage, folder, up, progress)
    return _launched(planned, stage, folder, offline)


def _launched(planned: Planned, stage: str, folder: Path, offline: bool) -> dict[str, Any]:
    import os
    import subprocess
    import sys

    from distill.compiler.errors import DistillError, ExitCode
    from distill.compiler.launch import launch_command
    from distill.compiler.records.stage import WorkerError

    hardware = planned.compiled.spec.hardware
    if hardware.nodes > 1 and stage == "train":
        raise DistillError(f"training runs on {hardware.nodes} nodes: start it on every node from your scheduler",
                           hint=f"`distill launch-cmd {planned.compiled.path}` prints the command; "
                                "`distill build` then continues after training")
    processes = planned.plan.processes // hardware.nodes  # synthesis of a multi-node plan: this node's share
    # The command the plan gives for training across nodes, for this one node: one way to start workers.
    launch = launch_command(str(planned.compiled.path), processes, 1, stage)
    assert launch is not None and launch[:2] == ("accelerate", "launch")  # processes > 1 here
    command = [sys.executable, "-m", "accelerate.commands.launch", *launch[2:], *(["--offline"] * offline)]
    error_file = folder / "worker-error.json"
    error_file.unlink(missing_ok=True)
    if subprocess.run(command, env={**os.environ, ERROR_FILE: str(error_file)}).returncode != 0:
        if error_file.is_file():  # a user-facing error in the workers: the same message and exit code here
            reported = WorkerError.read(error_file)
            error = DistillError(reported.message, reported.hint)
            error.exit_code = ExitCode(reported.exit_code)
            raise error
        raise DistillError(f"the {stage} stage failed in its {processes} processes",
                           hint="the workers' errors are above; rerun `distill build` to resume where they stopped")
    return StageMeta.read(folder / META).summary


def _export(target: DeployTarget, folder: Path, up: Mapping[str, Path]) -> dict[str, Any]:
    import shutil

    from distill.backends.export import export_verified

    artifact_dir = folder / "artifact"
    shutil.rmtree(artifact_dir, ignore_errors=True)  # a half export from a crash; export_atomically wants none
    backend_target = target.gguf or target.onnx
    assert backend_target is not None  # the schema makes a deploy entry one of the two
    artifact, checks = export_verified(up["train"] / "model", backend_target, artifact_dir)
    ollama = (artifact.extra or {}).get("ollama") or {}
    return {"kind": artifact.kind, "quant": artifact.quant, "size": artifact.size,
            "checks": [c.name for c in checks if c.passed], "failed": [c.name for c in checks if not c.passed],
            "warnings": [f"Ollama: {ollama['warning']}"] if ollama.get("warning") else []}


def _evaluate(planned: Planned, folder: Path, up: Mapping[str, Path], *, progress: Progress | None
              ) -> dict[str, Any]:
    from distill.runtime.build.candidates import candidates
    from distill.runtime.evaluate import evaluate

    spec = planned.compiled.spec
    found = candidates(planned, folder, up, up.get(CE_ONLY_STAGE))
    evaluation = evaluate(found, up["synthesize"] / "test.jsonl", spec.student.task, spec.eval, folder,
                          max_new_tokens=spec.eval.max_new_tokens, cache=folder.parent.parent / "evaluate-cache",
                          progress=progress)
    return {"models": [m.name for m in evaluation.models]}
