"""ONNX backend: optimum exports a saved Hugging Face model folder, onnxruntime runs it.

Causal LMs export with past key values (``text-generation-with-past``), extractive QA models as
``question-answering``. Every export is verified against the torch fp32 model before it reaches
its destination. What the backend takes is declared in :mod:`distill.backends.onnx_support`; the
export refuses anything else with its reason, as ``distill plan`` does.

``quant: int8`` tries :data:`~distill.backends.onnx_support.INT8_RECIPES` in order and keeps the
first that passes verification, naming it in the manifest (``int8_recipe``) and in the report's
``int8_recipe`` check. onnxruntime's dynamic quantization comes first (3.9x smaller, int8
matmuls) and holds on the tiny test models, but not on SmolLM2-135M-Instruct (logits 0.74 of their
scale off, top-1 0.27): its down projections' inputs reach 3079 where 99.9% stay under 2.5, and
one per-tensor activation scale sized for that rounds the rest to zero. int8 weights in blocks of
32 computing in fp32 hold there (0.037, top-1 0.97, 2.3x smaller). When none holds, the error
says so and names fp32 ONNX and GGUF.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from distill.backends import onnx_int8
from distill.backends.base import (
    Artifact,
    Check,
    VerificationError,
    VerifyReport,
    export_atomically,
    export_source,
    load_reference,
    sha256_file,
)
from distill.backends.onnx_support import INT8_RECIPES, QA, Int8Recipe, refusal, task_of
from distill.compiler.records.manifest import MANIFEST, ArtifactFile, Manifest
from distill.compiler.records.record import read_json
from distill.compiler.spec import OnnxTarget

MODEL_FILE = "model.onnx"
# While int8 recipes are tried, the fp32 graph waits in this subfolder of the staged export, its
# external data (if any) under the name the graph refers to, and renamed so that optimum, which
# looks for *.onnx in subfolders too, finds one model.onnx to verify.
FP32_SOURCE = "fp32"
FP32_GRAPH = "model.onnx.fp32"
# Offered when no int8 recipe holds: the fp32 graph, or GGUF Q8_0 (8-bit weights in blocks of 32
# for llama.cpp, checked by the GGUF backend's own verification).
ALTERNATIVES = ("export fp32 instead (onnx quant none, `--to onnx:none`) or to GGUF "
                "(gguf quant Q8_0, `--to gguf:Q8_0`)")

# Bounds are per unit of logit scale, max(1, max|torch logit|), so they hold for trained models
# with logits in the tens as well as for random tiny ones with logits below 1.
# fp32 parity: onnxruntime and torch differ only in kernel summation order (measured max abs
# diff 2.1e-7 on a tiny llama, 1.5e-7 on a tiny BERT QA); 1e-3 is a >1000x margin.
FP32_RTOL = 1e-3
# int8 parity: dynamic quantization rounds each weight to max|W|/127 and each activation to
# range/255, ~0.4-0.8% error per matmul; ~7 matmuls per layer compound to a few percent of the
# logit scale (measured 0.015 for a 2-layer llama, 0.004 for a 2-layer BERT QA, both at scale 1).
# 0.10 leaves a >6x margin and still catches a broken graph (a wrong weight moves logits by
# O(scale): negating the largest weight matrix moved them by 0.36 (BERT) to 1.3 (llama)).
INT8_RTOL = 0.10
# Greedy top-1 must agree on at least this share of probe positions for int8 (fp32: all of them);
# measured 0.97 (llama, 64 positions) and 1.0 (BERT). Random tiny models have near-tied logits,
# so a few flips are expected there. A trained model's are near-tied too on random tokens:
# SmolLM2-135M's top-1 margins on the probe are 0.27 logits at the median (10% under 0.07), so
# this check asks more than the 3.6-logit diff bound: int8 weights in blocks of 32 with int8
# activations stay within the bound (0.088 of scale) but flip 16% of top-1; computing in fp32
# (0.037) they flip 3%.
INT8_MIN_TOP1 = 0.90
# Probe: a fixed, seeded batch; tokens from the vocabulary minus the first 4 ids (specials).
PROBE_SEED, PROBE_ROWS, PROBE_LEN, GENERATE_TOKENS = 0, 4, 16, 8
THREADS = int(os.environ.get("DISTILL_THREADS", "2"))


class OnnxBackend:
    """The ``onnx`` backend (see :class:`distill.backends.base.Backend`)."""

    def export(self, model_dir: Path, target: OnnxTarget, out_dir: Path) -> Artifact:
        """Export, quantize, verify in a temp folder beside ``out_dir``, then rename into place.
        int8 keeps the first of ``INT8_RECIPES`` that passes verification (``extra["int8_recipe"]``).

        Raises:
            NotImplementedError: with :func:`~distill.backends.onnx_support.refusal`'s reason, for
                a model or quant the backend does not take; nothing is written.
            VerificationError: when a check fails; ``out_dir`` is left untouched.
        """
        model_dir, out_dir = Path(model_dir), Path(out_dir)
        config = _config(model_dir)
        reason = refusal(config, target.quant)
        if reason is not None:
            raise NotImplementedError(reason)
        task = task_of(config)

        kept: dict[str, Any] = {}  # the staged artifact, and for int8 the report that kept its recipe

        def build(tmp: Path) -> Artifact:
            export_optimum(model_dir, tmp, task)
            if target.quant == "int8":
                kept["artifact"], kept["report"] = self._first_int8_that_holds(tmp, model_dir, task)
            else:
                kept["artifact"] = onnx_artifact(tmp / MODEL_FILE, target.quant, task)
            return kept["artifact"]

        export_atomically(out_dir, build, lambda staged: kept.get("report") or self.verify(staged, model_dir),
                          lambda tmp, staged, report: _write_manifest(tmp, staged, model_dir, report))
        return replace(kept["artifact"], path=out_dir / MODEL_FILE)

    def _first_int8_that_holds(self, folder: Path, model_dir: Path, task: str) -> tuple[Artifact, VerifyReport]:
        """Quantize ``folder``'s fp32 export with each of ``INT8_RECIPES`` in turn, verifying each;
        the first that passes stays as ``folder/model.onnx``, with its report plus an
        ``int8_recipe`` check naming it and what failed before it.

        Raises:
            VerificationError: when no recipe passes; its report holds every recipe's checks
                (``<recipe>.<check>``) and an ``int8_recipe`` check naming the alternatives.
        """
        source = folder / FP32_SOURCE
        source.mkdir()
        for file in folder.glob(f"{MODEL_FILE}*"):
            file.rename(source / (FP32_GRAPH if file.name == MODEL_FILE else file.name))
        failed: list[tuple[Int8Recipe, VerifyReport]] = []
        try:
            external = any(source.glob(f"{MODEL_FILE}_data*"))
            for recipe in INT8_RECIPES:
                for stale in folder.glob(f"{MODEL_FILE}*"):
                    stale.unlink()
                onnx_int8.quantize(source / FP32_GRAPH, folder / MODEL_FILE, recipe, external)
                artifact = onnx_artifact(folder / MODEL_FILE, "int8", task, recipe.name)
                report = self.verify(artifact, model_dir)
                if report.passed:
                    return artifact, VerifyReport((*report.checks, _recipe_check(recipe, failed)))
                failed.append((recipe, report))
        finally:
            shutil.rmtree(source)
        raise VerificationError(_no_recipe_held(failed))

    def verify(self, artifact: Artifact, model_dir: Path) -> VerifyReport:
        """File integrity, then logits parity (and greedy generation for causal LMs, span
        argmax for QA) of onnxruntime against torch fp32 on a fixed probe batch."""
        model_dir = Path(model_dir)
        actual = sha256_file(artifact.path) if artifact.path.is_file() else "missing"
        checks = [Check("sha256", actual == artifact.sha256,
                        f"expected {artifact.sha256[:12]}, file has {actual[:12]}")]
        if not checks[0].passed:
            return VerifyReport(tuple(checks))
        task = artifact.extra.get("task") or detect_task(model_dir)
        try:
            if task == QA:
                checks += _verify_qa(artifact, model_dir)
            else:
                checks += _verify_causal(artifact, model_dir)
        except Exception as error:  # noqa: BLE001 - a file onnxruntime cannot run is a failed check
            checks.append(Check("load", False, f"{type(error).__name__}: {error}"))
        return VerifyReport(tuple(checks))


def detect_task(model_dir: Path) -> str:
    """The optimum task for a saved model (see :func:`~distill.backends.onnx_support.task_of`)."""
    return task_of(_config(Path(model_dir)))


def _config(model_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = read_json(model_dir / "config.json")
    return config


def export_optimum(model_dir: Path, out: Path, task: str) -> None:
    """Trace the very model verification compares against: fp32 with eager attention. optimum's
    own loader takes sdpa, which drops Gemma-2's attention soft-capping (measured: logits 0.11
    from torch at a cap of 0.05)."""
    from optimum.exporters.onnx import onnx_export_from_model
    from optimum.utils.save_utils import maybe_load_preprocessors
    from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering

    model = load_reference(AutoModelForQuestionAnswering if task == QA else AutoModelForCausalLM, model_dir)
    model.config.use_cache = task != QA
    _longrope_in_graph(model)
    # optimum's own validation (atol 1e-5 on its dummy inputs) is skipped: verify() compares
    # logits and greedy generation against torch on every export.
    onnx_export_from_model(model, output=str(out), task=task, device="cpu", do_validation=False,
                           preprocessors=maybe_load_preprocessors(str(model_dir)))


def _longrope_in_graph(model: Any) -> None:
    """Put LongRoPE's factor switch into the traced graph. transformers picks the long factors
    with a Python ``if`` on ``max(position_ids) + 1 > original_max_position_embeddings``; a trace
    keeps the branch its dummy input took (optimum's 16 tokens: the short factors for any real
    model), so a Phi-3-128k graph would rotate every prompt past 4096 tokens with the wrong
    frequencies. ``torch.where`` keeps both (measured on a tiny phi3 switching at 20 tokens: a
    30-token prompt's logits 0.089 from torch without this, 1e-6 with it).

    One difference stays: transformers' Phi-3 generation drops its cache and re-reads the whole
    sequence when it grows past the switch; optimum's generation loop keeps the cache rotated
    with the short factors, so tokens generated after crossing may differ.
    """
    for module in model.modules():
        if getattr(module, "rope_type", None) == "longrope":
            module.forward = _switching_rope(module)


def _switching_rope(module: Any) -> Any:
    """A forward for a LongRoPE rotary module that picks its frequencies in the graph."""
    import inspect

    import torch

    config = module.config
    switch = getattr(config, "original_max_position_embeddings", None) or config.max_position_embeddings
    long_freq, _ = module.rope_init_fn(config, module.inv_freq.device, seq_len=switch + 1)
    short_freq, plain = module.original_inv_freq, inspect.unwrap(type(module).forward)

    def forward(x: Any, position_ids: Any) -> Any:
        module.inv_freq = torch.where(position_ids.max() + 1 > switch, long_freq, short_freq)
        return plain(module, x, position_ids)

    return forward


def _recipe_check(recipe: Int8Recipe, failed: list[tuple[Int8Recipe, VerifyReport]]) -> Check:
    """The passing ``int8_recipe`` check: which recipe was kept, and why the ones before failed."""
    before = "; ".join(f"{r.name} failed {_failures(report)}" for r, report in failed)
    tried = f" (tried first: {before})" if before else ""
    return Check("int8_recipe", True, f"{recipe.name}: {recipe.summary}{tried}")


def _no_recipe_held(failed: list[tuple[Int8Recipe, VerifyReport]]) -> VerifyReport:
    """Every recipe's checks, prefixed with its name, and the failing ``int8_recipe`` check that
    names the alternatives (:class:`VerificationError` shows the failures)."""
    checks = [Check(f"{recipe.name}.{c.name}", c.passed, c.detail) for recipe, report in failed for c in report.checks]
    names = ", ".join(recipe.name for recipe, _ in failed)
    return VerifyReport((*checks, Check("int8_recipe", False, f"no int8 recipe held ({names}); {ALTERNATIVES}")))


def _failures(report: VerifyReport) -> str:
    return ", ".join(f"{c.name} {c.detail}" for c in report.failures())


def onnx_artifact(path: Path, quant: str, task: str, int8_recipe: str | None = None) -> Artifact:
    import onnx

    opset = max(o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                if o.domain in ("", "ai.onnx"))
    size = sum(f.stat().st_size for f in path.parent.glob(f"{path.name}*"))
    recipe = {"int8_recipe": int8_recipe} if int8_recipe else {}
    return Artifact(path=path, kind="onnx", quant=quant, sha256=sha256_file(path), size=size,
                    extra={"task": task, "opset": opset, **recipe})


def _write_manifest(folder: Path, artifact: Artifact, model_dir: Path,
                    report: VerifyReport) -> None:
    import onnxruntime
    import optimum.version
    import transformers

    files = tuple(ArtifactFile(path=f.name, sha256=sha256_file(f), size=f.stat().st_size)
                  for f in sorted(folder.iterdir()) if f.is_file() and f.name != MANIFEST)
    Manifest(
        kind="onnx", model=artifact.path.name, quant=artifact.quant, files=files,
        source=export_source(model_dir), verification=report.checks,
        tools={"optimum": optimum.version.__version__, "onnxruntime": onnxruntime.__version__,
               "transformers": transformers.__version__},
        task=artifact.extra["task"], opset=artifact.extra["opset"], int8_recipe=artifact.extra.get("int8_recipe"),
    ).write(folder / MANIFEST)


# ---------------------------------------------------------------- verification


def session_options(threads: int = THREADS) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return options


def probe_ids(vocab_size: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randint(4, vocab_size, (PROBE_ROWS, PROBE_LEN), generator=generator)


def _parity(name: str, got: Any, ref: Any, quant: str) -> list[Check]:
    """Max abs diff within the quant's bound (scaled by max|ref|, floor 1) and top-1 agreement."""
    scale = max(1.0, float(ref.abs().max()))
    bound = (FP32_RTOL if quant == "none" else INT8_RTOL) * scale
    diff = float((got - ref).abs().max())
    agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    need = 1.0 if quant == "none" else INT8_MIN_TOP1
    return [Check(f"{name}_max_abs_diff", diff <= bound, f"{diff:.3g} (bound {bound:.3g})"),
            Check(f"{name}_top1_agreement", agree >= need, f"{agree:.4f} (need >= {need})")]


def _side_by_side(auto_class: Any, artifact: Artifact, model_dir: Path, qa: bool) -> tuple[Any, Any, Any]:
    """The fp32 torch reference, the exported model as :func:`load_exported` runs it, and the
    probe ids both are fed."""
    reference = load_reference(auto_class, model_dir)
    exported = load_exported(artifact.path.parent, qa=qa, file_name=artifact.path.name)
    return reference, exported, probe_ids(reference.config.vocab_size)


def model_file(folder: Path) -> str:
    """The model file an export folder's manifest names, else ``model.onnx``."""
    manifest = Path(folder) / MANIFEST
    return Manifest.read(manifest).model if manifest.is_file() else MODEL_FILE


def load_exported(folder: Path, qa: bool = False, threads: int = THREADS, file_name: str | None = None) -> Any:
    """An exported folder in onnxruntime through optimum (CPU, ``threads`` intra-op threads): the
    one loader verification, evaluation and ``distill chat`` share, so what runs is what was
    verified. A causal LM gets its first cache sized from the graph (:func:`size_cache_from_graph`).

    Args:
        qa: an extractive-QA export (``ORTModelForQuestionAnswering``), else a causal LM.
        file_name: the model file in ``folder``; default :func:`model_file`.
    """
    from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForQuestionAnswering

    ort_class = ORTModelForQuestionAnswering if qa else ORTModelForCausalLM
    model = ort_class.from_pretrained(folder, file_name=file_name or model_file(folder),
                                      session_options=session_options(threads),
                                      provider="CPUExecutionProvider", local_files_only=True,
                                      trust_remote_code=False)
    if not qa:
        size_cache_from_graph(model)
    return model


def size_cache_from_graph(model: Any) -> None:
    """Size an ``ORTModelForCausalLM``'s first, empty cache as the graph declares its past inputs
    (batch, kv heads, past length, head dim). optimum-onnx 0.1.0 derives both from the config and
    gets them wrong for phi3 and gemma2 (all attention heads, where GQA has fewer kv heads) and for
    every type but gemma/gemma3_text (hidden / heads, where a config sets head_dim: Qwen3-0.6B
    128 vs 1024 / 16 = 64, Gemma-2-2B 256 vs 288); onnxruntime then rejects the first call."""
    past = next((i for i in model.session.get_inputs() if i.name.startswith("past_key_values.")), None)
    if past is not None:
        model.num_key_value_heads, model.embed_size_per_head = past.shape[1], past.shape[3]


def _verify_causal(artifact: Artifact, model_dir: Path) -> list[Check]:
    import torch
    from transformers import AutoModelForCausalLM

    reference, exported, ids = _side_by_side(AutoModelForCausalLM, artifact, model_dir, qa=False)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask).logits
        got = torch.as_tensor(exported(input_ids=ids, attention_mask=mask).logits)
        # min_new_tokens: an early EOS would end both runs before N tokens were compared.
        kwargs = {"attention_mask": mask, "max_new_tokens": GENERATE_TOKENS,
                  "min_new_tokens": GENERATE_TOKENS, "do_sample": False,
                  "pad_token_id": reference.config.pad_token_id or 0}
        want_tokens = reference.generate(ids, **kwargs)[:, PROBE_LEN:]
        got_tokens = exported.generate(ids, **kwargs)[:, PROBE_LEN:]
    checks = _parity("logits", got, want, artifact.quant)
    same = float((got_tokens == want_tokens).float().mean()) if got_tokens.shape == want_tokens.shape else 0.0
    shown = f"{same:.4f} of {PROBE_ROWS}x{GENERATE_TOKENS} greedy tokens (past key values) match torch"
    if artifact.quant == "none":
        checks.append(Check("greedy_generation", same == 1.0, shown))
    else:
        # int8 is not expected to reproduce fp32 token for token; check that the with-past graph
        # generates the full N tokens, and record the agreement.
        ran = tuple(got_tokens.shape) == (PROBE_ROWS, GENERATE_TOKENS)
        checks.append(Check("greedy_generation_runs", ran, shown))
    return checks


