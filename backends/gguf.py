"""GGUF backend: write a saved Hugging Face causal LM as GGUF for llama.cpp, quantize it, verify.

llama.cpp's own converter writes the F16 base file with distill's tokenizer metadata
(``gguf_writer``, which says why; what the backend takes is declared in ``gguf_archs``, the
tokenizer metadata is ``gguf_vocab``), then llama.cpp's own quantizer makes every other requested
type from it (``llama_cpp.llama_model_quantize``; ``gguf.quants`` cannot make K-quants).

Several files, one Artifact: ``out_dir`` holds ``model-F16.gguf`` (always: the base every quant is
made from) plus ``model-<QUANT>.gguf`` per requested quant, an Ollama ``model-<QUANT>.Modelfile``
beside each, and ``manifest.json``. The Artifact's ``path`` and ``quant`` are the FIRST requested
quant (what a deploy step serves); ``extra["files"]`` maps every quant present, base included, to
its file name, sha256, size, tensor types and Modelfile, and ``size`` is the bytes of the GGUF
files. ``verify`` checks every file listed there.

llama.cpp runs in a child process (``gguf_child``); the tokenizer checks (plain text, chat
template, where generation stops) live in ``gguf_tokens``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.backends import gguf_tokens, gguf_vocab
from distill.backends.base import (
    Artifact,
    Check,
    VerifyReport,
    export_atomically,
    export_source,
    load_reference,
    sha256_file,
)
from distill.backends.gguf_child import run_llama_cpp
from distill.backends.gguf_import import dequantized
from distill.backends.gguf_writer import BASE_QUANT, quantize, read_config, write_base
from distill.backends.ollama import OllamaChat, modelfile_name, ollama_chat, write_modelfile
from distill.compiler.records.manifest import MANIFEST, ArtifactFile, Manifest
from distill.compiler.records.manifest import OllamaChat as RecordedChat
from distill.compiler.spec import GgufTarget

# Parity bounds per unit of logit scale max(1, max|ref|).
# F16 vs torch fp32: f16 weights round at 2^-11 relative; measured max abs diff 0.0005-0.0014 for
# the tiny llama, qwen2, gpt2, phi3, gemma (scale 5.5) and gemma2 of the tests. 0.03 keeps
# that and still fails llama with unpermuted Q/K (measured 0.087, top-1 0.94). This F16 check is
# the one that catches conversion bugs: every quant is made from the F16 file by llama.cpp itself.
# BF16: llama.cpp rounds activations to bf16 too (measured 0.005, one top-1 flip in 64 on this
# near-tied random model), so it gets the quants' top-1 floor.
# F32: llama.cpp keeps its KV cache in f16 by default (measured 4.3e-4): 0.01.
RTOL = {"F32": 0.01, "F16": 0.03, "BF16": 0.03}
# A quantized file is compared with torch run on the weights dequantized from that same file, so
# what remains is llama.cpp rounding activations for its quantized dot products: to 8 bits in
# blocks of 32 (Q8_0, Q4_0) or of 256 with one scale (the K-quants' Q8_K). (File damage is the
# sha256 check's: the reference reads the same bytes.) In a real model a few activation channels
# are hundreds of times the rest, and a 256-wide block with one of them rounds its others coarsely:
# the max abs logit diff then says little. SmolLM2-135M cut to 20 layers, 64 probe positions x
# 49,152 logits at scale 34 (benchmarks/gguf_quant_error.py): Q8_0 max diff 1.76, Q4_0 1.32, Q4_K_M
# 6.62 (its worst at the second position, where SmolLM2's activations peak), every top-1 the same.
# So quantized files are held to the mean KL divergence of llama.cpp's next-token distribution from
# torch's, the measure llama.cpp's own quantization reports use: measured 0.0070 (Q8_0), 0.0060
# (Q4_0), 0.0182 (Q4_K_M) nats on SmolLM2, 1e-5 on the tiny random models of the tests; a block
# of random bytes in one attention weight gave 0.0999 at top-1 0.19. 0.1 nats is 5.5x the worst
# real measurement; the top-1 floor stays beside it.
QUANT_KL, QUANT_MIN_TOP1 = 0.1, 0.90
QUANT_RTOL = 0.15  # the near-tie width of top-1 agreement: at most 0.15 x scale (see top1_agreement)
EXACT = ("F32", "F16")  # compared with the original torch model, top-1 on every position
# K-quant super-blocks are 256 wide; a row whose width is not a multiple of this falls back to a
# legacy type, which llama.cpp does silently (llama_tensor_get_type). Rows not a multiple of 32
# wide fit no quantized block: llama.cpp keeps them as it can.
QK_K = 256
K_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
EXPECTED_TYPES = {"F32": {"F32"}, "F16": {"F16"}, "BF16": {"BF16"}, "Q8_0": {"Q8_0"},
                  "Q4_0": {"Q4_0", "Q4_1", "Q6_K"}, "Q6_K": {"Q6_K"},
                  "Q5_K_M": {"Q5_K", "Q6_K"}, "Q4_K_M": {"Q4_K", "Q5_K", "Q6_K"}}
PROBE_SEED, PROBE_ROWS, PROBE_LEN = 0, 4, 16


class GgufBackend:
    """The ``gguf`` backend (see :class:`distill.backends.base.Backend`)."""

    def export(self, model_dir: Path, target: GgufTarget, out_dir: Path) -> Artifact:
        """Write the F16 base, quantize it per ``target.quant``, verify every file in a temp
        folder beside ``out_dir``, then rename the folder into place.

        Raises:
            VerificationError: when a check fails; ``out_dir`` is left untouched.
            NotImplementedError: for an architecture or tokenizer this backend cannot write.
        """
        model_dir, out_dir = Path(model_dir), Path(out_dir)
        quants = tuple(dict.fromkeys(target.quant)) or (BASE_QUANT,)
        chat = ollama_chat(gguf_vocab.load_tokenizer(model_dir), model_dir)

        def build(tmp: Path) -> Artifact:
            write_base(model_dir, tmp / file_name(BASE_QUANT))
            if "F32" in quants:  # straight from the fp32 weights, not widened from F16
                write_base(model_dir, tmp / file_name("F32"), "F32")
            for quant in quants:
                if quant not in EXACT:
                    quantize(tmp / file_name(BASE_QUANT), tmp / file_name(quant), quant)
            for quant in dict.fromkeys((*quants, BASE_QUANT)):
                write_modelfile(tmp, file_name(quant), chat)
            return _artifact(tmp, quants, chat)

        export_atomically(out_dir, build, lambda staged: self.verify(staged, model_dir),
                          lambda tmp, staged, report: _write_manifest(tmp, staged, model_dir, report))
        return _artifact(out_dir, quants, chat)

    def verify(self, artifact: Artifact, model_dir: Path) -> VerifyReport:
        """Per file: sha256, tensor types, then llama.cpp logits against torch on a fixed probe
        batch; once, on the primary file: tokenization, chat template and EOS against HF."""
        model_dir, folder = Path(model_dir), artifact.path.parent
        checks: list[Check] = []
        for quant, entry in artifact.extra["files"].items():
            path = folder / entry["path"]
            actual = sha256_file(path) if path.is_file() else "missing"
            checks.append(Check(f"{quant}.sha256", actual == entry["sha256"],
                                f"expected {entry['sha256'][:12]}, file has {actual[:12]}"))
            if actual != entry["sha256"]:
                continue
            try:
                checks += verify_file(path, quant, model_dir, tokens=quant == artifact.quant)
            except Exception as error:  # noqa: BLE001 - an unreadable file is a failed check
                checks.append(Check(f"{quant}.load", False, f"{type(error).__name__}: {error}"))
        return VerifyReport(tuple(checks))


def file_name(quant: str) -> str:
    return f"model-{quant}.gguf"


def tensor_types(path: Path) -> dict[str, tuple[str, int, int]]:
    """GGUF tensor name -> (ggml type name, row width ne0, dimensions), read back from the file."""
    import gguf

    return {t.name: (t.tensor_type.name, int(t.shape[0]), len(t.shape))
            for t in gguf.GGUFReader(path).tensors}


def _types_check(path: Path, quant: str) -> tuple[Check, dict[str, int]]:
    """Every 2-D weight has a type the quant stands for, except where its row width forces
    llama.cpp's fallback, or llama.cpp keeps it as written (GPT-2's position embedding); every
    1-D tensor (norms, biases, rope factors) stays F32."""
    wrong: list[str] = []
    counts: dict[str, int] = {}
    for name, (kind, width, dims) in tensor_types(path).items():
        counts[kind] = counts.get(kind, 0) + 1
        if dims == 1:
            ok = kind == "F32"
        elif name == "position_embd.weight":
            ok = kind in ("F32", BASE_QUANT)
        else:
            ok = width % 32 != 0 or kind in allowed_types(quant, width)
        if not ok:
            wrong.append(f"{name}={kind}")
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if wrong:
        detail += f"; unexpected: {', '.join(wrong[:6])}"
    return Check(f"{quant}.tensor_types", not wrong, detail), counts


def allowed_types(quant: str, width: int) -> set[str]:
    """The types llama.cpp gives a 2-D weight of ``quant`` with rows ``width`` wide: a K-quant
    needs rows a multiple of QK_K, else it falls back to its legacy type (``K_FALLBACK``). Q4_0's
    output tensor (or the token embedding a tied model uses as its output) is Q6_K, so on rows of
    576 (SmolLM2) it is Q8_0."""
    expected = EXPECTED_TYPES[quant]
    if width % QK_K == 0:
        return expected
    return {kind for kind in expected if kind not in K_FALLBACK} | {K_FALLBACK[k] for k in expected if k in K_FALLBACK}


def _probe_ids(path: Path, vocab_size: int) -> Any:
    """Seeded random token ids, PROBE_LEN long or the file's context length if shorter: llama.cpp
    owes nothing past the context a GGUF declares."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(path)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    context = int(reader.fields[f"{arch}.context_length"].parts[-1][0])
    # ids >= 4 skip the special tokens at the start of a trained vocabulary.
    return np.random.default_rng(PROBE_SEED).integers(4, vocab_size, (PROBE_ROWS, min(PROBE_LEN, context)))


