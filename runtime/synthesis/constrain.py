"""Constrained decoding: the JSON Schema of a whole teacher reply, and the logits processor that
lets the teacher write nothing else.

Why: a small instruct teacher asked for JSON writes prose ("Question: ... Answer: ...") most of
the time: SmolLM2-135M-Instruct's first replies on 5 chunks of a real manual were 0 of 5
schema-valid free (13 requests with repairs), 5 of 5 constrained (5 requests;
``benchmarks/synthesis.py``). Under a grammar every token it picks keeps the reply a prefix of
a schema-valid document, so parsing cannot fail, repairs become the exception, and the teacher's
tokens go to content.

Why xgrammar (0.2.9, issue 19's comparison on transformers 4.57 and this CPU, with the stage's own
prompts and batches): its processor costs no measurable time per decode step (258 vs 253 ms a
step free), compiles a reply schema in ~12 ms after a ~230 ms tokenizer table, keeps one matcher
per batch row (left padding and the seeded Gumbel sampler work beside it), and masks with a CPU
kernel here and a Triton kernel on CUDA. lm-format-enforcer worked too, at 310 ms a step (pure
Python per row and step) and 3.7 s of tokenizer setup; outlines-core needed ~28 s and ~1 GB to
build the regex index of a schema with length bounds; transformers-cfg has no JSON Schema input
and refuses the generic ``PreTrainedTokenizerFast`` a GGUF teacher gets.

Length bounds. A schema-valid reply must also end within ``max_new_tokens``. The strings'
maxLength are sized so the longest valid reply takes about ``max_new_tokens`` tokens at
``CHARS_PER_TOKEN`` characters a token, what a teacher writing prose spends; a teacher that loops
on shorter tokens is made to close its reply in time by ``closing.BudgetCloser``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from distill.runtime.synthesis.closing import INDENT, SHAPE_KEY, BudgetCloser, Piece, layout_chars, pieces
from distill.runtime.synthesis.parse import MAX_QUESTION_CHARS, MAX_TEXT_CHARS, Kind

# Characters a teacher's token covers in English text, with headroom. Measured with SmolLM2's
# 49k-token tokenizer: 3.95 on the quickstart guide, 3.74 on the CamlIDL manual's first 8 pages
# (grammar rules and identifiers); larger vocabularies (Llama 3's 128k, Qwen2.5's 152k) pack more
# into a token. 3 leaves ~20% for answers denser in numbers and code than their documents.
CHARS_PER_TOKEN = 3

# How a qa item's characters are shared: a question is short, an answer one or two sentences, the
# evidence a short quote.
_QA_SHARES = {"question": 0.25, "answer": 0.45, "evidence": 0.30}
_MIN_QUESTION_CHARS = 8  # "What is X?" is 10; shorter is not a question


def _string(least: int, most: int) -> dict[str, Any]:
    return {"type": "string", "minLength": least, "maxLength": max(least, most)}


def _question(most: int) -> dict[str, Any]:
    """A question: one line ending in its only "?", no quote or backslash inside. Why: under a
    plain string a small teacher closes the question at the first quote it means as a quotation
    mark ('What is the purpose of the "f" keyword' became 'What is the purpose of the '), and runs
    past the "?" into its answer; measured on 10 CamlIDL chunks (SmolLM2, greedy, 2 pairs each,
    no repairs): 2 grounded pairs of 20 without it, 6 with it and the indented layout."""
    most = max(_MIN_QUESTION_CHARS, most)
    return {"type": "string", "pattern": f'^[^"\\\\\\x00-\\x1f?]{{{_MIN_QUESTION_CHARS - 1},{most - 1}}}\\?$',
            SHAPE_KEY: {"minLength": _MIN_QUESTION_CHARS, "maxLength": most, "endsWith": "?"}}


def reply_schema(kind: Kind, n: int, turns: int, max_new_tokens: int) -> dict[str, Any]:
    """The schema of one whole task reply, as ``prompts.default_prompt`` asks for it.

    Args:
        kind: "qa" (a list of ``n`` question/answer/evidence objects) or "conversation" (one
            object with ``turns`` user/assistant exchanges).
        n: pairs per chunk (qa).
        turns: exchanges per conversation.
        max_new_tokens: the reply's token budget, which sizes the strings.

    Returns:
        A JSON Schema that ``parse.parse_items`` accepts every instance of: exactly ``n`` items
        (the prompt asks for ``n``; a grammar that allowed fewer would let the teacher stop
        early), strings within parse's own limits, their sum within the budget once the layout's
        own characters (indentation, keys, quotes) are counted.
    """
    chars = CHARS_PER_TOKEN * max_new_tokens
    if kind == "qa":
        per_item = max(0, (chars - layout_chars(pieces(_qa_reply(n, {})))) // n)
        return _qa_reply(n, {key: int(per_item * share) for key, share in _QA_SHARES.items()})
    content = max(1, (chars - layout_chars(pieces(_conversation_reply(turns, 1)))) // (2 * turns))
    return _conversation_reply(turns, min(MAX_TEXT_CHARS, content))


def _qa_reply(n: int, bounds: dict[str, int]) -> dict[str, Any]:
    item = {"type": "object", "additionalProperties": False, "required": list(_QA_SHARES), "properties": {
        "question": _question(min(bounds.get("question", 0), MAX_QUESTION_CHARS)),
        "answer": _string(1, min(bounds.get("answer", 0), MAX_TEXT_CHARS)),
        "evidence": _string(1, min(bounds.get("evidence", 0), MAX_TEXT_CHARS))}}
    return {"type": "array", "minItems": n, "maxItems": n, "items": item}


def _conversation_reply(turns: int, content: int) -> dict[str, Any]:
    messages = [{"type": "object", "additionalProperties": False, "required": ["role", "content"], "properties": {
        "role": {"const": role}, "content": _string(1, content)}} for role in ("user", "assistant") * turns]
    return {"type": "object", "additionalProperties": False, "required": ["messages"], "properties": {
        "messages": {"type": "array", "minItems": 2 * turns, "maxItems": 2 * turns, "prefixItems": messages,
                     "items": False}}}


def strings_schema(n: int, max_new_tokens: int) -> dict[str, Any]:
    """The schema of a paraphrase reply: exactly ``n`` strings (``parse.parse_strings``)."""
    layout = layout_chars(pieces(_strings_reply(n, 1)))
    return _strings_reply(n, min(MAX_TEXT_CHARS, (CHARS_PER_TOKEN * max_new_tokens - layout) // n))


def _strings_reply(n: int, most: int) -> dict[str, Any]:
    return {"type": "array", "minItems": n, "maxItems": n, "items": _string(1, most)}


def schema_text(schema: dict[str, Any]) -> str:
    """The text a ``Request`` carries. Keys keep their order: the grammar writes properties in
    the schema's order (question before answer), so sorting them would reorder the reply."""
    return json.dumps(schema, separators=(",", ":"))


