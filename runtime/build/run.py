"""``distill build``: plan, check or write the lock, run the stage graph, write the report and the
record of what was built (``build.json``), publish ``dist/<name>/``, enforce the quality gates."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.compiler.codec import to_data
from distill.compiler.fsutil import link_tree, remove_leftovers, staged_folder
from distill.compiler.pipeline import Planned, plan_file
from distill.compiler.plan import Plan
from distill.compiler.records.data_card import DATA_CARD, DataCard
from distill.compiler.records.evaluation import EVALUATION, Evaluation
from distill.compiler.records.lock import Lock
from distill.compiler.records.manifest import MANIFEST, Manifest
from distill.compiler.records.report import REPORT, PlannedPeak, Report, ReportArtifact
from distill.compiler.records.stage import BuildRecord, FileRecord, StageMeta
from distill.runtime.build.graph import META, Outcome, Stage, downstream, exclusive, file_stat, run_graph
from distill.runtime.build.report import StageRun
from distill.runtime.build.slices import plan_data
from distill.runtime.build.stages import build_stages, target_name
from distill.runtime.progress import Progress

STATE = ".distill"
KEY_FILE = ".build-key"
BUILD_RECORD = "build.json"


@dataclass(frozen=True)
class BuildOptions:
    offline: bool = False
    locked: bool = False
    from_stage: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Built:
    planned: Planned
    outcomes: dict[str, Outcome]
    dist: Path
    report: Report  # dist/<name>/report.json, as published


@dataclass(frozen=True)
class Watch:
    """What a build tells whoever watches it (the CLI): a stage starting (``resumed`` when an
    interrupted run left work), a stage ran or was cached, and progress within a stage."""

    starting: Callable[[Stage, bool], None] = lambda stage, resumed: None
    finished: Callable[[Outcome], None] = lambda outcome: None
    progress: Progress | None = None


def build_file(path: Path, options: BuildOptions, watch: Watch = Watch()) -> Built:
    from distill.compiler.lock import build_lock, check_lock, lock_path, write_lock

    planned = plan_file(path, offline=options.offline)
    lock = build_lock(planned.compiled.hash, planned.models, planned.volume, planned.plan)
    lock_file = lock_path(planned.compiled.path)
    if options.locked:
        check_lock(lock_file, lock)
    root = planned.compiled.root
    with exclusive(root / STATE):
        stages = all_stages(planned, lock, watch.progress, options.offline)
        rerun = ({s.name for s in stages} if options.force else
                 downstream(stages, options.from_stage) if options.from_stage else set())
        outcomes = run_graph(stages, root / STATE, rerun, watch.finished, watch.starting)
        dist = root / "dist" / planned.compiled.spec.name
        _publish(outcomes, dist)
        write_lock(lock_file, lock)
    return Built(planned, outcomes, dist, Report.read(dist / REPORT))


def all_stages(planned: Planned, lock: Lock, progress: Progress | None, offline: bool) -> list[Stage]:
    """The build's stage graph, the report last."""
    stages = build_stages(planned, progress, offline)
    return [*stages, _report_stage(planned, lock, stages)]


def _report_stage(planned: Planned, lock: Lock, stages: list[Stage]) -> Stage:
    needs = tuple(stage.name for stage in stages)
    return Stage("report", 1, needs, lambda: {"spec": planned.compiled.hash, "lock": lock.to_data()},
                 lambda folder, up: _report(planned, lock, folder, up),
                 lambda: f"model card, report.json and build.json for dist/{planned.compiled.spec.name}/")


