"""GGUF backend: write a saved Hugging Face causal LM as GGUF for llama.cpp, quantize it, verify.

We write the F16 base file ourselves with the PyPI ``gguf`` package (tensor names from
``get_tensor_name_map``, llama's Q/K rows permuted to llama.cpp's rotary layout, byte-level BPE
tokenizer metadata), then make every other requested type from it with llama.cpp's own quantizer
(``llama_cpp.llama_model_quantize``; ``gguf.quants`` cannot make K-quants).

Several files, one Artifact: ``out_dir`` holds ``model-F16.gguf`` (always: the base every quant is
made from) plus ``model-<QUANT>.gguf`` per requested quant and ``manifest.json``. The Artifact's
``path`` and ``quant`` are the FIRST requested quant (what a deploy step serves);
``extra["files"]`` maps every quant present, base included, to its file name, sha256 and size, and
``size`` is the bytes of all of them. ``verify`` checks every file listed there.

llama.cpp runs in a child process (``python -m distill.backends.gguf``): torch and llama.cpp in one
process fight over OpenMP threads, and a malformed file that crashes llama.cpp becomes a failed
check instead of a dead test run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from distill.backends.base import Artifact, Check, VerificationError, VerifyReport, sha256_file
from distill.backends.onnx import _move_into_place
from distill.compiler.spec import GgufTarget

BASE_QUANT = "F16"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# HF architecture -> (gguf arch name, permute Q/K rows?). llama.cpp applies llama's rotary
# embedding to interleaved pairs, HF to two halves: convert_hf_to_gguf permutes llama's q/k rows;
# qwen2 uses llama.cpp's NEOX rope (halves), so no permute.
ARCHS = {"LlamaForCausalLM": ("llama", True), "Qwen2ForCausalLM": ("qwen2", False)}
# Parity bounds per unit of logit scale max(1, max|ref|).
# F16 vs torch fp32: f16 weights round at 2^-11 relative; measured max abs diff 0.001 (tiny llama
# and qwen2 here, scale 1.2-1.4), 0.007-0.024 for other tiny architectures (DESIGN.md). 0.03 keeps
# that and still fails llama with unpermuted Q/K (measured 0.087, top-1 0.94). This F16 check is
# the one that catches conversion bugs: every quant is made from the F16 file by llama.cpp itself.
# Quantized files are compared with torch run on the weights dequantized from that same file, so
# what remains is llama.cpp rounding activations to 8 bits for its quantized dot products
# (measured 0.013-0.022 for Q8_0, Q6_K, Q4_0, Q4_K_M at scale ~1.3): 0.15 is a ~7x margin that
# catches corrupt blocks or a wrong type, not subtle conversion errors (those are F16's job).
# BF16: llama.cpp rounds activations to bf16 too (measured 0.005, one top-1 flip in 64 on this
# near-tied random model), so it gets the quants' top-1 floor.
# F32: llama.cpp keeps its KV cache in f16 by default (measured 4.3e-4): 0.01.
RTOL = {"F32": 0.01, "F16": 0.03, "BF16": 0.03}
QUANT_RTOL, QUANT_MIN_TOP1 = 0.15, 0.90
EXACT = ("F32", "F16")  # compared with the original torch model, top-1 on every position
# K-quant super-blocks are 256 wide; a row whose width is not a multiple of this falls back to a
# legacy type (q5_0, q8_0, ...), which llama.cpp does silently.
QK_K = 256
EXPECTED_TYPES = {"F32": {"F32"}, "F16": {"F16"}, "BF16": {"BF16"}, "Q8_0": {"Q8_0"},
                  "Q4_0": {"Q4_0", "Q4_1", "Q6_K"}, "Q6_K": {"Q6_K"},
                  "Q5_K_M": {"Q5_K", "Q6_K"}, "Q4_K_M": {"Q4_K", "Q5_K", "Q6_K"}}
PROBE_SEED, PROBE_ROWS, PROBE_LEN = 0, 4, 16
PROBE_TEXTS = ("the quick brown fox jumps over the lazy dog", "Hello, world! 123 4567",
               "  two  spaces\tand a tab\nnew line", "what its teacher knows: don't, won't",
               "Ünïcödé — ß, 漢字, emoji 🙂", "a model learns; the model learned.")
THREADS = int(os.environ.get("DISTILL_THREADS", "2"))


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
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        try:
            write_base(model_dir, tmp / file_name(BASE_QUANT))
            if "F32" in quants:  # straight from the fp32 weights, not widened from F16
                write_base(model_dir, tmp / file_name("F32"), "F32")
            for quant in quants:
                if quant not in EXACT:
                    quantize(tmp / file_name(BASE_QUANT), tmp / file_name(quant), quant)
            staged = _artifact(tmp, quants)
            report = self.verify(staged, model_dir)
            if not report.passed:
                raise VerificationError(report)
            _write_manifest(tmp, staged, model_dir, report)
            _move_into_place(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return _artifact(out_dir, quants)

    def verify(self, artifact: Artifact, model_dir: Path) -> VerifyReport:
        """Per file: sha256, tensor types, then llama.cpp logits against torch on a fixed probe
        batch; once: llama.cpp tokenization against the HF tokenizer."""
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
                checks += _verify_file(path, quant, model_dir, tokens=quant == artifact.quant)
            except Exception as error:  # noqa: BLE001 - an unreadable file is a failed check
                checks.append(Check(f"{quant}.load", False, f"{type(error).__name__}: {error}"))
        return VerifyReport(tuple(checks))


def file_name(quant: str) -> str:
    return f"model-{quant}.gguf"


# ---------------------------------------------------------------- writing


def _config(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / "config.json").read_text(encoding="utf-8"))


def _arch(config: dict[str, Any]) -> tuple[str, bool]:
    for name in config.get("architectures") or ():
        if name in ARCHS:
            return ARCHS[name]
    raise NotImplementedError(f"gguf backend writes {', '.join(ARCHS)}; got "
                              f"{config.get('architectures')}")


def _state_dict(model_dir: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    tensors: dict[str, Any] = {}
    for file in files:
        tensors.update(load_file(file))
    return tensors


def permute_qk(weight: Any, heads: int) -> Any:
    """HF rotary halves -> llama.cpp interleaved pairs, per head (as convert_hf_to_gguf)."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def unpermute_qk(weight: Any, heads: int) -> Any:
    rows = weight.shape[0]
    return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def tensor_names(config: dict[str, Any], hf_names: Any) -> dict[str, str]:
    """HF tensor name -> GGUF tensor name; an unmapped tensor is an error, not a silent drop."""
    import gguf

    arch, _ = _arch(config)
    mapping = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()],
                                       config["num_hidden_layers"])
    names = {}
    for name in hf_names:
        if name.endswith("rotary_emb.inv_freq"):
            continue
        new = mapping.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise NotImplementedError(f"no GGUF name for tensor {name!r}")
        names[name] = new
    return names


