"""The weights of a student cut from its teacher (``compiler/cut.py``), written once into a
content-addressed folder that loads with ``from_pretrained`` like any local model.

``.distill/cut/<16 hex>/`` holds the cut config.json, the teacher's tokenizer and generation files,
and the teacher's tensors with kept layer ``i`` renamed to its position in the kept list and the
other layers' tensors left out. Tensors are read one at a time from the teacher's safetensors
(``safe_open``), and written in shards of at most ``SHARD_BYTES``, so a big teacher is never
whole in memory: the peak is one shard.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from distill.compiler.cut import LAYER_PREFIX
from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.fsutil import staged_folder
from distill.compiler.records.record import read_json
from distill.compiler.resolve import CONFIG, OPTIONAL_FILES, ResolvedModel

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
# Bytes of tensors one written shard holds at most, so at most that much is in memory at once.
SHARD_BYTES = 2 * 2**30
_LAYER = re.compile(re.escape(LAYER_PREFIX) + r"(\d+)\.")
# Bytes per element of the safetensors dtypes a checkpoint holds.
_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


class CutFailed(DistillError):
    """The teacher's weights do not hold the layers its config promises."""

    exit_code = ExitCode.INVALID_SPEC


@dataclass(frozen=True)
class _Tensor:
    """One tensor to write: where it is read, its name there and in the student, its bytes."""

    source: Path
    name: str
    renamed: str
    nbytes: int


def cut_folder(resolved: ResolvedModel, root: Path, source: Path) -> Path:
    """``<root>/.distill/cut/<sha256[:16]>``, named by the teacher's file digests and the layers kept.
    A local teacher's digests cover its config and tokenizer only, so its weight files' sizes and
    modification times join them: retrained weights in the same folder make a new cut."""
    teacher = resolved.cut_from
    assert resolved.kind == "cut" and teacher is not None
    weights = ([(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in weight_files(source)]
               if teacher.kind == "local" else [])
    identity = {"teacher": [[f.path, f.sha256, f.size] for f in teacher.files], "layers": list(resolved.layers),
                "weights": weights}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return root / ".distill" / "cut" / hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def weight_files(folder: Path) -> list[Path]:
    """A model folder's safetensors files: the shards its index names, or the single file."""
    index = folder / INDEX
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        return [folder / shard for shard in shards]
    return [folder / WEIGHTS]


def write_cut(resolved: ResolvedModel, source: Path, folder: Path) -> None:
    """Write the cut student into ``folder`` unless it is there: config, the teacher's tokenizer
    and generation files (from its resolved folder), and the kept tensors from ``source`` (the
    teacher's weights folder). Atomic: the folder appears whole or not at all."""
    teacher = resolved.cut_from
    assert resolved.kind == "cut" and teacher is not None and teacher.folder is not None
    if (folder / CONFIG).is_file():
        return
    tensors = _kept_tensors(resolved, weight_files(source))
    with staged_folder(folder, needed=sum(t.nbytes for t in tensors), keep_existing=True) as staging:
        (staging / CONFIG).write_text(json.dumps(resolved.config, indent=2, sort_keys=True), "utf-8")
        for name in OPTIONAL_FILES:
            if (teacher.folder / name).is_file():
                shutil.copyfile(teacher.folder / name, staging / name)  # follows the hub cache's links
        _write_shards(_shards(tensors), staging)


def _kept_tensors(resolved: ResolvedModel, files: list[Path]) -> list[_Tensor]:
    """Every teacher tensor the student keeps, renamed, with its size read from the file's header
    (no tensor is loaded); refused when a kept layer has no tensors."""
    from safetensors import safe_open

    position = {layer: i for i, layer in enumerate(resolved.layers)}
    kept, present = [], set()
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                match = _LAYER.match(name)
                if match is not None:
                    present.add(int(match[1]))
                renamed = _renamed(name, position)
                if renamed is None:
                    continue
                view = handle.get_slice(name)
                kept.append(_Tensor(path, name, renamed, math.prod(view.get_shape()) * _DTYPE_BYTES[view.get_dtype()]))
    missing = [layer for layer in resolved.layers if layer not in present]
    if missing:
        raise CutFailed(f"student {resolved.ref}: the teacher's weights hold no tensors named "
                        f"{LAYER_PREFIX}<i>. for layer(s) {', '.join(map(str, missing))}",
                        hint="the teacher's checkpoint is laid out differently from its model_type's; "
                             "give the student its own model")
    return kept


def _renamed(name: str, position: dict[int, int]) -> str | None:
    """A teacher tensor's name in the student: layer ``i`` becomes its position among the kept
    layers; ``None`` for a layer left out. Embeddings, final norm and head keep their names."""
    match = _LAYER.match(name)
    if match is None:
        return name
    i = position.get(int(match[1]))
    return None if i is None else f"{LAYER_PREFIX}{i}.{name[match.end():]}"


def _shards(tensors: list[_Tensor]) -> list[list[_Tensor]]:
    """Consecutive groups of at most ``SHARD_BYTES`` (a bigger tensor alone in its own)."""
    shards: list[list[_Tensor]] = [[]]
    size = 0
    for tensor in tensors:
        if shards[-1] and size + tensor.nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor.nbytes
    return shards


def _write_shards(shards: list[list[_Tensor]], folder: Path) -> None:
    """One ``model.safetensors``, or numbered shards and the index transformers reads them by."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    names = ([WEIGHTS] if len(shards) == 1 else
             [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))])
    for shard, name in zip(shards, names, strict=True):
        with ExitStack() as stack:
            handles = {path: stack.enter_context(safe_open(str(path), framework="pt"))
                       for path in {t.source for t in shard}}
            save_file({t.renamed: handles[t.source].get_tensor(t.name) for t in shard}, str(folder / name),
                      metadata={"format": "pt"})
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for shard in shards for t in shard)},
                 "weight_map": {t.renamed: name for shard, name in zip(shards, names, strict=True) for t in shard}}
        (folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True), "utf-8")
