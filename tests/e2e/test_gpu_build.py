"""benchmarks/gpu_build.py, the GPU check, on a machine without a GPU: it says so and exits 0, its
cases stay valid cuda plans, and its machinery builds the shrunk matrix on the CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from distill.compiler.pipeline import plan_file
from distill.runtime.placement import Placement

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_build  # noqa: E402 - a benchmark, importable after the sys.path line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_it_says_so_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_build.main([]) == 0
    assert "no CUDA device here" in capsys.readouterr().out


@pytest.mark.parametrize("case", gpu_build.CASES, ids=lambda case: case.name)
def test_every_case_is_a_cuda_plan(case: gpu_build.Case, tmp_path: Path) -> None:
    plan = plan_file(gpu_build.write_case(case, tmp_path, tiny=False), offline=True).plan
    half = "fp16" in case.name
    assert Placement.of(plan) == Placement("cuda", "float16" if half else "bfloat16", "fp16" if half else "bf16")
    assert plan.processes == 1 and plan.optimizer_steps == 3
    assert (plan.synthesis_batch is not None) == case.synthesis


@pytest.mark.slow
def test_the_shrunk_matrix_builds_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_build.main(["--tiny", "--out", str(tmp_path / "out"), "--cases", "extractive-qa", "qlora"]) == 0
    out = capsys.readouterr().out
    assert "every case built, every model on cpu" in out
    assert "student on cpu bfloat16 4bit" in out  # the QLoRA base, placed as planned
