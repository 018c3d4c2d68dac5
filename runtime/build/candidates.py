"""What the evaluate stage compares: the teacher (asked open-book when ``eval.teacher`` says so),
the merged student, the baselines ``eval.baselines`` asks for (the untrained student, the student
trained with CE alone), and every deployed artifact (each GGUF quant requested, each ONNX export);
every student and artifact read through the trained student's tokenizer folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distill.compiler.pipeline import Planned
from distill.compiler.records.manifest import MANIFEST, Manifest
from distill.runtime.evaluate import Candidate

UNTRAINED, CE_ONLY = "student:untrained", "student:ce_only"  # the baselines' names in evaluation.json


def candidates(planned: Planned, folder: Path, up: Mapping[str, Path], ce_only: Path | None = None) -> list[Candidate]:
    """``ce_only``: the folder of the stage that trained the CE-only baseline, when asked for."""
    from distill.runtime.placement import Placement
    from distill.runtime.train.student import student_quant

    spec, plan = planned.compiled.spec, planned.plan
    student = up["train"] / "model"
    found = []
    teacher = model_folder(planned, "teacher", folder, up)
    if teacher is not None:
        found.append(Candidate("teacher", "hf", teacher, teacher, Placement.of_teacher(plan),
                               plan.teacher_quant or "none", open_book=spec.eval.teacher == "open_book"))
    found.append(Candidate("student", "hf", student, student, Placement.of(plan)))
    if "untrained" in spec.eval.baselines:
        base = model_folder(planned, "student", folder, up)
        assert base is not None
        found.append(Candidate(UNTRAINED, "hf", base, student, Placement.of(plan), student_quant(spec, plan)))
    if ce_only is not None:
        found.append(Candidate(CE_ONLY, "hf", ce_only / "model", student, Placement.of(plan)))
    for name, stage in sorted(up.items()):
        if name.startswith("export:"):
            found += artifact_candidates(stage / "artifact", student)
    return found


def artifact_candidates(artifact: Path, tokenizer_dir: Path) -> list[Candidate]:
    """One candidate per requested GGUF quant (the F16 base the quants are made from is not
    deployed unless asked), or the ONNX model."""
    manifest = Manifest.read(artifact / MANIFEST)
    if manifest.kind == "gguf":
        return [Candidate(f"gguf:{quant}", "gguf", artifact / manifest.file_of(quant), tokenizer_dir)
                for quant in manifest.quants]
    precision = "int8" if manifest.quant == "int8" else "fp32"
    return [Candidate(f"onnx:{precision}", "onnx", artifact, tokenizer_dir)]


def model_folder(planned: Planned, role: str, folder: Path, up: Mapping[str, Path]) -> Path | None:
    """The teacher's or the untrained student's model folder: local, GGUF, hub or cut as
    ``weights_folder`` gives it, random saved once into this stage's folder (with the tokenizer the
    build trained); ``None`` when there is no such model."""
    spec, root = planned.compiled.spec, planned.compiled.root
    model = getattr(spec, role)
    if model is None:
        return None
    resolved = planned.models[role]
    if resolved.kind in ("local", "gguf", "hub", "cut"):
        from distill.runtime.models import weights_folder

        return weights_folder(resolved, root)
    saved = folder / role
    if not (saved / "config.json").is_file():
        from distill.runtime.models import align_special_tokens, load_model, load_tokenizer
        from distill.runtime.placement import Placement
        from distill.runtime.sources.run import extracted_texts

        # Initialised as training initialised it (same seed, same device type): the same model.
        placement = Placement.of_teacher(planned.plan) if role == "teacher" else Placement.of(planned.plan)
        built = load_model(resolved, model, root, placement, None, f"{role} (saved for evaluation)")
        tokenizer = load_tokenizer(resolved, model, root, extracted_texts(up["extract"]))
        align_special_tokens(built, tokenizer)
        built.save_pretrained(saved, safe_serialization=True)
        tokenizer.save_pretrained(saved)
    return saved