def _heads_for(hf_name: str, config: dict[str, Any]) -> int | None:
    """Heads to permute over for llama q/k projections, else None."""
    if hf_name.endswith("q_proj.weight"):
        return config["num_attention_heads"]
    if hf_name.endswith("k_proj.weight"):
        return config.get("num_key_value_heads") or config["num_attention_heads"]
    return None


def write_base(model_dir: Path, path: Path, quant: str = BASE_QUANT) -> None:
    """The F16 (or F32) GGUF of a saved model: 2-D weights in f16, norms and biases in f32 (as
    llama.cpp's converter; its kernels want f32 1-D tensors)."""
    import gguf
    import numpy as np

    config = _config(model_dir)
    arch, permute = _arch(config)
    writer = gguf.GGUFWriter(str(path), arch)
    _write_hparams(writer, config, arch, quant)
    _write_tokenizer(writer, model_dir, config)
    tensors = _state_dict(model_dir)
    for hf_name, gguf_name in tensor_names(config, tensors).items():
        data = tensors[hf_name].astype(np.float32)
        heads = _heads_for(hf_name, config) if permute else None
        if heads is not None:
            data = permute_qk(data, heads)
        half = data.ndim == 2 and quant == "F16"
        writer.add_tensor(gguf_name, data.astype(np.float16) if half else data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_hparams(writer: Any, config: dict[str, Any], arch: str, quant: str) -> None:
    import gguf

    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    writer.add_name(config.get("_name_or_path") or "distill-student")
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "F16"
                         else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if config.get("rope_scaling"):
        raise NotImplementedError(f"rope_scaling {config['rope_scaling']} is not written yet")


# Split regexes of known byte-level BPE tokenizers -> llama.cpp pre-tokenizer names (llama.cpp
# re-implements each by name; tokenization_parity checks the choice on probe texts).
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?"
                 r"[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
KNOWN_SPLITS = {_LLAMA3_REGEX: "llama-bpe",
                _LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}"): "qwen2"}


def _pre_tokenizer(tokenizer_json: dict[str, Any], arch: str) -> str:
    """llama.cpp's pre-tokenizer name for a tokenizer.json (``arch`` is for error messages)."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # GPT-2's own split regex, as train_byte_bpe makes
    for step in pre.get("pretokenizers", ()):
        if step.get("type") == "Split":
            regex = step.get("pattern", {}).get("Regex")
            if regex in KNOWN_SPLITS:
                return KNOWN_SPLITS[regex]
    raise NotImplementedError(f"no llama.cpp pre-tokenizer known for this {arch} tokenizer: {pre}")


def _write_tokenizer(writer: Any, model_dir: Path, config: dict[str, Any]) -> None:
    """Byte-level BPE metadata: tokens by id, types, merges, special ids, chat template."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = tokenizer_json["model"]
    if model.get("type") != "BPE":
        raise NotImplementedError(f"gguf backend writes byte-level BPE tokenizers; got "
                                  f"{model.get('type')}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = tokenizer.get_vocab()
    specials = {t["id"] for t in tokenizer_json.get("added_tokens", ()) if t.get("special")}
    by_id = {i: token for token, i in vocab.items()}
    # The embedding may be wider than the tokenizer (padded to a multiple); llama.cpp needs one
    # token per row, so the extra rows get unused placeholders.
    size = max(config["vocab_size"], len(by_id))
    tokens, types = [], []
    for i in range(size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(tokenizer_json, _arch(config)[0]))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model["merges"]])
    for add, value in ((writer.add_bos_token_id, tokenizer.bos_token_id or config.get("bos_token_id")),
                       (writer.add_eos_token_id, tokenizer.eos_token_id or config.get("eos_token_id")),
                       (writer.add_pad_token_id, tokenizer.pad_token_id)):
        if isinstance(value, int):
            add(value)
    # Whether the HF tokenizer adds BOS itself: llama.cpp must do the same.
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [
        tokenizer.bos_token_id]
    writer.add_add_bos_token(adds_bos)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def quantize(source: Path, dest: Path, quant: str) -> None:
    """llama.cpp's quantizer (the ``llama-quantize`` tool's code) from the F16 base."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = THREADS
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(),
                                          ctypes.byref(params))
    if code != 0 or not dest.is_file():
        raise RuntimeError(f"llama_model_quantize to {quant} failed with code {code}")


# ---------------------------------------------------------------- verification


def tensor_types(path: Path) -> dict[str, tuple[str, int]]:
    """GGUF tensor name -> (ggml type name, row width ne0), read back from the file."""
    import gguf

    return {t.name: (t.tensor_type.name, int(t.shape[0])) for t in gguf.GGUFReader(path).tensors}


def _types_check(path: Path, quant: str) -> tuple[Check, dict[str, int]]:
    """Every 2-D weight has a type the quant stands for, except where its row width forces
    llama.cpp's fallback; every 1-D tensor stays F32."""
    wrong, counts = [], {}
    for name, (kind, width) in tensor_types(path).items():
        counts[kind] = counts.get(kind, 0) + 1
        if name.endswith(("norm.weight", ".bias")):
            ok = kind == "F32"
        else:
            forced = width % (QK_K if "_K" in quant else 32) != 0
            ok = kind in EXPECTED_TYPES[quant] or forced
        if not ok:
            wrong.append(f"{name}={kind}")
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if wrong:
        detail += f"; unexpected: {', '.join(wrong[:6])}"
    return Check(f"{quant}.tensor_types", not wrong, detail), counts


