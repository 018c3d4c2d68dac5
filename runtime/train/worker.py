"""One training process of a multi-process run: ``python -m distill.runtime.train.worker
DISTILLFILE [--offline]``, started once per rank by torchrun or ``accelerate launch`` (which set
RANK, WORLD_SIZE, MASTER_ADDR, ...). ``distill build`` starts it for single-node runs; on a cluster
the scheduler starts it on every node with the command ``distill launch-cmd`` prints.

Every rank re-plans the Distillfile (pure and deterministic, so all agree), finds the finished
extract and synthesize stages of this build under ``.distill/`` and runs the train stage in its
folder; the main process records the stage as finished (``meta.json``), so a later
``distill build`` picks up from there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from distill.compiler.errors import DistillError


def run(distillfile: Path, offline: bool) -> None:
    from accelerate import PartialState

    from distill.compiler.fsutil import write_atomic
    from distill.compiler.pipeline import plan_file
    from distill.runtime.build.graph import META, stage_key
    from distill.runtime.build.stages import build_stages, train_in_process

    planned = plan_file(distillfile, offline=offline)
    state_dir = planned.compiled.root / ".distill"
    stages = {stage.name: stage for stage in build_stages(planned, None, offline)}
    keys: dict[str, str] = {}
    folders: dict[str, Path] = {}
    for name in ("extract", "synthesize", "train"):
        keys[name] = stage_key(stages[name], keys)
        folders[name] = state_dir / name / keys[name][:16]
    for name in ("extract", "synthesize"):
        if not (folders[name] / META).is_file():
            raise DistillError(f"the {name} stage of this build has not run", hint=f"run `distill build {distillfile}` "
                               "first: it runs every stage before training and then launches this one")
    started = time.monotonic()
    summary = train_in_process(planned, folders["train"], folders, None)
    if PartialState().is_main_process:
        write_atomic(folders["train"] / META, json.dumps({
            "stage": "train", "version": stages["train"].version, "key": keys["train"],
            "upstream": {n: str(folders[n]) for n in ("extract", "synthesize")},
            "seconds": round(time.monotonic() - started, 3), "summary": summary}, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.runtime.train.worker")
    parser.add_argument("distillfile", type=Path)
    parser.add_argument("--offline", action="store_true")
    args = parser.parse_args(argv)
    try:
        run(args.distillfile, args.offline)
    except DistillError as error:
        print(f"error: {error.message}" + (f"\n  hint: {error.hint}" if error.hint else ""), file=sys.stderr)
        return int(error.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
