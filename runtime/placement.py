"""Where and in what precision the build's models run: one path for every model the build loads.

The plan decides the device ("cpu" or "cuda"), the weights' dtype and the autocast precision; the
runtime never guesses them from ``torch.cuda.is_available()``. Every load (the teacher for
synthesis, for online KD and for its top-k cache, the student, the models evaluation compares)
goes through ``place``, which puts the model on the planned device, checks every parameter and
buffer landed there in the planned dtype, and records what was asked and what came out in
``PLACED``: a plan that says cuda and a model that would run on the CPU is an error, never a
silent fallback. The same ``autocast`` context wraps every forward pass that trains or teaches
(training loss, validation loss, the teacher's forward passes, the top-k cache), so CPU tests with
a bf16 plan run the code a GPU runs. (The merge is checked in float32: ``train/merge.py``.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.plan import Plan

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
ModelT = TypeVar("ModelT", bound=torch.nn.Module)


class DeviceUnavailable(DistillError):
    """The plan runs on a device this machine does not have."""

    exit_code = ExitCode.DOES_NOT_FIT


class Misplaced(DistillError):
    """A model did not land on the planned device or dtype."""

    exit_code = ExitCode.INTERNAL


@dataclass(frozen=True)
class Placed:
    """One model load: what the plan asked for and what the model holds (sorted, distinct)."""

    role: str
    device: str
    dtype: str
    quant: str
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]


# Every placement of this process, in order: the build's record of where its models ran (tests and
# benchmarks/gpu_build.py read it).
PLACED: list[Placed] = []


@dataclass(frozen=True)
class Placement:
    """The plan's device, weights dtype and autocast precision.

    Attributes:
        device: "cpu" or "cuda".
        dtype: the weights' dtype name ("float32", "bfloat16", "float16").
        precision: autocast compute dtype: "bf16", "fp16", or "fp32" (no autocast).
    """

    device: str
    dtype: str
    precision: str

    @classmethod
    def of(cls, plan: Plan) -> Placement:
        """The student's placement (and every model's device and precision)."""
        return cls(plan.device, plan.dtype, plan.precision)

    @classmethod
    def of_teacher(cls, plan: Plan) -> Placement:
        """The teacher's: the plan's device and precision, the teacher's own weights dtype."""
        return cls(plan.device, plan.teacher_dtype or plan.dtype, plan.precision)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def torch_device(self) -> torch.device:
        """The device this process computes on: its own GPU (``LOCAL_RANK``, set by torchrun) on
        cuda plans; raises ``DeviceUnavailable`` when the machine has none."""
        if self.device == "cpu":
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                "the plan runs on cuda, and torch finds no CUDA device on this machine",
                hint="run the build on a machine with an NVIDIA GPU and a CUDA build of torch, "
                     "or set hardware.device: cpu and plan again")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def mixed_precision(self) -> str:
        """What accelerate is told: "fp16" for fp16 (its gradient scaler comes with it), else "no".
        bf16 is autocast by ``autocast`` alone: accelerate's bf16 wraps the model's forward in a
        converter that makes every output float32, all of ``hidden_states`` included, (L + 1) x
        tokens x hidden x 4 bytes that nothing reads in float32."""
        return "fp16" if self.precision == "fp16" else "no"

    @contextmanager
    def autocast(self) -> Iterator[None]:
        """torch autocast at the planned precision on the planned device (none for fp32)."""
        if self.precision not in AUTOCAST:
            yield
            return
        with torch.autocast(self.torch_device.type, dtype=AUTOCAST[self.precision]):
            yield

    def device_map(self) -> dict[str, Any]:
        """``from_pretrained``'s device_map for this placement: the whole model on one device
        (bitsandbytes quantizes as the weights move there). A GPU is named by its index, the form
        accelerate compares with its own device before training a quantized model."""
        device = self.torch_device
        return {"": device.index if device.type == "cuda" else "cpu"}


def place(model: ModelT, placement: Placement, role: str, quant: str = "none") -> ModelT:
    """``model`` on the planned device, checked and recorded. A quantized (bitsandbytes) model is
    placed by its ``device_map`` at load, where the weights are quantized as they move, and
    transformers refuses ``.to`` on it: it is only checked."""
    if quant == "none":
        model = model.to(placement.torch_device)
    PLACED.append(check_placed(model, placement, role, quant))
    return model


def check_placed(model: torch.nn.Module, placement: Placement, role: str, quant: str = "none") -> Placed:
    """What ``model`` holds against what the plan asked for; raises ``Misplaced`` when a tensor
    is on another device, or a floating-point parameter has another dtype. Exempt from the dtype
    check: quantized weights (integer storage) and the modules a model keeps in fp32 by design
    (transformers' ``_keep_in_fp32_modules``)."""
    want = placement.torch_device
    keep_fp32 = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    tensors: list[tuple[str, torch.Tensor, bool]] = [(name, tensor, True)
                                                     for name, tensor in model.named_parameters()]
    tensors += [(name, tensor, False) for name, tensor in model.named_buffers()]
    devices, dtypes, wrong = set(), set(), []
    for name, tensor, parameter in tensors:
        devices.add(tensor.device.type)
        if tensor.device.type != want.type:
            wrong.append(f"{name} on {tensor.device}")
        if not (parameter and tensor.is_floating_point()):
            continue  # buffers (rotary tables) keep their own dtype; quantized weights are integers
        dtypes.add(str(tensor.dtype).removeprefix("torch."))
        exempt = (quant != "none" and tensor.dtype == torch.float32) or any(part in name for part in keep_fp32)
        if tensor.dtype != placement.torch_dtype and not exempt:
            wrong.append(f"{name} is {tensor.dtype}")
    if wrong:
        raise Misplaced(f"the {role} should be on {want.type} in {placement.dtype}, but "
                        f"{'; '.join(wrong[:3])}{f' and {len(wrong) - 3} more' if len(wrong) > 3 else ''}",
                        hint="this is a bug in distill; please report it")
    return Placed(role, placement.device, placement.dtype, quant, tuple(sorted(devices)), tuple(sorted(dtypes)))
