"""Per-rank DDP and FSDP predictions against two real torchrun ranks (gloo, CPU), and the launch command."""

from __future__ import annotations

import sys

import pytest

from distill.compiler.arch import architecture
from distill.compiler.distributed import estimate_step
from distill.compiler.trainstep import TrainStep
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import distributed_memory

CASES = {case.name: case for case in distributed_memory.CASES}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama lora ddp b2 s128", "llama full fsdp b2 s128"])
def test_per_rank_peak_is_within_bound_of_each_rank(name: str) -> None:
    predicted, _ = distributed_memory.predict(CASES[name])
    for rank in distributed_memory.measure(CASES[name]):
        assert abs(predicted - rank["peak"]) <= distributed_memory.BOUND * rank["peak"], (predicted, rank)


LLAMA = architecture(distributed_memory.LLAMA)


def _terms(step: TrainStep) -> dict[str, set[str]]:
    memory = estimate_step(LLAMA, "causal-lm", step)
    return {phase: {term.name for term in terms} for phase, terms in memory.phases.items()}


def test_ddp_adds_buckets_of_the_trainable_size_to_every_phase() -> None:
    one = estimate_step(LLAMA, "causal-lm", TrainStep(micro_batch=2, seq_len=64))
    two = estimate_step(LLAMA, "causal-lm", TrainStep(micro_batch=2, seq_len=64, processes=2))
    assert two.peak - one.peak == LLAMA.params("causal-lm") * 4
    assert all("DDP buckets" in names for names in _terms(TrainStep(micro_batch=2, seq_len=64, processes=2)).values())


def test_fsdp_shards_and_names_its_terms() -> None:
    terms = _terms(TrainStep(micro_batch=2, seq_len=64, processes=4, strategy="fsdp"))
    assert {"parameters (1/4 shard)", "optimizer states (1/4 shard)", "all-gathered root"} <= terms["forward"]
    assert {"all-gathered layer", "layer gradient (unsharded)"} <= terms["backward (layer)"]
    assert "gradients (1/4 shard)" in terms["optimizer"]
    one = estimate_step(LLAMA, "causal-lm", TrainStep(micro_batch=2, seq_len=64, strategy="fsdp"))
    many = [estimate_step(LLAMA, "causal-lm", TrainStep(micro_batch=2, seq_len=64, processes=n, strategy="fsdp"))
            for n in (2, 4, 8)]
    assert one.peak > many[0].peak > many[1].peak > many[2].peak
