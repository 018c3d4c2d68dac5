"""One process of a multi-process stage: ``python -m distill.runtime.build.worker DISTILLFILE
STAGE [--offline]`` (STAGE: synthesize, train or train:ce_only), started once per rank by
``accelerate launch`` (which sets RANK, WORLD_SIZE, MASTER_ADDR, ...) with the command
``compiler/launch.py`` makes: ``distill build`` runs it for one machine, and on a cluster the
scheduler runs it on every node as ``distill launch-cmd`` prints it.

Every rank re-plans the Distillfile (pure and deterministic, so all agree), finds the finished
stages this one reads under ``.distill/`` and runs the stage in its folder; the main process
records it as finished (``meta.json``), so a later ``distill build`` picks up from there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from distill.compiler.errors import DistillError


def run(distillfile: Path, stage_name: str, offline: bool) -> None:
    from accelerate import PartialState

    from distill.compiler.fsutil import out_of_space_named
    from distill.compiler.pipeline import plan_file
    from distill.runtime.build.graph import device_peaks, record_finished, stage_folder, stage_key
    from distill.runtime.build.stages import build_stages, run_in_process

    planned = plan_file(distillfile, offline=offline)
    PartialState(cpu=planned.plan.device == "cpu")  # join the launcher's process group
    state_dir = planned.compiled.root / ".distill"
    stages = {stage.name: stage for stage in build_stages(planned, None, offline)}
    keys: dict[str, str] = {}
    folders: dict[str, Path] = {}
    for name in _needed(stages, stage_name):
        keys[name] = stage_key(stages[name], keys)
        folders[name] = stage_folder(state_dir, name, keys[name])
    for name in stages[stage_name].needs:
        require_finished(name, folders[name], distillfile)
    folders[stage_name].mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Device peaks: rank 0's (every rank of a plan runs the same step). A full disk where the
    # writer names no file: the stage's folder.
    with device_peaks() as peaks, out_of_space_named(folders[stage_name]):
        summary = run_in_process(planned, stage_name, folders[stage_name], folders, None)
    if PartialState().is_main_process:
        stage = stages[stage_name]
        record_finished(stage, keys[stage_name], folders[stage_name], {n: folders[n] for n in stage.needs},
                        started, summary, peaks)


def require_finished(name: str, folder: Path, distillfile: Path) -> None:
    """Refuse to read a stage that has not finished, or whose files changed since it did: a
    worker cannot run it again (``distill build`` does, before it launches the workers)."""
    from distill.runtime.build.graph import META, changed_since_finished

    hint = (f"run `distill build {distillfile}`: it runs every stage in order (again where files changed) "
            "and launches this one")
    if not (folder / META).is_file():
        raise DistillError(f"the {name} stage of this build has not run", hint=hint)
    changed = changed_since_finished(folder)
    if changed:
        raise DistillError(f"{folder / changed[0]} changed since the {name} stage wrote it"
                           + (f" ({len(changed) - 1} more files too)" if len(changed) > 1 else ""), hint=hint)


def _needed(stages: dict, name: str) -> list[str]:
    """``name`` and every stage it reads, upstream first."""
    order: list[str] = []

    def visit(current: str) -> None:
        for need in stages[current].needs:
            visit(need)
        if current not in order:
            order.append(current)

    visit(name)
    return order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.runtime.build.worker")
    parser.add_argument("distillfile", type=Path)
    from distill.runtime.build.stages import IN_PROCESS

    parser.add_argument("stage", choices=tuple(IN_PROCESS))
    parser.add_argument("--offline", action="store_true")
    args = parser.parse_args(argv)
    from distill.compiler.console import quiet_libraries

    quiet_libraries()
    try:
        run(args.distillfile, args.stage, args.offline)
    except DistillError as error:
        _report(error)
        return int(error.exit_code)
    return 0


def _report(error: DistillError) -> None:
    """Hand the error to the ``distill build`` that started this worker (it shows it and exits
    with its code), or print it when a scheduler started the worker."""
    import os

    from distill.compiler.records.stage import WorkerError
    from distill.runtime.build.stages import ERROR_FILE

    target = os.environ.get(ERROR_FILE)
    if target and os.environ.get("RANK", "0") == "0":
        WorkerError(error.message, error.hint, int(error.exit_code)).write(Path(target))
    else:
        print(f"error: {error.message}" + (f"\n  hint: {error.hint}" if error.hint else ""), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