def _reference(model_dir: Path, gguf_path: Path | None) -> Any:
    """The torch fp32 model; with ``gguf_path``, running the weights dequantized from that file
    (each arch's change undone), so the comparison isolates llama.cpp's kernels from
    quantization error."""
    from transformers import AutoModelForCausalLM

    model = load_reference(AutoModelForCausalLM, model_dir)
    if gguf_path is None:
        return model
    config = read_config(model_dir)
    loaded = dequantized(gguf_path, config, model.state_dict())
    model.load_state_dict(loaded, strict=False)
    return model


def verify_file(path: Path, quant: str, model_dir: Path, tokens: bool) -> list[Check]:
    """Tensor types and logits of one file; with ``tokens``, the tokenizer checks too."""
    import torch

    checks = [_types_check(path, quant)[0]]
    config = read_config(model_dir)
    ids = _probe_ids(path, config["vocab_size"])
    tokenizer = gguf_vocab.load_tokenizer(model_dir) if tokens else None
    got, facts = run_llama_cpp(path, ids, gguf_tokens.request(model_dir, tokenizer) if tokens else None)
    reference = _reference(model_dir, None if quant in EXACT else path)
    with torch.no_grad():
        want = reference(input_ids=torch.as_tensor(ids)).logits.numpy()
    checks += logits_checks(quant, got, want)
    if tokens:
        checks += gguf_tokens.checks(model_dir, tokenizer, facts)
    return checks