def _report(planned: Planned, lock: Lock, folder: Path, up: Mapping[str, Path]) -> dict[str, Any]:
    """The model card and report.json, with the student model beside them and the artifacts in
    subfolders: everything ``dist/<name>/`` will hold."""
    from distill.runtime.build.report import ReportInputs, write_report
    from distill.runtime.evaluate import check_gates

    spec = planned.compiled.spec
    evaluation = Evaluation.read(up["evaluate"] / EVALUATION)
    gates = tuple(check_gates(evaluation, spec.eval.gates, _deployed(planned, evaluation)))
    artifacts = []
    for name, stage in sorted(up.items()):
        if name.startswith("export:"):
            relative = name.split(":", 1)[1].replace(":", "-").replace(",", "-")
            link_tree(stage / "artifact", folder / relative)
            manifest = Manifest.read(stage / "artifact" / MANIFEST)
            artifacts.append(ReportArtifact(manifest.kind, relative, manifest))
    # The merged model at the root, the card beside it: dist/<name>/ loads with from_pretrained and
    # is a Hub repository as it stands (`hf upload <repo> dist/<name>`), exports in subfolders.
    link_tree(up["train"] / "model", folder)
    shutil.copy2(up["synthesize"] / "DATA_CARD.md", folder / "DATA_CARD.md")
    metrics = up["train"] / "metrics.jsonl"
    inputs = ReportInputs(
        name=spec.name, spec=to_data(spec), spec_sha256=planned.compiled.hash, lock=lock, plan=plan_data(planned),
        data_card=DataCard.read(up["synthesize"] / DATA_CARD),
        metrics=metrics if metrics.is_file() else None, loss_png=_existing(up["train"] / "loss.png"),
        evaluation=evaluation, gates=gates, artifacts=tuple(artifacts), stages=_stage_rows(up, planned.plan))
    write_report(folder, inputs)
    _build_record(lock, inputs.stages, up["synthesize"], folder).write(folder / BUILD_RECORD)
    return {"gates_failed": sum(not gate.passed for gate in gates)}


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _stage_rows(up: Mapping[str, Path], plan: Plan) -> tuple[StageRun, ...]:
    rows = []
    for name, folder in up.items():
        meta = StageMeta.read(folder / META)
        predicted = plan.stage_peak(name)
        # seconds: what the stage took when it ran (a cached stage keeps its first run's time);
        # device_peak: CUDA's allocator, when the stage ran on a GPU
        rows.append(StageRun(name, meta.key, meta.seconds,
                             PlannedPeak(predicted.phase, predicted.bytes) if predicted is not None else None,
                             meta.device_peak))
    return tuple(rows)


def _deployed(planned: Planned, evaluation: Evaluation) -> list[str]:
    kinds = {target_name(t).split(":")[0] for t in planned.compiled.spec.deploy}
    wanted = [m.name for m in evaluation.models if m.name.split(":")[0] in kinds]
    return wanted or ["student"]


def _publish(outcomes: dict[str, Outcome], dist: Path) -> None:
    """``dist/<name>/`` = the report stage's folder, swapped in whole; untouched when it already
    holds exactly that folder's files (a no-op rebuild writes nothing). What a publish killed
    midway left beside it goes first."""
    report = outcomes["report"]
    files = StageMeta.read(report.folder / META).files
    remove_leftovers(dist.parent, of=dist.name)
    if _holds(dist, report.key, files):
        return
    # copied, not linked: dist/ is the user's to move or edit, and must not change the cache
    with staged_folder(dist, needed=sum(f.size for f in files.values())) as staging:
        shutil.copytree(report.folder, staging, ignore=shutil.ignore_patterns(META), dirs_exist_ok=True)
        (staging / KEY_FILE).write_text(report.key + "\n")


def _holds(dist: Path, key: str, files: Mapping[str, FileRecord]) -> bool:
    """Whether ``dist`` holds the report ``key`` with exactly ``files``, each at its recorded size
    and mtime: ``copy2`` copies the mtime, so a report that ran again (even under the same key,
    ``--from``) or a file changed in ``dist/`` shows, without hashing gigabytes at every build."""
    key_file = dist / KEY_FILE
    if not key_file.is_file() or key_file.read_text().strip() != key:
        return False
    found = {p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.is_file()} - {KEY_FILE}
    return found == set(files) and all(file_stat(dist / name) == (record.size, record.mtime_ns)
                                       for name, record in files.items())


def _build_record(lock: Lock, stages: Sequence[StageRun], data: Path, folder: Path) -> BuildRecord:
    """What this build produced from its lock: the lock's sha256 (``sha256sum Distillfile.lock``
    checks it), every stage's cache key, the synthesized data's hash and each model file's hash."""
    from distill.backends.base import sha256_file
    from distill.compiler.lock import lock_sha256

    return BuildRecord(
        lock_sha256=lock_sha256(lock),
        stages={row.stage: row.key for row in stages},
        data_sha256={split: sha256_file(data / f"{split}.jsonl") for split in ("train", "val", "test")},
        outputs={p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.suffix in (".gguf", ".onnx", ".safetensors")},
    )
