"""GGUF backend: a tiny seeded llama (hidden 256, so K-quants are real K-quants) written as F16
GGUF, quantized by llama.cpp to Q8_0 and Q4_K_M, verified against torch; broken exports fail and
leave nothing at the destination."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from distill.backends import gguf as gguf_backend
from distill.backends import gguf_pretokenizers, gguf_vocab, ollama
from distill.backends.base import VerificationError, sha256_file
from distill.backends.registry import BACKENDS, get_backend
from distill.compiler.spec import GgufTarget
from distill.runtime.sources.tokenizer import train_byte_bpe
from tests.backends.modelfiles import parse_modelfile

TEXT = ["the quick brown fox jumps over the lazy dog; a model learns what its teacher knows.",
        "Hello, world! 123 4567 don't won't two  spaces\ttab"] * 20
QUANTS = ("Q4_K_M", "Q8_0")


def _qwen_style_bpe() -> Any:
    """A byte-level BPE with Qwen2's split regex (digits one by one) before the byte mapping."""
    from tokenizers import Regex, pre_tokenizers

    tokenizer = train_byte_bpe(TEXT, 320)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(gguf_pretokenizers.PRE_TOKENIZERS["qwen2"].steps[0]["pattern"]["Regex"]),
                             behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tokenizer


# ChatML, as Qwen2 and many fine-tunes ship it.
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")


