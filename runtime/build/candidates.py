"""What the evaluate stage compares: the teacher, the merged student, and every deployed artifact
(each GGUF quant requested, each ONNX export), all read through the student's tokenizer folder."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from distill.compiler.pipeline import Planned
from distill.runtime.evaluate import Candidate


def candidates(planned: Planned, folder: Path, up: Mapping[str, Path]) -> list[Candidate]:
    from distill.runtime.placement import Placement

    student = up["train"] / "model"
    found = []
    teacher = teacher_folder(planned, folder, up)
    if teacher is not None:
        found.append(Candidate("teacher", "hf", teacher, teacher, Placement.of_teacher(planned.plan),
                               planned.plan.teacher_quant or "none"))
    found.append(Candidate("student", "hf", student, student, Placement.of(planned.plan)))
    for name, stage in sorted(up.items()):
        if name.startswith("export:"):
            found += artifact_candidates(stage / "artifact", student)
    return found


def artifact_candidates(artifact: Path, tokenizer_dir: Path) -> list[Candidate]:
    """One candidate per requested GGUF quant (the F16 base the quants are made from is not
    deployed unless asked), or the ONNX model."""
    manifest = json.loads((artifact / "manifest.json").read_text("utf-8"))
    if manifest["kind"] == "gguf":
        files = {entry["quant"]: entry["path"] for entry in manifest["files"]}
        return [Candidate(f"gguf:{quant}", "gguf", artifact / files[quant], tokenizer_dir) for quant in manifest["quants"]]
    precision = "int8" if manifest["quant"] == "int8" else "fp32"
    return [Candidate(f"onnx:{precision}", "onnx", artifact, tokenizer_dir)]


def teacher_folder(planned: Planned, folder: Path, up: Mapping[str, Path]) -> Path | None:
    """The teacher as a model folder: local as it is (a GGUF file's converted folder), hub from the cache at the pinned commit,
    random saved once into this stage's folder (with the tokenizer the build trained)."""
    spec, root = planned.compiled.spec, planned.compiled.root
    if spec.teacher is None:
        return None
    resolved = planned.models["teacher"]
    if resolved.kind in ("local", "gguf", "hub"):
        from distill.runtime.models import gguf_weights, model_location

        if resolved.kind == "gguf":
            gguf_weights(resolved, root)
        location = model_location(resolved, root, weights=True)
        if resolved.kind == "hub" and location == resolved.ref:  # weights not cached yet: fetch them
            from huggingface_hub import snapshot_download

            # Safetensors and the small files only: a repo's pickled copies are never loaded.
            location = snapshot_download(resolved.ref, revision=resolved.revision,
                                         allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
        return Path(location)
    saved = folder / "teacher"
    if not (saved / "config.json").is_file():
        from distill.runtime.sources.run import extracted_texts
        from distill.runtime.models import align_special_tokens, load_model, load_tokenizer
        from distill.runtime.placement import Placement

        # Initialised as training initialised it (same seed, same device type): the same teacher.
        model = load_model(resolved, spec.teacher, root, Placement.of_teacher(planned.plan), None,
                           "teacher (saved for evaluation)")
        tokenizer = load_tokenizer(resolved, spec.teacher, root, extracted_texts(up["extract"]))
        align_special_tokens(model, tokenizer)
        model.save_pretrained(saved, safe_serialization=True)
        tokenizer.save_pretrained(saved)
    return saved
