"""The build report from hand-made inputs: every number from the inputs, missing parts said to be
missing, report.json round-trips, equal inputs give equal bytes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from distill.compiler.digest import FileDigest
from distill.compiler.records.data_card import Generation, ReasonCount, Rejected, TeacherYield
from distill.compiler.records.evaluation import Sample
from distill.compiler.records.lock import LockedModel
from distill.compiler.records.manifest import ArtifactFile, Check, ExportSource, Manifest
from distill.compiler.records.report import GateResult, PlannedPeak, Report, ReportArtifact
from distill.runtime.build.report import (
    MIB,
    ReportInputs,
    StageRun,
    _one_two_five,
    quality_points,
    report,
    training_summary,
    write_report,
)
from tests.records import data_card, evaluation, lock, model

SOURCE_SHA = "a" * 64
PLAN = {"device": "cpu", "budget_bytes": 8 * 2**30, "budget_source": "--memory 8GiB",
        "decisions": [{"name": "micro_batch", "value": "4", "why": "total batch 32 = micro 4 x accumulation 8"}]}
LOCK = lock(sources=(FileDigest("docs/guide.md", SOURCE_SHA, 1234),),
            models={"student": LockedModel("hub", "org/student", "0123abcd", "bpe", ()),
                    "teacher": LockedModel("hub", "org/teacher", "feedbeef", "bpe", ())},
            settings={"device": "cpu", "micro_batch": 4}, tools={"llama-cpp-python": "0.3.36", "torch": "2.13.0"})
CARD = data_card({"train": 40, "val": 5, "test": 5},
                 Rejected(3, {"grounding": 2, "parse": 1},
                          (ReasonCount("grounding", "support N < N", 2), ReasonCount("parse", "not JSON", 1))),
                 chunks=12)
EVALUATION = evaluation(
    [model("teacher", {"perplexity": 3.21, "token_f1": 0.812345}, params=1_000_000, size_bytes=4 * 2**20, path="t"),
     model("student", {"perplexity": 4.25, "token_f1": 0.72, "rouge_l": 0.65, "latency_ms": 20.5}, params=250_000,
           size_bytes=2**20),
     model("student-Q4_K_M", {"perplexity": 4.5, "token_f1": 0.701, "latency_ms": 12.34}, kind="gguf", path="s",
           params=250_000, size_bytes=2**19, precision="Q4_K_M")],
    {"student-Q4_K_M": {"token_f1": 0.863}}, notes=["latency measured on 2 threads"],
    samples=[Sample(id="q1", question="How far | up?", reference="4 metres",
                    answers={"teacher": "Up to 4 metres.", "student": "4\nmetres", "student-Q4_K_M": ""})])
GATES = (GateResult("token_f1", "student-Q4_K_M", 0.701, 0.6, True, "ok"),
         GateResult("retention", "student-Q4_K_M", 0.863, 0.9, False, "kept 86% of the teacher's token_f1"))
SOURCE = ExportSource(model_dir="/m", config_sha256="a" * 64)
MANIFEST = Manifest(kind="gguf", model="model-Q4_K_M.gguf", quant="Q4_K_M", quants=("Q4_K_M",),
                    files=(ArtifactFile(quant="Q4_K_M", path="model-Q4_K_M.gguf", sha256="b" * 64, size=524288,
                                        modelfile="model-Q4_K_M.Modelfile"),),
                    verification=(Check("Q4_K_M.logits_top1_agreement", True, "0.98 of 64"),), source=SOURCE, tools={})
ONNX_MANIFEST = Manifest(kind="onnx", model="model.onnx", task="text-generation-with-past", quant="int8",
                         files=(ArtifactFile(path="model.onnx", sha256="c" * 64, size=300000),),
                         verification=(Check("greedy_generation_runs", True, "1.0"),), source=SOURCE, tools={})


@pytest.fixture
def inputs(tmp_path: Path) -> ReportInputs:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "loss": 5.5, "ce": 5.0, "kl": 0.5, "lr": 1e-4}, {"step": 2, "loss": 4.25, "ce": 4.0, "kl": 0.25},
        {"step": 2, "val_loss": 4.4}, {"step": 4, "loss": 3.0, "ce": 2.75, "kl": 0.25}, {"step": 4, "val_loss": 4.6}]))
    png = tmp_path / "train-loss.png"
    png.write_bytes(b"\x89PNG fake")
    return ReportInputs(
        name="tiny", spec={"version": 1, "name": "tiny"}, spec_sha256="d" * 64, lock=LOCK, plan=PLAN, data_card=CARD,
        metrics=metrics, loss_png=png, evaluation=EVALUATION, gates=GATES,
        artifacts=(ReportArtifact("gguf", "artifacts/gguf", MANIFEST),
                   ReportArtifact("onnx", "artifacts/onnx/model.onnx", ONNX_MANIFEST)),
        stages=(StageRun("extract", "e" * 64, 0.25), StageRun("train", "f" * 64, 12.5)))


def test_card_states_every_fact(inputs: ReportInputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(out, inputs)
    card = (out / "README.md").read_text()
    assert SOURCE_SHA in card and "org/teacher" in card and "feedbeef" in card and "0123abcd" in card
    assert "total batch 32 = micro 4 x accumulation 8" in card
    assert "| train | 40 | teacher 40 |" in card and "Rejected: 3 (grounding 2, parse 1)" in card
    # One row per model, every metric formatted, size in MiB, params, retention.
    assert "| teacher | hf | fp32 | 1,000,000 | 4.00 | 3.210 | 0.8123 | not measured | not measured | -" in card
    assert "| student | hf | fp32 | 250,000 | 1.00 | 4.250 | 0.7200 | 0.6500 | 20.5 | - |" in card
    assert ("| student-Q4_K_M | gguf | Q4_K_M | 250,000 | 0.50 | 4.500 | 0.7010 | not measured | 12.3 "
            "| token_f1 0.863 |") in card
    assert "| token_f1 | student-Q4_K_M | 0.7010 | 0.6000 | PASS | ok |" in card
    assert "| retention | student-Q4_K_M | 0.863 | 0.9 | FAIL |" in card and "1 of 2 passed" in card
    assert "- Validation loss: best 4.4000 at step 2, last 4.6000 at step 4." in card
    assert "- Train loss 5.5000 at step 1 -> 3.0000 at step 4 (ce 2.7500, kl 0.2500)." in card
    assert "ollama create tiny -f artifacts/gguf/model-Q4_K_M.Modelfile" in card
    assert "llama-cli -m artifacts/gguf/model-Q4_K_M.gguf" in card
    assert "ORTModelForCausalLM.from_pretrained('artifacts/onnx'" in card
    assert "| Q4_K_M.logits_top1_agreement | ok | 0.98 of 64 |" in card
    assert "| train | `ffffffffffff` | 12.50 |" in card and "| extract | `eeeeeeeeeeee` | 0.25 |" in card
    assert "Quality is token_f1" in card and "![size vs quality](size_vs_quality.png)" in card
    assert (out / "loss.png").read_bytes() == b"\x89PNG fake"
    assert (out / "size_vs_quality.png").read_bytes().startswith(b"\x89PNG")
    # Sample answers: the question, its reference, a row per model (cells escaped, empty said).
    assert "**How far \\| up?** Reference: 4 metres" in card
    assert "| teacher | Up to 4 metres. |" in card and "| student | 4 metres |" in card
    assert "| student-Q4_K_M | (nothing) |" in card


def test_report_json_round_trips(inputs: ReportInputs, tmp_path: Path) -> None:
    write_report(tmp_path / "out", inputs)
    text = (tmp_path / "out" / "report.json").read_text()
    data = json.loads(text)
    read = Report.read(tmp_path / "out" / "report.json")
    assert read == report(inputs, training_summary(inputs.metrics)) and read.data_card == CARD
    assert data["lock"]["models"]["teacher"]["revision"] == "feedbeef"
    assert data["data_card"]["rejected"]["by_reason"][0] == {"stage": "grounding", "reason": "support N < N",
                                                             "count": 2}
    assert data["evaluation"]["models"][0]["name"] == "teacher"
    assert data["gates"][1]["passed"] is False and data["artifacts"][0]["manifest"]["model"] == "model-Q4_K_M.gguf"
    assert data["training"]["best_val"] == {"step": 2, "val_loss": 4.4} and data["training"]["steps"] == 4
    assert all("seconds" not in s for s in data["stages"])
    assert list(data)[-2:] == ["device_peaks", "timings"] and data["timings"] == {"extract": 0.25, "train": 12.5}
    assert data["device_peaks"] == {}  # no stage ran on a GPU
    assert list(data)[:2] == ["record", "version"] and list(data)[2:-2] == sorted(list(data)[2:-2])


def test_cuda_peaks_are_reported_beside_the_plan(inputs: ReportInputs, tmp_path: Path) -> None:
    train = StageRun("train", "f" * 64, 12.5, PlannedPeak("train: backward", 8 * MIB),
                     {"allocated": 6 * MIB, "reserved": 10 * MIB})
    synthesize = StageRun("synthesize", "a" * 64, 3.0, PlannedPeak("synthesis (batch 4)", 4 * MIB))
    write_report(tmp_path / "out", replace(inputs, stages=(synthesize, train)))
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["device_peaks"] == {"train": {"allocated": 6 * MIB, "reserved": 10 * MIB, "predicted": 8 * MIB,
                                              "reserved_over_predicted": 1.25}}
    assert all("device_peak" not in s for s in data["stages"])
    assert data["stages"][1]["predicted_peak"] == {"phase": "train: backward", "bytes": 8 * MIB}
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| train | `ffffffffffff` | 12.50 | 8 | 10 / 6 |" in card
    assert "| synthesize | `aaaaaaaaaaaa` | 3.00 | 4 | not on a GPU |" in card


def test_missing_parts_are_said_to_be_missing(inputs: ReportInputs, tmp_path: Path) -> None:
    bare = replace(inputs, data_card=None, metrics=None, loss_png=None, evaluation=None, gates=(), artifacts=(),
                   stages=(), lock=lock(), plan={})
    write_report(tmp_path / "out", bare)
    card = (tmp_path / "out" / "README.md").read_text()
    for text in ("No training metrics (metrics.jsonl missing).", "No loss curve (loss.png missing).",
                 "No evaluation results (evaluation.json missing or empty)",
                 "No size-vs-quality plot: no quality metric was measurable",
                 "No gate results", "No artifacts were exported.", "No data card", "No source files recorded.",
                 "no student recorded in the lock", "No plan decisions recorded"):
        assert text in card
    assert not (tmp_path / "out" / "size_vs_quality.png").exists()
    assert not (tmp_path / "out" / "loss.png").exists()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["evaluation"] is None


def test_perplexity_only_is_plotted_as_its_inverse(inputs: ReportInputs, tmp_path: Path) -> None:
    models = tuple(replace(m, metrics={"perplexity": m.metrics["perplexity"]}) for m in EVALUATION.models)
    write_report(tmp_path / "out", replace(inputs, evaluation=replace(EVALUATION, models=models)))
    assert "Quality is 1 / perplexity" in (tmp_path / "out" / "README.md").read_text()


def front_matter_of(folder: Path) -> Any:
    """The card's metadata as the Hub's own parser reads it."""
    from huggingface_hub import ModelCard

    return ModelCard((folder / "README.md").read_text()).data


def test_front_matter_follows_the_hub_conventions(inputs: ReportInputs, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir(parents=True)
    (tmp_path / "out" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    write_report(tmp_path / "out", inputs)
    data = front_matter_of(tmp_path / "out")
    assert data.base_model == "org/student" and data.library_name == "transformers"
    assert data.pipeline_tag == "text-generation"
    assert data.tags == ["distill", "knowledge-distillation", "gguf", "onnx", "llama"]
    assert data.license is None and data.datasets is None  # not recorded / local files: left out, not guessed
    # model-index: the merged student's quality metrics on the held-out split; latency is not one
    assert data.model_name == "tiny"
    results = {(r.metric_type, r.metric_name): r.metric_value for r in data.eval_results}
    assert results == {("perplexity", "perplexity (per token)"): 4.25, ("f1", "token F1 (SQuAD normalization)"): 0.72,
                       ("rouge", "ROUGE-L F-measure (rouge-score)"): 0.65}
    assert {(r.task_type, r.dataset_name, r.dataset_type, r.dataset_split) for r in data.eval_results} == {
        ("text-generation", "tiny held-out test split", "tiny-test", "test")}
    assert "License: not set." in (tmp_path / "out" / "README.md").read_text()


def test_front_matter_of_a_local_extractive_student_without_teacher(inputs: ReportInputs, tmp_path: Path) -> None:
    local = replace(LOCK, models={"student": LockedModel("local", "models/bert", None, None, ())})
    extractive = replace(EVALUATION, task="extractive-qa", models=(
        model("student", {"exact_match": 0.5, "f1": 0.625, "latency_ms": 3.0}, size_bytes=2**20),))
    spec = {"version": 1, "name": "tiny", "student": {"task": "extractive-qa"}}
    write_report(tmp_path / "out", replace(inputs, spec=spec, lock=local, evaluation=extractive, artifacts=()))
    data = front_matter_of(tmp_path / "out")
    assert data.base_model is None and data.pipeline_tag == "question-answering"
    assert data.tags == ["distill"]  # no teacher, no export, no model folder to name the architecture
    assert {r.metric_type: r.metric_value for r in data.eval_results} == {"exact_match": 0.5, "f1": 0.625}
    assert {r.task_type for r in data.eval_results} == {"question-answering"}


def test_no_model_index_without_an_evaluated_student(inputs: ReportInputs, tmp_path: Path) -> None:
    write_report(tmp_path / "out", replace(inputs, evaluation=None))
    data = front_matter_of(tmp_path / "out")
    assert data.eval_results is None and data.model_name is None and data.pipeline_tag == "text-generation"


def test_no_size_vs_quality_plot_when_nothing_is_measurable(inputs: ReportInputs, tmp_path: Path) -> None:
    """A build whose every answer scores 0 and that measured no perplexity: one sentence, no
    plot of every point on one line."""
    models = tuple(replace(m, metrics={"token_f1": 0.0, "rouge_l": 0.0}) for m in EVALUATION.models)
    write_report(tmp_path / "out", replace(inputs, evaluation=replace(EVALUATION, models=models)))
    card = (tmp_path / "out" / "README.md").read_text()
    assert ("No size-vs-quality plot: no quality metric was measurable (none of token_f1, f1, perplexity above 0 "
            "for any model).") in card
    assert not (tmp_path / "out" / "size_vs_quality.png").exists()


def test_an_all_zero_f1_gives_way_to_perplexity(inputs: ReportInputs, tmp_path: Path) -> None:
    models = [replace(m, metrics={**m.metrics, "token_f1": 0.0}) for m in EVALUATION.models]
    quality = quality_points(replace(EVALUATION, models=tuple(models)))
    assert quality["metric"] == "perplexity" and quality["label"] == "1 / perplexity"
    assert [name for name, _, _ in quality["points"]] == ["teacher", "student", "student-Q4_K_M"]
    # one model at 0 among measured ones is a point at 0, not a reason to skip the metric
    models[0] = replace(models[0], metrics={**models[0].metrics, "token_f1": 0.5})
    assert [value for _, _, value in quality_points(replace(EVALUATION, models=tuple(models)))["points"]] == [
        0.5, 0.0, 0.0]


def test_size_ticks_are_plain_numbers_at_one_two_five() -> None:
    assert [_one_two_five(v, 0) for v in (0.2, 0.3, 0.5, 5.0, 70.0, 2000.0)] == ["0.2", "", "0.5", "5", "", "2000"]


def test_equal_inputs_give_equal_bytes(inputs: ReportInputs, tmp_path: Path) -> None:
    write_report(tmp_path / "a", inputs)
    write_report(tmp_path / "b", inputs)
    for name in ("README.md", "report.json", "loss.png", "size_vs_quality.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    slower = replace(inputs, stages=tuple(replace(s, seconds=s.seconds + 1) for s in inputs.stages))
    write_report(tmp_path / "c", slower)
    a, c = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("a", "c"))
    assert a.pop("timings") != c.pop("timings") and a == c



def test_onnx_snippet_runs_as_printed_on_a_qwen3(inputs: ReportInputs, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's Python for an ONNX causal LM runs against a tiny Qwen3 (head_dim 128 != 64 / 4),
    whose first cache optimum alone sizes wrongly."""
    import torch

    from distill.backends.export import export_verified, parse_target
    from tests.runtime.evaluate.test_runners import FAMILIES, save_family

    torch.set_num_threads(2)
    out = tmp_path / "out"
    model_dir = save_family(tmp_path / "qwen3", "qwen3", **FAMILIES["qwen3"])
    export_verified(model_dir, parse_target("onnx"), out / "artifacts" / "onnx")
    manifest = Manifest.read(out / "artifacts" / "onnx" / "manifest.json")
    write_report(out, replace(inputs, artifacts=(ReportArtifact("onnx", "artifacts/onnx", manifest),)))
    card = (out / "README.md").read_text()
    snippet = card.split("```python\n")[1].split("```")[0]
    assert "ORTModelForCausalLM.from_pretrained('artifacts/onnx', file_name='model.onnx')" in snippet
    monkeypatch.chdir(out)  # the card's paths are relative to its folder
    capsys.readouterr()
    exec(compile(snippet, "README.md", "exec"), {})  # the card's own text is under test
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
def test_a_built_dist_folder_loads_and_says_what_was_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny training project built with early stopping and a GGUF target (about a minute):
    dist's model folder is a plain Hugging Face folder the Auto classes load, the card's front
    matter parses, and the loss curve marks the best validation step as the kept one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.compiler.cli import main
    from distill.runtime.train import plots
    from tests.runtime.train.project import write_project

    drawn: list[plots.Kept | None] = []
    draw = plots.draw_loss  # training runs in this process (one CPU process): its curve is seen here
    monkeypatch.setattr(plots, "draw_loss",
                        lambda records, kept, title: drawn.append(kept) or draw(records, kept, title))
    path = write_project(tmp_path, deploy=[{"gguf": {"quant": ["Q8_0"]}}],
                         train={"epochs": 6, "effective_batch_size": 4, "max_seq_len": 128, "checkpoint_every": 1,
                                "learning_rate": 0.3, "early_stopping": {"patience": 1}},
                         eval={"metrics": ["perplexity", "size"]})  # no generation: a minute less
    assert main(["build", str(path), "--offline"]) == 0
    dist = tmp_path / "dist" / "tiny-train"
    folder = dist  # the Hub's layout: weights and the card at the root, exports in subfolders
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "README.md"} <= {p.name for p in folder.iterdir()}
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "How long does pump P1 run?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] > ids.shape[1]

    data = front_matter_of(dist)
    assert data.base_model is None  # a random student has no hub id
    assert data.tags == ["distill", "knowledge-distillation", "gguf", "llama"]
    assert "perplexity" in {r.metric_type for r in data.eval_results}
    best = json.loads((dist / "report.json").read_text())["training"]["best_val"]["step"]
    assert drawn == [plots.Kept(best, True)]
    assert (dist / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_the_teachers_yield_and_a_low_yield_warning_reach_the_card(inputs: ReportInputs, tmp_path: Path) -> None:
    generation = Generation(teacher_yield=TeacherYield(36, 7, 0.1944, 12, {"0": 6, "1": 5, "2": 1},
                                                       {"generate": 20, "ground": 9}),
                            warnings=["low teacher yield: 7 of 36 requested items (19%) were usable; see the data "
                                      "card for the reasons"])
    write_report(tmp_path / "out", replace(inputs, data_card=replace(CARD, generation=generation)))
    card = (tmp_path / "out" / "README.md").read_text()
    assert ("Teacher yield: 7 of 36 requested items (19%) parsed and were grounded, over 12 chunks (chunks by "
            "usable items: 0: 6, 1: 5, 2: 1; items lost by stage: generate 20, ground 9).") in card
    assert "**Warning:** low teacher yield: 7 of 36 requested items (19%) were usable" in card
