"""Ollama Modelfiles: a TEMPLATE for each chat format distill can verify, checked against the
models' real Jinja chat templates (tests/fixtures/chat_templates) on probe conversations; none,
with a warning, for a template that maps to none of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers

from distill.backends import ollama
from distill.backends.gguf_tokens import CONVERSATION
from distill.backends.go_template import render
from distill.backends.run_commands import llama_cpp_command
from distill.compiler.records.manifest import Check, ExportSource, Manifest
from distill.compiler.records.manifest import OllamaChat as RecordedChat
from distill.runtime.sources.tokenizer import train_byte_bpe
from tests.backends.modelfiles import parse_modelfile

TEMPLATES = Path(__file__).resolve().parents[1] / "fixtures" / "chat_templates"
# Each fixture with the BOS text its model's tokenizer has and whether that tokenizer adds it to a
# text (tokenizer.ggml.add_bos_token in the GGUF), and the format it must map to.
FAMILIES = [("chatml", "<s>", False, "chatml"), ("llama3", "<|begin_of_text|>", True, "llama3"),
            ("gemma2", "<bos>", True, "gemma"), ("gemma3", "<bos>", True, "gemma"),
            ("phi3.5", "<s>", False, "phi3"), ("mistral-v3", "<s>", True, "mistral-v3"),
            ("mistral-nemo", "<s>", True, "mistral-v3-tekken")]


def _template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text("utf-8")


@pytest.mark.parametrize(("fixture", "bos", "adds_bos", "expected"), FAMILIES)
def test_each_family_maps_to_its_format(fixture: str, bos: str, adds_bos: bool, expected: str) -> None:
    assert ollama.chat_format(_template(fixture), {"bos_token": bos, "eos_token": "</s>"}, adds_bos) == (
        expected, None, None)


@pytest.mark.parametrize(("fixture", "system"), [
    ("smollm2", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
    ("qwen2.5", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")])
def test_a_template_that_writes_its_own_system_prompt_gets_it_as_system(fixture: str, system: str) -> None:
    """Ollama puts SYSTEM first when a request opens with no system message, as these templates
    do with their own: ChatML with that SYSTEM renders every probe, with or without a system turn."""
    assert ollama.chat_format(_template(fixture), {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
                              False) == ("chatml", system, None)


def test_the_probes_put_the_system_prompt_where_the_model_expects_it() -> None:
    """Gemma opens the first user turn with it, Mistral the last: the probes tell them apart."""
    chat = ollama.ollama_values(ollama.SYSTEM_PROBES[1])
    gemma = render(ollama.GEMMA_GO, chat)
    assert gemma.startswith("<start_of_turn>user\nAnswer briefly.\nQuote the manual.\n\nWhat does a student")
    assert gemma.count("Answer briefly") == 1 and gemma.endswith("<start_of_turn>model\n")
    mistral = render(ollama.FORMATS["mistral-v3"].template, chat)
    assert mistral.startswith("[INST] What does a student model learn?[/INST] What its teacher knows")
    assert mistral.endswith("</s>[INST] Answer briefly.\nQuote the manual.\n\nÜnïcödé, tabs\tand 123?[/INST]")


def test_a_bos_the_gguf_does_not_add_fails_the_match() -> None:
    # Llama 3's template writes <|begin_of_text|> itself; if llama.cpp/Ollama did not add it, the
    # model would get a prompt without it, so no TEMPLATE.
    name, _, warning = ollama.chat_format(_template("llama3"), {"bos_token": "<|begin_of_text|>"}, False)
    assert name is None and "none of the formats" in warning


@pytest.mark.parametrize(("fixture", "words"), [
    ("llama3.2", "none of the formats chatml, llama3, gemma, phi3, mistral-v3, mistral-v3-tekken exactly "
                 "(llama3 except with a system turn);"),  # today's date before every system prompt
    ("phi3-mini-2024-04", "exactly (phi3 except with a system turn)")])  # drops system turns
def test_templates_that_map_to_no_format_get_a_warning(fixture: str, words: str) -> None:
    name, system, warning = ollama.chat_format(_template(fixture), {"bos_token": "<s>", "eos_token": "</s>"}, True)
    assert name is None and system is None
    assert words in warning and "`ollama show NAME --template`" in warning


def test_custom_and_broken_templates() -> None:
    custom = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}### assistant:"
    assert ollama.chat_format(custom, {}, False)[0] is None
    broken = "{{ raise_exception('no chat here') }}"
    name, _, warning = ollama.chat_format(broken, {}, False)
    assert name is None
    assert warning.startswith("the chat template fails on a plain conversation (TemplateError: no chat here)")
    # No chat template: Ollama sends the bare prompt, right for a base model; nothing to warn about.
    assert ollama.chat_format(None, {}, False) == (None, None, None)


def test_ollama_values_collate_as_ollama_does() -> None:
    chat = [{"role": "system", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"},
            {"role": "user", "content": "d"}, {"role": "tool", "content": "e"}, {"role": "tool", "content": "f"}]
    values = ollama.ollama_values(chat)
    assert values["System"] == "a\n\nb"
    assert values["Messages"] == [{"Role": "system", "Content": "a\n\nb"}, {"Role": "user", "Content": "c\n\nd"},
                                  {"Role": "tool", "Content": "e"}, {"Role": "tool", "Content": "f"}]


def _llama3_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE with Llama 3's special tokens, adding <|begin_of_text|> to every text."""
    from tokenizers import processors

    text = ["the quick brown fox jumps over the lazy dog", "What its teacher knows, in fewer weights."] * 10
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=train_byte_bpe(text, 300), bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
        additional_special_tokens=["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    bos = tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    tokenizer.chat_template = _template("llama3")
    return tokenizer


def test_modelfile_parses_as_ollama_reads_it(tmp_path: Path) -> None:
    tokenizer = _llama3_tokenizer()
    chat = ollama.ollama_chat(tokenizer, tmp_path)  # no config.json: the tokenizer's EOS
    assert chat == ollama.OllamaChat("llama3", None, ("<|end_of_text|>", "<|eot_id|>"))
    assert chat.to_json() == {"template": "llama3", "warning": None}
    name = ollama.write_modelfile(tmp_path, "model-Q4_K_M.gguf", chat)
    assert name == "model-Q4_K_M.Modelfile"
    assert parse_modelfile(tmp_path / name) == [
        ("FROM", "./model-Q4_K_M.gguf"), ("TEMPLATE", ollama.LLAMA3_GO),
        ("PARAMETER", "stop <|end_of_text|>"), ("PARAMETER", "stop <|eot_id|>")]


def test_a_default_system_prompt_is_the_modelfiles_system(tmp_path: Path) -> None:
    chat = ollama.OllamaChat("chatml", None, ("<|im_end|>",), "You are SmolLM.\nBe brief.")
    ollama.write_modelfile(tmp_path, "model-Q8_0.gguf", chat)
    assert parse_modelfile(tmp_path / "model-Q8_0.Modelfile") == [
        ("FROM", "./model-Q8_0.gguf"), ("TEMPLATE", ollama.CHATML_GO), ("SYSTEM", "You are SmolLM.\nBe brief."),
        ("PARAMETER", "stop <|im_end|>")]


def test_no_template_and_unwritable_stops(tmp_path: Path) -> None:
    chat = ollama.OllamaChat(None, "why", ("<｜end▁of▁sentence｜>", 'say "bye"'))
    ollama.write_modelfile(tmp_path, "model-F16.gguf", chat)
    # Raw UTF-8, not JSON escapes (Ollama reads a quoted value verbatim); the quoted stop is left out.
    assert parse_modelfile(tmp_path / "model-F16.Modelfile") == [
        ("FROM", "./model-F16.gguf"), ("PARAMETER", "stop <｜end▁of▁sentence｜>")]


def test_every_format_renders_a_conversation_it_starts_and_ends_right() -> None:
    """Sanity of the Go templates themselves: every turn appears once, in order, and the
    prompt ends where the model's answer starts."""
    chat = ollama.ollama_values(CONVERSATION)
    openers = {"chatml": "<|im_start|>assistant\n", "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
               "gemma": "<start_of_turn>model\n", "phi3": "<|assistant|>\n", "mistral-v3": "[/INST]",
               "mistral-v3-tekken": "[/INST]"}
    for name, form in ollama.FORMATS.items():
        text = render(form.template, chat)
        at = [text.index(m["content"]) for m in CONVERSATION]
        assert at == sorted(at), name
        assert text.endswith(openers[name]), name


def _manifest(*checks: Check) -> Manifest:
    """A GGUF export's manifest with these verification checks."""
    return Manifest(kind="gguf", model="m.gguf", quant="F16", files=(), source=ExportSource("/m", "0" * 64),
                    verification=checks, tools={})


def _chat_check(tokenizer: transformers.PreTrainedTokenizerFast, builtin: str | None) -> Check:
    """The manifest entry of gguf_tokens' chat_template check, as llama.cpp would report it."""
    from distill.backends import gguf_tokens

    got = None
    if tokenizer.chat_template:
        want = tokenizer.apply_chat_template(list(CONVERSATION), tokenize=False, add_generation_prompt=True)
        got = {"rendered": want, "ids": tokenizer(want, add_special_tokens=False).input_ids, "builtin": builtin}
    check = gguf_tokens._chat(tokenizer, got)
    return check


def test_llama_cpp_command_follows_the_chat_template_check() -> None:
    tokenizer = _llama3_tokenizer()
    rendered = tokenizer.apply_chat_template(list(CONVERSATION), tokenize=False, add_generation_prompt=True)
    builtin = _manifest(_chat_check(tokenizer, rendered))
    assert llama_cpp_command(builtin, "out/model Q4.gguf") == "llama-cli -m 'out/model Q4.gguf'"
    for unknown in (None, rendered + " "):  # not a built-in format, or one llama.cpp renders differently
        jinja = _manifest(_chat_check(tokenizer, unknown))
        assert llama_cpp_command(jinja, "m.gguf") == "llama-cli -m m.gguf --jinja"
    assert llama_cpp_command(_manifest(), "m.gguf") == "llama-cli -m m.gguf --jinja"  # no record: the safe choice
    tokenizer.chat_template = None
    plain = _manifest(_chat_check(tokenizer, None))
    assert llama_cpp_command(plain, "m.gguf") == 'llama-completion -m m.gguf -no-cnv -p "Once upon a time"'


def test_export_records_the_format_and_the_run_command(tmp_path: Path) -> None:
    from distill.backends.registry import get_backend
    from distill.compiler.spec import GgufTarget
    from tests.backends.test_gguf import _model

    artifact = get_backend("gguf").export(_model(tmp_path / "llama", "llama"), GgufTarget(("F16",)), tmp_path / "out")
    manifest = Manifest.read(tmp_path / "out" / "manifest.json")
    assert manifest.ollama == RecordedChat(**artifact.extra["ollama"]) == RecordedChat("chatml", None)
    assert parse_modelfile(tmp_path / "out" / "model-F16.Modelfile")[1] == ("TEMPLATE", ollama.CHATML_GO)
    assert llama_cpp_command(manifest, "model-F16.gguf") == "llama-cli -m model-F16.gguf"  # llama.cpp knows ChatML