def _probe_ids(vocab_size: int) -> Any:
    import numpy as np

    # ids >= 4 skip the special tokens at the start of a trained vocabulary.
    return np.random.default_rng(PROBE_SEED).integers(4, vocab_size, (PROBE_ROWS, PROBE_LEN))


def _run_llama_cpp(path: Path, ids: Any, texts: tuple[str, ...]) -> tuple[Any, list[list[int]]]:
    """Logits for each probe row and token ids for each text, from llama.cpp in a child process."""
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        request, answer = Path(folder) / "request.json", Path(folder) / "answer.npz"
        request.write_text(json.dumps({"ids": ids.tolist(), "texts": list(texts)}))
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(THREADS)}
        done = subprocess.run([sys.executable, "-m", "distill.backends.gguf", str(path),
                               str(request), str(answer)],
                              capture_output=True, text=True, env=env, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"llama.cpp child exited {done.returncode}: "
                               f"{done.stderr.strip()[-400:]}")
        with np.load(answer) as data:
            return data["logits"], json.loads(str(data["tokens"]))


def _llama_cpp_child(path: str, request: str, answer: str) -> None:
    import llama_cpp
    import numpy as np

    job = json.loads(Path(request).read_text())
    llm = llama_cpp.Llama(model_path=path, n_ctx=max(64, PROBE_LEN * 2), n_batch=64,
                          logits_all=True, n_threads=THREADS, verbose=False)
    logits = []
    for row in job["ids"]:
        llm.reset()
        llm.eval(row)
        logits.append(np.array(llm.scores[: len(row)], dtype=np.float32))
    tokens = [llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
              for text in job["texts"]]
    np.savez(answer, logits=np.stack(logits), tokens=json.dumps(tokens))


