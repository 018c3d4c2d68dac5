"""Export cost and deployed speed: GGUF Q4_K_M and Q8_0 in llama.cpp and int8 ONNX in
onnxruntime, each against the torch fp32 model on CPU, in the same run.

    .venv/bin/python benchmarks/export.py

Builds, on the spot, a seeded random llama (hidden 512, 4 layers, MLP 1536, 8 heads / 4 KV heads,
vocabulary 2048: every row a multiple of 256, so K-quants are real K-quants) with a byte-level BPE
trained on a few sentences, then measures:

- export time: writing the F16 GGUF, llama.cpp's quantizer per type, and each backend's whole
  verified export (ONNX: optimum export + dynamic int8 + verification);
- file sizes against the fp32 safetensors;
- decode tokens/s: greedy generation of DECODE_TOKENS tokens after an 8-token prompt with a KV
  cache (median of RUNS), torch fp32 ``generate`` vs llama.cpp vs onnxruntime ``generate``.

Threads are pinned to THREADS everywhere (torch, OpenMP, llama.cpp's n_threads, onnxruntime's
intra-op pool): on 2 shared cores free threading makes timings noise. llama.cpp decodes in a
child process (this script with ``--llama-cpp``): torch and llama.cpp in one process fight over
OpenMP. Timings print here; none are asserted anywhere.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

THREADS = 2
os.environ.update({"OMP_NUM_THREADS": str(THREADS), "DISTILL_THREADS": str(THREADS),
                   "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"})

RUNS = 3
DECODE_TOKENS = 64
PROMPT_TOKENS = 8
VOCAB = 2048
CONFIG = {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 4,
          "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": VOCAB,
          "max_position_embeddings": 256, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1}
TEXT = ["Knowledge distillation trains a small student model to imitate a larger teacher model.",
        "The student learns the teacher's output distribution, not only its top answer: 1, 2, 3."] * 50
GGUF_QUANTS = ("Q4_K_M", "Q8_0")


def build_model(folder: Path) -> None:
    import torch
    import transformers

    from distill.runtime.sources.tokenizer import train_byte_bpe

    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=train_byte_bpe(TEXT, 400),
                                                     eos_token="<|endoftext|>", pad_token="<|pad|>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model("llama", **CONFIG)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)


def timed(step: Callable[[], Any]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def prompt_ids() -> list[int]:
    import numpy as np

    # ids >= 4 skip the special tokens; the same prompt for every runtime.
    return np.random.default_rng(0).integers(4, VOCAB, PROMPT_TOKENS).tolist()


def decode_rate(generate: Callable[[], None]) -> float:
    """Median tokens/s of ``generate`` (which makes DECODE_TOKENS tokens) over RUNS, after one
    warm-up run (first-call allocation and graph setup are not decode speed)."""
    generate()
    return statistics.median(DECODE_TOKENS / timed(generate) for _ in range(RUNS))


def hf_generate(model: Any) -> Callable[[], None]:
    import torch

    ids = torch.tensor([prompt_ids()])
    kwargs = {"attention_mask": torch.ones_like(ids), "max_new_tokens": DECODE_TOKENS,
              "min_new_tokens": DECODE_TOKENS, "do_sample": False, "pad_token_id": 1}

    def run() -> None:
        with torch.no_grad():
            model.generate(ids, **kwargs)
    return run


def llama_cpp_rate(path: Path) -> float:
    """Decode tokens/s of a GGUF file, measured in a child process."""
    done = subprocess.run([sys.executable, __file__, "--llama-cpp", str(path)], capture_output=True,
                          text=True, check=True, env=os.environ.copy())
    return float(done.stdout.strip().splitlines()[-1])


def _llama_cpp_child(path: str) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_ctx=PROMPT_TOKENS + DECODE_TOKENS + 8,
                          n_threads=THREADS, n_threads_batch=THREADS, verbose=False)

    def run() -> None:
        llm.reset()
        # Llama.generate samples forever (it does not stop at EOS); greedy with temp 0.
        for count, _ in enumerate(llm.generate(prompt_ids(), temp=0.0), start=1):
            if count == DECODE_TOKENS:
                break
    print(decode_rate(run))


def onnx_model(folder: Path) -> Any:
    """The export as distill runs it (``load_exported``: the first cache sized from the graph)."""
    from distill.backends.onnx import load_exported

    return load_exported(folder, threads=THREADS)


def mib(size: int) -> str:
    return f"{size / 2**20:7.2f} MiB"


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from distill.backends.base import load_reference
    from distill.backends.gguf_writer import quantize, write_base
    from distill.backends.registry import get_backend
    from distill.compiler.spec import GgufTarget, OnnxTarget

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as root_name:
        root = Path(root_name)
        model_dir = root / "model"
        build_model(model_dir)
        fp32_size = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
        write_s = timed(lambda: write_base(model_dir, root / "f16.gguf"))
        quant_s = {q: timed(lambda q=q: quantize(root / "f16.gguf", root / f"{q}.gguf", q)) for q in GGUF_QUANTS}
        gguf_art: list[Any] = []
        gguf_s = timed(lambda: gguf_art.append(get_backend("gguf").export(model_dir, GgufTarget(GGUF_QUANTS),
                                                                          root / "gguf")))
        onnx_art: list[Any] = []
        onnx_s = timed(lambda: onnx_art.append(get_backend("onnx").export(model_dir, OnnxTarget("int8"),
                                                                          root / "onnx")))
        files = gguf_art[0].extra["files"]
        torch_rate = decode_rate(hf_generate(load_reference(AutoModelForCausalLM, model_dir)))
        rates = {q: llama_cpp_rate(root / "gguf" / files[q]["path"]) for q in GGUF_QUANTS}
        rates["onnx int8"] = decode_rate(hf_generate(onnx_model(root / "onnx")))
        sizes = {q: files[q]["size"] for q in GGUF_QUANTS} | {"onnx int8": onnx_art[0].size}
        report(fp32_size, write_s, quant_s, gguf_s, onnx_s, torch_rate, rates, sizes)


def report(fp32_size: int, write_s: float, quant_s: dict[str, float], gguf_s: float, onnx_s: float,
           torch_rate: float, rates: dict[str, float], sizes: dict[str, int]) -> None:
    print(f"llama {json.dumps({k: CONFIG[k] for k in ('hidden_size', 'num_hidden_layers', 'vocab_size')})}, "
          f"{THREADS} threads, {DECODE_TOKENS} greedy tokens after {PROMPT_TOKENS}, median of {RUNS}")
    print(f"export: F16 GGUF written in {write_s:.2f} s; llama.cpp quantize "
          + ", ".join(f"{q} {s:.2f} s" for q, s in quant_s.items()))
    print(f"verified exports: gguf {'+'.join(GGUF_QUANTS)} {gguf_s:.1f} s, onnx int8 {onnx_s:.1f} s")
    print(f"{'runtime':<22}{'size':>12}{'size ratio':>12}{'tokens/s':>10}{'vs torch':>10}")
    print(f"{'torch fp32':<22}{mib(fp32_size):>12}{1.0:>12.2f}{torch_rate:>10.1f}{1.0:>10.2f}")
    for name, rate in rates.items():
        label = f"llama.cpp {name}" if name in GGUF_QUANTS else f"onnxruntime {name.split()[-1]}"
        print(f"{label:<22}{mib(sizes[name]):>12}{sizes[name] / fp32_size:>12.2f}{rate:>10.1f}"
              f"{rate / torch_rate:>10.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--llama-cpp"]:
        _llama_cpp_child(sys.argv[2])
    else:
        main()
