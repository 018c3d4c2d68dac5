"""Records: what a stage writes is read back by one typed reader that checks its kind, version and
fields, naming the place of a bad one; each record's JSON Schema is shipped and describes the file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from distill.compiler.digest import FileDigest
from distill.compiler.errors import UsageError
from distill.compiler.records.data_card import Generation, ReasonCount, Rejected, TeacherYield
from distill.compiler.records.evaluation import Answer, Measurement, Sample
from distill.compiler.records.lock import LockedModel
from distill.compiler.records.manifest import ArtifactFile, Check
from distill.compiler.records.record import Record, RecordError, read_json
from distill.compiler.records.report import GateResult, HeldPeak, PlannedPeak, ReportArtifact, StageRow
from distill.compiler.records.schemas import RECORDS, REGENERATE, schema_files
from distill.compiler.records.stage import BuildRecord, FileRecord, StageMeta, WorkerError
from tests.records import data_card, evaluation, lock, manifest, model, report

REPO = Path(__file__).resolve().parents[2]

MANIFEST = manifest("gguf", quants=("Q4_K_M",), base="model-F16.gguf", files=(
    ArtifactFile("model-Q4_K_M.gguf", "b" * 64, 524288, quant="Q4_K_M", tensor_types={"Q4_K": 7, "F32": 5},
                 modelfile="model-Q4_K_M.Modelfile"),), verification=(Check("Q4_K_M.sha256", True, "ok"),))
EVALUATION = evaluation([model("student", {"token_f1": 0.5}, size_bytes=1000, params=10)],
                        {"gguf:Q4_K_M": {"token_f1": 0.9}}, notes=["a note"],
                        samples=[Sample("q1", "Why?", "Because.", {"student": "So."})])
EXAMPLES: list[Record] = [
    lock(sources=(FileDigest("docs/a.md", "a" * 64, 3),), settings={"micro_batch": 4, "phases": ["a", "b"]},
         models={"student": LockedModel("hub", "org/m", "abc", "tokenizer.json:" + "f" * 64, ())}),
    MANIFEST,
    StageMeta(stage="train", stage_version=3, key="k" * 64, upstream={"extract": "/x"}, seconds=1.5,
              summary={"steps": 4}, files={"model/model.safetensors": FileRecord("c" * 64, 10, 123)},
              device_peak={"allocated": 1, "reserved": 2}),
    BuildRecord(lock_sha256="d" * 64, stages={"train": "k" * 64}, data_sha256={"train": "e" * 64}, outputs={}),
    WorkerError("the teacher is missing", None, 2),
    EVALUATION,
    Measurement({"token_f1": 0.5}, (Answer("q1", "So.", "Because."),)),
    data_card({"train": 4, "val": 1, "test": 1}, Rejected(1, {"ground": 1}, (ReasonCount("ground", "support N", 1),)),
              generation=Generation("constrained", requests=3, teacher_yield=TeacherYield(6, 5, 0.8333, 3, {"2": 2},
                                                                                          {"ground": 1}))),
    report(evaluation=EVALUATION, gates=(GateResult("min_f1", "student", None, 0.5, False, "not measured"),),
           artifacts=(ReportArtifact("gguf", "gguf-Q4_K_M", MANIFEST),),
           stages=(StageRow("train", "k" * 64, PlannedPeak("train: backward", 8)),),
           device_peaks={"train": HeldPeak(6, 9, 8, 1.125)}, timings={"train": 1.5}),
]


def test_every_record_kind_has_an_example() -> None:
    assert {type(r) for r in EXAMPLES} == set(RECORDS)


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: r.KIND)
def test_a_record_reads_back_equal_and_fits_its_shipped_schema(record: Record, tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    record.write(path)
    assert type(record).read(path) == record
    schema = json.loads((REPO / "docs" / "records" / f"{record.KIND}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(path.read_text()), schema, cls=jsonschema.Draft202012Validator)


def test_the_shipped_schemas_are_what_the_records_say_now() -> None:
    shipped = {p.name: p.read_text() for p in (REPO / "docs" / "records").glob("*.schema.json")}
    assert shipped == schema_files(), f"regenerate them: {REGENERATE}"


def test_another_version_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    data = EXAMPLES[2].to_data()
    path.write_text(json.dumps({**data, "version": data["version"] + 1}))
    with pytest.raises(RecordError, match=r"meta.json: a 'stage' record of version 2; this distill reads 'stage' "
                                          r"records of version 1"):
        StageMeta.read(path)
    path.write_text(json.dumps({**data, "record": "manifest"}))
    with pytest.raises(RecordError, match="a 'manifest' record of version 1"):
        StageMeta.read(path)
    path.write_text("[1, 2]")
    with pytest.raises(RecordError, match="a JSON list, not a record"):
        StageMeta.read(path)


def test_a_bad_field_is_named_by_its_place(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    data = MANIFEST.to_data()
    data["files"][0]["size"] = "large"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"manifest record, files\.0\.size: Input should be a valid integer"):
        type(MANIFEST).read(path)
    del data["files"]
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="manifest record, files: Field required"):
        type(MANIFEST).read(path)


def test_a_file_that_is_not_json_is_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.json"
    path.write_text('{\n  "record": "evaluation",\n  oops\n}')
    with pytest.raises(RecordError, match=r"evaluation.json:3:3: cannot be read as JSON: Expecting property name"):
        type(EVALUATION).read(path)
    with pytest.raises(RecordError, match="cannot be read"):
        type(EVALUATION).read(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="evaluation.json:3:3: cannot be read as JSON"):
        read_json(path, UsageError)  # another tool's file, and the error its reader raises


def test_records_are_frozen_values() -> None:
    changed = replace(EVALUATION, notes=("another",))
    assert changed != EVALUATION and EVALUATION.notes == ("a note",)
    assert EVALUATION.model("student") is EVALUATION.models[0] and EVALUATION.model("teacher") is None
