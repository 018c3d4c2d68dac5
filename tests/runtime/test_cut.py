"""A student cut from its teacher, loaded for real: every tensor is the teacher's (kept layers
renumbered), its forward pass is the teacher's with the other layers removed by hand, tied
embeddings stay tied, and the plan counted exactly the parameters that load."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from distill.compiler.pipeline import Planned, plan_file
from distill.runtime import cut
from distill.runtime.models import load_model, load_tokenizer
from distill.runtime.placement import Placement
from distill.runtime.sources.tokenizer import train_byte_bpe
from tests.smollm2 import SMOLLM2

TEACHER = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "tie_word_embeddings": True}
CPU = Placement("cpu", "float32", "fp32")


def _teacher(folder: Path, shard: str | None = None) -> torch.nn.Module:
    """A random 4-layer llama saved as safetensors (in shards of at most ``shard``), with a tokenizer."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**TEACHER)).eval()
    model.save_pretrained(folder, safe_serialization=True, **({"max_shard_size": shard} if shard else {}))
    train_byte_bpe(["The pump runs for twenty minutes."], 300).save(str(folder / "tokenizer.json"))
    return model


def _planned(root: Path, teacher: str, layers: str) -> Planned:
    (root / "docs").mkdir(exist_ok=True)
    (root / "docs" / "a.md").write_text("The pump runs for twenty minutes.\n" * 20)
    (root / "Distillfile").write_text(f"version: 1\nname: cut\nsources: [{{text: docs/*.md}}]\n"
                                      f"teacher: {{model: {teacher}}}\n"
                                      f"student: {{from_teacher: {{layers: {layers}}}, adapter: {{type: none}}}}\n"
                                      "loss: {mask: all}\nhardware: {device: cpu, ram: 8GiB}\n")
    return plan_file(root / "Distillfile")


def _student(planned: Planned) -> torch.nn.Module:
    spec = planned.compiled.spec
    return load_model(planned.models["student"], spec.student, planned.compiled.root, CPU, "none", "student")


def _by_hand(teacher: torch.nn.Module, kept: list[int]) -> torch.nn.Module:
    """The teacher with only the ``kept`` decoder layers, removed by hand."""
    cut_by_hand = copy.deepcopy(teacher)
    cut_by_hand.model.layers = torch.nn.ModuleList([cut_by_hand.model.layers[i] for i in kept])
    return cut_by_hand


def _assert_is_the_teacher_cut(student: torch.nn.Module, teacher: torch.nn.Module, kept: list[int]) -> None:
    expected = _by_hand(teacher, kept).state_dict()
    weights = student.state_dict()
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[name], expected[name]) for name in weights), "a tensor differs"
    ids = torch.tensor([[5, 17, 42, 99, 7, 250, 3]])
    with torch.no_grad():
        ours = student(ids, use_cache=False).logits
        theirs = _by_hand(teacher, kept)(ids, use_cache=False).logits
    assert torch.equal(ours, theirs)


def test_a_cut_student_is_its_teacher_without_the_other_layers(tmp_path: Path) -> None:
    teacher = _teacher(tmp_path / "teacher")
    planned = _planned(tmp_path, "teacher", "[0, 2]")
    student = _student(planned)
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    _assert_is_the_teacher_cut(student, teacher, [0, 2])
    assert student.lm_head.weight is student.model.embed_tokens.weight  # tied, as the teacher's
    plan_params = {m.role: m.params for m in planned.plan.models}
    assert plan_params["student"] == sum(p.numel() for p in student.parameters()) < plan_params["teacher"]


def test_the_cut_is_written_once_into_a_content_addressed_folder(tmp_path: Path) -> None:
    _teacher(tmp_path / "teacher")
    planned = _planned(tmp_path, "teacher", "[1, 3]")
    _student(planned)
    [folder] = (tmp_path / ".distill" / "cut").iterdir()
    assert len(folder.name) == 16 and not folder.name.startswith(".")  # no staging folder left
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "generation_config.json",
                                                        "model.safetensors", "tokenizer.json"]
    assert json.loads((folder / "config.json").read_text()) == planned.models["student"].config
    written = (folder / "model.safetensors").stat().st_mtime_ns
    _student(planned)
    assert (folder / "model.safetensors").stat().st_mtime_ns == written  # reused
    tokenizer = load_tokenizer(planned.models["student"], planned.compiled.spec.student, tmp_path)
    assert tokenizer("The pump runs").input_ids == load_tokenizer(
        planned.models["teacher"], planned.compiled.spec.teacher, tmp_path)("The pump runs").input_ids
    # retrained weights in the same folder (config and tokenizer unchanged) make a new cut
    weights = tmp_path / "teacher" / "model.safetensors"
    os.utime(weights, ns=(written + 10**9, written + 10**9))
    _student(planned)
    assert len(list((tmp_path / ".distill" / "cut").iterdir())) == 2


def test_a_sharded_teacher_is_read_shard_by_shard_and_written_in_shards(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = _teacher(tmp_path / "teacher", shard="60KB")
    assert (tmp_path / "teacher" / "model.safetensors.index.json").is_file()
    monkeypatch.setattr(cut, "SHARD_BYTES", 40_000)  # a shard holds less than the embeddings: several
    planned = _planned(tmp_path, "teacher", "{every: 2}")  # of 4 layers: 0, 2 and the last, 3
    student = _student(planned)
    [folder] = (tmp_path / ".distill" / "cut").iterdir()
    assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("model-*.safetensors"))) > 2
    _assert_is_the_teacher_cut(student, teacher, [0, 2, 3])


def test_a_checkpoint_without_a_kept_layer_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    _teacher(tmp_path / "teacher")
    weights = tmp_path / "teacher" / "model.safetensors"
    tensors = {name: t for name, t in load_file(weights).items() if not name.startswith("model.layers.2.")}
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(cut.CutFailed, match=r"no tensors named model.layers.<i>. for layer\(s\) 2"):
        _student(_planned(tmp_path, "teacher", "[0, 2]"))
    assert not list((tmp_path / ".distill" / "cut").glob("*"))  # nothing half-written


def test_a_gguf_teacher_is_cut_from_its_dequantized_weights(tmp_path: Path) -> None:
    """The real SmolLM2-135M (30 layers, tied embeddings) from its GGUF file."""
    (tmp_path / "teacher.gguf").symlink_to(SMOLLM2)
    planned = _planned(tmp_path, "teacher.gguf", "{every: 10}")
    student = _student(planned)
    assert planned.models["student"].ref == "teacher.gguf, layers 0,10,20,29"
    assert student.lm_head.weight is student.model.embed_tokens.weight
    assert planned.plan.models[1].params == sum(p.numel() for p in student.parameters())
    from safetensors import safe_open

    gguf_folder = planned.models["teacher"].folder
    assert gguf_folder is not None
    with safe_open(str(gguf_folder / "model.safetensors"), framework="pt") as teacher:
        for i, layer in enumerate((0, 10, 20, 29)):
            name = "self_attn.q_proj.weight"
            assert torch.equal(student.state_dict()[f"model.layers.{i}.{name}"],
                               teacher.get_tensor(f"model.layers.{layer}.{name}"))
