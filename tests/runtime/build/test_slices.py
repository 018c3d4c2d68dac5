"""A stage reads only what its cache key hashes: its view of the build withholds everything else,
and reading a withheld field fails naming the stage and the field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from distill.compiler.codec import canonical_json
from distill.compiler.pipeline import plan_file
from distill.runtime.build.graph import stage_key
from distill.runtime.build.slices import SLICES, OutsideSlice, key_inputs, view
from distill.runtime.build.stages import build_stages
from tests.runtime.train.project import write_project


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory):
    return plan_file(write_project(tmp_path_factory.mktemp("slices")), offline=True)


def test_a_field_outside_the_slice_cannot_be_read(planned) -> None:
    train = view(planned, "train")
    assert train.compiled.spec.loss == planned.compiled.spec.loss  # in the slice: as it is
    assert train.plan == planned.plan  # training hashes the whole plan
    with pytest.raises(OutsideSlice, match=r"the train stage reads spec\.eval, which its cache key does not hash"):
        _ = train.compiled.spec.eval.metrics
    with pytest.raises(OutsideSlice, match=r"reads spec\.sources"):
        list(train.compiled.spec.sources)
    with pytest.raises(OutsideSlice, match="the source files"):
        _ = train.volume.files


def test_a_section_field_in_the_slice_is_readable_and_its_siblings_are_not(planned) -> None:
    extract = view(planned, "extract").compiled.spec
    assert extract.data.chunk_tokens == planned.compiled.spec.data.chunk_tokens
    with pytest.raises(OutsideSlice, match=r"the extract stage reads spec\.data\.synthesis"):
        _ = extract.data.synthesis.pairs_per_chunk
    evaluate = view(planned, "evaluate").plan
    assert evaluate.device == planned.plan.device
    with pytest.raises(OutsideSlice, match=r"reads plan\.micro_batch"):
        _ = evaluate.micro_batch + 1


def test_a_withheld_value_stored_then_hashed_names_the_field(planned) -> None:
    """The quickstart's evaluate stage once kept a withheld plan field in a record and hashed it:
    the canonical JSON a key is made of refuses it by name, not with json's TypeError."""
    quant = view(planned, "extract").plan.student_quant
    with pytest.raises(OutsideSlice, match=r"the extract stage reads plan\.student_quant"):
        canonical_json(["evaluation key", {"quant": quant}])


def test_a_model_outside_the_slice_cannot_be_loaded(planned) -> None:
    models = view(planned, "extract").models
    assert "student" in models and models["student"] is planned.models["student"]
    assert "teacher" in planned.models  # the project has one
    for load in (lambda: models["teacher"], lambda: models.get("teacher"), lambda: dict(models.items())):
        with pytest.raises(OutsideSlice, match="the extract stage loads the teacher model"):
            load()
    assert models.get("nobody") is None and len(models) == len(planned.models)


def test_the_key_changes_with_the_slice_and_only_with_it(planned) -> None:
    spec = planned.compiled.spec
    other_eval = replace(planned, compiled=replace(planned.compiled, spec=replace(
        spec, eval=replace(spec.eval, max_new_tokens=spec.eval.max_new_tokens + 1))))
    assert key_inputs(other_eval, "train") == key_inputs(planned, "train")
    assert key_inputs(other_eval, "evaluate") != key_inputs(planned, "evaluate")
    other_synthesis = replace(planned, compiled=replace(planned.compiled, spec=replace(spec, seed=spec.seed + 1)))
    assert key_inputs(other_synthesis, "extract") == key_inputs(planned, "extract")
    assert key_inputs(other_synthesis, "train") != key_inputs(planned, "train")


def test_every_stage_with_a_slice_is_keyed_by_it(planned) -> None:
    stages = {stage.name: stage for stage in build_stages(planned, None, offline=True)}
    for name in SLICES:
        assert stages[name].inputs() == key_inputs(planned, name)
    keys: dict[str, str] = {}
    for stage in stages.values():
        keys[stage.name] = stage_key(stage, keys)
    assert len(set(keys.values())) == len(keys)


def test_the_slice_declares_only_fields_that_exist(planned) -> None:
    for name, cut in SLICES.items():
        for path in cut.spec:
            record = planned.compiled.spec
            for part in path.split("."):
                assert hasattr(record, part), f"{name}: spec has no {path}"
                record = getattr(record, part)
        assert cut.plan == ("*",) or all(hasattr(planned.plan, field) for field in cut.plan), name
