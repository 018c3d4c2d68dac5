"""The families users pick, built end to end on the CPU: students shaped as Llama-3.2-1B (Llama 3
rope scaling), Qwen3-0.6B (q/k norms, head_dim 128 over hidden 1024), Gemma-3-1B (sliding and full
layers, two RoPE bases, one kv head) and Mistral-7B-v0.3 from their published configs
(tests/fixtures/configs), with random weights, one or two layers and the vocabulary of the
tokenizer trained for the project, each planned, trained for two optimizer steps with LoRA,
merged, exported to GGUF Q4_K_M and fp32 ONNX with every verification check passing, and
evaluated through both artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.compiler.cli import main
from tests.conftest import FIXTURE_CONFIGS

pytestmark = pytest.mark.slow

GUIDE = ("The pump starts when the tank level falls below the low mark. It runs for twenty minutes, "
         "then the controller checks the pressure. If the pressure stays under two bar, the alarm "
         "sounds and the pump stops. To reset the alarm, hold the reset switch for five seconds. "
         "Clean the inlet filter every month and replace the gasket every year.\n\n")
# Layers kept: Gemma 3 keeps two, so a sliding-window layer and a full-attention one would both
# be there if the pattern were 2; with its pattern of 6, both slide, as layers 0-4 of the real model.
FAMILIES = {"llama-3.2-1b": 1, "qwen3-0.6b": 1, "gemma-3-1b-it": 2, "mistral-7b-v0.3": 1}
VOCAB = 1024  # the tokenizer trained on the guide reaches it; the embedding is no wider
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|endoftext|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _project(tmp_path: Path, name: str) -> Path:
    config = json.loads((FIXTURE_CONFIGS / name / "config.json").read_text())
    config.update(num_hidden_layers=FAMILIES[name], vocab_size=VOCAB)
    config.pop("layer_types", None)  # the real 26-layer pattern, recomputed for the kept layers
    (tmp_path / "student.json").write_text(json.dumps(config))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(GUIDE * 12)
    path = tmp_path / "Distillfile"
    path.write_text(f"""version: 1
name: {name}
seed: 3
sources: [{{text: docs/guide.md}}]
student:
  random: {{config: student.json}}
  chat_template: "{TEMPLATE}"
  adapter: {{type: lora, r: 8}}
loss: {{ce: {{weight: 1.0}}, mask: all}}
data: {{chunk_tokens: 48, overlap_tokens: 8, split: {{val: 0.1, test: 0.1, by: chunk}}}}
train: {{max_steps: 2, effective_batch_size: 2, max_seq_len: 64, learning_rate: 1.0e-3}}
hardware: {{device: cpu, ram: 16GiB}}
deploy:
  - gguf: {{quant: [Q4_K_M]}}
  - onnx: {{quant: none}}
eval: {{metrics: [perplexity]}}
""")
    return path


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_family_plans_trains_and_exports_verified(name: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _project(tmp_path, name)
    assert main(["build", str(path), "--offline"]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "dist" / name / "report.json").read_text())
    artifacts = {a["kind"]: a for a in report["artifacts"]}
    assert set(artifacts) == {"gguf", "onnx"}
    for artifact in artifacts.values():
        checks = artifact["manifest"]["verification"]
        assert checks and all(check["passed"] for check in checks), checks
    gguf_checks = {c["name"]: c["detail"] for c in artifacts["gguf"]["manifest"]["verification"]}
    assert gguf_checks["F16.logits_top1_agreement"].startswith("1.0000")
    model_type = json.loads((FIXTURE_CONFIGS / name / "config.json").read_text())["model_type"]
    merged = json.loads((tmp_path / "dist" / name / "config.json").read_text())
    assert merged["model_type"] == model_type and merged["num_hidden_layers"] == FAMILIES[name]
