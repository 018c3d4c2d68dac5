"""Training checkpoints that resume exactly: trainable weights (safetensors), optimizer and
scheduler state, the torch RNG state (dropout), and where the loop was (step, epoch, micro-batch,
early-stopping state).

A checkpoint is written into a temporary folder and renamed into place, so a crash mid-write leaves
the previous checkpoint intact; only complete ``step-NNNNNNNN`` folders are ever loaded. State is
loaded with ``torch.load(weights_only=True)``: tensors and plain containers, never code. A
checkpoint that does not load (truncated by a full disk, damaged by a copy) is removed with a
warning and the one before it is used: ``KEEP`` = 2 leaves one to fall back to. A full disk while
saving is a ``DiskFull`` naming the checkpoint and the bytes it needs.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from distill.compiler.fsutil import staged_folder
from distill.compiler.records.record import Record, RecordError

PREFIX = "step-"
KEEP = 2  # the newest two: the last one might be the one a reader is copying when a new one lands
LOOP_STATE = "loop.json"
# What reading a damaged checkpoint raises: torch.load a RuntimeError (zip central directory
# missing), an OSError (errno 22) or an UnpicklingError; safetensors a SafetensorError; loop.json
# a RecordError (not JSON, a field missing or of the wrong kind).
_UNREADABLE = (OSError, RuntimeError, ValueError, TypeError, KeyError, EOFError, pickle.UnpicklingError,
               SafetensorError, RecordError)


@dataclass
class LoopState(Record):
    """Where the loop is (``loop.json`` of a checkpoint). ``micro`` counts micro-batches consumed
    in ``epoch``; ``evals`` every validation so far ({step, val_loss})."""

    KIND: ClassVar[str] = "loop-state"
    VERSION: ClassVar[int] = 1

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
    """Write ``folder/step-<step>`` atomically and drop all but the newest ``KEEP``.

    Raises:
        DiskFull: when the disk fills, naming the checkpoint; the previous ones are kept.
    """
    final = folder / f"{PREFIX}{state.step:08d}"
    trainable = {k: v.detach().contiguous().cpu() for k, v in trainable_tensors(modules).items()}
    optimizer_state = optimizer.state_dict()
    with staged_folder(final, needed=_tensor_bytes(trainable) + _tensor_bytes(optimizer_state)) as staging:
        save_file(trainable, str(staging / "trainable.safetensors"))
        torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                   staging / "state.pt")
        state.write(staging / LOOP_STATE)
    for old in complete(folder)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in ``value`` (nested dicts and lists): a checkpoint's size, less
    kilobytes of pickle framing and JSON."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def complete(folder: Path) -> list[Path]:
    """Finished checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                  and (p / LOOP_STATE).is_file())


def load_latest(folder: Path) -> Restored | None:
    """The newest checkpoint that loads, with the RNG state already restored; ``None`` when none
    does. One that does not load is removed with a warning naming it and why, and the one before
    it is tried."""
    for candidate in reversed(complete(folder)):
        try:
            restored, rng, cuda_rng = _load(candidate)
        except _UNREADABLE as error:
            warnings.warn(f"checkpoint {candidate} is damaged ({type(error).__name__}: {str(error)[:200]}): removed; "
                          "resuming from the one before it, or from the start when there is none", stacklevel=2)
            shutil.rmtree(candidate, ignore_errors=True)
            continue
        torch.set_rng_state(rng)
        if cuda_rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_rng)
        return restored
    return None


def _load(step: Path) -> tuple[Restored, torch.Tensor, list[torch.Tensor]]:
    """One checkpoint and its RNG states, read whole before anything is restored from it."""
    blob = torch.load(step / "state.pt", weights_only=True)
    state = LoopState.read(step / LOOP_STATE)
    weights = load_file(str(step / "trainable.safetensors"))
    return Restored(state, weights, blob["optimizer"], blob["scheduler"]), blob["rng"], blob["cuda_rng"]


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
