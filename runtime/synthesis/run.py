"""extract -> chunk -> synthesize for one Distillfile, with the real teacher: what
``distill synthesize`` runs and what the build's synthesize stage will call."""

from __future__ import annotations

from pathlib import Path

from distill.compiler.codec import to_data
from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.pipeline import Planned
from distill.compiler.records.data_card import DataCard
from distill.runtime.progress import Progress
from distill.runtime.sources.run import Extracted
from distill.runtime.synthesis.examples import stable_id
from distill.runtime.synthesis.generate import Generator
from distill.runtime.synthesis.stage import reply_budget, synthesize


class TeacherUnusable(DistillError):
    """The teacher cannot be prompted as synthesis needs."""

    exit_code = ExitCode.INVALID_SPEC


def teacher_generator(planned: Planned, extracted: Extracted) -> Generator:
    """The planned teacher (dtype, quantization) behind the ``Generator`` interface."""
    import torch

    from distill.runtime.models import align_special_tokens, load_model, load_tokenizer
    from distill.runtime.placement import Placement
    from distill.runtime.sources.stage import corpus_texts
    from distill.runtime.synthesis.generate import HFGenerator

    spec, root, plan = planned.compiled.spec, planned.compiled.root, planned.plan
    teacher, resolved = spec.teacher, planned.models["teacher"]
    assert teacher is not None
    tokenizer = load_tokenizer(resolved, teacher, root, corpus_texts(extracted.corpus))
    if not getattr(tokenizer, "chat_template", None):
        raise TeacherUnusable(f"the teacher {resolved.ref} has no chat template to ask it for examples",
                              hint="use an instruction-tuned teacher, or set teacher.chat_template (Jinja text "
                                   "or a .jinja file)")
    torch.manual_seed(spec.seed)
    model = load_model(resolved, teacher, root, Placement.of_teacher(plan), plan.teacher_quant, "teacher (synthesis)")
    if resolved.kind == "random":
        align_special_tokens(model, tokenizer)
    synthesis = spec.data.synthesis
    _, max_new_tokens = reply_budget(spec)
    return HFGenerator(model, tokenizer, max_new_tokens, synthesis.temperature if synthesis else 0.7, spec.seed)


def teacher_key(planned: Planned) -> str:
    """What makes the teacher's replies (and its cached logits) what they are: its files, the
    device type, dtype, precision and quantization it runs at."""
    if "teacher" not in planned.models:
        return "no teacher"
    resolved = planned.models["teacher"]
    return stable_id(resolved.ref, resolved.revision, [(f.sha256, f.size) for f in resolved.files],
                     planned.plan.device, planned.plan.teacher_dtype, planned.plan.precision,
                     planned.plan.teacher_quant, to_data(planned.compiled.spec.teacher))


def synthesize_planned(planned: Planned, extracted: Extracted, folder: Path,
                       progress: Progress | None = None, generator: Generator | None = None) -> DataCard:
    """Run the stage with the planned teacher (or the given generator) into ``folder``."""
    if generator is None and planned.compiled.spec.data.teacher_writes and extracted.chunks + extracted.corpus.examples:
        generator = teacher_generator(planned, extracted)
    return synthesize(planned.compiled.spec, extracted.chunks, extracted.corpus.examples, generator,
                      planned.plan.synthesis_batch or 1, folder, teacher_key(planned), progress)
