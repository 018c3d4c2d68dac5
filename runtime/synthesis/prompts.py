"""What the teacher is asked: the synthesis prompt per chunk, the repair prompt after an unusable
reply, and the paraphrase prompt. Messages are chat turns; the teacher's chat template renders them.

A Distillfile's ``data.synthesis.prompt`` replaces the default task prompt; its placeholders are
``{chunk}`` (the chunk's text), ``{n}`` (pairs asked for qa, exchanges for a conversation) and
``{focus}`` (qa: the line naming the sentences to ask about, ``focus.py``; empty when there are
none), checked by the compiler.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from distill.compiler.records.examples import Message
from distill.runtime.synthesis.parse import Kind

_QA = """Read the text below and write {n} question-answer pairs about it.
{focus}Each question must be answerable from the text alone; each answer must be correct according to the text.
{answer_rule}
Reply with JSON only: a list of objects with the keys "question", "answer" and "evidence" (a short \
quote copied from the text that supports the answer), like
[{{"question": "...", "answer": "...", "evidence": "..."}}]

Text:
\"\"\"
{chunk}
\"\"\""""

_GENERATIVE_ANSWER = "Answer in one or two complete sentences that reuse the text's own words."
# An extractive-QA student predicts a span of the context: an answer that is not a verbatim span
# cannot be learned (and is rejected by grounding), so the teacher is told so.
_EXTRACTIVE_ANSWER = "Each answer must be a short span copied exactly, word for word, from the text."

_CONVERSATION = """Read the text below and write one conversation between a user and an assistant about it, \
with {n} exchanges: the user asks about the text, the assistant answers correctly from the text alone.
Reply with JSON only, like
{{"messages": [{{"role": "user", "content": "..."}}, {{"role": "assistant", "content": "..."}}]}}

Text:
\"\"\"
{chunk}
\"\"\""""

_REPAIR = """Your reply could not be used:
{problems}
Reply again with JSON only, in exactly the format asked for, and nothing else."""

_PARAPHRASE = """Rewrite the question below in {n} different ways that keep its exact meaning, so that \
the same answer stays correct. Reply with JSON only: a list of {n} strings.

Question: {question}"""

# A reply shown back in a repair prompt is cut: the problems list says what is wrong, and a
# runaway garbage reply (max_new_tokens of it) would only crowd the teacher's context.
_REPLY_SHOWN_CHARS = 4000
_PROBLEMS_SHOWN = 10


def default_prompt(kind: Kind, extractive: bool) -> str:
    """The built-in task prompt, as a template with ``{chunk}`` and ``{n}``."""
    if kind == "conversation":
        return _CONVERSATION
    rule = _EXTRACTIVE_ANSWER if extractive else _GENERATIVE_ANSWER
    return _QA.replace("{answer_rule}", rule)


def task_messages(template: str, chunk: str, n: int, focus: Sequence[str] = ()) -> list[Message]:
    """A task request for a chunk: ``n`` items, one question about each ``focus`` sentence.
    ``str.format`` is safe here: the compiler allowed only the ``{chunk}``, ``{n}`` and
    ``{focus}`` fields, and the chunk's own braces are data, not template."""
    return [{"role": "user", "content": template.format(chunk=chunk, n=n, focus=focus_lines(focus))}]


def focus_lines(focus: Sequence[str]) -> str:
    """The prompt's ``{focus}``: the sentences, numbered and quoted, or nothing."""
    if not focus:
        return ""
    listed = "\n".join(f"{index}. {json.dumps(sentence, ensure_ascii=False)}"
                       for index, sentence in enumerate(focus, 1))
    return f"Ask one question about each of these sentences of the text:\n{listed}\n"


def repair_messages(task: Sequence[Message], reply: str, problems: Sequence[str]) -> list[Message]:
    """The task, the unusable reply and what was wrong with it, as one conversation."""
    shown = list(problems[:_PROBLEMS_SHOWN])
    if len(problems) > _PROBLEMS_SHOWN:
        shown.append(f"... and {len(problems) - _PROBLEMS_SHOWN} more problems")
    listing = "\n".join(f"- {problem}" for problem in shown)
    return [*task, {"role": "assistant", "content": reply[:_REPLY_SHOWN_CHARS]},
            {"role": "user", "content": _REPAIR.format(problems=listing)}]


def paraphrase_messages(question: str, n: int) -> list[Message]:
    # json.dumps quotes the question so that quotes inside it cannot end the prompt's field.
    return [{"role": "user", "content": _PARAPHRASE.format(n=n, question=json.dumps(question, ensure_ascii=False))}]