def _best_spans(start: Any, end: Any, max_len: int = 15) -> list[tuple[int, int]]:
    """Per row, the (start, end) with start <= end < start + max_len maximizing the score sum:
    the span an extractive QA pipeline would answer."""
    import torch

    scores = start[:, :, None] + end[:, None, :]
    length = scores.shape[-1]
    allowed = torch.ones(length, length, dtype=torch.bool).triu().tril(max_len - 1)
    flat = scores.masked_fill(~allowed, float("-inf")).flatten(1).argmax(-1)
    return [(int(i) // length, int(i) % length) for i in flat]


def _verify_qa(artifact: Artifact, model_dir: Path) -> list[Check]:
    import torch
    from transformers import AutoModelForQuestionAnswering

    reference, exported, ids = _side_by_side(AutoModelForQuestionAnswering, artifact, model_dir, qa=True)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "token_type_ids" in exported.input_names:
        # question in segment 0, context in segment 1, as a QA pipeline feeds it.
        inputs["token_type_ids"] = (torch.arange(PROBE_LEN) >= PROBE_LEN // 3).long().expand_as(ids)
    with torch.no_grad():
        want = reference(**inputs)
        got = exported(**inputs)
    checks = []
    for name in ("start_logits", "end_logits"):
        checks += _parity(name, torch.as_tensor(getattr(got, name)), getattr(want, name),
                          artifact.quant)
    got_spans = _best_spans(torch.as_tensor(got.start_logits), torch.as_tensor(got.end_logits))
    want_spans = _best_spans(want.start_logits, want.end_logits)
    same = sum(g == w for g, w in zip(got_spans, want_spans, strict=True)) / len(want_spans)
    need = 1.0 if artifact.quant == "none" else INT8_MIN_TOP1
    checks.append(Check("answer_spans", same >= need,
                        f"{same:.4f} of {len(want_spans)} best spans match torch (need >= {need})"))
    return checks
