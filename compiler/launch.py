"""The command that starts a multi-process training run of a plan, for a shell or a scheduler.

``accelerate launch`` with flags equivalent to a config file (checked against accelerate 1.15's
``launch --help``): ``--num_processes`` is the total over all machines, and ``--multi_gpu``
also gives gloo CPU processes on a GPU-less machine (``--cpu --num_processes 2`` would silently
start one). Each process runs ``python -m distill.runtime.build.worker DISTILLFILE train``. Across
machines every node runs the same line with its own ``$RANK`` (the machine rank) and the
``$MASTER_ADDR``/``$MASTER_PORT`` of machine 0, left for the shell to expand.
"""

from __future__ import annotations

import re
import shlex

WORKER = ("-m", "distill.runtime.build.worker")
ENV_REFERENCE = re.compile(r"^\$[A-Z_][A-Z0-9_]*$")


def launch_command(distillfile: str, gpus: int, nodes: int, stage: str = "train") -> tuple[str, ...] | None:
    """The ``accelerate launch`` argv that runs ``stage`` in ``gpus`` x ``nodes`` processes; ``None``
    for one process. ``distill build`` starts its own multi-process stages with this same command
    (one node, ``runtime/build/stages.py``); the plan shows it for training across nodes.

    No FSDP flags: the worker wraps the student itself when ``hardware.strategy`` says fsdp
    (``runtime/train/sharding.py``, the plugin's settings), since accelerate's FSDP plugin needs
    CUDA; a plugin on top would wrap it twice. And one mode flag only: accelerate refuses
    ``--multi_gpu`` beside ``--use_fsdp`` ("You can only use one of")."""
    processes = gpus * nodes
    if processes <= 1:
        return None
    argv = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", str(nodes)]
    if nodes > 1:
        argv += ["--machine_rank", "$RANK", "--main_process_ip", "$MASTER_ADDR", "--main_process_port", "$MASTER_PORT"]
    else:  # a free port (as torchrun --standalone picks), not 29500: two builds on one machine do not collide
        argv += ["--main_process_port", "0"]
    return (*argv, *WORKER, distillfile, stage)


def with_distillfile(argv: tuple[str, ...], distillfile: str) -> tuple[str, ...]:
    """A plan's launch command (which names the Distillfile as in its folder) naming ``distillfile``."""
    return (*argv[:-2], distillfile, argv[-1])


def shell_line(argv: tuple[str, ...]) -> str:
    """One shell line: arguments quoted, ``$VAR`` references double-quoted so they expand."""
    return " ".join(f'"{arg}"' if ENV_REFERENCE.match(arg) else shlex.quote(arg) for arg in argv)
