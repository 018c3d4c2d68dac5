"""The live-bytes counter counts exactly; real tiny training steps respect the arithmetic."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import torch

from distill.compiler.trainstep import TrainStep
from distill.runtime.train.livebytes import LiveBytesCounter, reachable_tensors
from distill.runtime.train.memtrace import (
    measure,
    measure_step,
    prepare_step,
    run_step,
)

torch.set_num_threads(2)

MIB = 2**20
LLAMA: dict[str, Any] = dict(model_type="llama", hidden_size=64, intermediate_size=96,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             vocab_size=256, max_position_embeddings=128)
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STEP = TrainStep(micro_batch=2, seq_len=32)


def _storage_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def test_known_allocation_pattern_is_counted_exactly() -> None:
    existing = torch.zeros(MIB // 8)  # 0.5 MiB of float32, alive before the mode
    counter = LiveBytesCounter()
    counter.track_existing(iter([existing, existing[:10]]), "inputs")  # a view counts once
    assert counter.current == MIB // 2
    with counter, counter.phase("forward"):
        kept = torch.ones(MIB // 4)  # 1 MiB
        temporary = torch.ones(MIB // 2)  # 2 MiB, freed below
        assert counter.current == MIB // 2 + 3 * MIB
        del temporary
        assert counter.current == MIB // 2 + MIB
        view = kept.view(2, -1)[1]  # aliases kept: no new bytes
        kept.add_(1)  # in place: no new bytes
        doubled = existing.double()  # 0.5 MiB of float32 -> 1 MiB of float64
        assert counter.current == MIB // 2 + MIB + MIB
        grown = torch.empty(0, dtype=torch.uint8)
        grown.resize_(1000)  # same storage, 0 -> 1000 bytes
        assert counter.current == MIB // 2 + 2 * MIB + 1000
    assert counter.peak == MIB // 2 + 3 * MIB
    assert counter.phase_peaks == {"forward": MIB // 2 + 3 * MIB}
    assert counter.phase_ends == {"forward": MIB // 2 + 2 * MIB + 1000}
    assert counter.by_category == {"inputs": MIB // 2, "activations": 2 * MIB + 1000}
    assert counter.untracked_bytes == 0
    del kept, view, doubled, grown
    assert counter.current == MIB // 2


def test_tensors_missed_by_the_baseline_are_reported_as_untracked() -> None:
    forgotten = torch.zeros(1000, dtype=torch.int64)
    counter = LiveBytesCounter()
    with counter:
        total = forgotten.sum()
    assert counter.untracked_bytes == 8000
    assert counter.by_category == {"untracked": 8000, "temporaries": total.nbytes}


def test_full_finetune_peak_covers_weights_grads_and_adam_states() -> None:
    parts = prepare_step(LLAMA, STEP)
    params = sum(p.numel() for p in parts.student.parameters())
    measured = measure(parts)
    # fp32 weights + grads + Adam exp_avg + exp_avg_sq = 4 copies of 4 bytes per parameter.
    assert measured.peak_bytes >= 4 * params * 4
    expected_baseline = _storage_bytes([*parts.student.parameters(), *parts.student.buffers(),
                                        *reachable_tensors(parts.optimizer.state),
                                        parts.input_ids, parts.labels])
    assert measured.baseline_bytes == expected_baseline
    assert measured.baseline_by_category["optimizer_states"] >= 2 * params * 4
    assert measured.end_bytes == measured.baseline_bytes
    assert measured.untracked_bytes == 0
    assert measured.by_category.get("gradients", 0) <= params * 4
    assert max(measured.phase_peaks.values()) == measured.peak_bytes
    assert measured.optimizer_impl == "torch.optim.AdamW(single_tensor)"


def test_agrees_with_torch_memtracker_byte_for_byte() -> None:
    """With the loss on the model's own logits: the chunked loss calls the output head again
    outside the model, which MemTracker refuses ("multiple iterative calls")."""
    from torch.distributed._tools.mem_tracker import MemTracker

    parts = prepare_step(LLAMA, TrainStep(micro_batch=2, seq_len=32, checkpointing=True))
    assert parts.objective is not None
    parts.objective.head = None
    ours = measure(parts).peak_bytes  # leaves the parts warmed up and at rest
    tracker = MemTracker()
    tracker.track_external(parts.student, parts.optimizer, parts.input_ids, parts.labels)
    gc.collect()
    gc.disable()
    try:
        with tracker:
            run_step(parts)
    finally:
        gc.enable()
    assert tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"] == ours


def test_checkpointing_lowers_the_activation_peak() -> None:
    plain = measure_step(LLAMA, TrainStep(micro_batch=2, seq_len=64))
    ckpt = measure_step(LLAMA, TrainStep(micro_batch=2, seq_len=64, checkpointing=True))
    assert ckpt.baseline_bytes == plain.baseline_bytes
    assert ckpt.phase_peaks["forward"] < plain.phase_peaks["forward"]


def test_lora_keeps_adam_states_for_adapters_only() -> None:
    step = TrainStep(micro_batch=2, seq_len=32, adapter="lora", lora_r=4, lora_targets=ALL_LINEAR)
    measured = measure_step(LLAMA, step)
    # Two fp32 Adam states per adapter element, plus a 4-byte float32 "step" per adapter tensor:
    # 7 targets x 2 layers x (A, B) = 28 tensors.
    adam_bytes = 2 * 4 * measured.trainable_params + 4 * 28
    assert measured.baseline_by_category["optimizer_states"] == adam_bytes
    assert measured.by_category.get("gradients", 0) <= 4 * measured.trainable_params
    assert measured.untracked_bytes == 0


def test_qlora_counts_the_quant_states() -> None:
    step = TrainStep(micro_batch=1, seq_len=16, adapter="qlora", lora_r=4,
                     lora_targets=("q_proj", "v_proj"))
    parts = prepare_step(LLAMA, step)
    packed = [p for p in parts.student.parameters() if type(p).__name__ == "Params4bit"]
    assert packed, "the base linears should be bitsandbytes Params4bit"
    states = [p.quant_state for p in packed] + [p.quant_state.state2 for p in packed]
    # absmax (uint8 after double quantization), its float32 absmax, the offset and the nf4 /
    # nested codes are tensors beside the packed weights; they are part of the resident weights.
    quant_tensors = [getattr(state, name) for state in states
                     for name in ("absmax", "code", "offset") if getattr(state, name) is not None]
    measured = measure(parts)
    weights = _storage_bytes([*parts.student.parameters(), *quant_tensors])
    assert weights > _storage_bytes(parts.student.parameters())
    assert measured.baseline_by_category["parameters"] == weights
    assert measured.untracked_bytes == 0
    assert measured.end_bytes == measured.baseline_bytes
    assert measured.peak_bytes > measured.baseline_bytes


def test_online_kd_needs_a_teacher() -> None:
    with pytest.raises(ValueError, match="teacher_config"):
        measure_step(LLAMA, TrainStep(micro_batch=1, seq_len=8, kd="online"))


def test_the_measured_step_is_the_training_loops_loss() -> None:
    """memtrace computes the loop's Objective (hidden rows, checkpointed chunks), so smaller
    chunks lower the measured peak exactly as they lower the loop's."""
    from distill.runtime.train.objective import Objective

    step = TrainStep(micro_batch=2, seq_len=64, loss_chunk_tokens=16)
    parts = prepare_step(LLAMA, step)
    assert isinstance(parts.objective, Objective) and parts.objective.head is not None
    assert parts.objective.weights.chunk_tokens == 16
    whole = measure_step(LLAMA, TrainStep(micro_batch=2, seq_len=64, loss_chunk_tokens=1024))
    assert measure(parts).phase_peaks["forward"] < whole.phase_peaks["forward"]


def test_a_4bit_student_keeps_its_training_kernel_after_an_eval_pass() -> None:
    """bitsandbytes repacks a Linear4bit for a forward-only CPU kernel the first time it runs in
    eval mode under no_grad (the head probe, validation); make_trainable turns that off."""
    import bitsandbytes as bnb

    from distill.runtime.train.student import causal_head

    step = TrainStep(micro_batch=1, seq_len=16, adapter="qlora", lora_r=4, lora_targets=("q_proj", "v_proj"))
    parts = prepare_step(LLAMA, step)
    assert causal_head(parts.student) is not None  # runs the model in eval mode under no_grad
    linears = [m for m in parts.student.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linears and not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in linears)
    assert all(m.training for m in linears)