def _reference(model_dir: Path, gguf_path: Path | None) -> Any:
    """The torch fp32 model; with ``gguf_path``, running the weights dequantized from that file
    (Q/K un-permuted), so the comparison isolates llama.cpp's kernels from quantization error."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if gguf_path is None:
        return model
    config = _config(model_dir)
    _, permute = _arch(config)
    state = model.state_dict()
    stored = {t.name: t for t in gguf.GGUFReader(gguf_path).tensors}
    names = tensor_names(config, state)
    loaded = {}
    for hf_name, gguf_name in names.items():
        if gguf_name not in stored:  # a tied lm_head: llama.cpp reuses token_embd, as does torch
            continue
        tensor = stored[gguf_name]
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        data = data.reshape(state[hf_name].shape)
        heads = _heads_for(hf_name, config) if permute else None
        if heads is not None:
            data = unpermute_qk(data, heads)
        loaded[hf_name] = torch.from_numpy(np.ascontiguousarray(data))
    model.load_state_dict(loaded, strict=False)
    return model


def _verify_file(path: Path, quant: str, model_dir: Path, tokens: bool) -> list[Check]:
    import numpy as np
    import torch

    checks = [_types_check(path, quant)[0]]
    config = _config(model_dir)
    ids = _probe_ids(config["vocab_size"])
    got, ids_by_text = _run_llama_cpp(path, ids, PROBE_TEXTS if tokens else ())
    reference = _reference(model_dir, None if quant in EXACT else path)
    with torch.no_grad():
        want = reference(input_ids=torch.as_tensor(ids)).logits.numpy()
    scale = max(1.0, float(np.abs(want).max()))
    bound = RTOL.get(quant, QUANT_RTOL) * scale
    diff = float(np.abs(got - want).max())
    agree = float((got.argmax(-1) == want.argmax(-1)).mean())
    need = 1.0 if quant in EXACT else QUANT_MIN_TOP1
    checks += [Check(f"{quant}.logits_max_abs_diff", diff <= bound, f"{diff:.3g} (bound {bound:.3g})"),
               Check(f"{quant}.logits_top1_agreement", agree >= need,
                     f"{agree:.4f} of {ids.size} positions (need >= {need})")]
    if tokens:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(model_dir)
        want_ids = [hf(text, add_special_tokens=False).input_ids for text in PROBE_TEXTS]
        same = sum(a == b for a, b in zip(ids_by_text, want_ids, strict=True))
        bad = next((t for t, a, b in zip(PROBE_TEXTS, ids_by_text, want_ids, strict=True)
                    if a != b), None)
        checks.append(Check("tokenization_parity", same == len(PROBE_TEXTS),
                            f"{same}/{len(PROBE_TEXTS)} probe texts tokenize identically"
                            + (f"; first mismatch {bad!r}" if bad else "")))
    return checks


def _artifact(folder: Path, quants: tuple[str, ...]) -> Artifact:
    files = {}
    for quant in dict.fromkeys((*quants, BASE_QUANT)):
        path = folder / file_name(quant)
        files[quant] = {"path": path.name, "sha256": sha256_file(path),
                        "size": path.stat().st_size, "tensor_types": _types_check(path, quant)[1]}
    primary = files[quants[0]]
    return Artifact(path=folder / primary["path"], kind="gguf", quant=quants[0],
                    sha256=primary["sha256"], size=sum(f["size"] for f in files.values()),
                    extra={"files": files, "quants": list(quants)})


def _write_manifest(folder: Path, artifact: Artifact, model_dir: Path,
                    report: VerifyReport) -> None:
    from importlib import metadata

    manifest = {
        "version": MANIFEST_VERSION, "kind": "gguf", "model": artifact.path.name,
        "quant": artifact.quant, "quants": artifact.extra["quants"], "base": file_name(BASE_QUANT),
        "files": [{"quant": q, **f} for q, f in artifact.extra["files"].items()],
        "source": {"model_dir": str(model_dir.resolve()),
                   "config_sha256": sha256_file(model_dir / "config.json")},
        "verification": report.to_json(),
        "tools": {name: metadata.version(name)
                  for name in ("gguf", "llama_cpp_python", "transformers")},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":  # the llama.cpp child process of _run_llama_cpp
    _llama_cpp_child(*sys.argv[1:4])
