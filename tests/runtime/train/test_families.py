"""Students of today's decoder families train, teach, validate and merge: Llama 3 (llama3 rope
scaling), Mistral (sliding window), Qwen3 (q/k norms), Gemma 3 (sliding-window layers, q/k norms,
scaled embeddings, no final logit soft-cap; its teacher here has one) and Phi-3.5 (longrope,
fused qkv/gate_up). Tiny random models from configs (2 layers, hidden 64; teachers hidden 96) with
a trained byte-level BPE and a ChatML template, saved as local folders and run through the build's
train stage: full fine-tuning, LoRA and QLoRA (nf4 on CPU), CE + online KL, in float32 and under
bf16 autocast (the code a GPU runs), then the merge with its own checks.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from distill.compiler.pipeline import plan_file
from distill.runtime import placement
from distill.runtime.sources.tokenizer import train_byte_bpe
from distill.runtime.train import objective, run, student
from distill.runtime.train.data import Encoded, collate
from distill.runtime.train.merge import LAYER_RTOL, MERGE_RTOL
from distill.runtime.train.student import causal_forward, causal_head, final_rows
from tests.runtime.train.project import train_project, write_project

TEXT = ["the quick brown fox jumps over the lazy dog; a model learns what its teacher knows.",
        "How long does pump P7 run? 17 minutes, and it draws 37 watts."] * 20
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")

# What makes each family itself, at tiny sizes. Examples are ~50 tokens, so windows of 16 slide.
FAMILIES: dict[str, dict[str, Any]] = {
    # Llama 3.2: llama3 rope scaling; original_max_position_embeddings < max_position_embeddings
    # (transformers warns otherwise), as in the real 8192 -> 131072 config. Small models tie.
    "llama": {"rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
              "max_position_embeddings": 131072, "rope_theta": 500000.0, "tie_word_embeddings": True},
    "mistral": {"sliding_window": 16, "max_position_embeddings": 512, "tie_word_embeddings": False},
    "qwen3": {"head_dim": 16, "max_position_embeddings": 512, "tie_word_embeddings": True},
    # Gemma 3 (1B style): one sliding layer then one global one, query_pre_attn_scalar = head_dim,
    # tied, embeddings scaled by sqrt(hidden), final_logit_softcapping None.
    "gemma3_text": {"head_dim": 16, "sliding_window": 16, "layer_types": ["sliding_attention", "full_attention"],
                    "query_pre_attn_scalar": 16, "max_position_embeddings": 512, "tie_word_embeddings": True},
    # Phi-3.5-mini: longrope with per-frequency factors (head_dim / 2 of each), 4k -> 128k.
    "phi3": {"max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
             "rope_scaling": {"type": "longrope"}, "tie_word_embeddings": False},
}
# The teacher differs where the loss must handle it: Gemma 2's final logit soft-cap on the
# teacher's head (the student's Gemma 3 head has none).
TEACHER = {"gemma3_text": {"final_logit_softcapping": 30.0}}
ADAPTERS = {"full": {"type": "none"}, "lora": {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.1},
            "qlora": {"type": "qlora", "r": 4, "alpha": 8, "dropout": 0.1}}
LOSSES = {"online KD": {"ce": {"weight": 1.0}, "kl": {"weight": 0.5, "temperature": 2.0}},
          "online KD + hidden": {"ce": {"weight": 1.0}, "kl": {"weight": 0.5, "temperature": 2.0},
                                 "hidden": {"weight": 0.1}},
          "cached KD": {"ce": {"weight": 1.0}, "kl": {"weight": 0.5, "temperature": 2.0, "top_k": 8}}}
# Every adapter at both precisions with online KD; the teacher's other two uses with LoRA. bf16
# cases run as a GPU plan would: gradient checkpointing on, two micro-batches per step. About 1 s
# a case on 2 idle cores (5 on busy ones): half of them are marked slow.
SETTINGS = [(adapter, precision, "online KD") for adapter in ADAPTERS for precision in ("fp32", "bf16")] + [
    ("lora", "fp32", "online KD + hidden"), ("lora", "bf16", "cached KD")]
QUICK = [("lora", "bf16", "online KD"), ("full", "fp32", "online KD"), ("qlora", "bf16", "online KD"),
         ("lora", "fp32", "online KD + hidden")]
CASES = [pytest.param(family, *setting, id=f"{family}-{'-'.join(setting)}".replace(" ", ""),
                      marks=[] if setting in QUICK else [pytest.mark.slow])
         for family in FAMILIES for setting in SETTINGS]


def family_model(folder: Path, family: str, hidden: int, seed: int, **overrides: Any) -> Path:
    """A tiny random ``family`` model and its tokenizer (ChatML, ``<|im_end|>`` the EOS) in ``folder``."""
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=train_byte_bpe(TEXT, 320), eos_token="<|im_end|>", pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    settings = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=len(tokenizer), bos_token_id=0,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=1, **FAMILIES[family])
    settings.update(overrides)
    if settings.get("rope_scaling", {}).get("type") == "longrope":
        half = hidden // 4 // 2  # one factor per rotated frequency: head_dim / 2
        settings["rope_scaling"] = {"type": "longrope", "long_factor": [1.0 + 3.0 * i / half for i in range(half)],
                                    "short_factor": [1.0 + 0.1 * i / half for i in range(half)]}
    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(family, **settings)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per family, a folder with ``student`` and ``teacher`` (built once for the module)."""
    torch.set_num_threads(2)
    made = {}
    for family in FAMILIES:
        root = tmp_path_factory.mktemp(family)
        family_model(root / "student", family, 64, 0)
        family_model(root / "teacher", family, 96, 1, **TEACHER.get(family, {}))
        made[family] = root
    return made


