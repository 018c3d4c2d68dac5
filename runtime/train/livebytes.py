"""Live tensor bytes of PyTorch code, counted storage by storage (CPU or CUDA, no allocator stats).

``LiveBytesCounter`` is a ``TorchDispatchMode``: every aten op output with an unseen storage is
added, and forgotten when a weakref to the storage fires. Tensors that exist before the mode are
registered with ``track_existing`` (``reachable_tensors`` finds them in model and optimizer
object graphs, bitsandbytes quant states included). ``distill.runtime.train.memtrace`` uses it to
measure a training step.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# Objects of these libraries are walked attribute by attribute to find tensors that are not
# parameters or buffers (bitsandbytes QuantState.absmax/code/state2, Int8Params.SCB, ...).
_WALKED_LIBRARIES = {"torch", "transformers", "peft", "bitsandbytes", "accelerate"}
# Ops that adopt a tensor created outside the dispatcher (torch.tensor(...) literals).
_ADOPTING_OPS = {"lift_fresh", "lift_fresh_copy", "lift"}


@dataclass
class _Storage:
    nbytes: int
    category: str
    ref: weakref.ref[Any] | None = None


class LiveBytesCounter(TorchDispatchMode):
    """Counts live tensor-storage bytes by category and keeps the peaks (overall and per phase).

    Register what exists before entering with ``track_existing``; inside the mode every aten op
    output with an unseen storage is added under the current phase's category ("activations" in
    the "forward" phase, "temporaries" elsewhere). A storage first seen as an op *input* was
    missed by ``track_existing`` (or made outside the dispatcher): it is added as "untracked" and
    its bytes are summed in ``untracked_bytes``, which a complete trace keeps at 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, _Storage] = {}  # keyed by the StorageImpl address (_cdata)
        self.by_category: dict[str, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_by_category: dict[str, int] = {}
        self.peak_phase = ""
        self.peak_op = ""
        self.phase_name = ""
        self.phase_peaks: dict[str, int] = {}
        self.phase_by_category: dict[str, dict[str, int]] = {}
        self.phase_ends: dict[str, int] = {}
        self.untracked_bytes = 0
        self._new_category = "temporaries"

    # -- bookkeeping ------------------------------------------------------------------------

    def track_existing(self, tensors: Iterator[torch.Tensor], category: str) -> int:
        """Adds storages not yet tracked; returns how many bytes that added."""
        before = self.current
        for tensor in tensors:
            self._add(tensor, category)
        self._note_peak("<existing>")
        return self.current - before

    def relabel(self, tensor: torch.Tensor, category: str) -> None:
        """Moves a tracked storage to another category (gradients are made as temporaries)."""
        entry = self._live.get(storage_key(tensor))
        if entry is not None and entry.category != category:
            self._shift(entry.category, -entry.nbytes)
            entry.category = category
            self._shift(category, entry.nbytes)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Within the block, new storages get the phase's category and peaks are kept per phase
        (a phase entered again, as forward and backward are per accumulated micro-step, keeps
        the peak of all its entries)."""
        self.phase_name = name
        self._new_category = "activations" if name == "forward" else "temporaries"
        if self.current > self.phase_peaks.get(name, -1):
            self.phase_peaks[name] = self.current
            self.phase_by_category[name] = dict(self.by_category)
        try:
            yield
        finally:
            self.phase_ends[name] = self.current
            self.phase_name, self._new_category = "", "temporaries"

    def _add(self, tensor: torch.Tensor, category: str) -> bool:
        storage = _untyped_storage(tensor)
        if storage is None:
            return False
        key = storage._cdata
        entry = self._live.get(key)
        if entry is not None:
            self._resize(entry, storage.nbytes())
            return False
        entry = _Storage(storage.nbytes(), category)
        # The Python storage object lives exactly as long as the C++ StorageImpl (PyObject
        # preservation), so this weakref fires when the memory is released.
        entry.ref = weakref.ref(storage, self._forget_callback(key))
        self._live[key] = entry
        self._shift(category, entry.nbytes)
        return True

    def _forget_callback(self, key: int) -> Callable[[weakref.ref[Any]], None]:
        def forget(_: weakref.ref[Any]) -> None:
            entry = self._live.pop(key, None)
            if entry is not None:
                self._shift(entry.category, -entry.nbytes)

        return forget

    def _resize(self, entry: _Storage, nbytes: int) -> None:
        # aten resize_/set_ can grow a storage in place; its bytes change, its identity does not.
        if nbytes != entry.nbytes:
            self._shift(entry.category, nbytes - entry.nbytes)
            entry.nbytes = nbytes

    def _shift(self, category: str, nbytes: int) -> None:
        self.by_category[category] = self.by_category.get(category, 0) + nbytes
        self.current += nbytes

    def _note_peak(self, op: str) -> None:
        if self.current > self.peak:
            self.peak = self.current
            self.peak_by_category = dict(self.by_category)
            self.peak_phase, self.peak_op = self.phase_name, op
        name = self.phase_name
        if name and self.current > self.phase_peaks[name]:
            self.phase_peaks[name] = self.current
            self.phase_by_category[name] = dict(self.by_category)

    # -- the dispatch hook ------------------------------------------------------------------

    def __torch_dispatch__(self, func: torch._ops.OpOverload, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        adopting = func.overloadpacket.__name__ in _ADOPTING_OPS
        for tensor in _tensors_in((args, kwargs)):
            if adopting:
                self._add(tensor, self._new_category)
            elif self._add(tensor, "untracked"):
                self.untracked_bytes += self._live[storage_key(tensor)].nbytes
        out = func(*args, **kwargs)
        for tensor in _tensors_in(out):
            self._add(tensor, self._new_category)
        # Peaks happen right after an allocation, while the op's inputs are still referenced.
        self._note_peak(str(func))
        return out


def _untyped_storage(tensor: torch.Tensor) -> torch.UntypedStorage | None:
    if tensor.device.type == "meta":
        return None
    try:
        return tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse or storage-less subclasses
        return None


def storage_key(tensor: torch.Tensor) -> int:
    storage = _untyped_storage(tensor)
    return -1 if storage is None else storage._cdata


def _tensors_in(tree: Any) -> Iterator[torch.Tensor]:
    return (leaf for leaf in tree_leaves(tree) if isinstance(leaf, torch.Tensor))


def reachable_tensors(*roots: object) -> Iterator[torch.Tensor]:
    """Every tensor reachable from ``roots`` through containers, tensor attributes and the
    ``__dict__`` of torch/transformers/peft/bitsandbytes objects (modules, optimizers, quant
    states). Parameter gradients are included."""
    seen: set[int] = set()
    stack: list[object] = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            yield obj
            stack.extend(vars(obj).values())  # Params4bit.quant_state, Int8Params.CB/SCB
            if isinstance(obj, torch.nn.Parameter) and obj.grad is not None:
                stack.append(obj.grad)
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif type(obj).__module__.split(".")[0] in _WALKED_LIBRARIES and hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
