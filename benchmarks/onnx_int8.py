"""int8 recipes for the ONNX backend on a real model: why dynamic int8 breaks, and what holds.

Exports the model once (fp32, as the backend does), then makes each candidate int8 graph from it
and prints two tables:

1. the inputs of the MLP down projections on the backend's probe batch: max |x| against the
   99.9th percentile, per layer (the outliers that a per-tensor activation scale cannot hold);
2. per candidate: max |logit diff| / logit scale and top-1 agreement against torch fp32, on the
   backend's probe (seed 0, what verification gates on) and on a held-out batch (seed 1); file
   size; seconds to quantize and to run the backend's own verification, and whether it passed.

The backend's recipes (``INT8_RECIPES``) run through the backend's own code; the other candidates
are what onnxruntime offers besides. No asserts: the numbers justify the order of
``INT8_RECIPES`` (see its comments).

Usage (real weights: SmolLM2-135M-Instruct from its GGUF, saved as a HF folder)::

    .venv/bin/python -c "import torch, transformers; transformers.AutoModelForCausalLM.from_pretrained(
        '/tmp/smollm2', gguf_file='SmolLM2-135M-Instruct.Q4_1.gguf', dtype=torch.float32
        ).save_pretrained('/tmp/smollm2-hf')"
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/onnx_int8.py /tmp/smollm2-hf --work /tmp/onnx-int8
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Quantize = Callable[[Path, Path], None]
CALIBRATION_SEEDS = range(100, 104)  # static QDQ's calibration batches: not the probe's seed 0
HELD_OUT_SEED = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="a saved Hugging Face causal LM folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/onnx-int8"), help="scratch folder")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["DISTILL_THREADS"] = str(args.threads)  # read by the backend at import
    import torch

    torch.set_num_threads(args.threads)
    fp32 = _fp32_export(args.model_dir, args.work / "fp32")
    reference = _reference(args.model_dir)
    _outlier_table(reference)
    print(f"\nfp32 graph: {_size_mb(fp32):.0f} MB; logit scale (probe) {reference['scale']:.1f}\n")
    header = (f"{'candidate':38} {'probe diff/scale':>16} {'top-1':>6} {'seed1 diff/scale':>16} {'top-1':>6}"
              f" {'MB':>5} {'quant s':>7} {'verify s':>8}  verified")
    print(header)
    print("-" * len(header))
    for name, quantize in _candidates(fp32).items():
        print(_row(name, quantize, fp32, args.model_dir, args.work / "candidates" / name, reference), flush=True)


def _fp32_export(model_dir: Path, out: Path) -> Path:
    from distill.backends.onnx import MODEL_FILE, detect_task, export_optimum

    if not (out / MODEL_FILE).is_file():
        shutil.rmtree(out, ignore_errors=True)
        export_optimum(model_dir, out, detect_task(model_dir))
    return out


def _reference(model_dir: Path) -> dict[str, Any]:
    """torch fp32 logits on the probe and on the held-out batch (same shape, other seed)."""
    import torch
    from transformers import AutoModelForCausalLM

    from distill.backends.base import load_reference
    from distill.backends.onnx import PROBE_LEN, PROBE_ROWS, probe_ids

    model = load_reference(AutoModelForCausalLM, model_dir)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(HELD_OUT_SEED)
    batches = {"probe": probe_ids(vocab),
               "seed1": torch.randint(4, vocab, (PROBE_ROWS, PROBE_LEN), generator=generator)}
    with torch.no_grad():
        logits = {name: model(input_ids=ids).logits for name, ids in batches.items()}
    return {"model": model, "ids": batches, "logits": logits,
            "scale": max(1.0, float(logits["probe"].abs().max()))}


def _outlier_table(reference: dict[str, Any]) -> None:
    """Max |x| and 99.9th percentile of |x| at each down projection's input, on the probe."""
    import torch

    seen: dict[str, tuple[float, float]] = {}
    hooks = [module.register_forward_hook(
        lambda _, inputs, __, name=name: seen.__setitem__(
            name, (float(inputs[0].abs().max()), float(inputs[0].abs().flatten().quantile(0.999)))))
        for name, module in reference["model"].named_modules() if name.endswith("down_proj")]
    with torch.no_grad():
        reference["model"](input_ids=reference["ids"]["probe"])
    for hook in hooks:
        hook.remove()
    print("down_proj inputs on the probe (max |x| / 99.9th percentile |x|), per layer:")
    print("  " + "  ".join(f"{name.split('.')[2]}: {top:.0f}/{p999:.1f}" for name, (top, p999) in seen.items()))


