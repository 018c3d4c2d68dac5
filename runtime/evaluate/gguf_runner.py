"""The llama.cpp side of GGUF evaluation, a child process speaking JSON lines
(``python -m distill.runtime.evaluate.gguf_runner MODEL THREADS N_CTX``).

Requests on stdin, one answer line each on stdout: ``{"op": "ping"}``; ``{"op": "nll", "ids",
"labels"}`` -> ``{"nll", "count"}``; ``{"op": "generate", "prompt", "max_new_tokens", "stop"}`` ->
``{"ids", "seconds"}``. A failed request answers ``{"error"}``. Token ids in, token ids out: the
parent tokenizes with the HF tokenizer, so llama.cpp's own tokenizer is never involved.

The protocol owns the real stdout; file descriptor 1 is pointed at stderr before llama.cpp loads,
so nothing the C library prints can corrupt an answer line.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from distill.backends.llama_cpp import open_llama
from distill.runtime.evaluate.metrics import nll_from_logits
from distill.runtime.evaluate.runners import greedy


def _load(path: str, threads: int, n_ctx: int) -> Any:
    # logits_all: perplexity needs the logits of every position of a row, not just the last.
    return open_llama(path, n_ctx, threads, logits_all=True)


def _nll(llm: Any, ids: list[int], labels: list[int]) -> dict[str, Any]:
    llm.reset()
    llm.eval(ids)
    total, count = nll_from_logits(llm.scores[: len(ids)], ids, labels)
    return {"nll": total, "count": count}


def _generate(llm: Any, prompt: list[int], max_new_tokens: int, stop: list[int]) -> dict[str, Any]:
    """The parent's own greedy loop (``runners.greedy``) over llama.cpp's KV cache."""

    def forward(ids: list[int], cache: Any, total: int) -> tuple[Any, Any]:
        if cache is None:
            llm.reset()  # a new prompt: drop the previous request's cache
        llm.eval(ids)
        return llm.scores[llm.n_tokens - 1], True

    ids, seconds = greedy(forward, prompt, max_new_tokens, stop)
    return {"ids": ids, "seconds": seconds}


def _answer(llm: Any, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "ping":
        return {"ok": True}
    if op == "nll":
        return _nll(llm, request["ids"], request["labels"])
    if op == "generate":
        return _generate(llm, request["prompt"], request["max_new_tokens"], request["stop"])
    return {"error": f"unknown op {op!r}"}


def serve(path: str, threads: int, n_ctx: int, requests: TextIO, answers: TextIO) -> None:
    """Answer each request line until stdin closes."""
    try:
        llm = _load(path, threads, n_ctx)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which raises
        answers.write(json.dumps({"error": f"llama.cpp cannot load {path}: {type(error).__name__}: {error}"}) + "\n")
        answers.flush()
        return
    for line in requests:
        if not line.strip():
            continue
        try:
            answer = _answer(llm, json.loads(line))
        except Exception as error:  # noqa: BLE001 - one bad request is an error answer
            answer = {"error": f"{type(error).__name__}: {error}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main(argv: list[str]) -> None:
    path, threads, n_ctx = argv[0], int(argv[1]), int(argv[2])
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # C-level prints go to stderr from here on
    sys.stdout = sys.stderr
    serve(path, threads, n_ctx, sys.stdin, answers)


if __name__ == "__main__":
    main(sys.argv[1:])