def test_the_head_reproduces_each_familys_logits(models: dict[str, Path]) -> None:
    """The chunked loss's assumption, on batches longer than the sliding windows and padded: the
    probed head applied to the rows the loss uses (student: ``hidden_states[-1]``, teacher:
    ``final_rows``) gives the model's own logits, soft-capped where the config says so."""
    batch = collate([Encoded("a", tuple(range(2, 42)), tuple(range(2, 42))),
                     Encoded("b", tuple(range(50, 75)), tuple(range(50, 75)))], 1)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    valid = batch["attention_mask"].bool()
    for family, root in models.items():
        for role in ("student", "teacher"):
            model = transformers.AutoModelForCausalLM.from_pretrained(root / role).eval()
            head = causal_head(model)
            assert head is not None, (family, role)
            with torch.no_grad():
                logits = model(**inputs).logits
                rows = causal_forward(model, batch, head, hidden=False).rows
                teacher_rows = final_rows(model, batch).rows
                for found in (head(rows), head(teacher_rows)):
                    assert torch.allclose(found[valid], logits[valid], atol=1e-5, rtol=1e-5), (family, role)
            cap = getattr(model.config, "final_logit_softcapping", None)
            assert (cap is not None) == (family == "gemma3_text" and role == "teacher")


def test_a_gemma3_soft_cap_is_applied_by_the_head(tmp_path: Path) -> None:
    """A cap small enough to matter (1.0: random logits of ~1 are squashed) is part of the head."""
    capped = family_model(tmp_path / "capped", "gemma3_text", 64, 0, final_logit_softcapping=1.0)
    model = transformers.AutoModelForCausalLM.from_pretrained(capped).eval()
    head = causal_head(model)
    assert head is not None
    ids = torch.arange(2, 40).unsqueeze(0)
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        raw = model.get_output_embeddings()(out.hidden_states[-1])
    assert out.logits.abs().max() < 1.0 and not torch.allclose(raw, out.logits, atol=1e-3)
    assert torch.allclose(head(out.hidden_states[-1]), out.logits, atol=1e-6)


def _project(root: Path, adapter: str, precision: str, loss: str) -> Path:
    student: dict[str, Any] = {"model": "./student", "adapter": ADAPTERS[adapter]}
    train: dict[str, Any] = {"max_steps": 3, "effective_batch_size": 4, "max_seq_len": 128, "checkpoint_every": 2,
                             "learning_rate": 1.0e-2}
    if precision == "bf16":
        student["dtype"] = "bfloat16"
        train.update(precision="bf16", gradient_checkpointing=True, micro_batch_size=2)
    return write_project(root, student=student, teacher={"model": "./teacher"}, loss=LOSSES[loss], train=train)


