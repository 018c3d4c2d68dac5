"""The teacher_logits, train and merge stages for one planned Distillfile: what ``distill train``
runs and what the build's stages call."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.phases import PROBE_SEQUENCES, PROBE_TOKENS
from distill.compiler.pipeline import Planned
from distill.compiler.trainstep import DEFAULT_LOSS_CHUNK
from distill.runtime.progress import Progress
from distill.runtime.train.data import Encoded, Skip, read_split
from distill.runtime.train.loop import TrainResult, train
from distill.runtime.train.merge import MergeReport, merge_adapter, save_model
from distill.runtime.train.objective import Objective, Weights


class NothingToTrain(DistillError):
    """Every train example was skipped at tokenization."""

    exit_code = ExitCode.NO_DATA


@dataclass(frozen=True)
class Trained:
    result: TrainResult
    merge: MergeReport
    model_dir: Path
    skipped: tuple[Skip, ...]


def train_planned(planned: Planned, data: Path, folder: Path, corpus: Sequence[str] = (),
                  progress: Progress | None = None, teacher_key: str = "") -> Trained:
    """Tokenize ``data``'s splits, train as planned into ``folder`` (resuming from its
    checkpoints), merge and save the model to ``folder / "model"``."""
    from accelerate import PartialState

    from distill.runtime.models import align_special_tokens, load_tokenizer
    from distill.runtime.placement import Placement
    from distill.runtime.train.student import build_student, causal_head

    spec, plan, root = planned.compiled.spec, planned.plan, planned.compiled.root
    placement = Placement.of(plan)
    # Joins the launcher's process group now (not first in the loop): the teacher cache is
    # computed shard by shard across ranks before training starts.
    PartialState(cpu=placement.device == "cpu")
    tokenizer = load_tokenizer(planned.models["student"], spec.student, root, corpus)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_set, skipped = _split(data / "train.jsonl", tokenizer, planned)
    val_set, val_skipped = _split(data / "val.jsonl", tokenizer, planned)
    if not train_set:
        raise NothingToTrain(f"all {len(skipped)} train example(s) were skipped at tokenization: "
                             f"{skipped[0].reason if skipped else 'the train split is empty'}",
                             hint="raise train.max_seq_len, or check the student's chat template")
    student = build_student(planned.models["student"], spec, root, plan)
    if planned.models["student"].kind == "random":
        align_special_tokens(student, tokenizer)
    causal = spec.student.task == "causal-lm"
    objective = Objective(student, spec.student.task, causal_head(student) if causal else None, _weights(planned),
                          placement)
    if causal and _needs_teacher(planned):
        _attach_teacher(objective, planned, train_set, pad_id, folder, teacher_key, corpus, progress)
    result = train(objective, train_set, val_set, pad_id, spec, plan, folder, progress)
    student = objective.student
    del objective  # the teacher, its cache and the projector: the plan's merge phase holds none of them
    gc.collect()
    model_dir = folder / "model"
    report = _merge_on_main(planned, student, folder, _probe(train_set, pad_id), tokenizer, model_dir)
    return Trained(result, report, model_dir, tuple(skipped + val_skipped))


# What only an unfinished training reads: the checkpoints it resumes from, the best weights early
# stopping returns to, the trainables an FSDP merge reloads. Once ``model/`` is saved they are spare
# copies of the model (full fine-tuning of the quickstart's 6 MB student kept it five times over).
RESUME_STATE = ("checkpoints", "best.safetensors", "trainable.safetensors")


def drop_resume_state(folder: Path) -> None:
    """Remove ``RESUME_STATE`` from a training folder whose merged model is saved (main process)."""
    import shutil

    if not (folder / "model" / "config.json").is_file():
        return  # nothing saved yet: the resume state is all there is
    for name in RESUME_STATE:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _merge_on_main(planned: Planned, student: Any, folder: Path, probe: dict[str, torch.Tensor], tokenizer: Any,
                   model_dir: Path) -> MergeReport:
    """The main process merges and saves (the others wait), on the plan's merge device. An
    FSDP-trained student holds only its shard of each weight: the merge uses a fresh student
    loaded with the gathered trainables."""
    from accelerate import PartialState

    from distill.runtime.placement import Placement

    state = PartialState()
    report = MergeReport.unmerged()
    if state.is_main_process:
        plan = planned.plan
        if planned.compiled.spec.hardware.strategy == "fsdp" and plan.processes > 1:
            student = _reloaded_student(planned, folder)
            if planned.models["student"].kind == "random":
                from distill.runtime.models import align_special_tokens

                align_special_tokens(student, tokenizer)
        placement = replace(Placement.of(plan), device=plan.merge_device or plan.device)
        probe = {k: v.to(placement.torch_device) for k, v in probe.items()}
        merged, report = merge_adapter(student, probe, placement)
        save_model(merged, tokenizer, model_dir, torch.float32 if plan.dtype == "float32" else torch.bfloat16)
    state.wait_for_everyone()
    return report


def _reloaded_student(planned: Planned, folder: Path) -> Any:
    from safetensors.torch import load_file

    from distill.runtime.train.checkpoint import restore_weights
    from distill.runtime.train.student import build_student

    spec = planned.compiled.spec
    student = build_student(planned.models["student"], spec, planned.compiled.root, planned.plan)
    saved = load_file(str(folder / "trainable.safetensors"))
    restore_weights({"student": student}, {k: v for k, v in saved.items() if k.startswith("student/")})
    return student


def _split(path: Path, tokenizer: Any, planned: Planned) -> tuple[list[Encoded], list[Skip]]:
    spec = planned.compiled.spec
    if not path.is_file():
        return [], []
    return read_split(path, tokenizer, spec.student.task, spec.loss.mask, spec.train.max_seq_len)


def _probe(train_set: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    from distill.runtime.train.data import collate

    batch = collate(train_set[:PROBE_SEQUENCES], pad_id)
    return {k: v[:, :PROBE_TOKENS] for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _weights(planned: Planned) -> Weights:
    loss, plan = planned.compiled.spec.loss, planned.plan
    kl_active = loss.kl is not None and plan.kd_mode in ("online", "cached")
    return Weights(ce=loss.ce.weight if loss.ce else 0.0, kl=loss.kl.weight if loss.kl and kl_active else 0.0,
                   temperature=loss.kl.temperature if loss.kl else 1.0,
                   direction=loss.kl.direction if loss.kl else "forward",
                   hidden=loss.hidden.weight if loss.hidden else 0.0,
                   chunk_tokens=plan.loss_chunk_tokens or DEFAULT_LOSS_CHUNK)


def _needs_teacher(planned: Planned) -> bool:
    weights = _weights(planned)
    return weights.kl > 0 or weights.hidden > 0


def _attach_teacher(objective: Objective, planned: Planned, train_set: Sequence[Encoded], pad_id: int,
                    folder: Path, teacher_key: str, corpus: Sequence[str], progress: Progress | None) -> None:
    """The teacher online, or its top-k cache (built now, the teacher_logits stage), and the
    hidden-state projector (seeded, trainable)."""
    from distill.runtime.models import align_special_tokens, load_model, load_tokenizer
    from distill.runtime.placement import Placement
    from distill.runtime.train.hidden import HiddenProjector, auto_layer_map, cut_layer_map
    from distill.runtime.train.student import causal_head
    from distill.runtime.train.teacher_cache import build_cache

    spec, plan, root = planned.compiled.spec, planned.plan, planned.compiled.root
    assert spec.teacher is not None
    role = "teacher (top-k cache)" if plan.kd_mode == "cached" else "teacher (online KD)"
    teacher = load_model(planned.models["teacher"], spec.teacher, root, Placement.of_teacher(plan), plan.teacher_quant,
                         role)
    teacher.requires_grad_(False)
    if planned.models["teacher"].kind == "random":
        align_special_tokens(teacher, load_tokenizer(planned.models["teacher"], spec.teacher, root, corpus))
    objective.teacher, objective.teacher_head = teacher, causal_head(teacher)
    if plan.kd_mode == "cached" and objective.weights.kl > 0:
        objective.cache = build_cache(teacher, objective.teacher_head, train_set, pad_id, plan.micro_batch,
                                      plan.kd_top_k or 64, objective.weights.temperature,
                                      folder / "teacher_logits", teacher_key, objective.placement, progress)
    hidden = spec.loss.hidden
    if objective.cache is not None and (hidden is None or hidden.weight <= 0):
        objective.teacher = None  # cached logits are all it gives: free its memory for training
    if hidden is not None and hidden.weight > 0:
        s_config, t_config = objective.student.config, teacher.config
        cut = planned.models["student"].layers  # the teacher layers a cut student kept; () otherwise
        pairs = (hidden.layers if hidden.layers != "auto" else cut_layer_map(cut) if cut else
                 auto_layer_map(s_config.num_hidden_layers, t_config.num_hidden_layers))
        torch.manual_seed(spec.seed)
        # Initialised on the CPU (one seed, one projector on every device), then moved; its
        # weights stay fp32 masters like LoRA's, computed in the plan's autocast precision.
        projector = HiddenProjector(pairs, s_config.hidden_size, t_config.hidden_size, hidden.kind)
        objective.projector = projector.to(objective.placement.torch_device)
