"""Does distillation help? Held-out perplexity of a student trained with CE only, CE + KL, and
CE + KL + hidden-state matching, against its teacher, all through the real pipeline.

    .venv/bin/python benchmarks/kd_quality.py [--teacher-steps 600] [--student-steps 300] [--seeds 3] [--keep DIR]

1. A corpus is written on the spot (``docs/*.md``): a small "plant" world of machines with fixed
   facts (room, colour, operator, power), described by templated sentences with random choices
   (which machine, which day, alarm codes that are repeated later in the sentence). Some tokens
   are facts to remember, some are copies, some are truly random: a bigger model gets more of the
   first two. A held-out text comes from the same world with another seed and is never trained on.
2. Teacher project: the teacher config as the *student* (random init, full fine-tuning, CE only,
   byte-level BPE trained on the docs), plan -> extract/chunk -> synthesize (documents, mask all)
   -> train -> merge into ``teacher/out/train/model``.
3. Three student projects, identical except for the loss: ``teacher: {model: <that folder>}``,
   a smaller random student with ``tokenizer: <that folder>`` (one tokenizer, so KD is online),
   same seed, same steps, same data order (their step-1 CE is printed: equal). The three are
   trained for several seeds (init, split and data order change together): one small model's
   run is noisy, and a verdict from one seed could be luck.
4. Perplexity: exp(mean next-token NLL) of each merged model over the held-out text, tokenized
   with the shared tokenizer and cut into fixed, non-overlapping windows.

torch is pinned to 2 threads. On 2 idle cores the teacher took 63 s for 600 steps and a student
11 s (CE only, no teacher) to 28 s (online teacher) for 300, so the run is about 5 minutes; with
the 2 cores shared with other jobs it has taken up to 24 minutes (the teacher alone 872 s). The
teacher gets more steps than the students but not too many: at 1,000 steps (11 epochs) it overfit
the 200 KiB corpus and its held-out perplexity (2.425) fell behind the KD students' (2.345, 2.265).

Measured here (defaults, 3 seeds): teacher 2.333; students CE 3.262, CE + KL 3.006 (0.922x),
CE + KL + hidden 2.941 (0.901x), KD lower than CE-only in 3/3 seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from distill.compiler.pipeline import Planned, plan_file
from distill.runtime.sources.run import extract_and_chunk
from distill.runtime.sources.stage import corpus_texts
from distill.runtime.synthesis.run import synthesize_planned
from distill.runtime.train.run import Trained, train_planned

VOCAB = 512
TEACHER = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4,
           "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": VOCAB,
           "max_position_embeddings": 256, "tie_word_embeddings": True}
STUDENT = {**TEACHER, "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2}
CHUNK_TOKENS = 128
SEQ_LEN = 160  # a chunk + EOS fits
BATCH = 8
WINDOW = 128  # held-out perplexity windows, tokens
TEACHER_SEED = 0
LOSSES: dict[str, dict[str, Any]] = {
    "ce": {"ce": {"weight": 1.0}},
    "ce+kl": {"ce": {"weight": 1.0}, "kl": {"weight": 1.0, "temperature": 1.0}},
    "ce+kl+hidden": {"ce": {"weight": 1.0}, "kl": {"weight": 1.0, "temperature": 1.0},
                     "hidden": {"weight": 0.1}},
}

# ---- the corpus ---------------------------------------------------------------------------------

KINDS = {"P": "pump", "V": "valve", "F": "fan", "M": "motor", "H": "heater"}
COLOURS = ("red", "blue", "green", "yellow", "grey", "white")
OPERATORS = ("Alice", "Bruno", "Chen", "Dana", "Emil", "Farah", "Goran", "Hana")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def make_world(n: int) -> list[dict[str, Any]]:
    """Machines with fixed facts; the same for training and held-out text (seed 0)."""
    rng = random.Random(0)
    machines, used = [], set()
    while len(machines) < n:
        letter = rng.choice(sorted(KINDS))
        name = f"{letter}{rng.randint(1, 99)}"
        if name in used:
            continue
        used.add(name)
        machines.append({"id": name, "kind": KINDS[letter], "room": rng.randint(1, 8),
                         "colour": rng.choice(COLOURS), "operator": rng.choice(OPERATORS),
                         "watts": 10 * rng.randint(2, 40)})
    return machines


def sentence(rng: random.Random, m: dict[str, Any], world: list[dict[str, Any]]) -> str:
    """One templated sentence about machine ``m``: facts, copies and random choices."""
    name, kind = m["id"], m["kind"]
    what = rng.randrange(8)
    if what == 0:
        return f"The {kind} {name} stands in room {m['room']} and is painted {m['colour']}."
    if what == 1:
        return f"{m['operator']} looks after the {kind} {name} in room {m['room']}."
    if what == 2:
        return f"When the {kind} {name} runs, it draws {m['watts']} watts."
    if what == 3:
        return f"On {rng.choice(DAYS)}, {m['operator']} checked the {m['colour']} {kind} {name}."
    if what == 4:
        code, hour, minute = rng.randint(1000, 9999), rng.randint(6, 21), rng.randint(0, 49)
        return (f"At {hour}:{minute:02d} alarm {code} went off on the {kind} {name}; {m['operator']} "
                f"cleared alarm {code} at {hour}:{minute + rng.randint(1, 9):02d}.")
    if what == 5:
        mates = sorted(x["id"] for x in world if x["room"] == m["room"])
        return f"Room {m['room']} holds {', '.join(mates[:-1]) + ' and ' if len(mates) > 1 else ''}{mates[-1]}."
    if what == 6:
        other = rng.choice([x for x in world if x is not m and x["watts"] != m["watts"]])
        more = "more" if m["watts"] > other["watts"] else "less"
        return f"The {kind} {name} draws {more} power than the {other['kind']} {other['id']}."
    count = rng.randint(2, 5)
    return f"{m['operator']} replaced {count} seals on the {kind} {name} and logged {count} seals."


def paragraph(rng: random.Random, world: list[dict[str, Any]]) -> str:
    """4-6 sentences about one or two machines, so a paragraph repeats its names."""
    focus = rng.sample(world, rng.choice((1, 2)))
    return " ".join(sentence(rng, rng.choice(focus), world) for _ in range(rng.randint(4, 6)))


def document(rng: random.Random, world: list[dict[str, Any]], index: int, paragraphs: int) -> str:
    body = "\n\n".join(paragraph(rng, world) for _ in range(paragraphs))
    return f"# Plant log {index}\n\n{body}\n"


def write_corpus(root: Path, documents: int, paragraphs: int, machines: int) -> str:
    """Training documents under ``root/docs``; returns the held-out text (another seed)."""
    world = make_world(machines)
    (root / "docs").mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    for i in range(documents):
        (root / "docs" / f"log{i:03d}.md").write_text(document(rng, world, i, paragraphs), "utf-8")
    held = random.Random(2)
    return "\n\n".join(paragraph(held, world) for _ in range(120))


# ---- the projects -------------------------------------------------------------------------------

def write_project(folder: Path, docs: Path, name: str, student: dict[str, Any], loss: dict[str, Any],
                  steps: int, lr: float, seed: int, teacher: Path | None = None) -> Path:
    """A Distillfile (JSON is YAML) training ``student`` on the documents in ``docs``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {
        "version": 1, "name": name, "seed": seed, "sources": [{"text": f"{docs}/*.md"}],
        "student": {**student, "adapter": {"type": "none"}},
        "data": {"chunk_tokens": CHUNK_TOKENS, "overlap_tokens": 0,
                 "split": {"val": 0.02, "test": 0.0, "by": "chunk"}},
        "loss": {**loss, "mask": "all"},
        # epochs 1 + max_steps: the loop goes round the data as often as max_steps needs
        "train": {"epochs": 1, "max_steps": steps, "effective_batch_size": BATCH, "micro_batch_size": BATCH,
                  "max_seq_len": SEQ_LEN, "learning_rate": lr, "warmup": 0.05, "checkpoint_every": steps,
                  "precision": "fp32", "gradient_checkpointing": False},
        "hardware": {"device": "cpu", "ram": "8GiB"},
    }
    if teacher is not None:
        spec["teacher"] = {"model": str(teacher)}
    path = folder / "Distillfile"
    path.write_text(json.dumps(spec, indent=1))
    return path