def logits_checks(quant: str, got: Any, want: Any) -> list[Check]:
    """llama.cpp's logits ``got`` against torch's ``want`` (positions x vocabulary): the max abs
    diff for the float types, the mean KL divergence for quantized ones (see RTOL and QUANT_KL),
    then top-1 agreement."""
    import numpy as np

    scale = max(1.0, float(np.abs(want).max()))
    bound = RTOL.get(quant, QUANT_RTOL) * scale
    diff = float(np.abs(got - want).max())
    if quant in RTOL:
        checks = [Check(f"{quant}.logits_max_abs_diff", diff <= bound, f"{diff:.3g} (bound {bound:.3g})")]
    else:
        kl = mean_kl(want, got)
        checks = [Check(f"{quant}.kl_divergence", kl <= QUANT_KL,
                        f"{kl:.3g} nats per position, mean (bound {QUANT_KL}); logits max abs diff {diff:.3g} "
                        f"at scale {scale:.3g}")]
    agree, ties = top1_agreement(got, want, min(diff, bound))
    need = 1.0 if quant in EXACT else QUANT_MIN_TOP1
    positions = int(np.prod(want.shape[:-1]))
    return checks + [Check(f"{quant}.logits_top1_agreement", agree >= need,
                           f"{agree:.4f} of {positions} positions (need >= {need}; {ties} near-tie(s) counted as "
                           f"agreeing: torch's margin to llama.cpp's pick < 2 x max diff)")]


