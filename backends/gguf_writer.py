"""Writing GGUF: llama.cpp's own converter (``convert_hf_to_gguf.py``'s ``conversion`` package)
writes a saved Hugging Face causal LM as an F16 (or F32) GGUF, with distill's tokenizer metadata;
every other type is made from it by llama.cpp's own quantizer.

Why the converter and not our own writer (measured 2026-12-05 against distill's writer of commit
46f99f4, tiny seeded llama, qwen2, phi3, gemma and gemma2): every tensor byte-identical (21-27 of
21-27 per model), the converter writes two extra general.* keys. It knows every architecture
llama.cpp runs, at the same llama.cpp version as the quantizer and runtime that verify the files
(``scripts/setup.sh`` takes it from the installed llama-cpp-python's sdist): Llama 3.x rope
factors, Mistral, Qwen3's q/k norms, Gemma 3's layer pattern and Phi-3.5's longrope, all of which
ours lacked. It costs about 0.5 s more per file in process (its import), 4 s in a child process.

What distill adds around it:

* the tokenizer metadata (``gguf_vocab``): the converter names a byte-level BPE's pre-tokenizer by
  hashing its tokens of a fixed text, which fails for any tokenizer it has not seen (every
  tokenizer trained for a project), and without a ``tokenizer.model`` it writes SentencePiece
  scores of -1000, which tokenizes differently; distill's writer names the pre-tokenizer by its
  structure first and by the converter's own fingerprint table only after that
  (``gguf_pretokenizers``), ranks merges, and is checked token for token against HF at
  verification;
* config fixes (:func:`converter_hparams`): GPT-2 configs without ``n_ctx``, and a context capped
  at the sliding window where llama.cpp attends without one (see ``gguf_archs``);
* the refusals of ``gguf_archs``, checked before the converter runs, and all of verification.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distill.backends.gguf_archs import family, window_below_context
from distill.backends.gguf_vocab import write_tokenizer
from distill.backends.llama_cpp import converter_dir, converter_missing
from distill.compiler.arch import rope_type

THREADS = int(os.environ.get("DISTILL_THREADS", "2"))

BASE_QUANT = "F16"
# llama.cpp special-cases a general.name containing "phi3" (Phi-3's SentencePiece special tokens);
# measured here: with name "phi3-student" it refuses to load our phi3 AND gemma files. So the
# name never comes from the model's folder or hub id.
GENERAL_NAME = "distill-student"
def read_config(model_dir: Path) -> dict[str, Any]:
    """The model's config as transformers completes it (class defaults filled in), as a dict."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_dir, trust_remote_code=False).to_dict()


def _conversion() -> Any:
    """The converter's ``conversion`` package. Imported from its folder, which holds nothing else
    importable; its ``gguf`` is the venv's, which setup installs from the same sdist."""
    reason = converter_missing()
    if reason is not None:
        raise NotImplementedError(reason)
    folder = str(converter_dir())
    sys.path.insert(0, folder)
    try:
        import conversion
    finally:
        sys.path.remove(folder)
    return conversion


def converter_hparams(config: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """The converter's hyperparameters with distill's fixes (see the module docstring)."""
    fixed = dict(hparams)
    if "n_positions" in fixed and "n_ctx" not in fixed:
        fixed["n_ctx"] = fixed["n_positions"]
    window = window_below_context(config)
    if window and rope_type(config) == "default":
        fixed["max_position_embeddings"] = window
    return fixed


def write_base(model_dir: Path, path: Path, quant: str = BASE_QUANT) -> None:
    """The F16 (or F32) GGUF of a saved model, by llama.cpp's converter: 2-D weights in f16,
    norms and biases in f32.

    Raises:
        NotImplementedError: for a model ``gguf_archs`` refuses, or without the converter.
    """
    import gguf
    import torch

    config = read_config(model_dir)
    family(config)
    conversion = _conversion()
    hparams = converter_hparams(config, conversion.ModelBase.load_hparams(model_dir, False))
    model_class = conversion.get_model_class(
        conversion.get_model_architecture(hparams, conversion.ModelType.TEXT))
    file_type = gguf.LlamaFileType.MOSTLY_F16 if quant == "F16" else gguf.LlamaFileType.ALL_F32
    with torch.inference_mode(), _quiet("hf-to-gguf", "gguf.gguf_writer"):
        model = model_class(model_dir, file_type, path, model_name=GENERAL_NAME, hparams=hparams)
        # The instance's own set_vocab replaces the class's: the tokenizer is distill's part.
        model.set_vocab = lambda: write_tokenizer(model.gguf_writer, model_dir, config)
        if config.get("model_type") == "gemma3_text":
            _keep_whole_embedding(model, conversion)
        # ModelBase.write's steps, with its tqdm progress bar (one per file, on stderr) off.
        model.prepare_tensors()
        model.prepare_metadata(vocab_only=False)
        model.gguf_writer.write_header_to_file(path=path)
        model.gguf_writer.write_kv_data_to_file()
        model.gguf_writer.write_tensors_to_file(progress=False)
        model.gguf_writer.close()


def _keep_whole_embedding(model: Any, conversion: Any) -> None:
    """Gemma 3's converter drops the embedding rows past the tokenizer's size (its multimodal
    checkpoints pad the vocabulary). distill writes one token per embedding row, as HF's logits
    have one column per row (``gguf_vocab``), so the embedding goes through the generic tensor
    mapping whole; it is no norm, so Gemma's norm shift has nothing to add to it."""
    own = model.modify_tensors

    def modify(data: Any, name: str, bid: int | None) -> Any:
        if name.endswith("embed_tokens.weight"):
            return conversion.TextModel.modify_tensors(model, data, name, bid)
        return own(data, name, bid)

    model.modify_tensors = modify


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The converter logs each tensor (INFO) and repeated keys it overwrites itself (WARNING,
    Gemma 3): noise to a user; its errors still raise."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


_LOG: list[str] = []
_CALLBACK: list[object] = []  # the ctypes callback, alive as long as llama.cpp may call it


def _captured_log() -> list[str]:
    """Route llama.cpp's log (a line per converted tensor, on stderr by default) into a list of
    recent lines, shown only when quantizing fails. Set once per process: llama.cpp keeps the
    callback's address, so it must never be garbage collected."""
    import ctypes

    import llama_cpp

    if not _CALLBACK:
        @llama_cpp.llama_log_callback
        def keep(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            _LOG.append(text.decode("utf-8", errors="replace"))
            del _LOG[:-50]

        _CALLBACK.append(keep)
        llama_cpp.llama_log_set(keep, ctypes.c_void_p(0))
    return _LOG


def quantize(source: Path, dest: Path, quant: str) -> None:
    """llama.cpp's quantizer (the ``llama-quantize`` tool's code) from the F16 base."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    params.nthread = THREADS
    log = _captured_log()
    log.clear()
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(),
                                          ctypes.byref(params))
    if code != 0 or not dest.is_file():
        tail = "".join(log[-5:]).strip()
        raise RuntimeError(f"llama_model_quantize to {quant} failed with code {code}: {tail}")
