"""One small Protocol over the three ways a candidate runs: torch (HF, as the plan places it), onnxruntime
(optimum ORT models) and llama.cpp (a child process, ``gguf_runner``). Every runner takes token
ids, never text, and decodes greedily (argmax, no sampling, no repetition penalty).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from distill.runtime.evaluate.metrics import nll_from_logits
from distill.runtime.placement import Placement


class Runner(Protocol):
    """What the evaluation asks of a candidate; ``close`` frees it (models are evaluated one at a
    time, so a 7B teacher and its student never sit in memory together)."""

    def nll(self, ids: Sequence[int], labels: Sequence[int]) -> tuple[float, int]:
        """Summed NLL (nats) over scored tokens, and their count (see ``nll_from_logits``)."""
        ...

    def generate(self, prompt: Sequence[int], max_new_tokens: int, stop: Sequence[int]) -> tuple[list[int], float]:
        """Greedy continuation of ``prompt`` (ending with a stop id when one is produced) and the
        wall seconds it took, measured inside the runner."""
        ...

    def qa_logits(self, ids: Sequence[int],
                  token_type_ids: Sequence[int] | None) -> tuple[list[float], list[float], float]:
        """Start and end logits of an extractive-QA model, and the seconds of the forward pass."""
        ...

    def close(self) -> None: ...


def greedy(forward: Callable[[list[int], Any, int], tuple[Any, Any]], prompt: Sequence[int], max_new_tokens: int,
           stop: Sequence[int]) -> tuple[list[int], float]:
    """The one greedy loop every runtime shares: argmax of the last position's logits (numpy takes
    the first of ties), fed back through the KV cache, until a stop id (kept) or ``max_new_tokens``.

    Args:
        forward: ``(new ids, cache or None, total length) -> (last logits, cache)``.
    """
    import numpy as np

    if max_new_tokens <= 0:
        return [], 0.0
    began = time.perf_counter()
    logits, cache = forward(list(prompt), None, len(prompt))
    out: list[int] = []
    while True:
        token = int(np.argmax(logits))
        out.append(token)
        if token in stop or len(out) >= max_new_tokens:
            return out, time.perf_counter() - began
        logits, cache = forward([token], cache, len(prompt) + len(out))


class ModelRunner:
    """An HF-style model object: a torch model (on the plan's device in its dtype, eager attention,
    threads pinned around each call) or an optimum ORT model (CPU, threads fixed in its session
    options). Both take the same ``input_ids`` / ``attention_mask`` / ``past_key_values`` calls
    on ``device``, so they share every method."""

    def __init__(self, model: Any, pinned: Callable[[], Any], device: str = "cpu") -> None:
        self.model, self._pinned, self.device = model, pinned, device

    def _row(self, ids: Sequence[int]) -> Any:
        import torch

        return torch.tensor([list(ids)], device=self.device)

    def _forward(self, ids: list[int], cache: Any, total: int) -> tuple[Any, Any]:
        import torch

        mask = torch.ones(1, total, dtype=torch.long, device=self.device)
        out = self.model(input_ids=self._row(ids), attention_mask=mask, past_key_values=cache, use_cache=True)
        return _numpy(out.logits[0, -1]), out.past_key_values

    def nll(self, ids: Sequence[int], labels: Sequence[int]) -> tuple[float, int]:
        import torch

        row = self._row(ids)
        with self._pinned():
            logits = self.model(input_ids=row, attention_mask=torch.ones_like(row)).logits
        return nll_from_logits(_numpy(logits[0]), ids, labels)

    def generate(self, prompt: Sequence[int], max_new_tokens: int, stop: Sequence[int]) -> tuple[list[int], float]:
        with self._pinned():
            return greedy(self._forward, prompt, max_new_tokens, stop)

    def qa_logits(self, ids: Sequence[int],
                  token_type_ids: Sequence[int] | None) -> tuple[list[float], list[float], float]:
        import torch

        row = self._row(ids)
        inputs = {"input_ids": row, "attention_mask": torch.ones_like(row)}
        names = getattr(self.model, "input_names", None)  # ORT: only the graph's inputs
        if token_type_ids is not None and (names is None or "token_type_ids" in names):
            inputs["token_type_ids"] = self._row(token_type_ids)
        with self._pinned():
            began = time.perf_counter()
            out = self.model(**inputs)
            start, end = _numpy(out.start_logits[0]), _numpy(out.end_logits[0])  # waits for a GPU's result
            seconds = time.perf_counter() - began
        return start.tolist(), end.tolist(), seconds

    def close(self) -> None:
        del self.model


def _numpy(tensor: Any) -> Any:
    """A row of logits as a float32 numpy array, from any device and dtype (numpy has no bf16)."""
    import numpy as np

    if hasattr(tensor, "detach"):
        tensor = tensor.detach().float().cpu()
    return np.asarray(tensor, dtype=np.float32)


def torch_runner(path: Path, task: str, threads: int, placement: Placement, role: str,
                 quant: str = "none") -> ModelRunner:
    """An HF model folder on the plan's device in its dtype and ``quant`` (bitsandbytes; ``place``
    checks and records it as ``role``), with eager attention (the plain-math attention every backend verifies against:
    ``load_reference``), ``threads`` torch threads during each call."""
    from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering

    from distill.runtime.models import bnb_config
    from distill.runtime.placement import place

    @contextmanager
    def pinned() -> Iterator[None]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(before)

    auto = AutoModelForQuestionAnswering if task == "extractive-qa" else AutoModelForCausalLM
    with pinned():
        quantization = bnb_config(quant, placement.torch_dtype) if quant != "none" else None
        model = auto.from_pretrained(path, dtype=placement.torch_dtype, attn_implementation="eager",
                                     device_map=placement.device_map(), use_safetensors=True,
                                     quantization_config=quantization, trust_remote_code=False)
        return ModelRunner(place(model, placement, role, quant).eval(), pinned, placement.torch_device.type)


def ort_runner(folder: Path, task: str, threads: int) -> ModelRunner:
    """An exported ONNX folder run as the backend verified it (``load_exported``: optimum's ORT
    classes, the first cache sized from the graph), ``threads`` intra-op threads."""
    from distill.backends.onnx import load_exported

    return ModelRunner(load_exported(folder, qa=task == "extractive-qa", threads=threads), _no_pinning)


@contextmanager
def _no_pinning() -> Iterator[None]:
    import torch

    with torch.inference_mode():
        yield


class LlamaCppRunner:
    """A GGUF file served by a long-lived child (``python -m distill.runtime.evaluate.gguf_runner``)
    speaking JSON lines: torch and llama.cpp in one process fight over OpenMP threads, and a file
    that crashes llama.cpp becomes an error here instead of a dead build."""

    def __init__(self, path: Path, threads: int, n_ctx: int) -> None:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads)}
        self._log = tempfile.TemporaryFile(mode="w+")  # stderr to a file: a full pipe would block the child
        self._child = subprocess.Popen(
            [sys.executable, "-m", "distill.runtime.evaluate.gguf_runner", str(path), str(threads), str(n_ctx)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        self._call({"op": "ping"})

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._child.stdin is not None and self._child.stdout is not None
        try:
            self._child.stdin.write(json.dumps(request) + "\n")
            self._child.stdin.flush()
            line = self._child.stdout.readline()
        except BrokenPipeError:
            line = ""
        answer = json.loads(line) if line else {"error": f"llama.cpp child exited {self._child.wait()}"}
        if "error" in answer:
            self._log.seek(0)
            raise RuntimeError(f"{answer['error']}: {self._log.read().strip()[-400:]}")
        return answer

    def nll(self, ids: Sequence[int], labels: Sequence[int]) -> tuple[float, int]:
        answer = self._call({"op": "nll", "ids": list(ids), "labels": list(labels)})
        return answer["nll"], answer["count"]

    def generate(self, prompt: Sequence[int], max_new_tokens: int, stop: Sequence[int]) -> tuple[list[int], float]:
        answer = self._call({"op": "generate", "prompt": list(prompt), "max_new_tokens": max_new_tokens,
                             "stop": list(stop)})
        return answer["ids"], answer["seconds"]

    def qa_logits(self, ids: Sequence[int],
                  token_type_ids: Sequence[int] | None) -> tuple[list[float], list[float], float]:
        raise NotImplementedError("llama.cpp runs causal LMs only; extractive QA is evaluated with HF or ONNX")

    def close(self) -> None:
        if self._child.poll() is None:
            assert self._child.stdin is not None
            self._child.stdin.close()
            try:
                self._child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
        self._log.close()


def open_runner(kind: str, path: Path, task: str, threads: int, n_ctx: int, placement: Placement | None,
                role: str, quant: str = "none") -> Runner:
    """The runner for a candidate kind ("hf": on its ``placement``, recorded as ``role``; "onnx"
    and "gguf": their CPU runtimes, as deployed)."""
    if kind == "hf":
        if placement is None:
            raise ValueError(f"{role}: an hf candidate needs its placement")
        return torch_runner(path, task, threads, placement, role, quant)
    if kind == "onnx":
        return ort_runner(path, task, threads)
    if kind == "gguf":
        if task == "extractive-qa":
            raise ValueError("a GGUF candidate cannot be evaluated on extractive-qa (llama.cpp runs causal LMs)")
        return LlamaCppRunner(path, threads, n_ctx)
    raise ValueError(f"unknown candidate kind {kind!r}; known: hf, gguf, onnx")
