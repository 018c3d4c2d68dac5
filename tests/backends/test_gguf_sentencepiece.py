"""GGUF backend with SentencePiece-style tokenizers (BPE with byte fallback on "▁"-escaped
text, as Llama, Mistral and Gemma ship them): a tiny llama and a tiny gemma with such tokenizers,
trained on the spot, written as F16 and Q4_K_M and passing every check, byte fallback included;
wrong scores fail tokenization parity; what llama.cpp cannot mirror is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from distill.backends import gguf_vocab
from distill.backends.base import VerificationError
from distill.backends.registry import get_backend
from distill.compiler.spec import GgufTarget
from tests.backends.test_gguf_archs import ARCHS

# ASCII plus a few accented letters: "é" gets a piece of its own, while most of the non-ASCII
# probe text ("Ü", "—", "漢", "🙂", ...) is nowhere in the vocabulary and must fall back to bytes.
TEXT = ["the quick brown fox jumps over the lazy dog; a model learns what its teacher knows.",
        "Hello, world! 123 4567 don't won't two  spaces\ttab and a new\nline, café crème.",
        "students distill teachers: fewer weights, the same answers; tokens, merges and scores.",
        "What does a student model learn? What its teacher knows, in fewer weights."] * 20
PIECES = 400  # trained pieces wanted (alphabet and merges), besides specials and 256 bytes
BYTES = [f"<0x{b:02X}>" for b in range(256)]

# Mistral-Instruct's template (less its role checks): text right after <s>, </s> and the
# user-defined [INST] tokens exercises the space prefix llama.cpp adds after such tokens.
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
           "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}"
           "{% endif %}{% endfor %}")
GEMMA = ("{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == "
         "'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim"
         " + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}"
         "{% endif %}")
# Special tokens first, as both ship them (Llama: <unk> 0, <s> 1, </s> 2; Gemma: <pad> 0, <eos> 1,
# <bos> 2, <unk> 3, ...), then the 256 byte pieces, then the trained ones.
STYLES: dict[str, dict[str, Any]] = {
    "llama": {"specials": ["<unk>", "<s>", "</s>"], "user_defined": ["[INST]", "[/INST]"],
              "prefix": True, "template": MISTRAL,
              "class": "LlamaTokenizerFast", "tokens": {"bos_token": "<s>", "eos_token": "</s>"}},
    "gemma": {"specials": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
              "prefix": False, "template": GEMMA, "class": "GemmaTokenizerFast",
              "tokens": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                         "additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}}}


def _trained_pieces() -> tuple[list[str], list[Any]]:
    """Pieces and merges of a BPE trained as SentencePiece trains (split at spaces, "▁" first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
    tokenizer.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=PIECES, show_progress=False))
    model = json.loads(tokenizer.to_str())["model"]
    return list(model["vocab"]), [tuple(m) for m in model["merges"]]


def sentencepiece_bpe(style: str, metaspace: str | None = None) -> Any:
    """A ``tokenizers.Tokenizer`` laid out as HF converts a SentencePiece BPE: specials, bytes,
    pieces; Llama's Prepend + Replace normalizer (Gemma: Replace only), or with ``metaspace``
    a Metaspace pre-tokenizer of that prepend scheme instead (newer conversions)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

    pieces, merges = _trained_pieces()
    specials = STYLES[style]["specials"]
    vocab = {token: i for i, token in enumerate([*specials, *BYTES, *pieces])}
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    steps = [normalizers.Prepend("▁")] if STYLES[style]["prefix"] else []
    tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "▁")])
    if metaspace:
        tokenizer.normalizer = None
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=metaspace, split=False)
    strip = [decoders.Strip(" ", 1, 0)] if STYLES[style]["prefix"] else []
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                           decoders.Fuse(), *strip])
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    # Matched in the raw text, as llama.cpp matches user-defined tokens (normalized=True would
    # match them in the "▁"-escaped text instead).
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=False)
                          for t in STYLES[style].get("user_defined", ())])
    return tokenizer


def spm_model(folder: Path, arch: str, style: str, tokenizer_object: Any = None, **config: Any) -> Path:
    """A tiny random ``arch`` model with a ``style`` SentencePiece tokenizer wrapped in that
    style's HF class (which adds BOS), its chat template, and EOS (Gemma: <end_of_turn> too)."""
    spec = STYLES[style]
    tokenizer = getattr(transformers, spec["class"])(
        tokenizer_object=tokenizer_object or sentencepiece_bpe(style), unk_token="<unk>", **spec["tokens"])
    tokenizer.chat_template = spec["template"]
    tokenizer.save_pretrained(folder)
    eos = [tokenizer.eos_token_id, *tokenizer.convert_tokens_to_ids(["<end_of_turn>"] if style == "gemma" else [])]
    tied = config.pop("tied", False)
    torch.manual_seed(0)
    model_config = transformers.AutoConfig.for_model(
        arch, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tied, **config)
    transformers.AutoModelForCausalLM.from_config(model_config).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


def _fields(path: Path) -> dict[str, Any]:
    """The GGUF's tokenizer metadata, read back: scalars as values, arrays as lists."""
    import gguf

    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items() if name.startswith("tokenizer.")}


def _checks(artifact: Any) -> dict[str, dict[str, Any]]:
    manifest = json.loads((artifact.path.parent / "manifest.json").read_text())
    return {c["name"]: c for c in manifest["verification"]}


