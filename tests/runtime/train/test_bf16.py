"""A GPU plan's precision on a CPU: bf16 weights and bf16 autocast (what ``distill plan`` picks on
CUDA) train, teach (online and cached KD, hidden states), validate and merge here, through the code a
GPU runs. CPUs autocast bf16, so the dtype bugs of that path (fp32 rows meeting bf16 heads, fp16
cache rows in an autocast cat, a merge compared across precisions) show up in CI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from distill.runtime import placement
from distill.runtime.train import objective
from distill.runtime.train.merge import LAYER_RTOL, MERGE_RTOL
from tests.runtime.train.project import TEMPLATE, train_project, write_project

LORA = {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.1}
ADAPTERS = {"lora": LORA, "lora on 8-bit": LORA, "qlora": {"type": "qlora", "r": 4, "alpha": 8},
            "full": {"type": "none"}}
LOSSES = {"online KD + hidden": {"ce": {"weight": 1.0}, "kl": {"weight": 0.5, "temperature": 2.0},
                                 "hidden": {"weight": 0.1}},
          "cached KD": {"ce": {"weight": 1.0}, "kl": {"weight": 0.5, "temperature": 2.0, "top_k": 8}}}
CASES = [("lora", "online KD + hidden"), ("lora", "cached KD"), ("qlora", "online KD + hidden"),
         ("lora on 8-bit", "cached KD"), ("full", "cached KD")]
QUANT = {"qlora": "4bit", "lora on 8-bit": "8bit"}


def bf16_project(root: Path, adapter: str, loss: str) -> Path:
    student: dict[str, Any] = {"random": {"config": "student.json"}, "chat_template": TEMPLATE, "dtype": "bfloat16",
                               "adapter": ADAPTERS[adapter],
                               **({"quantization": "8bit"} if adapter == "lora on 8-bit" else {})}
    return write_project(root, student=student, loss=LOSSES[loss],
                         train={"epochs": 1, "effective_batch_size": 4, "max_seq_len": 128, "checkpoint_every": 3,
                                "learning_rate": 1.0e-3, "precision": "bf16"})


@pytest.mark.parametrize(("adapter", "loss"), CASES, ids=[f"{a}, {loss}" for a, loss in CASES])
def test_a_bf16_plan_trains_teaches_and_merges_under_autocast(adapter: str, loss: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, torch.dtype, torch.dtype]] = []
    original = objective.token_losses

    def recorded(hidden: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), hidden.dtype))
        return original(hidden, *args, **kwargs)

    monkeypatch.setattr(objective, "token_losses", recorded)
    monkeypatch.setattr(placement, "PLACED", [])
    trained = train_project(bf16_project(tmp_path, adapter, loss), tmp_path / "out")

    # Every loss (training and validation) ran under bf16 autocast on bf16 rows (a quantized
    # base's final norm is float32: prepare_model_for_kbit_training keeps norms in float32).
    rows = torch.float32 if adapter in QUANT else torch.bfloat16
    assert seen and all(seen_one == (True, torch.bfloat16, rows) for seen_one in seen), seen[:3]
    metrics = [json.loads(line) for line in (tmp_path / "out" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in m for m in metrics)
    assert all(math.isfinite(m.get("loss", m.get("val_loss"))) for m in metrics)
    assert "kl" in metrics[0] and ("hidden" in metrics[0]) == ("hidden" in LOSSES[loss])
    # Every model of the stage was placed as planned.
    roles = {p.role: p for p in placement.PLACED}
    teacher = "teacher (online KD)" if loss.startswith("online") else "teacher (top-k cache)"
    assert set(roles) == {"student", teacher}
    assert all(p.devices == ("cpu",) and p.dtypes == ("bfloat16",) for p in roles.values())
    assert roles["student"].quant == QUANT.get(adapter, "none")
    # The merge checked like with like: quantized layers against their dequantized weights, the
    # merge itself in float32; the model is saved in the planned dtype.
    assert trained.merge.merged == (adapter != "full")
    if trained.merge.merged:
        assert trained.merge.max_abs_diff <= MERGE_RTOL * trained.merge.scale
    assert (trained.merge.base_diff is not None) == (adapter in QUANT)
    if adapter in QUANT:
        assert 0 < trained.merge.base_diff <= LAYER_RTOL[QUANT[adapter]]
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(trained.model_dir, dtype="auto")  # as saved
    assert {p.dtype for p in saved.parameters()} == {torch.bfloat16}
