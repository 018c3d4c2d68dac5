"""Every model a build loads goes through one placement path and lands where the plan says: on its
device, in its dtype; a plan for a device this machine lacks is refused, never run on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from distill.compiler.errors import ExitCode
from distill.runtime import placement
from distill.runtime.placement import DeviceUnavailable, Misplaced, Placement, check_placed
from tests.runtime.train.project import TEMPLATE, train_project, write_project

BF16 = Placement("cpu", "bfloat16", "bf16")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def tiny_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    config = AutoConfig.for_model(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, vocab_size=300)
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


def test_the_placement_comes_from_the_plan(tmp_path: Path) -> None:
    from distill.compiler.pipeline import plan_file

    path = write_project(tmp_path, hardware={"device": "cuda", "vram": "8GiB"})
    plan = plan_file(path, offline=True).plan
    assert Placement.of(plan) == Placement("cuda", "bfloat16", "bf16")
    assert [d.value for d in plan.decisions if d.name == "precision"] == ["bf16"]
    cpu = plan_file(write_project(tmp_path), offline=True).plan
    assert Placement.of(cpu) == Placement("cpu", "float32", "fp32")


@NO_CUDA
def test_a_cuda_plan_on_a_machine_without_cuda_is_refused_before_anything_runs(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "PLACED", [])
    path = write_project(tmp_path, hardware={"device": "cuda", "vram": "8GiB"})
    with pytest.raises(DeviceUnavailable, match="the plan runs on cuda, and torch finds no CUDA device") as raised:
        train_project(path, tmp_path / "out")
    assert raised.value.exit_code == ExitCode.DOES_NOT_FIT
    assert placement.PLACED == [] and not (tmp_path / "out" / "train" / "metrics.jsonl").exists()


def test_a_model_in_another_dtype_is_named() -> None:
    model = tiny_model(torch.float32)
    with pytest.raises(Misplaced, match=r"the student should be on cpu in bfloat16, but .* is torch.float32"):
        check_placed(model, BF16, "student")


def test_a_model_on_another_device_is_named() -> None:
    model = tiny_model(torch.bfloat16)
    with torch.device("meta"):
        model.lm_head = torch.nn.Linear(32, 300, bias=False, dtype=torch.bfloat16)
    with pytest.raises(Misplaced, match=r"lm_head.weight on meta"):
        check_placed(model, BF16, "teacher")


def test_place_moves_checks_and_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "PLACED", [])
    placement.place(tiny_model(torch.bfloat16), BF16, "teacher (synthesis)")
    assert placement.PLACED == [placement.Placed("teacher (synthesis)", "cpu", "bfloat16", "none", ("cpu",),
                                                 ("bfloat16",))]


@pytest.mark.slow
def test_a_bf16_build_places_every_model_it_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """extract -> synthesize (the teacher paraphrases) -> train (online KD + hidden) -> evaluate:
    six loads, each recorded with what was asked and what came out."""
    from distill.runtime.build.run import BuildOptions, build_file

    monkeypatch.setattr(placement, "PLACED", [])
    path = write_project(tmp_path, student={"random": {"config": "student.json"}, "chat_template": TEMPLATE,
                                            "dtype": "bfloat16", "adapter": {"type": "lora", "r": 4, "alpha": 8}},
                         teacher={"random": {"config": "teacher.json"}, "chat_template": TEMPLATE},
                         data={"split": {"val": 0.1, "test": 0.1, "by": "chunk"}, "augmentation": {"paraphrases": 1}},
                         train={"max_steps": 2, "effective_batch_size": 4, "max_seq_len": 128, "precision": "bf16"},
                         eval={"metrics": ["perplexity"]})
    build_file(path, BuildOptions(offline=True))
    roles = sorted(p.role for p in placement.PLACED)
    assert roles == ["student", "student (evaluation)", "teacher (evaluation)", "teacher (online KD)",
                     "teacher (saved for evaluation)", "teacher (synthesis)"]
    for placed in placement.PLACED:
        assert (placed.device, placed.dtype, placed.devices, placed.dtypes) == ("cpu", "bfloat16", ("cpu",),
                                                                                ("bfloat16",)), placed


# Where the runtime may build a model object: the placement path, evaluation's runners (torch
# through ``place``; onnxruntime on the CPU, as deployed), the chat runtime (onnxruntime) and the
# memory tracer (a CPU measurement protocol, not a build).
LOADERS = {"runtime/models.py", "runtime/evaluate/runners.py", "runtime/chat.py", "runtime/train/memtrace.py"}


def test_models_are_built_only_where_the_placement_path_is() -> None:
    import re

    repo = Path(__file__).resolve().parents[2]
    call = re.compile(r"\.(from_pretrained|from_config)\(")
    found = set()
    for path in (repo / "runtime").rglob("*.py"):
        for line in path.read_text("utf-8").splitlines():
            code = line.split("#", 1)[0]
            if call.search(code) and not re.search(r"Tokenizer|tokenizer|Config\.|f\"|f'", code):
                found.add(str(path.relative_to(repo)))
    assert found <= LOADERS, f"a model built outside the placement path: {sorted(found - LOADERS)}"
    assert "runtime/models.py" in found


def test_the_teacher_runs_at_its_own_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """teacher.dtype is planned (a decision when auto) and obeyed: a float32 teacher beside a bf16
    student, both under the plan's bf16 autocast."""
    from distill.compiler.pipeline import plan_file

    monkeypatch.setattr(placement, "PLACED", [])
    path = write_project(tmp_path, student={"random": {"config": "student.json"}, "chat_template": TEMPLATE,
                                            "dtype": "bfloat16", "adapter": {"type": "lora", "r": 4, "alpha": 8}},
                         teacher={"random": {"config": "teacher.json"}, "dtype": "float32"},
                         train={"max_steps": 2, "effective_batch_size": 4, "max_seq_len": 128, "precision": "bf16"})
    plan = plan_file(path, offline=True).plan
    assert (plan.dtype, plan.teacher_dtype) == ("bfloat16", "float32")
    assert Placement.of_teacher(plan) == Placement("cpu", "float32", "bf16")
    train_project(path, tmp_path / "out", plan_file(path, offline=True))
    assert {p.role: p.dtypes for p in placement.PLACED} == {"student": ("bfloat16",),
                                                            "teacher (online KD)": ("float32",)}
    auto = plan_file(write_project(tmp_path / "auto", student={"random": {"config": "student.json"},
                                                                "dtype": "bfloat16"}), offline=True).plan
    assert auto.teacher_dtype == "bfloat16"
    assert [d.value for d in auto.decisions if d.name == "teacher dtype"] == ["bfloat16"]
