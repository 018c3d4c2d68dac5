"""Load the Distillfile's models for real: weights (safetensors only), tokenizer, chat template.

Hub and local models load with ``from_pretrained`` at the revision the compiler pinned;
``trust_remote_code`` only when the Distillfile says so. A ``random`` model is built from its
config with the torch seed set first, so one seed gives one model. A student cut from its teacher
is written once from the teacher's weights (``runtime/cut.py``), then loads as a local model.
Quantized loading goes through bitsandbytes (it runs on CPU too).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.resolve import ResolvedModel
from distill.compiler.spec import Teacher
from distill.runtime.placement import Placement, place

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class WeightsNotCached(DistillError):
    """An offline build of a hub model whose weights were never downloaded."""

    exit_code = ExitCode.USAGE


class UnsafeWeights(DistillError):
    """A model whose weights exist only in a pickle-based format."""

    exit_code = ExitCode.INVALID_SPEC


def bnb_config(quant: str, compute_dtype: torch.dtype) -> Any:
    """bitsandbytes settings for a planned quantization: nf4 with double quantization (the
    planner's 4-bit byte count assumes both) or LLM.int8."""
    from transformers import BitsAndBytesConfig

    if quant == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype)
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"unknown quantization {quant!r}")


def load_model(resolved: ResolvedModel, model: Teacher, root: Path, placement: Placement, quant: str | None,
               role: str, head: Literal["causal-lm", "extractive-qa"] = "causal-lm") -> PreTrainedModel:
    """The model in eval mode, on the plan's device in its dtype (``place`` checks and records
    it as ``role``). ``quant`` is the plan's choice ("none", "8bit", "4bit" or None); ``head``
    picks a causal LM or an extractive-QA (span) model. A ``random`` model is initialised from its
    own ``random.seed``, directly on the planned device (a 3-8B model initialised on a CPU takes
    minutes; the seed gives one model per device type)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForQuestionAnswering

    auto = AutoModelForQuestionAnswering if head == "extractive-qa" else AutoModelForCausalLM
    quant = quant or "none"
    dtype = placement.torch_dtype
    quantization = bnb_config(quant, dtype) if quant != "none" else None
    if resolved.kind == "random":
        assert model.random is not None
        torch.manual_seed(model.random.seed)
        config = AutoConfig.for_model(**resolved.config)
        with placement.torch_device:
            built = auto.from_config(config, dtype=dtype)
        if quantization is not None:
            built = reload_quantized(built, quantization, placement)
        return place(built, placement, role, quant).eval()
    if resolved.kind == "gguf":
        gguf_weights(resolved, root)
    try:
        loaded = auto.from_pretrained(
            model_location(resolved, root, weights=True), revision=resolved.revision, use_safetensors=True,
            trust_remote_code=model.trust_remote_code, dtype=dtype, quantization_config=quantization,
            device_map=placement.device_map())
    except OSError as exc:
        if "safetensors" not in str(exc):
            raise
        raise UnsafeWeights(f"{resolved.role} {resolved.ref} has no safetensors weights; distill does not load "
                            "pickled (.bin/.pt) weights, which can run code when loaded",
                            hint="convert once, in a process you trust: AutoModelForCausalLM.from_pretrained(path)"
                                 ".save_pretrained(path, safe_serialization=True)") from None
    return place(loaded, placement, role, quant).eval()


def reload_quantized(model: PreTrainedModel, quantization: Any, placement: Placement,
                     **kwargs: Any) -> PreTrainedModel:
    """``from_config`` cannot quantize: save as safetensors and reload with the bitsandbytes
    config onto the planned device, as a real checkpoint would load."""
    import tempfile

    cls = type(model)
    with tempfile.TemporaryDirectory(prefix="distill-random-") as folder:
        model.save_pretrained(folder, safe_serialization=True)
        del model  # the caller's reference is dropped too when it rebinds: one copy in memory
        return cls.from_pretrained(folder, quantization_config=quantization, dtype=placement.torch_dtype,
                                   device_map=placement.device_map(), trust_remote_code=False, **kwargs)


def model_location(resolved: ResolvedModel, root: Path, weights: bool = False) -> str:
    """What ``from_pretrained`` loads: a local model's folder (relative to the Distillfile), the
    folder made from a GGUF file (:func:`gguf_weights` gives it its weights), or a hub model's
    snapshot in the Hugging Face cache when it holds what is needed (``weights``: the tokenizer
    files the plan fetched, and the safetensors weights too), so that nothing asks the hub again
    (transformers retries an unreachable hub for minutes). Otherwise the hub id, at the pinned
    revision passed beside it, which downloads; refused when the plan was made offline. A cut
    student's tokenizer is its teacher's, its weights are its folder under ``.distill/cut``,
    written at the first call (:func:`cut_weights`)."""
    if resolved.kind == "cut":
        assert resolved.cut_from is not None
        return str(cut_weights(resolved, root)) if weights else model_location(resolved.cut_from, root)
    if resolved.kind == "gguf":
        assert resolved.folder is not None
        return str(resolved.folder)
    if resolved.kind == "local":
        return str((root / Path(resolved.ref).expanduser()).resolve())
    if resolved.folder is not None and (not weights or _has_weights(resolved.folder)):
        return str(resolved.folder)
    if resolved.offline:
        raise WeightsNotCached(
            f"{resolved.role} {resolved.ref} (revision {resolved.revision}): its safetensors weights are not in "
            "the Hugging Face cache, and the hub is not consulted (offline)",
            hint=f"on a machine with access run `hf download {resolved.ref} --revision {resolved.revision}`, "
                 "or build without --offline and HF_HUB_OFFLINE")
    return resolved.ref


def _has_weights(folder: Path) -> bool:
    """Every safetensors file the folder's weights need: the single file, or each shard its
    index names."""
    from distill.runtime.cut import weight_files

    files = weight_files(folder)
    return bool(files) and all(path.is_file() for path in files)


def weights_folder(resolved: ResolvedModel, root: Path) -> Path:
    """A local, GGUF, hub or cut model as a folder holding its safetensors weights on this
    machine: a local folder as it is, a GGUF file's converted folder (dequantized at the first
    call), a cut student's folder (written at the first call), a hub model's snapshot in the cache
    at the pinned commit, fetched first when its weights are not there (safetensors and the small
    files only: a repo's pickled copies are never loaded)."""
    if resolved.kind == "cut":
        return cut_weights(resolved, root)
    if resolved.kind == "gguf":
        gguf_weights(resolved, root)
    location = model_location(resolved, root, weights=True)
    if resolved.kind == "hub" and location == resolved.ref:  # weights not cached yet: fetch them
        from huggingface_hub import snapshot_download

        location = snapshot_download(resolved.ref, revision=resolved.revision,
                                     allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    return Path(location)


def cut_weights(resolved: ResolvedModel, root: Path) -> Path:
    """A cut student's folder, written from its teacher's weights at the first load, then reused."""
    from distill.runtime.cut import cut_folder, write_cut

    assert resolved.kind == "cut" and resolved.cut_from is not None
    source = weights_folder(resolved.cut_from, root)
    folder = cut_folder(resolved, root, source)
    write_cut(resolved, source, folder)
    return folder


def gguf_weights(resolved: ResolvedModel, root: Path) -> None:
    """A GGUF source's weights, dequantized into its folder at the first load, then reused; a
    tokenizer needs only the files the plan wrote."""
    from distill.backends.gguf_import import WEIGHTS, write_weights

    assert resolved.kind == "gguf" and resolved.folder is not None
    if not (resolved.folder / WEIGHTS).is_file():
        write_weights((root / Path(resolved.ref).expanduser()).resolve(), resolved.folder)


def load_tokenizer(resolved: ResolvedModel, model: Teacher, root: Path,
                   corpus: Iterable[str] = ()) -> Any:
    """A transformers tokenizer with the chat template the Distillfile asks for.

    A ``random`` model without tokenizer files gets the byte-level BPE trained on the documents
    (``corpus``) with its config's vocab_size, as the chunk stage counted with.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from distill.runtime.sources.tokenizer import SPECIAL_TOKENS, train_byte_bpe
    from distill.runtime.sources.tokenizer import load_tokenizer as load_json

    named = model.random.tokenizer if resolved.kind == "random" and model.random is not None else None
    if resolved.kind == "random" and named is None:
        eos, pad = SPECIAL_TOKENS
        raw = train_byte_bpe(corpus, int(resolved.config.get("vocab_size", 32000)))
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=eos, pad_token=pad,
                                            model_input_names=_input_names(resolved.config))
    elif named is not None and not (root / named).is_dir():
        # A bare tokenizer.json names no special tokens; ours are used when it has them.
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=load_json(root / named),
                                            model_input_names=_input_names(resolved.config))
        vocab = tokenizer.get_vocab()
        tokenizer.eos_token, tokenizer.pad_token = (t if t in vocab else None for t in SPECIAL_TOKENS)
    else:
        folder = root / named if named is not None else model_location(resolved, root)
        tokenizer = AutoTokenizer.from_pretrained(folder, revision=resolved.revision,
                                                  trust_remote_code=model.trust_remote_code)
    if model.chat_template is not None:
        tokenizer.chat_template = _template_text(model.chat_template, root)
    return tokenizer


def _input_names(config: dict[str, Any]) -> list[str]:
    """What a tokenizer made for this config returns: segment ids only for models that embed them
    (BERT's ``type_vocab_size``); DistilBERT and decoders take none and refuse the argument."""
    segments = ["token_type_ids"] if config.get("type_vocab_size", 0) else []
    return ["input_ids", *segments, "attention_mask"]


def align_special_tokens(model: torch.nn.Module, tokenizer: Any) -> None:
    """Give a ``random`` model the tokenizer's BOS/EOS/PAD ids. Its config carries the library
    defaults (llama: BOS 1, EOS 2), which in a tokenizer trained on the spot are ordinary tokens:
    generation would stop at a random byte and exports would declare it as EOS."""
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    generation = getattr(model, "generation_config", None)  # None for encoders (extractive QA)
    for config in (model.config, *([generation] if generation is not None else [])):
        for name, value in ids.items():
            setattr(config, name, value)


def _template_text(template: str, root: Path) -> str:
    """``chat_template`` is Jinja text, or a ``.jinja`` file beside the Distillfile (the compiler
    checked it exists and parses)."""
    if template.endswith(".jinja") and "\n" not in template:
        return (root / template).read_text("utf-8")
    return template
