"""The GPU check: ``distill build`` on a CUDA machine for a matrix of small Distillfiles.

    python benchmarks/gpu_build.py [--cases NAME ...] [--out DIR] [--timeout SECONDS]

Each case is a project written from a real model config (``tests/fixtures/configs``) with random
weights, built end to end (extract -> synthesize -> train -> merge -> evaluate) with
``hardware.device: cuda`` for a few optimizer steps: QLoRA, LoRA bf16, full bf16, online KD (Gemma-2,
GPT-2), cached KD, synthesis by a 4-bit teacher from 2,000-token chunks, an extractive-QA encoder,
LoRA on float16 weights with fp16 autocast and its gradient scaler (GPUs without bf16, like a T4).
The cases run concurrently, one process each (torch.cuda's peak counters are per process); random
weights are initialised on the GPU by the build itself. Per stage it prints the exit code, seconds,
the plan's predicted peak and the measured one (torch.cuda max allocated and max reserved from the
stage's ``meta.json``, plus the CUDA context measured once here), the error of predicted against
reserved + context, and where every model ran.
Exits 1 when a case fails or a model of the cuda plan ran elsewhere than on the GPU.

Without CUDA it says so and exits 0. ``--tiny`` shrinks every config to a few layers and plans for
the CPU at the same dtype and precision: a smoke test of the matrix itself, on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "fixtures" / "configs"
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|endoftext|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
WORDS = ("pump valve filter pressure sensor motor relay cable housing bracket seal gasket flow rate inlet outlet "
         "tank level alarm reset switch panel fuse display menu setting cycle timer minute hour litre bar volt "
         "watt amp check clean replace inspect tighten loosen drain fill start stop run hold press turn open "
         "close").split()
SHRUNK = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
          "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512, "n_layers": 2, "dim": 64, "hidden_dim": 128,
          "n_heads": 4, "n_layer": 2, "n_embd": 64, "n_head": 4}


@dataclass(frozen=True)
class Case:
    """One project: its models (config name, overrides) and the Distillfile sections that differ."""

    name: str
    student: tuple[str, dict[str, Any]]
    sections: dict[str, Any]
    teacher: tuple[str, dict[str, Any]] | None = None
    seq_len: int = 512
    vram: str = "16GiB"
    synthesis: bool = False


def _lora(r: int, targets: list[str] | str = "auto", kind: str = "lora") -> dict[str, Any]:
    return {"adapter": {"type": kind, "r": r, "alpha": 2 * r, "dropout": 0.05, "targets": targets}}


KL = {"ce": {"weight": 1.0}, "kl": {"weight": 0.5, "temperature": 2.0}}
CASES = (
    Case("qlora phi-3-mini r16 qkv/o b4 s512", ("phi-3-mini-4k-instruct", {}),
         {"student": _lora(16, ["qkv_proj", "o_proj"], "qlora"), "train": {"micro_batch_size": 4}}),
    Case("lora llama-3.2-1b bf16 s1024", ("llama-3.2-1b", {}), {"student": _lora(16)}, seq_len=1024, vram="8GiB"),
    Case("full qwen2.5-0.5b bf16", ("qwen2.5-0.5b", {}), {"student": {"adapter": {"type": "none"}}}),
    Case("lora qwen2.5-0.5b fp16 (pre-bf16 GPUs)", ("qwen2.5-0.5b", {}),
         {"student": {**_lora(16), "dtype": "float16"}}),
    Case("online KD gemma-2-2b -> gemma-2 6 layers", ("gemma-2-2b-it", {"num_hidden_layers": 6}),
         {"student": {"adapter": {"type": "none"}}, "loss": KL}, teacher=("gemma-2-2b-it", {}), vram="24GiB"),
    Case("cached KD qwen2.5-0.5b -> qwen2.5 4 layers", ("qwen2.5-0.5b", {"num_hidden_layers": 4}),
         {"student": _lora(16), "loss": {**KL, "kl": {**KL["kl"], "top_k": 64}}}, teacher=("qwen2.5-0.5b", {})),
    Case("online KD gpt2-large -> distilgpt2 full", ("distilgpt2", {}),
         {"student": {"adapter": {"type": "none"}}, "loss": KL}, teacher=("gpt2-large", {})),
    Case("synthesis gemma-2-2b nf4, 2000-token chunks -> qwen2.5-0.5b lora", ("qwen2.5-0.5b", {}),
         {"student": _lora(8), "teacher": {"quantization": "4bit"},
          "data": {"chunk_tokens": 2000, "overlap_tokens": 100}},
         teacher=("gemma-2-2b-it", {}), synthesis=True, vram="8GiB"),
    Case("extractive-qa distilbert full", ("distilbert-base-uncased", {}),
         {"student": {"task": "extractive-qa", "adapter": {"type": "none"}}, "loss": {"ce": {"weight": 1.0}},
          "eval": {"metrics": ["exact_match", "f1"]}}, seq_len=384),
)


# --------------------------------------------------------------------------- writing a case's project

def _config(name: str, overrides: dict[str, Any], tiny: bool) -> dict[str, Any]:
    config = json.loads((CONFIGS / name / "config.json").read_text())
    config.update(overrides)
    if tiny:
        config.update({k: v for k, v in SHRUNK.items() if k in config or k in ("head_dim",)})
        for key in ("layer_types", "bos_token_id", "eos_token_id"):  # sized for the real model
            config.pop(key, None)
        config["pad_token_id"] = 0  # phi3's default pad id (32000) is outside a shrunk vocabulary
    return config


def _context(i: int, words: int) -> str:
    """A deterministic paragraph of about ``words`` words holding the answer's sentence."""
    body = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(words))
    return f"Pump P{i} runs for {10 + i} minutes. {body}."


