"""Training checkpoints that resume exactly: trainable weights (safetensors), optimizer and
scheduler state, the torch RNG state (dropout), and where the loop was (step, epoch, micro-batch,
early-stopping state).

A checkpoint is written into a temporary folder and renamed into place, so a crash mid-write leaves
the previous checkpoint intact; only complete ``step-NNNNNNNN`` folders are ever loaded. State is
loaded with ``torch.load(weights_only=True)``: tensors and plain containers, never code.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from distill.compiler.fsutil import staged_folder

PREFIX = "step-"
KEEP = 2  # the newest two: the last one might be the one a reader is copying when a new one lands


@dataclass
class LoopState:
    """Where the loop is. ``micro`` counts micro-batches consumed in ``epoch``."""

    step: int = 0
    epoch: int = 0
    micro: int = 0
    best_val: float | None = None
    bad_evals: int = 0
    stopped: bool = False
    evals: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Restored:
    state: LoopState
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]


# Wrapper modules FSDP and activation checkpointing insert into a model's own module tree.
_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def trainable_tensors(modules: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    """Every trainable parameter, named ``<module>/<parameter>`` as in the unwrapped model."""
    return {f"{key}/{_unwrapped(name)}": p for key, module in modules.items()
            for name, p in module.named_parameters() if p.requires_grad}


def _unwrapped(name: str) -> str:
    for wrapper in _WRAPPERS:
        name = name.replace(wrapper, "")
    return name


def save(folder: Path, modules: dict[str, torch.nn.Module], optimizer: Any, scheduler: Any,
         state: LoopState) -> Path:
    """Write ``folder/step-<step>`` atomically and drop all but the newest ``KEEP``."""
    final = folder / f"{PREFIX}{state.step:08d}"
    with staged_folder(final) as staging:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable_tensors(modules).items()},
                  str(staging / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                   staging / "state.pt")
        (staging / "loop.json").write_text(json.dumps(asdict(state), sort_keys=True))
    for old in complete(folder)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(folder: Path) -> list[Path]:
    """Finished checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                  and (p / "loop.json").is_file())


def load_latest(folder: Path) -> Restored | None:
    """The newest complete checkpoint, with the RNG state already restored; ``None`` when none."""
    done = complete(folder)
    if not done:
        return None
    latest = done[-1]
    blob = torch.load(latest / "state.pt", weights_only=True)
    torch.set_rng_state(blob["rng"])
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    state = LoopState(**json.loads((latest / "loop.json").read_text()))
    return Restored(state, load_file(str(latest / "trainable.safetensors")), blob["optimizer"], blob["scheduler"])


def restore_weights(modules: dict[str, torch.nn.Module], weights: dict[str, torch.Tensor]) -> None:
    """Copy saved tensors into the trainable parameters; a missing or extra name is an error
    (the checkpoint belongs to another model)."""
    params = trainable_tensors(modules)
    if set(params) != set(weights):
        missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
        raise ValueError(f"checkpoint does not match the model: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name].to(param.device, param.dtype))
