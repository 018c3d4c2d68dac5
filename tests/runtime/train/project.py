"""A tiny training project (random teacher and student from configs, a QA dataset source) and the
stages that train it. Run as a module it trains the project in a folder, slowly: the kill -9 test
kills it mid-training and resumes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from distill.compiler.pipeline import Planned, plan_file
from distill.runtime.sources.run import extract_and_chunk
from distill.runtime.sources.stage import corpus_texts
from distill.runtime.synthesis.run import synthesize_planned
from distill.runtime.train.run import Trained, train_planned

STUDENT = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 400, "max_position_embeddings": 512,
           "tie_word_embeddings": True}
TEACHER = {**STUDENT, "hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 3}
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|endoftext|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def write_project(root: Path, **sections: Any) -> Path:
    """The project's Distillfile (sections replace the defaults) and its data."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "student.json").write_text(json.dumps(STUDENT))
    (root / "teacher.json").write_text(json.dumps(TEACHER))
    with (root / "data" / "qa.jsonl").open("w") as handle:
        for i in range(40):
            context = f"Pump P{i} runs for {10 + i} minutes and draws {30 + i} watts."
            handle.write(json.dumps({"id": f"q{i}", "question": f"How long does pump P{i} run?",
                                     "context": context, "answers": [f"{10 + i} minutes"]}) + "\n")
    spec: dict[str, Any] = {
        "version": 1, "name": "tiny-train", "seed": 1, "sources": [{"dataset": "data/qa.jsonl"}],
        "teacher": {"random": {"config": "teacher.json"}},
        "student": {"random": {"config": "student.json"}, "chat_template": TEMPLATE,
                    "adapter": {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.1}},
        "loss": {"ce": {"weight": 1.0}, "kl": {"weight": 0.5, "temperature": 2.0}, "hidden": {"weight": 0.1}},
        "data": {"split": {"val": 0.1, "test": 0.1, "by": "chunk"}},
        "train": {"epochs": 2, "effective_batch_size": 4, "max_seq_len": 128, "checkpoint_every": 3,
                  "learning_rate": 1.0e-3},
        "hardware": {"device": "cpu", "ram": "8GiB"},
    }
    spec.update(sections)
    path = root / "Distillfile"
    path.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    return path


def train_project(path: Path, out: Path, planned: Planned | None = None) -> Trained:
    planned = planned or plan_file(path, offline=True)
    extracted = extract_and_chunk(planned.compiled, planned.models["student"], out / "extract")
    synthesize_planned(planned, extracted, out / "data")
    return train_planned(planned, out / "data", out / "train", corpus_texts(extracted.corpus))


if __name__ == "__main__":  # python -m tests.runtime.train.project DISTILLFILE OUT DELAY
    from distill.runtime.train import loop

    delay = float(sys.argv[3])
    original = loop._optimizer_step

    def slow_step(*args: Any, **kwargs: Any) -> dict[str, float]:
        time.sleep(delay)
        return original(*args, **kwargs)

    loop._optimizer_step = slow_step
    train_project(Path(sys.argv[1]), Path(sys.argv[2]))