class _Spies:
    """What the train stage did inside: the heads it probed, the precision every loss ran at, how
    much the adapter moved the logits it merged."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.heads: list[bool] = []
        self.losses: list[tuple[bool, torch.dtype, torch.dtype]] = []
        self.adapter_effect: float | None = None
        probe, losses, merge = student.causal_head, objective.token_losses, run.merge_adapter

        def probed(model: Any) -> Any:
            head = probe(model)
            self.heads.append(head is not None)
            return head

        def loss(hidden: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self.losses.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), hidden.dtype))
            return losses(hidden, *args, **kwargs)

        def merged(model: Any, probe_batch: dict[str, torch.Tensor], where: Any) -> Any:
            if hasattr(model, "disable_adapter"):  # the adapter's own effect, in the trained precision
                model.eval()
                with torch.no_grad():
                    on = model(**probe_batch).logits.float()
                    with model.disable_adapter():
                        off = model(**probe_batch).logits.float()
                self.adapter_effect = float((on - off).abs().max())
            return merge(model, probe_batch, where)

        monkeypatch.setattr(student, "causal_head", probed)
        monkeypatch.setattr(objective, "token_losses", loss)
        monkeypatch.setattr(run, "merge_adapter", merged)
        monkeypatch.setattr(placement, "PLACED", [])


@pytest.mark.parametrize(("family", "adapter", "precision", "loss"), CASES)
def test_a_student_trains_with_kd_and_merges(family: str, adapter: str, precision: str, loss: str,
                                             models: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for role in ("student", "teacher"):
        shutil.copytree(models[family] / role, tmp_path / role)
    path = _project(tmp_path, adapter, precision, loss)
    planned = plan_file(path, offline=True)
    plan = planned.plan
    assert (plan.precision, plan.kd_mode) == (precision, "cached" if loss == "cached KD" else "online")
    if precision == "bf16":
        assert plan.checkpointing and (plan.micro_batch, plan.accumulation) == (2, 2)
    spies = _Spies(monkeypatch)
    trained = train_project(path, tmp_path / "out", planned)

    assert spies.heads == [True, True]  # student and teacher: the chunked loss reads hidden rows
    autocast = (True, torch.bfloat16) if precision == "bf16" else (False,)
    # Rows are bf16 under bf16 autocast, except above a quantized base (its final norm stays fp32).
    rows = torch.bfloat16 if precision == "bf16" and adapter != "qlora" else torch.float32
    assert spies.losses and all(seen[:len(autocast)] == autocast and seen[2] == rows for seen in spies.losses)
    metrics = [json.loads(line) for line in (tmp_path / "out" / "train" / "metrics.jsonl").read_text().splitlines()]
    steps, evals = [m for m in metrics if "loss" in m], [m for m in metrics if "val_loss" in m]
    assert len(steps) == trained.result.steps == 3 and [m["step"] for m in evals] == [2, 3]
    assert all({"ce", "kl"} <= set(m) and m["kl"] > 0 and m["grad_norm"] > 0 for m in steps)
    assert all(("hidden" in m) == ("hidden" in loss) for m in steps)
    assert all(math.isfinite(m.get("loss", m.get("val_loss"))) for m in metrics)
    teacher = "teacher (top-k cache)" if loss == "cached KD" else "teacher (online KD)"
    assert {p.role for p in placement.PLACED} == {"student", teacher}

    assert trained.merge.merged == (adapter != "full")
    if trained.merge.merged:
        bound = MERGE_RTOL * trained.merge.scale
        assert trained.merge.max_abs_diff <= bound
        # The check could see a wrong merge: the trained adapter moves the logits far past its bound.
        assert spies.adapter_effect is not None and spies.adapter_effect > 20 * bound
    assert (trained.merge.base_diff is not None) == (adapter == "qlora")
    if adapter == "qlora":  # the nf4 kernel against its dequantized weight: exact in float32
        assert trained.merge.base_diff <= LAYER_RTOL["4bit"]
        assert (trained.merge.base_diff > 0) == (precision == "bf16")
    saved = transformers.AutoModelForCausalLM.from_pretrained(trained.model_dir, dtype="auto")
    original = transformers.AutoConfig.from_pretrained(tmp_path / "student")
    rope = [getattr(config, "rope_scaling", None) for config in (saved.config, original)]
    assert saved.config.model_type == family and rope[0] == rope[1]
    assert not any("lora" in name for name, _ in saved.named_parameters())
    assert {p.dtype for p in saved.parameters()} == {torch.bfloat16 if precision == "bf16" else torch.float32}