def _model(folder: Path, arch: str, tokenizer_object: Any = None, tied: bool = False,
           chat: bool = True, second_eos: int = 0, **config: Any) -> Path:
    """A tiny random model with a trained byte-level BPE; ``chat``: a ChatML template whose
    ``<|im_end|>`` is the EOS, with ``second_eos`` (<|endoftext|>) declared as a second EOS;
    ``config`` overrides the model config."""
    tokenizer = transformers.PreTrainedTokenizerFast(  # ids: 0 <|endoftext|>, 1 <|pad|>, ...
        tokenizer_object=tokenizer_object or train_byte_bpe(TEXT, 320),
        eos_token="<|im_end|>" if chat else "<|endoftext|>", pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"] if chat else [])
    tokenizer.chat_template = CHATML if chat else None
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    settings = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=128,
                    bos_token_id=0, eos_token_id=list(dict.fromkeys([tokenizer.eos_token_id, second_eos])),
                    pad_token_id=1, tie_word_embeddings=tied)
    built = transformers.AutoConfig.for_model(arch, **{**settings, **config})
    transformers.AutoModelForCausalLM.from_config(built).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(2)
    return _model(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def export(llama: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("deploy") / "gguf"
    return get_backend("gguf").export(llama, GgufTarget(QUANTS), out)


def _checks(report) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks}


def test_export_verifies(export, llama: Path) -> None:
    assert export.kind == "gguf" and export.quant == "Q4_K_M"
    assert export.path.name == "model-Q4_K_M.gguf" and export.sha256 == sha256_file(export.path)
    files = {q: f["path"] for q, f in export.extra["files"].items()}
    assert files == {"Q4_K_M": "model-Q4_K_M.gguf", "Q8_0": "model-Q8_0.gguf",
                     "F16": "model-F16.gguf"}
    assert export.size == sum((export.path.parent / p).stat().st_size for p in files.values())
    report = get_backend("gguf").verify(export, llama)
    assert report.passed, report.failures()
    names = set(_checks(report))
    for quant in files:
        closeness = "logits_max_abs_diff" if quant == "F16" else "kl_divergence"  # float vs quantized
        assert {f"{quant}.sha256", f"{quant}.tensor_types", f"{quant}.{closeness}",
                f"{quant}.logits_top1_agreement"} <= names
    assert {"tokenization_parity", "chat_template", "eos_stop"} <= names


def test_f16_parity_is_tight(export, llama: Path) -> None:
    checks = _checks(get_backend("gguf").verify(export, llama))
    assert checks["F16.logits_top1_agreement"].startswith("1.0000")
    assert float(checks["F16.logits_max_abs_diff"].split()[0]) < 0.05
    assert checks["tokenization_parity"].startswith("12/12")


def test_quant_tensor_types(export) -> None:
    types = {q: f["tensor_types"] for q, f in export.extra["files"].items()}
    # 2 layers x 7 matrices + token_embd + output = 16 2-D weights, 2 x 2 + 1 norms.
    assert types["F16"] == {"F16": 16, "F32": 5}
    assert set(types["Q8_0"]) == {"Q8_0", "F32"}
    assert set(types["Q4_K_M"]) - {"F32"} <= {"Q4_K", "Q5_K", "Q6_K"}
    assert types["Q4_K_M"].get("Q4_K", 0) > 0  # a real K-quant, no silent q5_0 fallback
    sizes = {q: f["size"] for q, f in export.extra["files"].items()}
    assert sizes["Q4_K_M"] < sizes["Q8_0"] < sizes["F16"]


def test_manifest(export, llama: Path) -> None:
    folder = export.path.parent
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "gguf" and manifest["quants"] == list(QUANTS)
    assert manifest["model"] == "model-Q4_K_M.gguf" and manifest["base"] == "model-F16.gguf"
    on_disk = {f.name for f in folder.iterdir() if f.name != "manifest.json"}
    assert {f[key] for f in manifest["files"] for key in ("path", "modelfile")} == on_disk
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256_file(folder / entry["path"])
    assert manifest["source"]["config_sha256"] == sha256_file(llama / "config.json")
    assert all(c["passed"] for c in manifest["verification"])
    assert set(manifest["tools"]) == {"gguf", "llama_cpp_python", "transformers"}


def test_wrong_permutation_fails_and_leaves_nothing(llama: Path, tmp_path: Path,
                                                    monkeypatch) -> None:
    # Writing q/k without llama.cpp's rotary row order is the classic silent conversion bug.
    from distill.backends.gguf_writer import _conversion

    _conversion()
    from conversion.llama import LlamaModel

    monkeypatch.setattr(LlamaModel, "permute", staticmethod(lambda weights, n_head, n_head_kv: weights))
    destination = tmp_path / "deploy" / "gguf"
    with pytest.raises(VerificationError) as error:
        get_backend("gguf").export(llama, GgufTarget(("Q8_0",)), destination)
    failed = {c.name for c in error.value.report.failures()}
    assert "F16.logits_max_abs_diff" in failed
    assert list(destination.parent.iterdir()) == []  # no destination, no temp folder left


def test_wrong_pre_tokenizer_fails(llama: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(gguf_vocab, "pre_tokenizer", lambda tokenizer_json: "llama3")
    with pytest.raises(VerificationError) as error:
        get_backend("gguf").export(llama, GgufTarget(("F16",)), tmp_path / "gguf")
    assert "tokenization_parity" in {c.name for c in error.value.report.failures()}
    assert list(tmp_path.iterdir()) == []


def test_corrupted_file_fails_verify(export, llama: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(export.path.parent, folder)
    model = folder / "model-Q8_0.gguf"
    data = bytearray(model.read_bytes())
    data[-4096:-2048] = bytes(2048)
    model.write_bytes(bytes(data))
    moved = type(export)(folder / export.path.name, "gguf", export.quant, export.sha256,
                         export.size, export.extra)
    report = get_backend("gguf").verify(moved, llama)
    assert [c.name for c in report.failures()] == ["Q8_0.sha256"]


def test_a_quantized_file_is_held_to_the_distribution_not_to_its_worst_logit() -> None:
    """A real model's activation outliers make llama.cpp's 8-bit activations move a few logits of
    a few positions far (SmolLM2 Q4_K_M: 6.6 at scale 34) while every next-token distribution stays
    close: a quantized file passes on its mean KL divergence; an F16 file is still held to the max
    diff; logits that are not the model's fail."""
    rng = np.random.default_rng(0)
    want = rng.normal(0.0, 6.0, (4, 16, 512)).astype(np.float32)
    want[..., 7] += 30.0  # one confident token everywhere: scale ~34, as SmolLM2's
    outlier = want.copy()
    outlier[0, 1, 100:110] += 6.5  # ten low logits of one position moved far
    checks = {c.name: c for c in gguf_backend.logits_checks("Q4_K_M", outlier, want)}
    assert checks["Q4_K_M.kl_divergence"].passed and "max abs diff 6.5" in checks["Q4_K_M.kl_divergence"].detail
    assert checks["Q4_K_M.logits_top1_agreement"].passed
    assert not {c.name: c for c in gguf_backend.logits_checks("F16", outlier, want)}["F16.logits_max_abs_diff"].passed
    garbage = rng.normal(0.0, 6.0, want.shape).astype(np.float32)
    failed = {c.name for c in gguf_backend.logits_checks("Q4_K_M", garbage, want) if not c.passed}
    assert failed == {"Q4_K_M.kl_divergence", "Q4_K_M.logits_top1_agreement"}
    nan = want.copy()
    nan[2, 3, 4] = np.nan
    assert not gguf_backend.logits_checks("Q8_0", nan, want)[0].passed


def test_mean_kl_is_zero_for_the_same_distribution_and_grows_with_the_difference() -> None:
    want = np.array([[2.0, 0.0, -1.0]])
    assert gguf_backend.mean_kl(want, want + 5.0) == pytest.approx(0.0, abs=1e-12)  # softmax ignores a shift
    p = np.exp(want[0]) / np.exp(want[0]).sum()
    assert gguf_backend.mean_kl(want, np.zeros_like(want)) == pytest.approx(float((p * np.log(p * 3)).sum()))


def test_types_follow_llama_cpps_fallbacks_for_rows_k_quants_cannot_take() -> None:
    # SmolLM2's rows are 576 wide, not a multiple of 256: Q4_K -> Q5_0, Q6_K -> Q8_0; Q4_0's
    # output tensor (Q6_K) -> Q8_0.
    assert gguf_backend.allowed_types("Q4_K_M", 576) == {"Q5_0", "Q5_1", "Q8_0"}
    assert gguf_backend.allowed_types("Q4_K_M", 1536) == {"Q4_K", "Q5_K", "Q6_K"}
    assert gguf_backend.allowed_types("Q4_0", 576) == {"Q4_0", "Q4_1", "Q8_0"}
    assert gguf_backend.allowed_types("Q8_0", 576) == {"Q8_0"}


def test_registry() -> None:
    assert set(BACKENDS) >= {"gguf", "onnx"}
    assert isinstance(get_backend("gguf"), gguf_backend.GgufBackend)


@pytest.mark.parametrize("tokenizer", ["gpt-2", "qwen2"])
def test_qwen2(tokenizer: str, tmp_path: Path) -> None:
    bpe = _qwen_style_bpe() if tokenizer == "qwen2" else None
    model = _model(tmp_path / "qwen2", "qwen2", bpe)
    artifact = get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    report = get_backend("gguf").verify(artifact, model)
    assert report.passed, report.failures()
    checks = _checks(report)
    assert checks["F16.logits_top1_agreement"].startswith("1.0000")
    assert checks["tokenization_parity"].startswith("12/12")


def test_tied_embeddings_without_chat_template(tmp_path: Path) -> None:
    # No lm_head in the safetensors: the GGUF has no output.weight and llama.cpp reuses token_embd.
    model = _model(tmp_path / "tied", "llama", tied=True, chat=False)
    artifact = get_backend("gguf").export(model, GgufTarget(("Q8_0",)), tmp_path / "out")
    assert artifact.extra["files"]["F16"]["tensor_types"] == {"F16": 15, "F32": 5}
    assert "output.weight" not in gguf_backend.tensor_types(artifact.path)
    report = get_backend("gguf").verify(artifact, model)
    assert report.passed, report.failures()
    # Reported, not silently absent.
    assert _checks(report)["chat_template"] == "not applicable: the model has no chat template"
    assert parse_modelfile(artifact.path.parent / "model-Q8_0.Modelfile") == [
        ("FROM", "./model-Q8_0.gguf"), ("PARAMETER", "stop <|endoftext|>")]


def test_chat_template_and_eos(export, llama: Path) -> None:
    checks = _checks(get_backend("gguf").verify(export, llama))
    assert "equals HF's" in checks["chat_template"] and "token ids equal" in checks["chat_template"]
    assert "built-in renderer: same" in checks["chat_template"]  # llama.cpp knows ChatML
    assert checks["eos_stop"].startswith("llama.cpp EOS 320, HF declares [320, 0]; forced "
                                         "generations stop at each")
    assert parse_modelfile(export.path.parent / "model-Q4_K_M.Modelfile") == [
        ("FROM", "./model-Q4_K_M.gguf"), ("TEMPLATE", ollama.CHATML_GO),
        ("PARAMETER", "stop <|im_end|>"), ("PARAMETER", "stop <|endoftext|>")]


def test_chat_template_mismatch_fails(llama: Path, tmp_path: Path, monkeypatch) -> None:
    import gguf

    write = gguf.GGUFWriter.add_chat_template
    # A template that drops the newline after each turn: llama.cpp would prompt differently.
    monkeypatch.setattr(gguf.GGUFWriter, "add_chat_template",
                        lambda self, template: write(self, template.replace("<|im_end|>\\n", "<|im_end|>")))
    with pytest.raises(VerificationError) as error:
        get_backend("gguf").export(llama, GgufTarget(("F16",)), tmp_path / "gguf")
    failures = {c.name: c.detail for c in error.value.report.failures()}
    assert list(failures) == ["chat_template"]
    # The first turn: "<|im_start|>user\n" (17) + the question (32) + "<|im_end|>" (10) = 59.
    assert failures["chat_template"].startswith("renderings differ from character 59")


def test_unplain_chatml_gets_no_template(tmp_path: Path) -> None:
    # A default system prompt (as Qwen2's template adds) is not plain ChatML: Ollama picks the
    # template from the GGUF instead of a translation we cannot vouch for.
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=train_byte_bpe(TEXT, 300),
                                                     eos_token="<|endoftext|>")
    tokenizer.chat_template = "<|im_start|>system\nBe helpful.<|im_end|>\n" + CHATML
    chat = ollama.ollama_chat(tokenizer, tmp_path)
    name = ollama.write_modelfile(tmp_path, "model-F16.gguf", chat)
    assert "TEMPLATE" not in dict(parse_modelfile(tmp_path / name)) and chat.warning


@pytest.mark.parametrize(("broken", "words"), [
    (None, "stop at each"),
    ("add_eot_token_id", "run past [1]"),  # the second EOS is not written: llama.cpp runs on
    ("add_eos_token_id", "llama.cpp EOS 7,")])
def test_generation_stops_at_every_declared_eos(broken: str | None, words: str, tmp_path: Path,
                                               monkeypatch) -> None:
    import gguf

    # <|pad|> (id 1) as a second EOS: a text llama.cpp does not know as end-of-generation, so
    # only the EOT written for it makes llama.cpp stop there.
    model = _model(tmp_path / "model", "llama", second_eos=1)
    if broken == "add_eos_token_id":
        write = gguf.GGUFWriter.add_eos_token_id
        monkeypatch.setattr(gguf.GGUFWriter, broken, lambda self, token: write(self, 7))
    elif broken:
        monkeypatch.setattr(gguf.GGUFWriter, broken, lambda self, token: None)
    artifact = gguf_backend.GgufBackend()
    if broken is None:
        report = artifact.verify(artifact.export(model, GgufTarget(("F16",)), tmp_path / "out"), model)
        assert report.passed, report.failures()
        assert words in _checks(report)["eos_stop"]
        return
    with pytest.raises(VerificationError) as error:
        artifact.export(model, GgufTarget(("F16",)), tmp_path / "out")
    failures = {c.name: c.detail for c in error.value.report.failures()}
    assert list(failures) == ["eos_stop"] and words in failures["eos_stop"]