class JsonConstraint:
    """The processors that keep a batch's replies to their schemas: xgrammar's mask (one grammar
    per row), then ``closing.BudgetCloser``, which ends each reply within max_new_tokens.

    The tokenizer table is built once per teacher, each distinct schema compiled once; fresh
    processors are made per ``generate`` call, since xgrammar's keeps each row's matcher state.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> None:
        import xgrammar

        # vocab_size from the model: the logits' width, which may exceed len(tokenizer) (padded
        # embeddings); the extra ids are masked. stop_ids: the tokens generate stops at, so a
        # finished reply ends there (xgrammar's own guess is the tokenizer's EOS alone, and a chat
        # model's end-of-turn token would then be masked out).
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
        self._tokenizer = tokenizer
        self._compiler = xgrammar.GrammarCompiler(info)
        self._compiled: dict[str, tuple[Any, list[Piece]]] = {}

    def processors(self, schemas: Sequence[str], prompt_tokens: int, max_new_tokens: int) -> list[Any]:
        """Processors for one batch: row i follows ``schemas[i]``; its prompt (left padded) is
        ``prompt_tokens`` long."""
        from xgrammar.contrib.hf import LogitsProcessor

        for text in schemas:
            if text not in self._compiled:
                # One layout, json.dumps(indent=2): with any whitespace allowed, a looping teacher
                # could spend its whole budget on newlines between tokens; compact JSON it writes
                # worse (3 grounded pairs of 20 against 6 indented, the measurement of _question).
                grammar = self._compiler.compile_json_schema(text, any_whitespace=False, indent=INDENT)
                self._compiled[text] = grammar, pieces(json.loads(text))
        grammars, shapes = zip(*(self._compiled[text] for text in schemas), strict=True)
        return [LogitsProcessor(list(grammars)),
                BudgetCloser(self._tokenizer, shapes, prompt_tokens, max_new_tokens)]
