"""Runners: torch perplexity equals a direct computation; llama.cpp (F16 GGUF) and onnxruntime
(fp32) reproduce the torch model they were exported from, fed the same token ids."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import transformers

from distill.runtime.evaluate.cases import CausalCase, prepare
from distill.runtime.evaluate.runners import LlamaCppRunner, open_runner, ort_runner, torch_runner
from distill.runtime.placement import Placement

from .conftest import RECORDS, save_tokenizer

CPU = Placement("cpu", "float32", "fp32")  # what these tests compare against: fp32 torch
THREADS = 1  # steadier than 2 on 2 shared cores
GREEDY_TOKENS = 6  # random tiny models have near-tied logits; a few tokens show the decode loop agrees
# Families whose first, empty ONNX cache optimum sizes from the config wrongly (what
# backends.onnx.size_cache_from_graph fixes): Qwen3's head_dim 128 != hidden 64 / 4 heads, and
# Phi-3's 2 kv heads of 4 (optimum feeds 4). Also used by tests/runtime/test_chat.py and test_report.py.
FAMILIES = {"qwen3": {"head_dim": 128}, "phi3": {}}


def save_family(folder: Path, arch: str, **overrides) -> Path:
    """A tiny seeded ``arch`` (hidden 64, 2 layers, 4 heads, 2 kv heads) on the ChatML tokenizer."""
    tokenizer = save_tokenizer(folder)
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        arch, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=256, bos_token_id=0,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=1, **overrides)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cases(models: dict[str, Path]):
    return prepare(models["student"], RECORDS, "causal-lm", 256)


@pytest.fixture(scope="module")
def hf(models: dict[str, Path]):
    runner = torch_runner(models["student"], "causal-lm", THREADS, CPU, "student")
    yield runner
    runner.close()


def _perplexities(runner, cases) -> list[float]:
    rows = [c.scored for c in cases.cases if isinstance(c, CausalCase) and c.scored]
    return [math.exp(total / count) for total, count in (runner.nll(*row) for row in rows)]


def test_cases_score_answers_and_documents(cases) -> None:
    qa, _, document = cases.cases
    ids, labels = qa.scored
    learned = cases.tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])
    assert learned == "It moves water.<|im_end|>"  # the answer and its end-of-turn marker
    assert cases.tokenizer.decode(qa.prompt) == ("<|im_start|>user\nWhat does the pump do?<|im_end|>\n"
                                                 "<|im_start|>assistant\n")
    assert document.prompt is None and all(label != -100 for label in document.scored[1])
    assert cases.stop == (cases.tokenizer.eos_token_id,)


def test_torch_perplexity_matches_direct_computation(models: dict[str, Path], cases, hf) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(models["student"], dtype=torch.float32).eval()
    for case in cases.cases:
        ids, labels = case.scored
        with torch.no_grad():  # HF's own shifted cross-entropy over the labelled positions
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        total, count = hf.nll(ids, labels)
        assert total / count == pytest.approx(float(loss), rel=1e-5)


def test_gguf_runner_matches_torch(gguf_f16: Path, cases, hf) -> None:
    runner = LlamaCppRunner(gguf_f16, threads=THREADS, n_ctx=128)
    try:
        for want, got in zip(_perplexities(hf, cases), _perplexities(runner, cases), strict=True):
            assert got == pytest.approx(want, rel=0.01)
        for case in cases.cases[:2]:
            want, _ = hf.generate(case.prompt, GREEDY_TOKENS, ())
            got, seconds = runner.generate(case.prompt, GREEDY_TOKENS, ())
            assert got == want and len(got) == GREEDY_TOKENS and seconds > 0
        stop = want[2]  # a stop id ends generation after emitting it
        assert runner.generate(cases.cases[1].prompt, GREEDY_TOKENS, (stop,))[0] == want[: want.index(stop) + 1]
    finally:
        runner.close()


def test_gguf_runner_reports_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(RuntimeError, match="llama.cpp cannot load"):
        LlamaCppRunner(bad, threads=THREADS, n_ctx=64)


def test_onnx_runner_matches_torch(models: dict[str, Path], cases, hf, tmp_path_factory) -> None:
    from distill.backends.export import export_verified, parse_target

    out = tmp_path_factory.mktemp("onnx") / "out"
    artifact, _ = export_verified(models["student"], parse_target("onnx:none"), out)
    runner = ort_runner(artifact.path.parent, "causal-lm", threads=THREADS)
    try:
        for want, got in zip(_perplexities(hf, cases), _perplexities(runner, cases), strict=True):
            assert got == pytest.approx(want, rel=1e-4)
        want, _ = hf.generate(cases.cases[0].prompt, GREEDY_TOKENS, ())
        assert runner.generate(cases.cases[0].prompt, GREEDY_TOKENS, ())[0] == want
    finally:
        runner.close()


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_onnx_families_optimum_misreads_run_in_the_evaluate_runner(arch: str, tmp_path: Path) -> None:
    """The runner the evaluate stage opens runs what verification passed, cache and all."""
    from distill.backends.export import export_verified, parse_target

    torch.set_num_threads(THREADS)
    model_dir = save_family(tmp_path / arch, arch, **FAMILIES[arch])
    artifact, _ = export_verified(model_dir, parse_target("onnx:none"), tmp_path / "out")
    family = prepare(model_dir, RECORDS, "causal-lm", 256)
    hf = torch_runner(model_dir, "causal-lm", THREADS, CPU, "student")
    runner = open_runner("onnx", artifact.path.parent, "causal-lm", THREADS, 256, None, "student")
    try:
        for want, got in zip(_perplexities(hf, family), _perplexities(runner, family), strict=True):
            assert got == pytest.approx(want, rel=1e-4)
        for case in family.cases[:2]:
            want, _ = hf.generate(case.prompt, GREEDY_TOKENS, ())
            assert runner.generate(case.prompt, GREEDY_TOKENS, ())[0] == want
    finally:
        runner.close()
        hf.close()


def test_an_hf_candidate_loads_with_its_planned_quantization(models: dict[str, Path], cases) -> None:
    """The build's teacher is scored as it was used (a 4-bit teacher is evaluated in 4 bits)."""
    import bitsandbytes as bnb

    from distill.runtime.placement import PLACED

    runner = torch_runner(models["student"], "causal-lm", THREADS, CPU, "teacher (evaluation)", quant="4bit")
    try:
        linears = [m for m in runner.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert linears
        assert PLACED[-1].role == "teacher (evaluation)" and PLACED[-1].quant == "4bit"
        assert all(math.isfinite(p) for p in _perplexities(runner, cases))
    finally:
        runner.close()
