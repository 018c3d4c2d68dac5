"""What GGUF verification sees of each quantization of a real model: llama.cpp's logits on the
probe batch against torch run on the weights dequantized from the same file.

    .venv/bin/python benchmarks/gguf_quant_error.py MODEL_DIR [QUANT ...]

MODEL_DIR is any saved causal LM GGUF export takes, e.g. the quickstart's student after
``bash examples/quickstart/build.sh``: ``examples/quickstart/dist/quickstart``. QUANT defaults to
Q8_0, Q4_0 and Q4_K_M. Per quantization it prints each check ``backends/gguf.verify_file`` makes
(the mean KL divergence of the next-token distributions, with the max abs logit diff and the logit
scale beside it, and top-1 agreement), in the order it makes them; nothing is asserted here.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from distill.backends.gguf import file_name, verify_file
from distill.backends.gguf_writer import BASE_QUANT, quantize, write_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("quants", nargs="*", default=["Q8_0", "Q4_0", "Q4_K_M"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / file_name(BASE_QUANT)
        write_base(args.model_dir, base)
        for quant in args.quants:
            began = time.perf_counter()
            path = Path(folder) / file_name(quant)
            quantize(base, path, quant)
            checks = verify_file(path, quant, args.model_dir, tokens=False)
            print(f"{quant} ({time.perf_counter() - began:.1f} s)")
            for check in checks:
                print(f"  {'pass' if check.passed else 'FAIL'} {check.name}: {check.detail}")


if __name__ == "__main__":
    main()