@pytest.mark.parametrize(("arch", "style"), [("llama", "llama"), ("gemma", "gemma")])
def test_sentencepiece_exports_verified(arch: str, style: str, tmp_path: Path) -> None:
    model = spm_model(tmp_path / arch, arch, style, **ARCHS.get(arch, {}))
    artifact = get_backend("gguf").export(model, GgufTarget(("Q4_K_M",)), tmp_path / "out")
    checks = _checks(artifact)
    assert all(c["passed"] for c in checks.values())  # export raises otherwise; recorded, too
    assert set(checks) >= {"F16.logits_max_abs_diff", "Q4_K_M.kl_divergence", "tokenization_parity",
                           "chat_template", "eos_stop"}
    assert checks["F16.logits_top1_agreement"]["detail"].startswith("1.0000")
    assert checks["tokenization_parity"]["detail"].startswith("12/12")
    assert "equals HF's" in checks["chat_template"]["detail"]
    assert "token ids equal" in checks["chat_template"]["detail"]
    assert "stop at each" in checks["eos_stop"]["detail"]
    assert artifact.extra["files"]["Q4_K_M"]["tensor_types"].get("Q4_K", 0) > 0

    fields = _fields(artifact.path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model)
    assert fields["tokenizer.ggml.model"] == "llama"
    assert fields["tokenizer.ggml.add_space_prefix"] is STYLES[style]["prefix"]
    assert fields["tokenizer.ggml.add_bos_token"] is True and fields["tokenizer.ggml.add_eos_token"] is False
    assert fields["tokenizer.ggml.unknown_token_id"] == tokenizer.unk_token_id
    assert fields["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id
    types = fields["tokenizer.ggml.token_type"]
    specials = len(STYLES[style]["specials"])
    assert types[specials:specials + 256] == [6] * 256  # gguf.TokenType.BYTE, <0x00> ... <0xFF>
    assert types[tokenizer.unk_token_id] == 2  # UNKNOWN
    assert {types[i] for i in range(specials) if i != tokenizer.unk_token_id} == {3}  # CONTROL
    user_defined = tokenizer.convert_tokens_to_ids(STYLES[style].get("user_defined", []))
    assert [types[i] for i in user_defined] == [4] * len(user_defined)  # USER_DEFINED
    # The non-ASCII probe really goes through byte fallback (and one trained piece, "é").
    pieces = tokenizer.tokenize("Ünïcödé — ß, 漢字, emoji 🙂")
    assert "<0xF0>" in pieces and "é" in pieces


def test_scores_decide_llama_cpp_tokenization(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # llama.cpp joins the pair of highest score first: merge ranks turned upside down make it
    # tokenize differently (measured: 3 of the 6 probes). Equal scores, as llama.cpp's converter
    # writes from a tokenizer.json alone, happen to join these tiny-vocabulary probes alike.
    ranked = gguf_vocab.merge_scores
    monkeypatch.setattr(gguf_vocab, "merge_scores", lambda merges: {k: -v for k, v in ranked(merges).items()})
    model = spm_model(tmp_path / "llama", "llama", "llama")
    with pytest.raises(VerificationError) as error:
        get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    assert "tokenization_parity" in {c.name for c in error.value.report.failures()}
    assert not (tmp_path / "out").exists()


def test_metaspace_without_prefix_exports_verified(tmp_path: Path) -> None:
    # Gemma's tokenizer with a Metaspace pre-tokenizer (newer conversions) instead of Replace.
    model = spm_model(tmp_path / "gemma", "gemma", "gemma", sentencepiece_bpe("gemma", metaspace="never"),
                      **ARCHS["gemma"])
    artifact = get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    assert _checks(artifact)["tokenization_parity"]["detail"].startswith("12/12")
    assert _fields(artifact.path)["tokenizer.ggml.add_space_prefix"] is False


@pytest.mark.parametrize("scheme", ["always", "first"])
def test_metaspace_prefix_is_refused_as_llama_cpp_differs(scheme: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    model = spm_model(tmp_path / "llama", "llama", "llama", sentencepiece_bpe("llama", metaspace=scheme))
    with pytest.raises(NotImplementedError, match=f"prepend_scheme '{scheme}'"):
        get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    # Why: written anyway with llama.cpp's space prefix, the probe starting with two spaces gets
    # one "▁" more from llama.cpp, and so does the chat's " What ..." right after [INST].
    monkeypatch.setattr(gguf_vocab, "space_prefix", lambda tokenizer_json: True)
    with pytest.raises(VerificationError) as error:
        get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    failures = {c.name: c.detail for c in error.value.report.failures()}
    assert set(failures) == {"tokenization_parity", "chat_template"}
    assert failures["tokenization_parity"].endswith("first mismatch '  two  spaces\\tand a tab\\nnew line'")
    assert "token ids DIFFER" in failures["chat_template"]


def _unigram() -> Any:
    from tokenizers import Tokenizer, models

    pieces = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), *[(b, 0.0) for b in BYTES],
              *[(c, -2.0) for c in "abcdefghijklmnopqrstuvwxyz▁"], ("▁the", -1.0)]
    return Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=True))


@pytest.mark.parametrize(("tokenizer", "words"), [
    (_unigram, "this one is Unigram: llama.cpp's SentencePiece tokenizer joins pairs by score"),
    (lambda: _with_nfkc(sentencepiece_bpe("llama")), "cannot normalize as .*NFKC")])
def test_what_llama_cpp_would_tokenize_differently_is_refused(tokenizer: Any, words: str, tmp_path: Path) -> None:
    model = spm_model(tmp_path / "llama", "llama", "llama", tokenizer())
    with pytest.raises(NotImplementedError, match=words):
        get_backend("gguf").export(model, GgufTarget(("F16",)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _with_nfkc(tokenizer: Any) -> Any:
    from tokenizers import normalizers

    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), tokenizer.normalizer])
    return tokenizer
