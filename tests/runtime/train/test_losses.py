"""token_losses, topk_logprobs, auto_layer_map and HiddenProjector against plain references.

Each reference below is the straightforward full-tensor formula (F.cross_entropy, F.kl_div,
explicit sums over [N, V]), with no chunking or checkpointing. Float64 inputs make the 1e-6
tolerances meaningful: the module keeps float64 as is (it only upcasts fp16/bf16).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill.runtime.train.hidden import HiddenProjector, auto_layer_map, cut_layer_map
from distill.runtime.train.losses import FullRows, TopKRows, token_losses, topk_logprobs

N, H, HT, V = 13, 8, 6, 50
TOL = dict(rtol=1e-6, atol=1e-9)


def _setup(dtype: torch.dtype = torch.float64, seed: int = 0):
    """Student rows and head (trainable), teacher rows and head (frozen), targets."""
    torch.manual_seed(seed)
    hidden = torch.randn(N, H, dtype=dtype, requires_grad=True)
    head = torch.nn.Linear(H, V, bias=False).to(dtype)
    teacher = FullRows(hidden=torch.randn(N, HT, dtype=dtype) * 2,
                       head=torch.nn.Linear(HT, V, bias=False).to(dtype).requires_grad_(False))
    targets = torch.randint(0, V, (N,))
    return hidden, head, teacher, targets


def _grads(loss: torch.Tensor, hidden: torch.Tensor, head: torch.nn.Linear) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, (hidden, head.weight))


def _reference_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                  direction: str) -> torch.Tensor:
    """T^2 x mean over rows of the divergence, with F.kl_div as the documentation writes it."""
    log_s = F.log_softmax(student_logits / temperature, -1)
    log_t = F.log_softmax(teacher_logits / temperature, -1)
    if direction == "forward":  # kl_div(input=log q, target=p) = sum p (log p - log q) = KL(p || q)
        kl = F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")
    elif direction == "reverse":
        kl = F.kl_div(log_t, log_s, log_target=True, reduction="batchmean")
    else:
        m = 0.5 * (log_s.exp() + log_t.exp())
        kl = 0.5 * F.kl_div(m.log(), log_t.exp(), reduction="batchmean") \
            + 0.5 * F.kl_div(m.log(), log_s.exp(), reduction="batchmean")
    return kl * temperature ** 2


def _run(hidden, head, targets, teacher, **overrides) -> object:
    args = dict(ce_weight=0.0, kl_weight=1.0, temperature=2.0, direction="forward", chunk_tokens=4)
    args.update(overrides)
    return token_losses(hidden, head, targets, teacher, **args)


def test_ce_value_and_gradients() -> None:
    hidden, head, _, targets = _setup()
    parts = _run(hidden, head, targets, None, ce_weight=1.0, kl_weight=0.0)
    reference = F.cross_entropy(head(hidden), targets)
    assert parts.kl is None
    torch.testing.assert_close(parts.total, reference, **TOL)
    torch.testing.assert_close(parts.ce, reference.detach(), **TOL)
    for got, want in zip(_grads(parts.total, hidden, head), _grads(reference, hidden, head), strict=True):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("direction", ["forward", "reverse", "jsd"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_full_vocab_divergence_value_and_gradients(direction: str, temperature: float) -> None:
    hidden, head, teacher, _ = _setup()
    parts = _run(hidden, head, None, teacher, temperature=temperature, direction=direction)
    reference = _reference_kl(head(hidden), teacher.head(teacher.hidden), temperature, direction)
    assert parts.ce is None
    torch.testing.assert_close(parts.total, reference, **TOL)
    torch.testing.assert_close(parts.kl, reference.detach(), **TOL)
    for got, want in zip(_grads(parts.total, hidden, head), _grads(reference, hidden, head), strict=True):
        torch.testing.assert_close(got, want, **TOL)


def test_weighted_sum_and_softcapped_head() -> None:
    hidden, linear, teacher, targets = _setup()

    def head(rows: torch.Tensor) -> torch.Tensor:  # Gemma-2-style final softcap, a plain callable
        return 3.0 * torch.tanh(linear(rows) / 3.0)

    parts = _run(hidden, head, targets, teacher, ce_weight=0.3, kl_weight=0.7, direction="jsd")
    logits = head(hidden)
    reference = 0.3 * F.cross_entropy(logits, targets) \
        + 0.7 * _reference_kl(logits, teacher.head(teacher.hidden), 2.0, "jsd")
    torch.testing.assert_close(parts.total, reference, **TOL)
    torch.testing.assert_close(parts.total.detach(), 0.3 * parts.ce + 0.7 * parts.kl, **TOL)
    for got, want in zip(_grads(parts.total, hidden, linear), _grads(reference, hidden, linear), strict=True):
        torch.testing.assert_close(got, want, **TOL)


def _reference_bucket_kl(student_logits: torch.Tensor, top: TopKRows, temperature: float,
                         direction: str) -> torch.Tensor:
    """KL over k + 1 outcomes (the k ids, then everything else), with explicit sums."""
    p_s_all = torch.softmax(student_logits / temperature, -1)
    p_s = torch.cat([p_s_all.gather(-1, top.indices.long()), torch.zeros(N, 1, dtype=p_s_all.dtype)], -1)
    p_s[:, -1] = (1 - p_s[:, :-1].sum(-1)).clamp_min(1e-6)
    p_t = torch.cat([top.logprobs.double().exp(), torch.zeros(N, 1, dtype=torch.float64)], -1)
    p_t[:, -1] = (1 - p_t[:, :-1].sum(-1)).clamp_min(1e-6)
    if direction == "forward":
        kl = (p_t * (p_t.log() - p_s.log())).sum(-1)
    elif direction == "reverse":
        kl = (p_s * (p_s.log() - p_t.log())).sum(-1)
    else:
        m = (p_t + p_s) / 2
        kl = 0.5 * (p_t * (p_t / m).log()).sum(-1) + 0.5 * (p_s * (p_s / m).log()).sum(-1)
    return kl.mean() * temperature ** 2


@pytest.mark.parametrize("direction", ["forward", "reverse", "jsd"])
def test_topk_with_tail_bucket_matches_reference(direction: str) -> None:
    hidden, head, teacher, _ = _setup()
    top = topk_logprobs(teacher.head(teacher.hidden), k=7, temperature=2.0)
    cached = TopKRows(indices=top.indices.int(), logprobs=top.logprobs)  # int32 ids, as a cache may hold
    parts = _run(hidden, head, None, cached, direction=direction)
    reference = _reference_bucket_kl(head(hidden), cached, 2.0, direction)
    torch.testing.assert_close(parts.total, reference, **TOL)
    for got, want in zip(_grads(parts.total, hidden, head), _grads(reference, hidden, head), strict=True):
        torch.testing.assert_close(got, want, **TOL)
    full = _run(hidden, head, None, teacher, direction=direction).total
    assert 0 < parts.total < full  # coarsening can only lose divergence (data processing)


@pytest.mark.parametrize("direction", ["forward", "reverse", "jsd"])
def test_topk_with_whole_vocabulary_equals_full_kl(direction: str) -> None:
    hidden, head, teacher, _ = _setup()
    top = topk_logprobs(teacher.head(teacher.hidden), k=V, temperature=2.0)
    got = _run(hidden, head, None, top, direction=direction).total
    want = _run(hidden, head, None, teacher, direction=direction).total
    # Both tails are ~0 and clamped to 1e-6: at most ~1e-6 x |log ratio| ~ 1e-5 of the whole.
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


def test_topk_logprobs_in_float32_at_temperature() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 3, V).half()
    top = topk_logprobs(logits, k=5, temperature=4.0)
    full = F.log_softmax(logits.float() / 4.0, -1)
    assert top.indices.shape == (2, 3, 5) and top.logprobs.dtype == torch.float32
    torch.testing.assert_close(top.logprobs, full.gather(-1, top.indices))
    assert bool((top.logprobs[..., :1] >= full.max(-1, keepdim=True).values).all())


@pytest.mark.parametrize("teacher_kind", ["full", "topk", "none"])
@pytest.mark.parametrize("chunk_tokens", [1, 5, N])
def test_chunked_equals_one_chunk(teacher_kind: str, chunk_tokens: int) -> None:
    hidden, head, teacher, targets = _setup()
    if teacher_kind == "topk":
        teacher = topk_logprobs(teacher.head(teacher.hidden), k=9, temperature=2.0)
    teacher = None if teacher_kind == "none" else teacher
    args = dict(ce_weight=0.5, kl_weight=0.0 if teacher is None else 2.0, direction="reverse")
    chunked = _run(hidden, head, targets, teacher, chunk_tokens=chunk_tokens, **args)
    whole = _run(hidden, head, targets, teacher, chunk_tokens=10 * N, **args)
    torch.testing.assert_close(chunked.total, whole.total, rtol=1e-6, atol=0)
    for got, want in zip(_grads(chunked.total, hidden, head), _grads(whole.total, hidden, head), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)


def test_only_gathered_rows_contribute() -> None:
    """The caller gathers masked positions; the loss is the mean over those rows only."""
    torch.manual_seed(2)
    states = torch.randn(2, 7, H, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(H, V, bias=False).double()
    labels = torch.randint(0, V, (2, 7))
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 2:5], mask[1, 6] = True, True  # 4 supervised positions
    parts = _run(states[mask], head, labels[mask], None, ce_weight=1.0, kl_weight=0.0, chunk_tokens=3)
    per_position = F.cross_entropy(head(states).reshape(-1, V), labels.reshape(-1), reduction="none")
    reference = (per_position * mask.reshape(-1)).sum() / mask.sum()
    torch.testing.assert_close(parts.total, reference, **TOL)
    (grad,) = torch.autograd.grad(parts.total, states)
    assert bool((grad[~mask] == 0).all()) and bool((grad[mask].abs().sum(-1) > 0).all())


def test_half_precision_inputs_compute_in_float32() -> None:
    hidden, head, teacher, targets = _setup(torch.bfloat16)
    parts = _run(hidden, head, targets, teacher, ce_weight=1.0)
    assert parts.total.dtype == torch.float32
    logits = head(hidden).float()
    reference = F.cross_entropy(logits, targets) + _reference_kl(logits, teacher.head(teacher.hidden).float(),
                                                                 2.0, "forward")
    torch.testing.assert_close(parts.total, reference, rtol=1e-5, atol=1e-6)
    grad_hidden, grad_weight = _grads(parts.total, hidden, head)
    assert grad_hidden.dtype == torch.bfloat16 and bool(grad_weight.abs().sum() > 0)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(ce_weight=0.0, kl_weight=1.0, teacher=None), "no active loss"),
    (dict(ce_weight=0.0, kl_weight=0.0), "no active loss"),
    (dict(ce_weight=1.0, targets=None), "needs targets"),
    (dict(ce_weight=-1.0), ">= 0"),
    (dict(temperature=0.0), "> 0"),
    (dict(chunk_tokens=0), "> 0"),
    (dict(direction="sideways"), "direction"),
    (dict(targets=torch.zeros(N - 1, dtype=torch.long), ce_weight=1.0), "rows"),
])
def test_rejected_arguments(kwargs: dict, message: str) -> None:
    hidden, head, teacher, targets = _setup()
    args = dict(targets=targets, teacher=teacher, ce_weight=0.0, kl_weight=1.0, temperature=2.0,
                direction="forward", chunk_tokens=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        token_losses(hidden, head, args.pop("targets"), args.pop("teacher"), **args)


# --------------------------------------------------------------------------- hidden states


@pytest.mark.parametrize(("student", "teacher", "expected"), [
    (4, 12, ((1, 3), (2, 6), (3, 9), (4, 12))),
    (3, 3, ((1, 1), (2, 2), (3, 3))),
    (2, 5, ((1, 3), (2, 5))),  # 2.5 rounds half up
    (3, 4, ((1, 1), (2, 3), (3, 4))),  # 1.33 -> 1, 2.67 -> 3
    (4, 1, ((1, 1), (2, 1), (3, 1), (4, 1))),  # 0.25 -> 0 raised to 1: never the embeddings
    (1, 28, ((1, 28),)),
])
def test_auto_layer_map(student: int, teacher: int, expected: tuple) -> None:
    assert auto_layer_map(student, teacher) == expected


def test_a_cut_students_blocks_meet_the_blocks_they_were_cut_from() -> None:
    assert cut_layer_map((0, 1, 5)) == ((1, 1), (2, 2), (3, 6))
    assert cut_layer_map((0, 2, 4, 5)) != auto_layer_map(4, 6)  # evenly spaced would miss the copies
    with pytest.raises(ValueError):
        cut_layer_map(())


def test_auto_layer_map_rejects_empty_models() -> None:
    with pytest.raises(ValueError, match="> 0"):
        auto_layer_map(0, 4)


def _states(layers: int, width: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, 5, width, generator=generator) for _ in range(layers + 1))


def test_hidden_projector_references_and_mask() -> None:
    student, teacher = _states(2, 6, 0), _states(4, 6, 1)
    mask = torch.tensor([[True, True, False, False, True], [False, True, True, False, False]])
    pairs = auto_layer_map(2, 4)  # ((1, 2), (2, 4))
    mse = HiddenProjector(pairs, 6, 6, "mse")
    cosine = HiddenProjector(pairs, 6, 6, "cosine")
    assert not list(mse.parameters())  # equal widths: identity, nothing to learn
    want_mse = sum(((student[s][mask] - teacher[t][mask]) ** 2).mean() for s, t in pairs) / 2
    want_cos = sum((1 - F.cosine_similarity(student[s][mask], teacher[t][mask], dim=-1)).mean()
                   for s, t in pairs) / 2
    torch.testing.assert_close(mse(student, teacher, mask), want_mse)
    torch.testing.assert_close(cosine(student, teacher, mask), want_cos)
    changed = [t.clone() for t in teacher]
    changed[2][~mask] += 100.0  # unmasked positions do not count
    torch.testing.assert_close(mse(student, changed, mask), want_mse)
    with pytest.raises(ValueError, match="no positions"):
        mse(student, teacher, torch.zeros_like(mask))


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_hidden_projector_learns(kind: str) -> None:
    student = _states(2, 8, 0)
    hidden_map = torch.randn(8, 12, generator=torch.Generator().manual_seed(1))
    teacher = tuple(state @ hidden_map for state in student)  # a linear map of the student's
    mask = torch.ones(2, 5, dtype=torch.bool)
    torch.manual_seed(0)
    projector = HiddenProjector(((1, 1), (2, 2)), 8, 12, kind)
    torch.manual_seed(0)
    assert torch.equal(HiddenProjector(((1, 1), (2, 2)), 8, 12, kind).projections[0].weight,
                       projector.projections[0].weight)  # deterministic from the seed
    before = [p.detach().clone() for p in projector.parameters()]
    assert len(before) == 2 and all(p.requires_grad for p in projector.parameters())
    optimizer = torch.optim.Adam(projector.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        loss = projector(student, teacher, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(not torch.equal(b, p) for b, p in zip(before, projector.parameters(), strict=True))
    assert float(projector(student, teacher, mask)) < losses[0] / 2


def test_head_only_training_leaves_teacher_without_gradient() -> None:
    """Detached hidden rows (e.g. a frozen body) still train the head; the teacher gets nothing,
    even when its head's weights require grad."""
    hidden, head, teacher, targets = _setup()
    teacher.head.requires_grad_(True)
    parts = _run(hidden.detach(), head, targets, teacher, ce_weight=1.0)
    parts.total.backward()
    assert head.weight.grad is not None and bool(head.weight.grad.abs().sum() > 0)
    assert teacher.head.weight.grad is None