def run_project(path: Path) -> tuple[Planned, Trained, float]:
    """plan -> extract/chunk -> synthesize (documents) -> train -> merge, as the build's stages do."""
    start = time.perf_counter()
    planned = plan_file(path, offline=True)
    out = path.parent / "out"
    extracted = extract_and_chunk(planned.compiled, planned.models["student"], out / "extract")
    synthesize_planned(planned, extracted, out / "data")
    trained = train_planned(planned, out / "data", out / "train", corpus_texts(extracted.corpus))
    return planned, trained, time.perf_counter() - start


def step_metrics(trained: Trained) -> str:
    """The first step's CE (equal for the three students: same init, same first batch) and the
    last step's loss terms."""
    rows = [json.loads(line) for line in trained.result.metrics.read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    last = ", ".join(f"{k} {steps[-1][k]:.4f}" for k in ("ce", "kl", "hidden") if k in steps[-1])
    return f"step 1 ce {steps[0]['ce']:.6f}; last step {last}"


# ---- held-out perplexity ------------------------------------------------------------------------

@torch.no_grad()
def perplexity(model_dir: Path, ids: list[int]) -> float:
    """exp(mean NLL) of every token but each window's first, over non-overlapping WINDOW-token
    windows of ``ids`` (the tail shorter than a window is dropped)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    windows = torch.tensor(ids[:len(ids) // WINDOW * WINDOW]).view(-1, WINDOW)
    total, count = 0.0, 0
    for batch in windows.split(16):
        logits = model(input_ids=batch).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                reduction="sum")
        total, count = total + float(nll), count + batch[:, 1:].numel()
    return math.exp(total / count)


def train_teacher(root: Path, steps: int, lr: float) -> Path:
    """The teacher project (teacher config as a random student, CE only); its merged model folder."""
    config = root / "teacher" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps(TEACHER))
    path = write_project(root / "teacher", root / "docs", "kd-teacher", {"random": {"config": str(config)}},
                         LOSSES["ce"], steps, lr, TEACHER_SEED)
    _, trained, seconds = run_project(path)
    print(f"teacher: {trained.result.steps} steps in {seconds:.0f} s, {step_metrics(trained)}")
    return trained.model_dir


def train_students(root: Path, teacher_dir: Path, steps: int, lr: float, seed: int) -> dict[str, Path]:
    """The three student projects of one seed: identical but for the loss."""
    config = root / "student.json"
    config.write_text(json.dumps(STUDENT))
    student = {"random": {"config": str(config), "tokenizer": str(teacher_dir)}}
    models = {}
    for name, loss in LOSSES.items():
        folder = root / f"seed{seed}" / name.replace("+", "_")
        path = write_project(folder, root / "docs", f"kd-{name.replace('+', '-')}", student, loss, steps, lr, seed,
                             teacher_dir)
        planned, trained, seconds = run_project(path)
        plan = planned.plan
        print(f"seed {seed} {name:13s} kd mode {plan.kd_mode!r:9s} micro {plan.micro_batch} x accumulation "
              f"{plan.accumulation}; {trained.result.steps} steps in {seconds:.0f} s, {step_metrics(trained)}")
        models[name] = trained.model_dir
    return models


def report(teacher: float, students: dict[int, dict[str, float]]) -> None:
    """Per-seed perplexities, means, ratios vs CE-only and a one-line verdict."""
    names = list(LOSSES)
    mean = {n: statistics.fmean(run[n] for run in students.values()) for n in names}
    print(f"  {'teacher':14s} {teacher:8.3f}   ratio vs CE-only (mean) {teacher / mean['ce']:.3f}")
    for n in names:
        seeds = "  ".join(f"{run[n]:.3f}" for run in students.values())
        wins = sum(run[n] < run["ce"] for run in students.values())
        beat = f", lower than CE-only in {wins}/{len(students)} seeds" if n != "ce" else ""
        print(f"  student {n:13s} mean {mean[n]:8.3f}   ratio vs CE-only {mean[n] / mean['ce']:.3f}   "
              f"per seed {seeds}{beat}")
    kd = [n for n in names if n != "ce"]
    if all(mean[n] < mean["ce"] and all(run[n] < run["ce"] for run in students.values()) for n in kd):
        verdict = "KD beats CE-only in every seed: " + ", ".join(f"{n} {mean[n] / mean['ce'] - 1:+.1%}" for n in kd)
    else:
        verdict = "KD does NOT beat CE-only in every seed: " + ", ".join(
            f"{n} {mean[n] / mean['ce'] - 1:+.1%} on average" for n in kd)
    print(f"verdict: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--student-steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3, help="student seeds (init, split, data order): 1..N")
    parser.add_argument("--documents", type=int, default=60)
    parser.add_argument("--paragraphs", type=int, default=12)
    parser.add_argument("--machines", type=int, default=120)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kd-quality-") as scratch:
        root = args.keep or Path(scratch)
        held_out = write_corpus(root, args.documents, args.paragraphs, args.machines)
        size = sum(p.stat().st_size for p in (root / "docs").glob("*.md"))
        print(f"corpus: {args.documents} documents about {args.machines} machines, {size / 1024:.0f} KiB; held-out "
              f"text {len(held_out) / 1024:.0f} KiB (another seed, never trained on)")
        print(f"teacher: llama hidden {TEACHER['hidden_size']}, {TEACHER['num_hidden_layers']} layers; student: "
              f"llama hidden {STUDENT['hidden_size']}, {STUDENT['num_hidden_layers']} layers; vocab {VOCAB}")
        print(f"train: full fine-tuning, batch {BATCH} x {SEQ_LEN} tokens max (chunks of {CHUNK_TOKENS}), lr "
              f"{args.lr} cosine; teacher {args.teacher_steps} steps (seed {TEACHER_SEED}), each student "
              f"{args.student_steps} steps; losses {json.dumps(LOSSES)}")
        teacher_dir = train_teacher(root, args.teacher_steps, args.lr)
        runs = {seed: train_students(root, teacher_dir, args.student_steps, args.lr, seed)
                for seed in range(1, args.seeds + 1)}

        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(teacher_dir)(held_out)["input_ids"]
        print(f"\nheld-out perplexity ({len(ids) // WINDOW} windows of {WINDOW} tokens, shared tokenizer; "
              f"seeds {', '.join(map(str, runs))}):")
        teacher = perplexity(teacher_dir, ids)
        report(teacher, {seed: {n: perplexity(folder, ids) for n, folder in models.items()}
                         for seed, models in runs.items()})
        print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
