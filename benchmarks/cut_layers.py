"""Which decoder layers a student cut from its teacher (``student.from_teacher``) should keep: drops
layers one at a time, each time the one whose removal raises the teacher's perplexity on a text the
least (the first and last layers are never dropped), and prints the perplexity of each cut.

    .venv/bin/python benchmarks/cut_layers.py MODEL_DIR TEXT_FILE [--keep N]

MODEL_DIR is a Hugging Face model folder with safetensors weights; for a GGUF teacher, the folder
distill converts it into (``.distill/gguf/<sha256>/`` after a build). The quickstart's layers came
from ``examples/quickstart/guide.md`` and SmolLM2-135M-Instruct, down to 20 of 30 layers: 11.2 with
all 30, 51.8 with the 20 kept. It runs (layers - 2) forward passes per layer dropped: about 30 s
per dropped layer for SmolLM2 and the guide on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch


def perplexity(model: torch.nn.Module, ids: torch.Tensor, keep: list[int]) -> float:
    """The model's perplexity on ``ids`` with only the decoder layers ``keep`` (in order)."""
    layers = model.model.layers
    model.model.layers = torch.nn.ModuleList(layers[i] for i in keep)
    model.config.num_hidden_layers = len(keep)
    try:
        with torch.no_grad():
            return math.exp(model(ids, labels=ids, use_cache=False).loss.item())  # no cache: layer_idx unused
    finally:
        model.model.layers, model.config.num_hidden_layers = layers, len(layers)


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("text", type=Path)
    parser.add_argument("--keep", type=int, default=2, help="stop when this many layers are left")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, use_safetensors=True, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer(args.text.read_text("utf-8"))["input_ids"]])
    keep = list(range(model.config.num_hidden_layers))
    print(f"{len(keep)} layers: perplexity {perplexity(model, ids, keep):.1f}")
    while len(keep) > max(2, args.keep):
        score, dropped = min((perplexity(model, ids, [k for k in keep if k != d]), d) for d in keep[1:-1])
        keep.remove(dropped)
        print(f"{len(keep)} layers (dropped {dropped}): perplexity {score:.1f}  layers: {keep}", flush=True)


if __name__ == "__main__":
    main()
