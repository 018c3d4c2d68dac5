"""Focus sentences: the prose sentences of a chunk worth a question, and picks spread over those
not asked about yet."""

from __future__ import annotations

from distill.runtime.synthesis.focus import pick, sentences
from distill.runtime.synthesis.prompts import default_prompt, focus_lines, task_messages

MANUAL = """2.3 Attributes

IDL stands for Interface Description Language. This is a generic term for a family of small
languages that have been developed to provide type specifications for libraries written in C.
int f([in,string] char * msg);
| in | out | ref | unique | ptr | string | size_is | length_is | switch_is |
The initial motivation for those IDLs was to automate the generation of stub code for remote
procedure calls. Short line here. (See section 3.2 for the full list of attributes and their meaning.)"""


def test_sentences_are_the_prose_worth_a_question() -> None:
    assert sentences(MANUAL) == [
        "This is a generic term for a family of small languages that have been developed to provide type "
        "specifications for libraries written in C.",
        "The initial motivation for those IDLs was to automate the generation of stub code for remote procedure calls.",
        "(See section 3.2 for the full list of attributes and their meaning.)",
    ]  # the heading and "IDL stands for ..." are too short; code and table rows are no sentences and end those before


def test_a_sentence_longer_than_a_prompt_should_quote_is_left_out() -> None:
    assert sentences("The pump " + "really " * 60 + "runs for twenty minutes.") == []


def test_picks_spread_over_the_sentences_not_used_yet() -> None:
    ten = [f"s{i}" for i in range(10)]
    assert pick(ten, (), 2) == ["s2", "s7"]
    assert pick(ten, (), 3) == ["s1", "s5", "s8"]
    assert pick(ten, ["s2", "s7"], 2) == ["s3", "s8"]  # the middles of s0 s1 s3 s4 | s5 s6 s8 s9
    assert pick(ten[:3], ["s0", "s1"], 2) == ["s2"]  # fewer left than asked
    assert pick(ten[:2], ten[:2], 1) == []


def test_the_default_qa_prompt_names_its_focus_and_drops_the_line_without_one() -> None:
    template = default_prompt("qa", extractive=False)
    focused = task_messages(template, "The text.", 2, ["The pump runs.", 'It says "stop".'])[0]["content"]
    assert ('Ask one question about each of these sentences of the text:\n1. "The pump runs."\n'
            '2. "It says \\"stop\\"."\nEach question') in focused
    plain = task_messages(template, "The text.", 2)[0]["content"]
    assert "write 2 question-answer pairs about it.\nEach question" in plain
    assert focus_lines([]) == ""
