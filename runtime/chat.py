"""``distill chat``: talk to an exported artifact, keeping the conversation's history.

A ``Session`` renders a conversation with the model's own chat template and generates the reply:
``GgufSession`` runs llama.cpp in this process (llama-cpp-python) with the template stored in the
GGUF (``tokenizer.chat_template``, rendered by llama-cpp-python's ``Jinja2ChatFormatter``, as its
server does); ``OnnxSession`` runs onnxruntime through optimum with the tokenizer saved beside the
ONNX model (or in the source model folder the manifest records). Both stop at an end-of-generation
token or after ``max_new_tokens``; temperature 0 is greedy decoding.

The GGUF path imports no torch or transformers, so it starts in well under a second.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, cast

from distill.compiler.errors import DistillError, UsageError
from distill.compiler.records.manifest import MANIFEST, Manifest

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage

Messages = list[dict[str, str]]
OnText = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    seed: int = 0  # for temperature > 0, so a sampled session can be replayed


class ContextFull(DistillError):
    """The rendered conversation plus the reply's budget exceeds the model's context."""


class Session(Protocol):
    def render(self, messages: Messages) -> str:
        """The prompt text the chat template makes of ``messages`` (generation prompt added)."""
        ...

    def reply(self, messages: Messages, on_text: OnText | None = None) -> str:
        """The assistant's next message; ``on_text`` receives it piece by piece as it is made."""
        ...


# ---------------------------------------------------------------- opening an artifact


def open_session(path: Path, quant: str | None, settings: Settings) -> Session:
    """A session for an export folder (its manifest says the kind), a ``.gguf`` or a ``.onnx`` file.

    Raises:
        UsageError: a missing path, a folder without manifest.json, an unknown kind or quant, or
            an artifact that does not generate text (extractive QA).
    """
    if not path.exists():
        raise UsageError(f"{path} does not exist", hint="pass an export folder or a .gguf file")
    if path.is_file() and path.suffix == ".gguf":
        return GgufSession(path, settings)
    folder = path if path.is_dir() else path.parent
    if not (folder / MANIFEST).is_file():
        raise UsageError(f"{folder} has no {MANIFEST}",
                         hint="pass a folder written by `distill export` or a .gguf file")
    manifest = Manifest.read(folder / MANIFEST)
    if manifest.kind == "gguf":
        return GgufSession(folder / _gguf_file(manifest, quant, path), settings)
    if quant is not None:
        raise UsageError("--quant picks a GGUF file; an ONNX folder holds one model")
    if manifest.task == "question-answering":
        raise UsageError(f"{folder} is an extractive QA model: it marks answer spans, it does not chat")
    return OnnxSession(folder, manifest, settings)


def _gguf_file(manifest: Manifest, quant: str | None, path: Path) -> str:
    """The file of ``quant`` (default: the first quant the manifest lists)."""
    files = {entry.quant: entry.path for entry in manifest.files if entry.quant is not None}
    if path.is_file():  # a file inside an export folder: that file
        return path.name
    wanted = quant or (manifest.quants or (manifest.quant,))[0]
    if wanted not in files:
        raise UsageError(f"no {wanted} file in {path}", hint=f"available: {', '.join(files) or 'none'}")
    return files[wanted]


# ---------------------------------------------------------------- the conversation loop


def converse(session: Session, lines: Iterable[str], out: TextIO, system: str | None = None,
             prompt: bool = False) -> Messages:
    """Answer each line as the user's next message, history kept, until the lines end or
    ``/exit``; replies stream to ``out``. Returns the conversation."""
    messages: Messages = [{"role": "system", "content": system}] if system else []
    for line in lines:
        text = line.rstrip("\n")
        if text.strip() == "/exit":
            break
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": _answer(session, messages, out)})
        if prompt:
            out.write("> ")
            out.flush()
    return messages


def _answer(session: Session, messages: Messages, out: TextIO) -> str:
    """The reply, streamed; when the history no longer fits the context, the oldest exchanges
    are forgotten (the system message is kept), and said so."""
    def write(piece: str) -> None:
        out.write(piece)
        out.flush()

    while True:
        try:
            reply = session.reply(messages, write)
            write("\n")
            return reply
        except ContextFull as full:
            start = 1 if messages[0]["role"] == "system" else 0
            if len(messages) - start <= 1:
                raise
            del messages[start:start + 2]
            write(f"[{full.message}; forgot the oldest exchange]\n")


# ---------------------------------------------------------------- GGUF (llama.cpp)


def _check_gguf(path: Path) -> None:
    """A file llama.cpp can be handed: GGUF, whole (its header and metadata read without it)."""
    from distill.backends.gguf_metadata import GgufFormatError, read_metadata

    try:
        read_metadata(path)
    except (OSError, GgufFormatError) as error:
        raise UsageError(f"{path} is not a readable GGUF file: {error}") from None


