"""The llama.cpp side of GGUF verification, run in a child process
(``python -m distill.backends.gguf_child MODEL REQUEST ANSWER``).

torch and llama.cpp in one process fight over OpenMP threads, and a malformed file that crashes
llama.cpp becomes a failed check instead of a dead test run. The child only measures; every
comparison with the Hugging Face model happens in the parent (``gguf.py``, ``gguf_tokens.py``).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from distill.backends.gguf_writer import THREADS
from distill.compiler.records.record import read_json

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage

# logit_bias added to one token so greedy decoding must pick it: logits of these models stay
# within +-30 (random tiny models +-1.5), so +100 puts the biased id first by a margin of >= 40.
FORCE_BIAS = 100.0
# Tokens generated after the forced one at most: a stop at EOS shows as 0 completion tokens and
# finish_reason "stop"; a token llama.cpp does not treat as end-of-generation runs to 4, "length".
FORCED_MAX_TOKENS = 4
STOP_PROMPT = "hello"


def run_llama_cpp(path: Path, ids: Any, tokenizer: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """Logits for each row of ``ids``, plus (when ``tokenizer`` is a request: texts, chat,
    stop_ids) llama.cpp's tokenizer facts, from a child process.

    Raises:
        RuntimeError: when the child fails (llama.cpp cannot load the file, crashes, ...).
    """
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        request, answer, facts = Path(folder) / "request.json", Path(folder) / "answer.npz", Path(folder) / "facts.json"
        request.write_text(json.dumps({"ids": ids.tolist(), "tokenizer": tokenizer}))
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(THREADS)}
        done = subprocess.run([sys.executable, "-m", "distill.backends.gguf_child", str(path),
                               str(request), str(answer), str(facts)],
                              capture_output=True, text=True, env=env, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"llama.cpp child exited {done.returncode}: "
                               f"{done.stderr.strip()[-400:]}")
        with np.load(answer) as data:
            return data["logits"], read_json(facts)


def _child(path: str, request: str, answer: str, facts_file: str) -> None:
    import numpy as np

    from distill.backends.llama_cpp import open_llama

    job = read_json(Path(request))
    # 64 tokens of context: the probe rows are 16 long and the forced generations a few tokens.
    llm = open_llama(path, 64, THREADS, logits_all=True)
    logits = []
    for row in job["ids"]:
        llm.reset()
        llm.eval(row)
        logits.append(np.array(llm.scores[: len(row)], dtype=np.float32))
    facts = _tokenizer_facts(llm, job["tokenizer"]) if job["tokenizer"] else {}
    np.savez(answer, logits=np.stack(logits))
    Path(facts_file).write_text(json.dumps(facts))


def _tokenizer_facts(llm: Any, job: dict[str, Any]) -> dict[str, Any]:
    tokens = [llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
              for text in job["texts"]]
    return {"tokens": tokens, "chat": _chat(llm, job["chat"]),
            "stops": _stops(llm, job["stop_ids"])}


def _chat(llm: Any, messages: list[dict[str, str]]) -> dict[str, Any] | None:
    """The conversation rendered with the GGUF's own chat template, and its token ids.

    The template is read back by llama.cpp (``llama_model_chat_template``, the call llama-server
    makes) and rendered by Jinja: llama-server renders it with Jinja by default (since late
    2025), and llama-cpp-python's server with this same ``Jinja2ChatFormatter``, given the BOS
    and EOS texts from the GGUF vocabulary, for any template it does not know by name. The
    prompt is tokenized as llama-cpp-python's chat handler does (special tokens parsed; BOS
    only when the template did not add its own, which Jinja2ChatFormatter says it always does).
    llama.cpp's built-in C++ renderer (``llama_chat_apply_template``: llama-cli and
    ``llama-server --no-jinja``) is reported too; it knows a fixed list of formats only.
    """
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama_cpp.llama_model_chat_template(llm._model.model, None)
    if template is None:
        return None
    formatter = Jinja2ChatFormatter(template=template.decode("utf-8"),
                                    eos_token=_token_text(llm, llm.token_eos()),
                                    bos_token=_token_text(llm, llm.token_bos()))
    # Plain role/content string pairs, one of the message shapes the formatter takes.
    result = formatter(messages=cast("list[ChatCompletionRequestMessage]", messages))
    ids = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                       special=True)
    return {"rendered": result.prompt, "ids": ids, "builtin": _builtin(template, messages)}


def _token_text(llm: Any, token: int) -> str:
    return llm._model.token_get_text(token) if token != -1 else ""


def _builtin(template: bytes, messages: list[dict[str, str]]) -> str | None:
    """llama.cpp's built-in rendering, or None when it does not recognize the template."""
    import llama_cpp

    chat = (llama_cpp.llama_chat_message * len(messages))(*[
        llama_cpp.llama_chat_message(role=m["role"].encode(), content=m["content"].encode())
        for m in messages])
    size = 1 << 16  # 64 KiB: far more than a short conversation renders to
    buffer = ctypes.create_string_buffer(size)
    written = llama_cpp.llama_chat_apply_template(template, chat, len(messages), True, buffer, size)
    return buffer.raw[:written].decode("utf-8") if 0 <= written <= size else None


def _stops(llm: Any, stop_ids: list[int]) -> dict[str, Any]:
    """For each id: greedy generation forced (by logit bias) to emit it first; how it ended.

    Goes through ``create_completion``, llama-cpp-python's serving path, which ends a generation
    when ``llama_vocab_is_eog`` says so: an EOS id the GGUF got wrong keeps generating.
    """
    import llama_cpp

    ended = {}
    for token in stop_ids:
        llm.reset()
        out = llm.create_completion(STOP_PROMPT, max_tokens=FORCED_MAX_TOKENS, temperature=0.0,
                                    logit_bias={token: FORCE_BIAS})
        ended[str(token)] = [out["choices"][0]["finish_reason"], out["usage"]["completion_tokens"]]
    vocab = llm._model.vocab
    end_of_generation = [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    return {"eos": llm.token_eos(), "ended": ended, "eog": end_of_generation}


if __name__ == "__main__":
    _child(*sys.argv[1:5])
