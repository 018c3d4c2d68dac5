"""What each stage reads of the planned build, declared once: the stage's cache key is made from
its slice, and the stage runs on a view of the build that holds its slice and nothing else.

A Spec or Plan field outside the slice is ``Withheld`` in the view: reading it raises
``OutsideSlice`` naming the stage and the field. A stage therefore cannot depend on what its key
does not hash; without this, a change to such a field would be served a stale cached output.

Slices are whole Spec sections (docs/design.md, rule 4) except where an early stage must not run
again for settings it does not read: extraction (OCR can take hours) reads two fields of ``data``,
synthesis (the teacher's generations) reads ``loss.mask`` alone of the loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from distill.compiler.codec import to_data
from distill.compiler.pipeline import Planned

ALL = ("*",)  # every field


@dataclass(frozen=True)
class Slice:
    """``spec``: Spec sections (``"loss"``) or fields of one (``"data.chunk_tokens"``); ``plan``:
    Plan fields, or ``ALL``; ``models``: roles whose resolved model (files, revision, tokenizer)
    the stage loads; ``files``: the source files' digests (the extract stage reads the files)."""

    spec: tuple[str, ...]
    plan: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    files: bool = False


# The teacher runs in synthesis, as the teacher of training and in evaluation at these settings.
_TEACHER_PLAN = ("device", "teacher_dtype", "precision", "teacher_quant")
SLICES = {
    "extract": Slice(spec=("sources", "data.chunk_tokens", "data.overlap_tokens", "student"), models=("student",),
                     files=True),
    "synthesize": Slice(spec=("data", "teacher", "student", "loss.mask", "seed"),
                        plan=(*_TEACHER_PLAN, "synthesis_batch"), models=("teacher", "student")),
    "train": Slice(spec=("student", "teacher", "loss", "train", "seed", "hardware"), plan=ALL,
                   models=("teacher", "student")),
    # The untrained baseline loads as training loaded the student: its dtype and quantization.
    "evaluate": Slice(spec=("eval", "teacher", "student", "deploy", "seed"),
                      plan=(*_TEACHER_PLAN, "dtype", "student_quant"), models=("teacher", "student")),
}


class OutsideSlice(RuntimeError):
    """A stage read a field of the build that its cache key does not hash (a bug in distill: the
    slice and the stage disagree)."""


class Withheld:
    """A field a stage's view leaves out; any use of it raises ``OutsideSlice``."""

    __slots__ = ("stage", "name")

    def __init__(self, stage: str, name: str) -> None:
        self.stage, self.name = stage, name

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise OutsideSlice(f"the {self.stage} stage reads {self.name}, which its cache key does not hash: "
                           f"add it to SLICES[{self.stage!r}] in runtime/build/slices.py")

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # copy, pickle and dataclasses probe dunders: not a read
            raise AttributeError(attribute)
        return self._refuse()

    # Every way a value is used: truth, iteration, indexing, numbers, comparison, text.
    __bool__ = __iter__ = __len__ = __getitem__ = __contains__ = __int__ = __float__ = __index__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __neg__ = __abs__ = __round__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = __hash__ = __str__ = __format__ = _refuse


class SlicedModels(Mapping[str, Any]):
    """The resolved models by role: which roles exist is the Spec's (``"teacher" in models``);
    loading one outside the slice raises, by ``[]``, ``get``, ``items`` or ``values`` alike (a
    Mapping, not a dict: every read goes through ``__getitem__``)."""

    def __init__(self, models: Mapping[str, Any], stage: str, allowed: tuple[str, ...]) -> None:
        self._models, self.stage, self.allowed = models, stage, allowed

    def __getitem__(self, role: str) -> Any:
        if role in self._models and role not in self.allowed:
            raise OutsideSlice(f"the {self.stage} stage loads the {role} model, which its cache key does not "
                               f"hash: add it to SLICES[{self.stage!r}] in runtime/build/slices.py")
        return self._models[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)


def key_inputs(planned: Planned, stage: str) -> dict[str, Any]:
    """What the stage's cache key hashes: its Spec sections and fields, Plan fields, models' identities
    (and the source files' digests)."""
    cut = SLICES[stage]
    spec, plan = planned.compiled.spec, plan_data(planned)
    inputs: dict[str, Any] = {
        "spec": {path: to_data(_get(spec, path)) for path in cut.spec},
        "plan": plan if cut.plan == ALL else {name: plan.get(name) for name in cut.plan},
        "models": {role: model_identity(planned.models[role]) for role in cut.models if role in planned.models},
    }
    if cut.files:
        inputs["files"] = [to_data(f) for f in planned.volume.files]
    return inputs


def view(planned: Planned, stage: str) -> Planned:
    """The build as ``stage`` sees it: its slice, every other Spec and Plan field ``Withheld``."""
    cut = SLICES[stage]
    spec = _withheld(planned.compiled.spec, cut.spec, stage, "spec")
    plan = planned.plan if cut.plan == ALL else _withheld(planned.plan, cut.plan, stage, "plan")
    volume: Any = planned.volume if cut.files else Withheld(stage, "the source files")
    return replace(planned, compiled=replace(planned.compiled, spec=spec), plan=plan, volume=volume,
                   models=SlicedModels(planned.models, stage, cut.models))


def _withheld(record: Any, kept: tuple[str, ...], stage: str, where: str) -> Any:
    """``record`` (a frozen dataclass) with every field not in ``kept`` replaced by ``Withheld``;
    a kept ``section.field`` keeps that field of the section and withholds its others."""
    changes: dict[str, Any] = {}
    for field in fields(record):
        inner = tuple(path.split(".", 1)[1] for path in kept if path.startswith(field.name + "."))
        if field.name in kept:
            continue
        value = getattr(record, field.name)
        changes[field.name] = (_withheld(value, inner, stage, f"{where}.{field.name}") if inner
                               else Withheld(stage, f"{where}.{field.name}"))
    return replace(record, **changes)


def _get(record: Any, path: str) -> Any:
    for name in path.split("."):
        record = getattr(record, name)
    return record


def plan_data(planned: Planned) -> dict[str, Any]:
    """The plan as the lock records it (time estimates are measured, not decided: left out)."""
    data: dict[str, Any] = to_data(planned.plan)
    data.pop("estimates", None)
    return data


def model_identity(resolved: Any) -> dict[str, Any]:
    """What makes a resolved model the one it is: its reference, kind, revision, tokenizer and files."""
    return {"ref": resolved.ref, "kind": resolved.kind, "revision": resolved.revision,
            "tokenizer": resolved.tokenizer, "files": [to_data(f) for f in resolved.files]}