class GgufSession:
    """llama.cpp in this process, with the chat template stored in the GGUF."""

    def __init__(self, path: Path, settings: Settings) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from distill.backends.gguf_writer import THREADS
        from distill.backends.llama_cpp import open_llama

        self.settings = settings
        _check_gguf(path)
        try:
            # n_ctx=0: the context length the GGUF declares.
            self.llm = open_llama(path, 0, THREADS, seed=settings.seed)
        except ValueError as error:  # llama.cpp says only "Failed to load model from file"
            raise UsageError(f"llama.cpp cannot load {path}: {error}", hint="an architecture or quantization "
                             "this llama.cpp does not know, or a damaged file") from None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise UsageError(f"{path} has no chat template (tokenizer.chat_template)",
                             hint="export a model whose tokenizer has a chat_template")
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=self._text(self.llm.token_eos()),
                                             bos_token=self._text(self.llm.token_bos()))
        self.vocab = self.llm._model.vocab

    def _text(self, token: int) -> str:
        return self.llm._model.token_get_text(token) if token != -1 else ""

    def render(self, messages: Messages) -> str:
        return self._formatted(messages).prompt

    def _formatted(self, messages: Messages) -> Any:
        # llama-cpp-python types its messages as TypedDicts of each role; ours are plain dicts of
        # role and content, which is what those TypedDicts are at run time.
        return self.formatter(messages=cast("list[ChatCompletionRequestMessage]", messages))

    def _prompt_ids(self, messages: Messages) -> list[int]:
        # Tokenized as llama-cpp-python's chat handler does: special tokens parsed, BOS only when
        # the template did not write its own.
        result = self._formatted(messages)
        return self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def reply(self, messages: Messages, on_text: OnText | None = None) -> str:
        import llama_cpp

        ids = self._prompt_ids(messages)
        # llama.cpp pads its context to a multiple of 256; the model was trained for n_ctx_train.
        context = min(self.llm.n_ctx(), self.llm._model.n_ctx_train())
        budget = min(self.settings.max_new_tokens, context - len(ids))
        if budget <= 0:
            raise ContextFull(f"the conversation is {len(ids)} tokens; the context holds {context}")
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        made = 0
        # top_k 0, top_p 1, min_p 0: plain temperature sampling (greedy at 0), no hidden filters.
        for token in self.llm.generate(ids, temp=self.settings.temperature, top_k=0, top_p=1.0, min_p=0.0,
                                       repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                break
            piece = decoder.decode(self.llm.detokenize([token], special=False))
            pieces.append(piece)
            if on_text and piece:
                on_text(piece)
            made += 1
            if made >= budget:
                break
        tail = decoder.decode(b"", final=True)
        if on_text and tail:
            on_text(tail)
        return "".join(pieces) + tail


# ---------------------------------------------------------------- ONNX (onnxruntime)


class OnnxSession:
    """onnxruntime through optimum, with the tokenizer beside the model or in its source folder."""

    def __init__(self, folder: Path, manifest: Manifest, settings: Settings) -> None:
        from distill.backends.onnx import load_exported

        self.settings = settings
        _refuse_foreign_code(folder)
        self.tokenizer = _onnx_tokenizer(folder, manifest)
        if not self.tokenizer.chat_template:
            raise UsageError(f"the tokenizer of {folder} has no chat template",
                             hint="export a model whose tokenizer has a chat_template")
        # The backend's loader, as verification ran it: optimum alone sizes the first cache wrongly
        # for GQA phi3/gemma2 and a head_dim != hidden / heads (qwen3, gemma2).
        self.model = load_exported(folder)

    def render(self, messages: Messages) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def reply(self, messages: Messages, on_text: OnText | None = None) -> str:
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        limit = getattr(self.model.config, "max_position_embeddings", None)
        budget = self.settings.max_new_tokens if limit is None else min(self.settings.max_new_tokens,
                                                                         limit - ids.shape[1])
        if budget <= 0:
            raise ContextFull(f"the conversation is {ids.shape[1]} tokens; the context holds {limit}")
        # As on the GGUF side: plain temperature sampling (top_k 0 and top_p 1 switch off the
        # generation config's filters), greedy at 0.
        sampling = ({"do_sample": True, "temperature": self.settings.temperature, "top_k": 0, "top_p": 1.0}
                    if self.settings.temperature > 0 else {"do_sample": False})
        torch.manual_seed(self.settings.seed)
        with torch.no_grad():
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget, **sampling,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                streamer=_streamer(self.tokenizer, on_text) if on_text else None)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def _refuse_foreign_code(folder: Path) -> None:
    from distill.backends.base import foreign_code

    reason = foreign_code(folder)
    if reason is not None:
        raise UsageError(reason, hint="chat with an export distill wrote from a supported family")


def _onnx_tokenizer(folder: Path, manifest: Manifest) -> Any:
    from transformers import AutoTokenizer

    for candidate in (folder, Path(manifest.source.model_dir)):
        if candidate.is_dir() and any((candidate / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")):
            _refuse_foreign_code(candidate)
            return AutoTokenizer.from_pretrained(candidate, trust_remote_code=False)
    raise UsageError(f"no tokenizer beside {folder} or in the source folder its manifest records")


def _streamer_class() -> Any:
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        """transformers' streamer, handing text to a callback instead of printing it."""

        def __init__(self, tokenizer: Any, on_text: OnText) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.on_text = on_text

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                self.on_text(text)

    return Streamer


def _streamer(tokenizer: Any, on_text: OnText) -> Any:
    return _streamer_class()(tokenizer, on_text)
