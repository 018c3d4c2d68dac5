"""The train and merge stages on a tiny project: KD online with hidden-state matching, checkpoints
that resume exactly after kill -9, early stopping, merged models equal to the adapter models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from distill.runtime.train import checkpoint
from tests.runtime.train.project import train_project, write_project

REPO = Path(__file__).resolve().parents[3]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "train" / "trainable.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6, rtol=0), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run of the default project."""
    root = tmp_path_factory.mktemp("reference")
    train_project(write_project(root), root / "out")
    return root / "out"


def test_training_learns_logs_and_merges(reference: Path) -> None:
    metrics = [json.loads(line) for line in (reference / "train" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in steps] == list(range(1, 17))  # 32 train examples / 4 per step x 2 epochs
    assert all({"ce", "kl", "hidden", "lr", "grad_norm"} <= set(m) for m in steps)
    assert steps[-1]["ce"] < steps[0]["ce"]
    assert [m["step"] for m in metrics if "val_loss" in m] == [3, 6, 8, 9, 12, 15, 16]
    assert (reference / "train" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    trained = weights(reference)
    assert any(name.startswith("projector/") for name in trained)  # the projections were trained
    model = AutoModelForCausalLM.from_pretrained(reference / "train" / "model")
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert (reference / "train" / "model" / "model.safetensors").is_file()
    assert "<|assistant|>" in AutoTokenizer.from_pretrained(reference / "train" / "model").chat_template


def test_kill_9_mid_training_then_resume_equals_uninterrupted(reference: Path, tmp_path: Path) -> None:
    path, out = write_project(tmp_path), tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-m", "tests.runtime.train.project", str(path), str(out), "0.3"],
                             cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not checkpoint.complete(out / "train" / "checkpoints"):
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    done = checkpoint.complete(out / "train" / "checkpoints")
    assert done and not (out / "train" / "trainable.safetensors").exists(), "the kill should land mid-training"
    train_project(path, out)
    assert_same_weights(weights(out), weights(reference))
    resumed = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    uninterrupted = [json.loads(line) for line in (reference / "train" / "metrics.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in m.items() if k != "seconds"} for m in resumed]
    assert strip == [{k: v for k, v in m.items() if k != "seconds"} for m in uninterrupted]


def test_early_stopping_returns_to_the_best_weights(tmp_path: Path) -> None:
    path = write_project(tmp_path, train={"epochs": 6, "effective_batch_size": 4, "max_seq_len": 128,
                                          "checkpoint_every": 1, "learning_rate": 0.3,
                                          "early_stopping": {"patience": 1}})
    trained = train_project(path, tmp_path / "out")
    assert trained.result.stopped_early and trained.result.steps < 6 * 8
    evals = [json.loads(line)["val_loss"] for line in (tmp_path / "out" / "train" / "metrics.jsonl").read_text()
             .splitlines() if "val_loss" in line]
    assert evals[-1] > min(evals) == pytest.approx(trained.result.best_val, abs=1e-6)
    assert_same_weights(weights(tmp_path / "out"), load_file(str(tmp_path / "out" / "train" / "best.safetensors")))


def test_qlora_merges_into_the_dequantized_base(tmp_path: Path) -> None:
    path = write_project(tmp_path, student={"random": {"config": "student.json"}, "chat_template": "{{ '' }}"
                                            "{% for m in messages %}{{ m.content }}<|endoftext|>{% endfor %}",
                                            "adapter": {"type": "qlora", "r": 4, "alpha": 8}},
                         loss={"ce": {"weight": 1.0}},
                         train={"max_steps": 2, "effective_batch_size": 4, "max_seq_len": 128})
    trained = train_project(path, tmp_path / "out")
    assert trained.merge.merged and trained.merge.max_abs_diff <= 1e-2 * trained.merge.scale
    model = AutoModelForCausalLM.from_pretrained(trained.model_dir)
    assert all(p.dtype == torch.float32 for p in model.parameters())
