"""Ollama Modelfiles for GGUF exports: ``ollama create NAME -f model-Q4_K_M.Modelfile``.

Without a TEMPLATE, Ollama guesses a prompt format from the GGUF's Jinja chat template or sends
the bare prompt, and a chat model then answers badly. So the Modelfile carries a TEMPLATE (Ollama's
Go template syntax) for each format in :data:`FORMATS`, written only when it is verified by rendering:
probe conversations (with and without a system turn, several turns, an answer in the history)
rendered by the model's Jinja template with transformers, the code behind ``apply_chat_template``,
and by the Go template with :mod:`distill.backends.go_template` must be equal, character for
character. Otherwise no TEMPLATE, and a warning says so (the export records both in manifest.json
under ``"ollama"``). Stop strings: the text of every EOS token the model declares, then the format's
end-of-turn token.

A template that writes a system prompt of its own when a conversation has none (SmolLM2's "You are a
helpful AI assistant named SmolLM...", Qwen2.5's "You are Qwen...") gets that text as the
Modelfile's SYSTEM: Ollama puts SYSTEM first when a request's first message is not a system one
(server/routes.go), which is the template's own condition; the probes are rendered that way too.

BOS: llama.cpp and Ollama put BOS in front of a prompt themselves when the GGUF says
``tokenizer.ggml.add_bos_token``, so a TEMPLATE never writes it. What the model gets from Ollama is
that BOS (when added) followed by the TEMPLATE's rendering, and that is what gets compared with the
Jinja rendering, whose own leading ``{{ bos_token }}`` (Llama 3, Gemma, Mistral) must be the one the
tokenizer adds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from distill.backends.gguf_tokens import CONVERSATION
from distill.backends.gguf_vocab import adds_bos, eos_ids
from distill.backends.go_template import render as render_go

# Each message in turn, then the assistant's generation prompt (ChatML, Llama 3, Phi-3: every
# role is written the same way).
CHATML_GO = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
             "<|im_start|>assistant\n")
LLAMA3_GO = ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
             "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")
PHI3_GO = "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n"
# Gemma has no system role: the system prompt opens the first user turn (index 1, after the system
# message that Ollama keeps in .Messages), and the assistant is "model".
GEMMA_GO = ('{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}<start_of_turn>user\n'
            "{{ if and $.System (eq $i 1) }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n"
            '{{ else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n'
            "{{ end }}{{- end }}<start_of_turn>model\n")


def _mistral(space: str) -> str:
    """Mistral's ``[INST]`` format: the system prompt opens the last user turn; v3 puts a space
    after ``[INST]`` and before each answer, Tekken (Mistral Nemo) none."""
    return ('{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}[INST]' + space
            + "{{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}\n\n{{ end }}"
            + '{{ .Content }}[/INST]{{- else if eq .Role "assistant" }}' + space
            + "{{ .Content }}</s>{{- end }}{{- end }}")


@dataclass(frozen=True)
class ChatFormat:
    """A prompt format distill writes as an Ollama TEMPLATE.

    Attributes:
        template: the Go template, in Ollama's ``.Messages`` form.
        end_of_turn: what ends the model's turn besides its EOS, as stop strings.
    """

    template: str
    end_of_turn: tuple[str, ...] = ()


# Names as llama.cpp's built-in chat formats call them.
FORMATS = {"chatml": ChatFormat(CHATML_GO, ("<|im_end|>",)), "llama3": ChatFormat(LLAMA3_GO, ("<|eot_id|>",)),
           "gemma": ChatFormat(GEMMA_GO, ("<end_of_turn>",)), "phi3": ChatFormat(PHI3_GO, ("<|end|>",)),
           "mistral-v3": ChatFormat(_mistral(" ")), "mistral-v3-tekken": ChatFormat(_mistral(""))}

# The system prompt has two lines and the conversation (gguf_tokens') two user turns around an
# answer, so where a format puts the system prompt (first or last user turn, own turn) shows.
PROBE_SYSTEM = {"role": "system", "content": "Answer briefly.\nQuote the manual."}
PLAIN_PROBES = ((CONVERSATION[0],), CONVERSATION)
SYSTEM_PROBES = ((PROBE_SYSTEM, CONVERSATION[0]), (PROBE_SYSTEM, *CONVERSATION))
NO_TEMPLATE = ("the Modelfile has no TEMPLATE, so Ollama guesses the prompt format; check it with "
               "`ollama show NAME --template` and add a TEMPLATE if it is wrong")

Chat = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class OllamaChat:
    """What a Modelfile says about chatting.

    Attributes:
        format: the :data:`FORMATS` name its TEMPLATE renders, or None (no TEMPLATE).
        warning: why there is no TEMPLATE for a model with a chat template, or None.
        stops: the PARAMETER stop strings.
        system: the SYSTEM prompt: what the chat template writes when a conversation has none.
    """

    format: str | None
    warning: str | None
    stops: tuple[str, ...]
    system: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"template": self.format, "warning": self.warning}


def modelfile_name(gguf_name: str) -> str:
    return f"{Path(gguf_name).stem}.Modelfile"


def ollama_chat(tokenizer: Any, model_dir: Path) -> OllamaChat:
    """The Modelfile's chat settings for a model folder's GGUF export."""
    match = chat_format(tokenizer.chat_template, tokenizer.special_tokens_map, adds_bos(tokenizer))
    ends = FORMATS[match.format].end_of_turn if match.format else ()
    stops = [*tokenizer.convert_ids_to_tokens(eos_ids(model_dir, tokenizer)), *ends]
    return OllamaChat(match.format, match.warning, tuple(dict.fromkeys(stops)), match.system)


def write_modelfile(folder: Path, gguf_name: str, chat: OllamaChat) -> str:
    """Write the Modelfile for ``folder/gguf_name``; returns its file name."""
    lines = [f"FROM ./{gguf_name}"]
    if chat.format:
        lines.append(f'TEMPLATE """{FORMATS[chat.format].template}"""')
    if chat.system:
        lines.append(f'SYSTEM """{chat.system}"""')
    # Ollama's Modelfile parser takes a quoted value verbatim, between the first and the last
    # quote (no escapes; json.dumps would leave "\uff5c" in DeepSeek's EOS), and a quote before
    # white space ends it early, so a stop string with a quote is left out: Ollama still stops at
    # the EOS token itself, by id.
    lines += [f'PARAMETER stop "{stop}"' for stop in chat.stops if '"' not in stop]
    name = modelfile_name(gguf_name)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return name


class ChatMatch(NamedTuple):
    """The :data:`FORMATS` name a chat template renders as (None: none), the system prompt it
    writes by itself (the Modelfile's SYSTEM), and why there is no TEMPLATE."""

    format: str | None
    system: str | None
    warning: str | None


def chat_format(template: str | None, special_tokens: Mapping[str, Any], bos_added: bool) -> ChatMatch:
    """The :data:`FORMATS` name whose Go template renders every probe as the Jinja ``template``
    does, with ``special_tokens`` (``bos_token``, ``eos_token``, ...) as its variables and BOS
    prepended when ``bos_added``, given the template's own system prompt as SYSTEM when it writes
    one; else no format and a warning. No template: no format and no warning, since Ollama then
    sends the bare prompt, which is right for a model that never learnt to chat.
    """
    if not template:
        return ChatMatch(None, None, None)
    try:
        wanted: list[tuple[Chat, str]] = [(chat, _jinja(template, chat, special_tokens)) for chat in PLAIN_PROBES]
    except Exception as error:  # noqa: BLE001 - a chat template is code; any failure is a refusal
        return ChatMatch(None, None, f"the chat template fails on a plain conversation ({type(error).__name__}: "
                                     f"{error}); {NO_TEMPLATE}")
    for chat in SYSTEM_PROBES:
        # A template may refuse system turns (Gemma 2's raises): the format decides where Ollama puts them.
        with contextlib.suppress(Exception):
            wanted.append((chat, _jinja(template, chat, special_tokens)))
    bos = str(special_tokens.get("bos_token") or "") if bos_added else ""
    systems = {name: _own_system(form, wanted[0], bos) for name, form in FORMATS.items()}
    matching = {name: [bos + render_go(form.template, ollama_values(_with_system(chat, systems[name]))) == text
                       for chat, text in wanted]
                for name, form in FORMATS.items()}
    found = next((name for name, same in matching.items() if all(same)), None)
    if found:
        return ChatMatch(found, systems[found], None)
    # A format that renders the conversations without a system turn says what the template does
    # differently: it drops, moves or rewrites the system prompt.
    near = [name for name, same in matching.items() if all(same[:len(PLAIN_PROBES)])]
    why = f" ({near[0]} except with a system turn)" if near else ""
    return ChatMatch(None, None, f"the chat template renders none of the formats {', '.join(FORMATS)} "
                                 f"exactly{why}; {NO_TEMPLATE}")


def _own_system(form: ChatFormat, plain: tuple[Chat, str], bos: str) -> str | None:
    """The system prompt the template wrote into ``plain`` (a conversation without one, and its
    Jinja rendering), read at the place ``form`` puts a system prompt; None when it wrote none
    there, or one a Modelfile cannot quote."""
    chat, text = plain
    marker = "\x00"  # in no probe and no template
    rendered = bos + render_go(form.template, ollama_values([{"role": "system", "content": marker}, *chat]))
    if rendered.count(marker) != 1:
        return None
    before, after = rendered.split(marker)
    if len(text) <= len(before) + len(after) or not (text.startswith(before) and text.endswith(after)):
        return None
    system = text[len(before):len(text) - len(after)]
    return system if '"""' not in system else None


def _with_system(chat: Chat, system: str | None) -> Chat:
    """``chat`` as Ollama hands it to a TEMPLATE with SYSTEM ``system``: first, unless the chat
    opens with a system message of its own."""
    if system is None or (chat and chat[0]["role"] == "system"):
        return chat
    return [{"role": "system", "content": system}, *chat]


def _jinja(template: str, chat: Chat, special_tokens: Mapping[str, Any]) -> str:
    """``apply_chat_template(chat, tokenize=False, add_generation_prompt=True)``: the same
    transformers function, given the template and the special tokens as that passes them."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(  # type: ignore[str-unpack]  # transformers says -> str; returns a pair
        conversations=[[dict(m) for m in chat]], chat_template=template, add_generation_prompt=True,
        **special_tokens)
    return rendered[0]


def ollama_values(chat: Chat) -> dict[str, Any]:
    """What Ollama hands a TEMPLATE for ``chat`` (its ``template.Execute`` after ``collate``):
    .Messages, where consecutive messages of one role (tool results excepted) are merged with a
    blank line between them, and .System, every system message joined the same way."""
    messages: list[dict[str, str]] = []
    for message in chat:
        if messages and messages[-1]["Role"] == message["role"] != "tool":
            messages[-1]["Content"] += "\n\n" + message["content"]
        else:
            messages.append({"Role": message["role"], "Content": message["content"]})
    system = "\n\n".join(m["content"] for m in chat if m["role"] == "system")
    return {"System": system, "Messages": messages, "Tools": [], "Response": ""}
