"""Two training processes on CPU (gloo), started by ``distill build`` with the plan's own launch
command (``accelerate launch``, one node): DDP ends with the weights of a single-process run with
the same effective batch; FSDP completes and saves a model that loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from distill.compiler.cli import main
from tests.runtime.train.project import write_project

pytestmark = pytest.mark.slow


def build(root: Path, gpus: int, strategy: str = "ddp") -> Path:
    """Build the tiny project with ``gpus`` CPU processes; returns its train stage folder."""
    path = write_project(
        root, hardware={"device": "cpu", "ram": "8GiB", "gpus": gpus, "strategy": strategy},
        student={"random": {"config": "student.json"}, "chat_template": "{% for m in messages %}{{ m.content }}"
                 "<|endoftext|>{% endfor %}", "adapter": {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.0}},
        train={"max_steps": 6, "effective_batch_size": 8, "micro_batch_size": 4, "max_seq_len": 128,
               "checkpoint_every": 3, "learning_rate": 1.0e-3},
        eval={"metrics": ["perplexity"]})
    assert main(["build", str(path), "--offline"]) == 0
    (folder,) = [p.parent for p in (root / ".distill" / "train").glob("*/meta.json")]
    return folder


def test_ddp_with_two_processes_equals_one_process(tmp_path: Path) -> None:
    # The merged models: a finished build keeps no trainables (runtime/train/run.py RESUME_STATE)
    single = load_file(str(build(tmp_path / "one", 1) / "model" / "model.safetensors"))
    ddp_folder = build(tmp_path / "two", 2)
    ddp = load_file(str(ddp_folder / "model" / "model.safetensors"))
    assert single.keys() == ddp.keys() and not (ddp_folder / "checkpoints").exists()
    for name in single:
        assert torch.allclose(single[name], ddp[name], atol=1e-5, rtol=1e-4), name
    records = [json.loads(line) for line in (ddp_folder / "metrics.jsonl").read_text().splitlines()]
    steps = [record["step"] for record in records if "loss" in record]
    assert steps == list(range(1, 7))  # one process wrote the metrics


def test_fsdp_with_two_processes_saves_a_model_that_loads(tmp_path: Path) -> None:
    folder = build(tmp_path, 2, "fsdp")
    model = AutoModelForCausalLM.from_pretrained(folder / "model")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert (tmp_path / "dist" / "tiny-train" / "README.md").is_file()


def test_launch_cmd_starts_the_training_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_project(tmp_path, hardware={"device": "cpu", "ram": "8GiB", "gpus": 2, "nodes": 2, "strategy": "fsdp"},
                         train={"effective_batch_size": 8, "max_seq_len": 128})
    assert main(["launch-cmd", str(path), "--offline"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("accelerate launch --multi_gpu --num_processes 4 --num_machines 2 --machine_rank \"$RANK\"")
    # The worker wraps FSDP itself (runtime/train/sharding.py): accelerate's plugin would need CUDA
    # and refuses --multi_gpu beside --use_fsdp.
    assert "fsdp" not in line and line.endswith(f"-m distill.runtime.build.worker {path} train")
    single = write_project(tmp_path / "one")
    assert main(["launch-cmd", str(single), "--offline"]) == 2
    assert "nothing to launch" in capsys.readouterr().err


def test_synthesis_in_two_processes_equals_one_process(tmp_path: Path) -> None:
    """The garbage-writing random teacher: every reply is rejected, so the rejected items (which
    quote every reply) show that both runs asked the same things and got the same answers."""
    from tests.runtime.synthesis.test_generate import garbage_project

    outputs = []
    for gpus in (1, 2):
        root = tmp_path / f"gpus{gpus}"
        root.mkdir()
        path = garbage_project(root)
        path.write_text(path.read_text().replace("hardware: {device: cpu, ram: 8GiB}",
                                                 f"hardware: {{device: cpu, ram: 8GiB, gpus: {gpus}}}"))
        assert main(["build", str(path), "--offline"]) == 8
        (folder,) = (root / ".distill" / "synthesize").iterdir()
        journals = sorted(p.name for p in folder.glob("generation.journal*.jsonl"))
        assert journals == (["generation.journal.jsonl"] if gpus == 1 else
                            ["generation.journal.jsonl", "generation.journal.rank1.jsonl"])
        outputs.append((folder / "rejected.jsonl").read_bytes())
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") > 1