def write_case(case: Case, root: Path, tiny: bool) -> Path:
    """The case's Distillfile, model configs and data under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    words = 40 if tiny else int(case.seq_len * 0.5)  # the trained byte-level BPE gives ~1.3 tokens a word
    with (root / "data" / "qa.jsonl").open("w") as handle:
        for i in range(48):
            context = _context(i, words)
            handle.write(json.dumps({"id": f"q{i}", "question": f"How long does pump P{i} run?", "context": context,
                                     "answers": [f"{10 + i} minutes"]}) + "\n")
    (root / "student.json").write_text(json.dumps(_config(*case.student, tiny)))
    sources: list[dict[str, Any]] = [{"dataset": "data/qa.jsonl"}]
    spec: dict[str, Any] = {
        "version": 1, "name": "gpu-" + "".join(c if c.isalnum() else "-" for c in case.name.split()[0]), "seed": 3,
        "sources": sources,
        "student": {"random": {"config": "student.json"}, "chat_template": TEMPLATE},
        "loss": {"ce": {"weight": 1.0}},
        "data": {"split": {"val": 0.1, "test": 0.1, "by": "chunk"}},
        "train": {"max_steps": 3, "effective_batch_size": 4, "max_seq_len": case.seq_len, "checkpoint_every": 100},
        "eval": {"metrics": ["perplexity"], "max_examples": 4},
        "hardware": {"device": "cpu", "ram": "16GiB"} if tiny else {"device": "cuda", "vram": case.vram},
    }
    if case.teacher is not None:
        (root / "teacher.json").write_text(json.dumps(_config(*case.teacher, tiny)))
        spec["teacher"] = {"random": {"config": "teacher.json"}, "chat_template": TEMPLATE}
    if case.synthesis:
        (root / "docs").mkdir(exist_ok=True)
        paragraphs = 4 if tiny else 12  # 12 x 250 words: two chunks of 2,000 tokens
        (root / "docs" / "guide.md").write_text("# Pumps\n\n" + "\n\n".join(_context(i, 60 if tiny else 250)
                                                                           for i in range(paragraphs)) + "\n")
        sources.append({"text": "docs/*.md"})
        spec["data"]["synthesis"] = {"kind": "qa", "pairs_per_chunk": 1, "max_new_tokens": 24, "max_repairs": 0}
    for section, values in case.sections.items():
        spec[section] = {**spec.get(section, {}), **values}
    if tiny:  # the GPU's dtype and precision, on the CPU
        spec["student"]["dtype"] = "bfloat16"
        spec["train"]["precision"] = "bf16"
    (root / "Distillfile").write_text(json.dumps(spec, indent=1))  # JSON is YAML
    return root / "Distillfile"


# --------------------------------------------------------------------------- one case, in its own process

def run_case(path: Path) -> dict[str, Any]:
    """Build ``path`` in this process; what it measured, as JSON data."""
    from distill.compiler.errors import DistillError
    from distill.runtime import placement
    from distill.runtime.build.run import BuildOptions, build_file

    started = time.monotonic()
    result: dict[str, Any] = {"exit": 0, "error": None}
    try:
        built = build_file(path, BuildOptions(offline=True))
        result["stages"] = [_stage_row(built.planned.plan, name, outcome.folder)
                            for name, outcome in built.outcomes.items()]
        summary = built.outcomes["train"].summary
        result["merge"] = {k: summary.get(f"merge_{k}") for k in ("max_abs_diff", "base_diff")}
    except DistillError as error:
        details = [f"{d.location}: {d.message}" for d in getattr(error, "diagnostics", ())]
        result.update(exit=int(error.exit_code), error="; ".join([error.message, *details]))
    except Exception as error:  # noqa: BLE001 - a bug in distill: reported as the build would (exit 70)
        result.update(exit=70, error=f"{type(error).__name__}: {error}"[:600])
    result["seconds"] = round(time.monotonic() - started, 1)
    result["placed"] = [vars(p) for p in placement.PLACED]
    return result


def _stage_row(plan: Any, stage: str, folder: Path) -> dict[str, Any]:
    from distill.compiler.records.stage import StageMeta

    meta = StageMeta.read(folder / "meta.json")
    predicted = plan.stage_peak(stage)  # the same figure the build's report compares with
    return {"stage": stage, "seconds": meta.seconds, "predicted": predicted.bytes if predicted else None,
            **(meta.device_peak or {})}


# --------------------------------------------------------------------------- the matrix

def cuda_context_bytes() -> int:
    """Device memory a process's CUDA context takes outside torch's allocator: nvidia-smi's used
    memory before and after this process initialises CUDA, less what torch reserved meanwhile."""
    import torch

    before = _used_bytes()
    torch.empty(1, device="cuda")
    torch.cuda.synchronize()
    return _used_bytes() - before - torch.cuda.memory_reserved()


def _used_bytes() -> int:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) * 2**20


def run_matrix(cases: list[Case], out: Path, tiny: bool, timeout: float, context: int) -> list[dict[str, Any]]:
    children = []
    for number, case in enumerate(cases):
        path = write_case(case, out / f"case{number}", tiny)
        log = (out / f"case{number}.log").open("w")
        command = [sys.executable, __file__, "--child", str(path)]
        children.append((case, path, log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)))
    results = []
    deadline = time.monotonic() + timeout
    for case, path, log, child in children:
        try:
            child.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()
        found = path.parent / "result.json"
        result = json.loads(found.read_text()) if found.is_file() else {
            "exit": child.returncode, "error": f"no result: the process ended with {child.returncode}; "
                                              f"see {log.name}", "placed": [], "seconds": None}
        results.append({"case": case.name, **result})
    return results


def report(results: list[dict[str, Any]], context: int, device: str) -> bool:
    """Print the table; True when every case built and every model ran on ``device``."""
    gib = 2**30
    print(f"CUDA context per process: {context / 2**20:.0f} MiB (measured)" if context else "no CUDA context")
    print(f"{'case':<46} {'stage':<10} {'exit':>4} {'s':>6} {'predicted':>9} {'allocated':>9} {'reserved':>9} "
          f"{'+context':>9} {'error':>7}")
    worst, good = 0.0, True
    for result in results:
        rows = result.get("stages") or [{"stage": "-", "seconds": result.get("seconds")}]
        for row in rows:
            measured = row.get("reserved", 0) + context if "reserved" in row else None
            error = (row["predicted"] - measured) / measured if measured and row.get("predicted") else None
            if error is not None:
                worst = max(worst, abs(error))

            def show(value: Any) -> str:
                return f"{value / gib:9.2f}" if isinstance(value, int) else f"{'-':>9}"

            print(f"{result['case'][:46]:<46} {row['stage'][:10]:<10} {result['exit']:>4} "
                  f"{row['seconds'] if row['seconds'] is not None else '-':>6} {show(row.get('predicted'))} "
                  f"{show(row.get('allocated'))} {show(row.get('reserved'))} {show(measured)} "
                  f"{f'{error:+.1%}' if error is not None else '-':>7}")
        elsewhere = [p for p in result["placed"] if p["devices"] != [device]]
        if result["error"]:
            print(f"    error (exit {result['exit']}): {result['error']}")
        if result.get("merge"):
            merge = result["merge"]
            print(f"    merge: float32 logits max |diff| {merge['max_abs_diff']:.3g}" +
                  (f"; quantized layers vs dequantized weights, worst relative error {merge['base_diff']:.3g}"
                   if merge["base_diff"] is not None else ""))
        print("    placed: " + "; ".join(f"{p['role']} on {'/'.join(p['devices'])} {'/'.join(p['dtypes'])}"
                                          f"{' ' + p['quant'] if p['quant'] != 'none' else ''}"
                                          for p in result["placed"]))
        if elsewhere:
            print(f"    NOT ON {device}: {', '.join(p['role'] for p in elsewhere)}")
        good = good and result["exit"] == 0 and not elsewhere and bool(result["placed"])
    print(f"worst |predicted - (reserved + context)| / (reserved + context): {worst:.1%}")
    print("every case built, every model on " + device if good else "FAILED: see the rows above")
    return good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", help="names (or prefixes) of the cases to run; all by default")
    parser.add_argument("--out", type=Path, help="where the case projects go (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=480.0, help="seconds for the whole matrix")
    parser.add_argument("--tiny", action="store_true", help="shrunk configs planned for the CPU (a smoke test)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        result = run_case(args.child)
        (args.child.parent / "result.json").write_text(json.dumps(result, default=str))
        return 0
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_build: no CUDA device here (torch.cuda.is_available() is False): nothing to check")
        return 0
    cases = [c for c in CASES if not args.cases or any(c.name.startswith(n) for n in args.cases)]
    out = args.out or Path(tempfile.mkdtemp(prefix="distill-gpu-build-"))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    context = 0 if args.tiny else cuda_context_bytes()
    if not args.tiny:
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {len(cases)} case(s) at once")
    results = run_matrix(cases, out, args.tiny, args.timeout, context)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0 if report(results, context, "cpu" if args.tiny else "cuda") else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