def mean_kl(want: Any, got: Any) -> float:
    """Mean over positions of KL(softmax(want) || softmax(got)), nats, in float64 (NaN when either
    holds one, which fails any bound)."""
    import numpy as np

    def log_softmax(logits: Any) -> Any:
        shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))

    p, q = log_softmax(want), log_softmax(got)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


def top1_agreement(got: Any, want: Any, diff: float) -> tuple[float, int]:
    """Share of positions where llama.cpp picks torch's top token, and how many of those are
    near-ties: llama.cpp's pick trails torch's top logit by less than 2 x ``diff`` (the measured
    max diff, capped at the check's bound), where each of the two logits may have moved by
    ``diff``. Measured: a 1-layer Mistral-7B-shaped random model (hidden 4096, logit scale 5.6)
    flipped 1 of 64 F16 positions within 2 x its max diff of 0.0071.
    A conversion bug moves logits by far more than the max-diff bound allows, which that check
    catches; a tie excused here is never wider than twice the bound."""
    import numpy as np

    picked = got.argmax(-1)
    best = want.max(-1)
    margin = best - np.take_along_axis(want, picked[..., None], -1)[..., 0]
    exact = picked == want.argmax(-1)
    near = ~exact & (margin < 2 * diff)
    return float((exact | near).mean()), int(near.sum())


def _artifact(folder: Path, quants: tuple[str, ...], chat: OllamaChat) -> Artifact:
    files: dict[str, dict[str, Any]] = {}
    for quant in dict.fromkeys((*quants, BASE_QUANT)):
        path = folder / file_name(quant)
        files[quant] = {"path": path.name, "sha256": sha256_file(path),
                        "size": path.stat().st_size, "tensor_types": _types_check(path, quant)[1],
                        "modelfile": modelfile_name(path.name)}
    primary = files[quants[0]]
    return Artifact(path=folder / primary["path"], kind="gguf", quant=quants[0],
                    sha256=primary["sha256"], size=sum(f["size"] for f in files.values()),
                    extra={"files": files, "quants": list(quants), "ollama": chat.to_json()})


def _write_manifest(folder: Path, artifact: Artifact, model_dir: Path,
                    report: VerifyReport) -> None:
    from importlib import metadata

    Manifest(
        kind="gguf", model=artifact.path.name, quant=artifact.quant,
        files=tuple(ArtifactFile(quant=q, **f) for q, f in artifact.extra["files"].items()),
        source=export_source(model_dir), verification=report.checks,
        tools={name: metadata.version(name) for name in ("gguf", "llama_cpp_python", "transformers")},
        quants=tuple(artifact.extra["quants"]), base=file_name(BASE_QUANT),
        # The Modelfiles' chat format, or why they have no TEMPLATE (backends/ollama.py).
        ollama=RecordedChat(**artifact.extra["ollama"]),
    ).write(folder / MANIFEST)

