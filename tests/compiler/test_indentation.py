"""Misindented Distillfiles: the error names the misaligned line, where it should go, and why YAML
failed there, instead of ruamel's parser state ("expected <block end>, but found ...")."""

from __future__ import annotations

import pytest

from distill.compiler.document import parse_document
from distill.compiler.errors import Diagnostic, SpecError
from distill.compiler.schema import check_shape

HEAD = "version: 1\nname: case\nsources:\n  - text: docs/*.md\nstudent:\n  model: org/student\n"


def _syntax_error(body: str) -> Diagnostic:
    with pytest.raises(SpecError) as raised:
        parse_document(HEAD + body, "Distillfile")
    [diagnostic] = raised.value.diagnostics
    return diagnostic


def _at(diagnostic: Diagnostic) -> tuple[int, int]:
    return diagnostic.location.line, diagnostic.location.column


def test_over_indented_key_is_named_with_the_key_to_align_with() -> None:
    found = _syntax_error("train:\n  epochs: 3\n    learning_rate: 2.0e-4\n")
    assert _at(found) == (9, 5)
    assert found.message == (
        "YAML indentation: line 9 is indented more than `epochs:` on line 8 (column 3), which "
        "already has a value; YAML reads it as a nested mapping where none can start")
    assert found.hint == "align `learning_rate:` with `epochs:` (line 8, column 3)"


@pytest.mark.parametrize("value", ["3", "3   # a comment", "'3'", "{a: 1}"])
def test_over_indent_after_any_kind_of_value(value: str) -> None:
    found = _syntax_error(f"train:\n  epochs: {value}\n    learning_rate: 2.0e-4\n")
    assert _at(found) == (9, 5) and found.hint == "align `learning_rate:` with `epochs:` (line 8, column 3)"


def test_under_indented_key_is_the_line_dedented_not_the_one_after_it() -> None:
    # ruamel fails at line 10 (`max_seq_len` read as more of line 9's value); line 9 is the cause.
    found = _syntax_error("train:\n  epochs: 3\nlearning_rate: 2.0e-4\n  max_seq_len: 512\n")
    assert _at(found) == (9, 1)
    assert found.message == (
        "YAML indentation: line 9 is indented less than the keys around it (`epochs:` on line 8 "
        "and `max_seq_len:` on line 10 are at column 3), which ends their section")
    assert found.hint == "indent `learning_rate:` to column 3, like `epochs:`"


def test_key_dedented_between_two_levels_offers_both() -> None:
    found = _syntax_error("train:\n  epochs: 3\n learning_rate: 2.0e-4\n")
    assert _at(found) == (9, 2)
    assert found.message == (
        "YAML indentation: line 9 is indented to column 2, which matches no key above it "
        "(`epochs:` on line 8 is at column 3, `train:` on line 7 is at column 1)")
    assert found.hint == "align `learning_rate:` with `epochs:` (line 8, column 3) or with `train:` (line 7, column 1)"


def test_tab_indentation() -> None:
    found = _syntax_error("train:\n\tepochs: 3\n")
    assert _at(found) == (8, 1)
    assert found.message == "YAML indentation: line 8 is indented with a tab"
    assert found.hint == "indent with spaces; YAML does not allow tabs"


def test_tab_after_a_key_is_not_called_indentation() -> None:
    found = _syntax_error("train:\n  epochs:\t3\n")
    assert found.message.startswith("YAML syntax: found character '\\t'")
    assert found.hint == "replace the tab with spaces; YAML does not allow tabs there"


def test_over_indented_list_item() -> None:
    found = _syntax_error("deploy:\n  - gguf: {quant: [Q4_K_M]}\n    - onnx: {quant: int8}\n")
    assert _at(found) == (9, 5)
    assert found.message == (
        "YAML indentation: line 9 is indented more than `- gguf:` on line 8 (column 3), which "
        "already has a value; YAML reads it as a nested list where none can start")
    assert found.hint == "align `- onnx:` with `- gguf:` (line 8, column 3)"


def test_list_item_under_a_key_aligns_with_the_list() -> None:
    found = _syntax_error("deploy:\n  - gguf: {}\n    extra: 1\n      - onnx: {}\n")
    assert _at(found) == (10, 7) and found.hint == "align `- onnx:` with `- gguf:` (line 8, column 3)"


def test_key_dedented_out_of_a_list_item() -> None:
    found = _syntax_error("deploy:\n  - gguf: {}\nquant: [Q8_0]\n  - onnx: {}\n")
    assert _at(found) == (9, 1)
    assert "indented less than the list items around it" in found.message
    assert found.hint == "indent `quant:` to column 5, like `gguf:`"


def test_a_colon_in_a_value_still_asks_for_quotes() -> None:
    found = _syntax_error("data:\n  synthesis:\n    prompt: Answer: {chunk}\n")
    assert found.message == "YAML syntax: mapping values are not allowed here"
    assert found.hint == "a value containing ': ' must be quoted"


def test_block_scalar_text_is_not_read_as_keys() -> None:
    body = ("data:\n  synthesis:\n    prompt: |\n      Write: {n}\n        pairs: {chunk}\n"
            "    kind: qa\n      turns: 3\n")
    found = _syntax_error(body)
    assert _at(found) == (13, 7) and found.hint == "align `turns:` with `kind:` (line 12, column 5)"


def _shape_hints(body: str) -> list[tuple[int, int, str, str | None]]:
    found = check_shape(parse_document(HEAD + body, "Distillfile"))
    return [(d.location.line, d.location.column, d.message, d.hint) for d in found]


def test_key_dedented_to_the_top_level_points_into_the_section_above() -> None:
    assert _shape_hints("loss:\n  kl: {weight: 1.0}\nmask: all\n") == [
        (9, 1, "unknown key 'mask' at the top level",
         "did you mean loss.mask? indent it to column 3, like `kl:` above it")]


def test_dedented_key_beats_a_spelling_suggestion() -> None:
    # `revision` is close to the top-level `version`, but the teacher above takes it as it is.
    assert _shape_hints("teacher:\n  model: org/teacher\nrevision: 4567ef\n")[0][3] == \
        "did you mean teacher.revision? indent it to column 3, like `model:` above it"


def test_key_after_a_flow_mapping_or_an_empty_section() -> None:
    assert _shape_hints("hardware: {device: cpu}\nram: 4GiB\n")[0][3] == \
        "did you mean hardware.ram? move it into `hardware:` (line 7)"
    assert (8, 1, "unknown key 'epochs' at the top level",
            "did you mean train.epochs? indent it under `train:` (line 7)") in _shape_hints("train:\nepochs: 3\n")


def test_key_dedented_out_of_a_list_item_of_sources() -> None:
    text = HEAD.replace("text: docs/*.md", "dataset: qa.jsonl\nformat: squad")
    found = check_shape(parse_document(text, "Distillfile"))
    assert found[0].hint == "did you mean sources[0].format? indent it to column 5, like `dataset:` above it"


def test_a_key_the_section_above_does_not_take_keeps_the_known_keys_hint() -> None:
    assert _shape_hints("ocr: auto\n")[0][3] == "known keys: " + ", ".join(sorted(
        ["version", "name", "seed", "sources", "teacher", "student", "data", "loss", "train",
         "hardware", "deploy", "eval"]))
