"""Host memory of the verified exports, per parameter of the exported model.

    .venv/bin/python benchmarks/export_memory.py

Builds two seeded random llamas of the same width (hidden 768, MLP 2048, vocabulary 2048) with
2 and 10 layers, and runs each whole verified export (``distill export``: GGUF F16 + llama.cpp's
quantizer + verification in llama.cpp; ONNX fp32 or int8 through optimum + verification in
onnxruntime) in a fresh process. The peak resident set of that process and every process it
waited for (``RUSAGE_CHILDREN``) is the export's host peak; the difference between the two models
over their difference in parameters is what one parameter costs, libraries and interpreters
cancelling out. ``compiler/phases.py::EXPORT_BYTES_PER_PARAM`` holds what this printed.

Measured here (2 cores, 16.1M and 68.0M parameters): gguf:Q4_K_M 512 and 936 MiB, 8.6 B/param;
onnx (fp32) 674 and 1,496 MiB, 16.6 B/param.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

THREADS = 2
os.environ.update({"OMP_NUM_THREADS": str(THREADS), "DISTILL_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"})
WIDTH = {"hidden_size": 768, "intermediate_size": 2048, "num_attention_heads": 8, "num_key_value_heads": 4,
         "vocab_size": 2048, "max_position_embeddings": 256, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1}
LAYERS = (2, 10)
# onnx:int8 is not measured: its verification refuses random weights of this width (top-1
# agreement with torch 0.80-0.84 < 0.9 at 6 and 10 layers), as it should.
TARGETS = ("gguf:Q4_K_M", "onnx")
TEXT = ["Knowledge distillation trains a small student model to imitate a larger teacher model.",
        "The student learns the teacher's output distribution, not only its top answer: 1, 2, 3."] * 50
# Runs one command and prints the peak RSS (KiB) of it and everything it waited for.
PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def build_model(folder: Path, layers: int) -> int:
    """The model's parameter count."""
    import torch
    import transformers

    from distill.runtime.sources.tokenizer import train_byte_bpe

    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=train_byte_bpe(TEXT, 400),
                                                     eos_token="<|endoftext|>", pad_token="<|pad|>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model("llama", num_hidden_layers=layers, **WIDTH)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def peak_bytes(model: Path, target: str, out: Path) -> int:
    distill = str(Path(sys.executable).with_name("distill"))
    done = subprocess.run([sys.executable, "-c", PEAK, distill, "export", str(model), "--to", target,
                           "--out", str(out)], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) * 1024


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="distill-export-memory-") as tmp:
        root = Path(tmp)
        params = {n: build_model(root / f"l{n}", n) for n in LAYERS}
        small, large = LAYERS
        print(f"models: {params[small]:,} and {params[large]:,} parameters (fp32 safetensors)")
        print(f"{'target':<14} {'peak small':>12} {'peak large':>12} {'B / param':>10}")
        for target in TARGETS:
            peaks = {n: peak_bytes(root / f"l{n}", target, root / f"out-{n}-{target.replace(':', '-')}")
                     for n in LAYERS}
            slope = (peaks[large] - peaks[small]) / (params[large] - params[small])
            print(f"{target:<14} {peaks[small] / 2**20:>10,.0f}Mi {peaks[large] / 2**20:>10,.0f}Mi {slope:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
