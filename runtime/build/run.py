"""``distill build``: plan, check or write the lock, run the stage graph, write the report and the
record of what was built (``build.json``), publish ``dist/<name>/``, enforce the quality gates."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.compiler.codec import to_data
from distill.compiler.fsutil import link_tree, remove_leftovers, staged_folder, write_atomic
from distill.compiler.pipeline import Planned, plan_file
from distill.compiler.plan import Plan
from distill.runtime.build.graph import FILES, META, Outcome, Stage, downstream, exclusive, file_stat, run_graph
from distill.runtime.build.stages import build_stages, plan_data, target_name
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
    gates: list[dict[str, Any]]


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
    return Built(planned, outcomes, dist, outcomes["report"].summary["gates"])


def all_stages(planned: Planned, lock: dict[str, Any], progress: Progress | None, offline: bool) -> list[Stage]:
    """The build's stage graph, the report last."""
    stages = build_stages(planned, progress, offline)
    return [*stages, _report_stage(planned, lock, stages)]


def _report_stage(planned: Planned, lock: dict[str, Any], stages: list[Stage]) -> Stage:
    needs = tuple(stage.name for stage in stages)
    return Stage("report", 1, needs, lambda: {"spec": planned.compiled.hash, "lock": lock},
                 lambda folder, up: _report(planned, lock, folder, up),
                 lambda: f"model card, report.json and build.json for dist/{planned.compiled.spec.name}/")


def _report(planned: Planned, lock: dict[str, Any], folder: Path, up: Mapping[str, Path]) -> dict[str, Any]:
    """The model card and report.json, with the student model beside them and the artifacts in
    subfolders: everything ``dist/<name>/`` will hold."""
    from distill.runtime.build.report import ReportInputs, write_report
    from distill.runtime.evaluate import check_gates

    spec = planned.compiled.spec
    evaluation = json.loads((up["evaluate"] / "evaluation.json").read_text("utf-8"))
    deployed = _deployed(planned, evaluation)
    gates = [vars(g) for g in check_gates(evaluation, spec.eval.gates, deployed)]
    artifacts = []
    for name, stage in sorted(up.items()):
        if name.startswith("export:"):
            relative = name.split(":", 1)[1].replace(":", "-").replace(",", "-")
            link_tree(stage / "artifact", folder / relative)
            manifest = json.loads((stage / "artifact" / "manifest.json").read_text("utf-8"))
            artifacts.append({"kind": manifest["kind"], "path": relative, "manifest": manifest})
    # The merged model at the root, the card beside it: dist/<name>/ loads with from_pretrained and
    # is a Hub repository as it stands (`hf upload <repo> dist/<name>`), exports in subfolders.
    link_tree(up["train"] / "model", folder)
    shutil.copy2(up["synthesize"] / "DATA_CARD.md", folder / "DATA_CARD.md")
    metrics = up["train"] / "metrics.jsonl"
    inputs = ReportInputs(
        name=spec.name, spec=to_data(spec), spec_sha256=planned.compiled.hash, lock=lock, plan=plan_data(planned),
        data_card=json.loads((up["synthesize"] / "data_card.json").read_text("utf-8")),
        metrics=metrics if metrics.is_file() else None, loss_png=_existing(up["train"] / "loss.png"),
        evaluation=evaluation, gates=gates, artifacts=artifacts, stages=_stage_rows(up, planned.plan))
    write_report(folder, inputs)
    record = _build_record(lock, inputs.stages, up["synthesize"], folder)
    write_atomic(folder / BUILD_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {"gates": gates}


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _stage_rows(up: Mapping[str, Path], plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for name, folder in up.items():
        meta = json.loads((folder / META).read_text("utf-8"))
        # seconds: what the stage took when it ran (a cached stage keeps its first run's time)
        row = {"stage": name, "key": meta["key"], "seconds": meta["seconds"]}
        predicted = plan.stage_peak(name)
        if predicted is not None:
            row["predicted_peak"] = {"phase": predicted.phase, "bytes": predicted.bytes}
        if "device_peak" in meta:  # CUDA's allocator, when the stage ran on a GPU
            row["device_peak"] = meta["device_peak"]
        rows.append(row)
    return rows


def _deployed(planned: Planned, evaluation: dict[str, Any]) -> list[str]:
    names = [m["name"] for m in evaluation["models"]]
    wanted = [n for n in names if n.split(":")[0] in {target_name(t).split(":")[0] for t in planned.compiled.spec.deploy}]
    return wanted or ["student"]


def _publish(outcomes: dict[str, Outcome], dist: Path) -> None:
    """``dist/<name>/`` = the report stage's folder, swapped in whole; untouched when it already
    holds exactly that folder's files (a no-op rebuild writes nothing). What a publish killed
    midway left beside it goes first."""
    report = outcomes["report"]
    files = json.loads((report.folder / META).read_text("utf-8"))[FILES]
    remove_leftovers(dist.parent, of=dist.name)
    if _holds(dist, report.key, files):
        return
    # copied, not linked: dist/ is the user's to move or edit, and must not change the cache
    with staged_folder(dist, needed=sum(f["size"] for f in files.values())) as staging:
        shutil.copytree(report.folder, staging, ignore=shutil.ignore_patterns(META), dirs_exist_ok=True)
        (staging / KEY_FILE).write_text(report.key + "\n")


def _holds(dist: Path, key: str, files: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether ``dist`` holds the report ``key`` with exactly ``files``, each at its recorded size
    and mtime: ``copy2`` copies the mtime, so a report that ran again (even under the same key,
    ``--from``) or a file changed in ``dist/`` shows, without hashing gigabytes at every build."""
    key_file = dist / KEY_FILE
    if not key_file.is_file() or key_file.read_text().strip() != key:
        return False
    found = {p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.is_file()} - {KEY_FILE}
    return found == set(files) and all(file_stat(dist / name) == (record["size"], record["mtime_ns"])
                                       for name, record in files.items())


def _build_record(lock: dict[str, Any], stages: list[dict[str, Any]], data: Path, folder: Path) -> dict[str, Any]:
    """What this build produced from its lock: the lock's sha256 (``sha256sum Distillfile.lock``
    checks it), every stage's cache key, the synthesized data's hash and each model file's hash."""
    from distill.backends.base import sha256_file
    from distill.compiler.lock import lock_sha256, lock_text

    return {
        "lock_sha256": lock_sha256(lock_text(lock)),
        "stages": {row["stage"]: row["key"] for row in stages},
        "data_sha256": {split: sha256_file(data / f"{split}.jsonl") for split in ("train", "val", "test")},
        "outputs": {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
                    if p.is_file() and p.suffix in (".gguf", ".onnx", ".safetensors")},
    }
