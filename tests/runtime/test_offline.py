"""A hub model already in the Hugging Face cache loads without opening a connection: from its
snapshot folder, as the plan found it. ``--offline`` (or ``HF_HUB_OFFLINE``) with weights that
were never downloaded is a clear error naming ``hf download``, at once."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from distill.compiler.pipeline import compile_and_resolve
from distill.runtime.models import WeightsNotCached, load_model, load_tokenizer
from distill.runtime.placement import Placement
from distill.runtime.sources.tokenizer import SPECIAL_TOKENS, train_byte_bpe

COMMIT = "c" * 40
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "vocab_size": 300}


@pytest.fixture
def cached_hub_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``org/tiny`` at ``main`` in a Hugging Face cache of its own; returns the snapshot folder."""
    repo = tmp_path / "hub" / "models--org--tiny"
    snapshot = repo / "snapshots" / COMMIT
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**TINY)).save_pretrained(snapshot, safe_serialization=True)
    eos, pad = SPECIAL_TOKENS
    PreTrainedTokenizerFast(tokenizer_object=train_byte_bpe(["the pump runs twenty minutes"] * 20, 300),
                            eos_token=eos, pad_token=pad).save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    return snapshot


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection attempted in the test (each refused, as an unreachable hub would)."""
    attempts: list[object] = []

    def refuse(address: object) -> None:
        attempts.append(address)
        raise OSError("network is unreachable in this test")

    # A look-up of the hub's name comes before any connection (and blocks where DNS is absent).
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: refuse(host))
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: refuse(address))
    return attempts


def _teacher(project: Path) -> tuple[object, object, Path]:
    (project / "docs").mkdir(parents=True)
    (project / "docs" / "a.md").write_text("The pump runs for twenty minutes.\n")
    (project / "Distillfile").write_text(
        "version: 1\nname: p\nsources: [{text: docs/*.md}]\nteacher:\n  model: org/tiny\n"
        "student:\n  model: org/tiny\nloss: {mask: all}\n")
    compiled, models = compile_and_resolve(project / "Distillfile", offline=True)
    return models["teacher"], compiled.spec.teacher, compiled.root


def test_a_cached_hub_model_loads_without_the_network(tmp_path: Path, cached_hub_model: Path,
                                                      connections: list[object]) -> None:
    resolved, spec, root = _teacher(tmp_path / "project")
    model = load_model(resolved, spec, root, Placement("cpu", "float32", "fp32"), None, "teacher")
    tokenizer = load_tokenizer(resolved, spec, root)
    assert model.config.hidden_size == TINY["hidden_size"]
    assert tokenizer.eos_token == SPECIAL_TOKENS[0]
    assert connections == []


def test_offline_without_cached_weights_says_how_to_fetch_them(tmp_path: Path, cached_hub_model: Path,
                                                               connections: list[object]) -> None:
    (cached_hub_model / "model.safetensors").unlink()
    resolved, spec, root = _teacher(tmp_path / "project")
    with pytest.raises(WeightsNotCached) as error:
        load_model(resolved, spec, root, Placement("cpu", "float32", "fp32"), None, "teacher")
    assert f"hf download org/tiny --revision {COMMIT}" in (error.value.hint or "")
    assert connections == []


def test_hf_hub_offline_is_honoured(tmp_path: Path, cached_hub_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved, _, _ = _teacher(tmp_path / "project")
    assert resolved.offline and resolved.folder == cached_hub_model


def test_a_sharded_snapshot_needs_every_shard(tmp_path: Path, cached_hub_model: Path) -> None:
    (cached_hub_model / "model.safetensors").rename(cached_hub_model / "model-00001-of-00002.safetensors")
    (cached_hub_model / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    resolved, spec, root = _teacher(tmp_path / "project")
    with pytest.raises(WeightsNotCached):
        load_model(resolved, spec, root, Placement("cpu", "float32", "fp32"), None, "teacher")
