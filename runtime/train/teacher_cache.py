"""The teacher_logits stage: the teacher's top-k log-probabilities (at the KL temperature) on every
learned token of the train set, computed once and read back every epoch, so later epochs never run
the teacher.

Size: rows x (k x (4 bytes int32 id + 2 bytes fp16 log-prob) + 4 bytes fp32 tail mass); 1M learned
tokens at k = 64 is 388 MB,
against rows x vocab x 2 bytes = 64 GB for full fp16 logits at a 32k vocabulary.

Layout: ``shard-NNNNN.safetensors`` files of SHARD examples each (tensors ``<id>.indices`` and
``<id>.logprobs``, ``<id>.tail``) and ``meta.json`` with the content key: a hash of the teacher, k, T and every
example's tokens. Shards are written atomically as they finish, so an interrupted run reuses the
finished ones; a different key starts over. In a multi-process run each rank computes every
world-th shard and all ranks then read them all (the folder is shared).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file

from distill.compiler.fsutil import write_atomic_with
from distill.compiler.records.record import Record, RecordError
from distill.runtime.placement import Placement
from distill.runtime.progress import Progress
from distill.runtime.ranks import barrier, ranks
from distill.runtime.synthesis.examples import stable_id
from distill.runtime.train.data import Encoded, collate
from distill.runtime.train.losses import TopKRows, topk_logprobs
from distill.runtime.train.student import Head, causal_forward

SHARD = 256


PARTS = ("indices", "logprobs", "tail")
Rows = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TopKCache:
    """Cached rows by example id, all in memory (the layout above keeps that small)."""

    def __init__(self, rows: dict[str, Rows]) -> None:
        self._rows = rows

    def rows(self, ids: Sequence[str], device: torch.device) -> TopKRows:
        """The rows of these examples, concatenated in order (row-major, as the loss gathers)."""
        # Widened before the cat: CPU autocast refuses to cat float16 tensors (its dtype
        # promotion has no float16 on CPU), and the loss computes in float32 anyway.
        indices, logprobs, tail = (torch.cat([self._rows[i][part].to(dtype) for i in ids]).to(device)
                                   for part, dtype in enumerate((torch.long, torch.float32, torch.float32)))
        return TopKRows(indices, logprobs, tail)


def cache_key(teacher_key: str, examples: Sequence[Encoded], k: int, temperature: float) -> str:
    return stable_id("teacher-topk", 2, teacher_key, k, temperature,
                     stable_id([(e.id, e.input_ids, e.labels) for e in examples]))


CACHE_META = "meta.json"


@dataclass(frozen=True)
class CacheMeta(Record):
    """``meta.json`` of the cache: what its shards hold (the content key, top-k, temperature,
    rows and rows per shard); shards of any other cache are thrown away."""

    KIND: ClassVar[str] = "teacher-cache"
    VERSION: ClassVar[int] = 1

    key: str
    k: int
    temperature: float
    examples: int
    shard: int


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, str(path))


def _found(path: Path) -> CacheMeta | None:
    """The cache's meta.json, or None when there is none or it cannot be read (another version)."""
    try:
        return CacheMeta.read(path)
    except RecordError:
        return None


def build_cache(teacher: Any, head: Head | None, examples: Sequence[Encoded], pad_id: int, micro: int, k: int,
                temperature: float, folder: Path, teacher_key: str, placement: Placement,
                progress: Progress | None = None) -> TopKCache:
    """Compute (or reuse) the cache in ``folder`` and load it. The teacher runs as it would
    online: on the plan's device under its autocast (``teacher_key`` names the precision).
    ``progress("teacher logits", rows, total)`` follows rank 0's rows (shards found done count)."""
    key = cache_key(teacher_key, examples, k, temperature)
    rank, world = ranks()
    meta = CacheMeta(key=key, k=k, temperature=temperature, examples=len(examples), shard=SHARD)
    if rank == 0 and _found(folder / CACHE_META) != meta:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        meta.write(folder / CACHE_META)
    barrier()
    shards = [(folder / f"shard-{n:05d}.safetensors", examples[start:start + SHARD])
              for n, start in enumerate(range(0, len(examples), SHARD))]
    mine = [(path, shard) for number, (path, shard) in enumerate(shards) if number % world == rank]
    done, total = sum(len(shard) for path, shard in mine if path.is_file()), sum(len(shard) for _, shard in mine)

    def advance(rows: int) -> None:
        nonlocal done
        done += rows
        if progress is not None and rank == 0:
            progress("teacher logits", done, total)

    for path, shard in mine:
        if not path.is_file():  # each rank computes its share of the shards
            computed = _shard_rows(teacher, head, shard, pad_id, micro, k, temperature, placement, advance)
            tensors = {f"{i}.{part}": t for i, parts in computed.items() for part, t in zip(PARTS, parts, strict=True)}
            write_atomic_with(path, partial(_save, tensors))
    barrier()
    rows: dict[str, Rows] = {}
    for path, shard in shards:
        loaded = load_file(str(path))
        for example in shard:
            indices, logprobs, tail = (loaded[f"{example.id}.{part}"] for part in PARTS)
            rows[example.id] = (indices, logprobs, tail)
    return TopKCache(rows)


def _shard_rows(teacher: Any, head: Head | None, examples: Sequence[Encoded], pad_id: int, micro: int, k: int,
                temperature: float, placement: Placement, advance: Callable[[int], None]) -> dict[str, Rows]:
    device = placement.torch_device
    out: dict[str, Rows] = {}
    with torch.no_grad(), placement.autocast():
        for start in range(0, len(examples), micro):
            batch_examples = examples[start:start + micro]
            batch = {name: t.to(device) for name, t in collate(batch_examples, pad_id).items()}
            forward = causal_forward(teacher, batch, head, hidden=False)
            for row, example in enumerate(batch_examples):
                mask = batch["labels"][row, 1:] != -100
                states = forward.rows[row, :-1][mask]
                logits = head(states) if head is not None else states
                top = topk_logprobs(logits, min(k, logits.shape[-1]), temperature)
                assert top.tail is not None
                out[example.id] = (top.indices.to(torch.int32).cpu(), top.logprobs.to(torch.float16).cpu(),
                                   top.tail.float().cpu())
            advance(len(batch_examples))
    return out
