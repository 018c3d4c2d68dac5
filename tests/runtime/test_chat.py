"""`distill chat`: a tiny seeded llama with a ChatML template, exported to GGUF (F16) and ONNX,
answers as the Hugging Face model does greedily, keeps the conversation's history, and refuses
paths it cannot chat with."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from distill.backends.export import export_verified, parse_target
from distill.compiler.cli import main
from distill.runtime import chat
from distill.runtime.sources.tokenizer import train_byte_bpe
from tests.runtime.evaluate.test_runners import FAMILIES, save_family

TEXT = ["the quick brown fox jumps over the lazy dog; a model learns what its teacher knows.",
        "Hello, world! how are you? fine, thanks."] * 20
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")
NEW_TOKENS = 5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hidden 256 (K-quant friendly, as the GGUF tests), byte-level BPE, <|im_end|> the EOS."""
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("llama")
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=train_byte_bpe(TEXT, 320), eos_token="<|im_end|>", pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        "llama", hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=128, bos_token_id=0,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=1)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def artifacts(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    export_verified(model_dir, parse_target("gguf:F16"), out / "gguf")
    export_verified(model_dir, parse_target("onnx"), out / "onnx")
    return {"gguf": out / "gguf", "onnx": out / "onnx"}


def hf_reply(model_dir: Path, messages: list[dict[str, str]]) -> str:
    """What the Hugging Face model answers greedily to the same chat-template prompt."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False,
                             pad_token_id=1)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def _chat(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["chat", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("kind", ["gguf", "onnx"])
def test_once_answers_as_the_hf_model(kind: str, artifacts: dict[str, Path], model_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _chat([str(artifacts[kind]), "--once", "hello", "--max-new-tokens", str(NEW_TOKENS)], capsys)
    assert code == 0, err
    assert out == hf_reply(model_dir, [{"role": "user", "content": "hello"}]) + "\n"


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_once_answers_for_families_optimum_misreads(arch: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Qwen3 (head_dim != hidden / heads) and GQA Phi-3 chat as the HF model answers: the session
    sizes optimum's first cache from the graph, as verification does."""
    model_dir = save_family(tmp_path / arch, arch, **FAMILIES[arch])
    export_verified(model_dir, parse_target("onnx"), tmp_path / "onnx")
    code, out, err = _chat([str(tmp_path / "onnx"), "--once", "hello", "--max-new-tokens", str(NEW_TOKENS)], capsys)
    assert code == 0, err
    assert out == hf_reply(model_dir, [{"role": "user", "content": "hello"}]) + "\n"


def test_a_gguf_file_and_a_system_message(artifacts: dict[str, Path], model_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = artifacts["gguf"] / "model-F16.gguf"
    code, out, err = _chat([str(path), "--once", "hi there", "--system", "Answer briefly.",
                            "--max-new-tokens", str(NEW_TOKENS)], capsys)
    assert code == 0, err
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "hi there"}]
    assert out == hf_reply(model_dir, messages) + "\n"


@pytest.mark.parametrize("kind", ["gguf", "onnx"])
def test_stdin_conversation_keeps_history(kind: str, artifacts: dict[str, Path], model_dir: Path,
                                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    session_class = chat.GgufSession if kind == "gguf" else chat.OnnxSession
    rendered: list[str] = []
    original = session_class.reply

    def recording(self: Any, messages: list[dict[str, str]], on_text: Any = None) -> str:
        rendered.append(self.render(messages))
        return original(self, messages, on_text)

    monkeypatch.setattr(session_class, "reply", recording)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\nhow are you?\n/exit\nnever read\n"))
    code, out, err = _chat([str(artifacts[kind]), "--max-new-tokens", str(NEW_TOKENS)], capsys)
    assert code == 0, err
    first = hf_reply(model_dir, [{"role": "user", "content": "hello"}])
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": first},
               {"role": "user", "content": "how are you?"}]
    assert out == first + "\n" + hf_reply(model_dir, history) + "\n"
    assert len(rendered) == 2
    assert rendered[1].startswith(rendered[0] + first + "<|im_end|>\n")
    assert rendered[1].endswith("<|im_start|>user\nhow are you?<|im_end|>\n<|im_start|>assistant\n")


def test_unusable_paths_are_usage_errors(artifacts: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _chat([str(tmp_path / "nothing"), "--once", "hi"], capsys)[2].count("does not exist") == 1
    code, _, err = _chat([str(tmp_path), "--once", "hi"], capsys)
    assert code == 2 and "has no manifest.json" in err
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "tflite"}))
    code, _, err = _chat([str(tmp_path), "--once", "hi"], capsys)
    assert code == 2 and "manifest.json: no record header; this distill reads 'manifest' records" in err
    manifest = json.loads((artifacts["gguf"] / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "kind": "tflite"}))
    code, _, err = _chat([str(tmp_path), "--once", "hi"], capsys)
    assert code == 2 and "manifest record, kind: Input should be 'gguf' or 'onnx'" in err
    code, _, err = _chat([str(artifacts["gguf"]), "--quant", "Q4_0", "--once", "hi"], capsys)
    assert code == 2 and "no Q4_0 file" in err and "available: F16" in err
    code, _, err = _chat([str(artifacts["onnx"]), "--quant", "Q4_0", "--once", "hi"], capsys)
    assert code == 2 and "--quant picks a GGUF file" in err


class _Tight:
    """A session whose context holds one exchange: the loop must forget the oldest."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def render(self, messages: list[dict[str, str]]) -> str:
        return repr(messages)

    def reply(self, messages: list[dict[str, str]], on_text: Any = None) -> str:
        self.seen.append(len(messages))
        if len(messages) > 2:
            raise chat.ContextFull("too long")
        return "ok"


def test_a_full_context_forgets_the_oldest_exchange_keeping_the_system() -> None:
    session, out = _Tight(), io.StringIO()
    messages = chat.converse(session, ["a", "b"], out, system="sys")
    assert session.seen == [2, 4, 2] and [m["content"] for m in messages] == ["sys", "b", "ok"]
    assert "forgot the oldest exchange" in out.getvalue()


@pytest.mark.parametrize("kind", ["gguf", "onnx"])
def test_sampling_runs_and_an_overlong_message_is_refused(kind: str, artifacts: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _chat([str(artifacts[kind]), "--once", "hello", "--temperature", "0.8",
                            "--max-new-tokens", str(NEW_TOKENS)], capsys)
    assert code == 0 and out.endswith("\n"), err
    # The model's context is 128 tokens; the message alone is longer.
    code, _, err = _chat([str(artifacts[kind]), "--once", "the quick brown fox " * 60], capsys)
    assert code == 2 and "the context holds 128" in err
