"""The teacher_logits stage: the teacher's top-k log-probabilities (at the KL temperature) on every
learned token of the train set, computed once and read back every epoch, so later epochs never run
the teacher.

Size: rows x k x (4 bytes int32 id + 2 bytes fp16 log-prob); 1M learned tokens at k = 64 is 384 MB,
against rows x vocab x 2 bytes = 64 GB for full fp16 logits at a 32k vocabulary.

Layout: ``shard-NNNNN.safetensors`` files of SHARD examples each (tensors ``<id>.indices`` and
``<id>.logprobs``) and ``meta.json`` with the content key: a hash of the teacher, k, T and every
example's tokens. Shards are written atomically as they finish, so an interrupted run reuses the
finished ones; a different key starts over.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from distill.compiler.fsutil import write_atomic, write_atomic_with
from distill.runtime.losses import TopKRows, topk_logprobs
from distill.runtime.synthesis.examples import stable_id
from distill.runtime.train.data import Encoded, collate
from distill.runtime.train.student import Head, causal_forward

SHARD = 256


class TopKCache:
    """Cached rows by example id, all in memory (the layout above keeps that small)."""

    def __init__(self, rows: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self._rows = rows

    def rows(self, ids: Sequence[str], device: torch.device) -> TopKRows:
        """The rows of these examples, concatenated in order (row-major, as the loss gathers)."""
        indices = torch.cat([self._rows[i][0] for i in ids]).to(device=device, dtype=torch.long)
        logprobs = torch.cat([self._rows[i][1] for i in ids]).to(device=device, dtype=torch.float32)
        return TopKRows(indices, logprobs)


def cache_key(teacher_key: str, examples: Sequence[Encoded], k: int, temperature: float) -> str:
    return stable_id("teacher-topk", 1, teacher_key, k, temperature,
                     stable_id([(e.id, e.input_ids, e.labels) for e in examples]))


def build_cache(teacher: Any, head: Head | None, examples: Sequence[Encoded], pad_id: int, micro: int, k: int,
                temperature: float, folder: Path, teacher_key: str) -> TopKCache:
    """Compute (or reuse) the cache in ``folder`` and load it."""
    key = cache_key(teacher_key, examples, k, temperature)
    meta = folder / "meta.json"
    if not meta.is_file() or json.loads(meta.read_text()).get("key") != key:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        write_atomic(meta, json.dumps({"key": key, "k": k, "temperature": temperature, "examples": len(examples),
                                       "shard": SHARD}, sort_keys=True) + "\n")
    rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for number, start in enumerate(range(0, len(examples), SHARD)):
        path = folder / f"shard-{number:05d}.safetensors"
        shard = examples[start:start + SHARD]
        if not path.is_file():
            computed = _shard_rows(teacher, head, shard, pad_id, micro, k, temperature)
            tensors = {f"{i}.{part}": t for i, pair in computed.items() for part, t in zip(("indices", "logprobs"), pair,
                                                                                          strict=True)}
            write_atomic_with(path, lambda tmp, t=tensors: save_file(t, str(tmp)))
        loaded = load_file(str(path))
        rows.update({e.id: (loaded[f"{e.id}.indices"], loaded[f"{e.id}.logprobs"]) for e in shard})
    return TopKCache(rows)


def _shard_rows(teacher: Any, head: Head | None, examples: Sequence[Encoded], pad_id: int, micro: int, k: int,
                temperature: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    device = next(teacher.parameters()).device
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    with torch.no_grad():
        for start in range(0, len(examples), micro):
            batch_examples = examples[start:start + micro]
            batch = {name: t.to(device) for name, t in collate(batch_examples, pad_id).items()}
            forward = causal_forward(teacher, batch, head, hidden=False)
            for row, example in enumerate(batch_examples):
                mask = batch["labels"][row, 1:] != -100
                states = forward.rows[row, :-1][mask]
                logits = head(states) if head is not None else states
                top = topk_logprobs(logits, min(k, logits.shape[-1]), temperature)
                out[example.id] = (top.indices.to(torch.int32).cpu(), top.logprobs.to(torch.float16).cpu())
    return out