def _candidates(fp32: Path) -> dict[str, Quantize]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from distill.backends.onnx_int8 import quantize
    from distill.backends.onnx_support import INT8_RECIPES, Int8Recipe

    def dynamic(**options: Any) -> Quantize:
        return lambda source, out: quantize_dynamic(source, out, weight_type=QuantType.QInt8, **options)

    def recipe(value: Int8Recipe) -> Quantize:
        return lambda source, out: quantize(source, out, value, external=False)

    down_proj = [n for n in _node_names(fp32) if "down_proj" in n and n.endswith("MatMul")]
    shipped = {f"[backend] {r.name}": recipe(r) for r in INT8_RECIPES}
    weight_only = next(r for r in INT8_RECIPES if r.kind == "weight_only")
    return shipped | {
        "dynamic per_channel": dynamic(per_channel=True),
        "dynamic per_channel reduce_range": dynamic(per_channel=True, reduce_range=True),
        # The tied LM head reads Transpose(embedding), no initializer: dynamic never quantizes it,
        # so MatMul only is also "embedding and LM head in fp32".
        "dynamic MatMul only (embed+head fp32)": dynamic(op_types_to_quantize=["MatMul"]),
        "dynamic, down_proj fp32": dynamic(nodes_to_exclude=down_proj),
        **{f"weight-only block {b}": recipe(Int8Recipe(f"b{b}", "weight_only", "", b)) for b in (16, 64, 128)},
        "weight-only block 32, accuracy_level 4": _with_accuracy_level(recipe(weight_only), 4),
        "static QDQ per_channel (4 calib batches)": _static,
    }


def _node_names(folder: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node]


def _with_accuracy_level(quantize: Quantize, level: int) -> Quantize:
    """MatMulNBits at onnxruntime's int8-compute level: activations quantized in blocks too (the
    level its QDQ fusion picks for DequantizeLinear -> MatMul by default)."""
    import onnx

    def run(source: Path, out: Path) -> None:
        quantize(source, out)
        model = onnx.load(str(out))
        for node in model.graph.node:
            for attribute in node.attribute:
                if node.op_type == "MatMulNBits" and attribute.name == "accuracy_level":
                    attribute.i = level
        onnx.save(model, str(out))
    return run


def _static(source: Path, out: Path) -> None:
    """onnxruntime static QDQ (int8 activations and per-channel weights), MinMax-calibrated on
    seeded random batches like the probe's (no dataset reaches the backend)."""
    import numpy as np
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    session = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    vocab = session.get_outputs()[0].shape[-1]

    def batch(seed: int) -> dict[str, Any]:
        ids = np.random.default_rng(seed).integers(4, vocab, (1, 16))
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(16)[None]}
        for name, spec in inputs.items():
            if name.startswith("past_key_values"):  # an empty cache: (batch, kv heads, 0, head dim)
                feed[name] = np.zeros((1, spec.shape[1], 0, spec.shape[3]), np.float32)
        return {name: value for name, value in feed.items() if name in inputs}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([batch(seed) for seed in CALIBRATION_SEEDS])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    quantize_static(source, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def _row(name: str, quantize: Quantize, fp32: Path, model_dir: Path, out: Path,
         reference: dict[str, Any]) -> str:
    from distill.backends.onnx import MODEL_FILE, detect_task, onnx_artifact
    from distill.backends.registry import get_backend

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(fp32, out, ignore=shutil.ignore_patterns(f"{MODEL_FILE}*"))
    start = time.perf_counter()
    try:
        quantize(fp32 / MODEL_FILE, out / MODEL_FILE)
    except Exception as error:  # noqa: BLE001 - a candidate onnxruntime cannot make is a table row
        return f"{name:38} failed to quantize: {type(error).__name__}: {str(error)[:80]}"
    quantized = time.perf_counter() - start
    numbers = " ".join(f"{diff:16.3f} {top1:6.3f}" for diff, top1 in _parity(out, reference))
    start = time.perf_counter()
    report = get_backend("onnx").verify(onnx_artifact(out / MODEL_FILE, "int8", detect_task(model_dir)), model_dir)
    verified = time.perf_counter() - start
    failed = ", ".join(c.name for c in report.failures())
    return (f"{name:38} {numbers} {_size_mb(out):5.0f} {quantized:7.1f} {verified:8.1f}  "
            + ("passed" if report.passed else f"FAILED: {failed}"))


def _parity(folder: Path, reference: dict[str, Any]) -> list[tuple[float, float]]:
    """(max |diff| / scale, top-1 agreement) of the graph in ``folder`` on each batch."""
    import torch

    from distill.backends.onnx import load_exported

    model = load_exported(folder)
    rows = []
    for name, ids in reference["ids"].items():
        want = reference["logits"][name]
        with torch.no_grad():
            got = torch.as_tensor(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits)
        scale = max(1.0, float(want.abs().max()))
        rows.append((float((got - want).abs().max()) / scale,
                     float((got.argmax(-1) == want.argmax(-1)).float().mean())))
    return rows


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("model.onnx*")) / 1e6


if __name__ == "__main__":
    main()
