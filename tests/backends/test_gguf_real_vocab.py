"""Real vocabularies from llama.cpp (its models/ggml-vocab-*.gguf with reference tokenizations,
unpacked by scripts/setup.sh): the tokenizer.json distill rebuilds from a GGUF file tokenizes
every reference text as llama.cpp's tests expect, is named back by its structure, and, for
unchanged model tokenizers, matches llama.cpp's own fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.backends import gguf_import, gguf_pretokenizers
from distill.backends.gguf_metadata import read_metadata
from distill.backends.llama_cpp import converter_dir

MODELS = converter_dir() / "models"
SEPARATOR = "\n__ggml_vocab_test__\n"
# Byte-level BPE vocabularies whose pre-tokenizer distill reads and writes by structure.
READ = ("gpt-2", "llama-bpe", "qwen2")
# Ones llama.cpp knows that distill names only by fingerprint, so a GGUF source is refused.
REFUSED = ("starcoder", "deepseek-llm", "falcon", "refact")


def _cases(name: str) -> list[tuple[str, list[int]]]:
    texts = (MODELS / f"ggml-vocab-{name}.gguf.inp").read_text("utf-8").split(SEPARATOR)
    ids = (MODELS / f"ggml-vocab-{name}.gguf.out").read_text("utf-8").split("\n")
    texts[-1] = texts[-1].removesuffix("\n__ggml_vocab_test__\n").removesuffix("\n__ggml_vocab_test__")
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts, ids, strict=False)]


@pytest.mark.parametrize("name", READ)
def test_rebuilt_tokenizer_matches_llama_cpp_reference(name: str) -> None:
    from tokenizers import Tokenizer

    meta = read_metadata(MODELS / f"ggml-vocab-{name}.gguf")
    built = gguf_import.tokenizer_json(meta)
    tokenizer = Tokenizer.from_str(json.dumps(built))
    cases = _cases(name)
    assert len(cases) > 30
    wrong = [(text, want) for text, want in cases
             if tokenizer.encode(text, add_special_tokens=False).ids != want]
    assert wrong == []
    assert gguf_pretokenizers.by_structure(built) == meta.fields["tokenizer.ggml.pre"]


def test_llama_bpe_fingerprint_is_llama_cpps() -> None:
    """The rebuilt Llama 3 tokenizer (with its BOS) hashes as llama.cpp's converter expects."""
    meta = read_metadata(MODELS / "ggml-vocab-llama-bpe.gguf")
    built = gguf_import.tokenizer_json(meta)
    found = gguf_pretokenizers.fingerprints(converter_dir()).get(
        gguf_pretokenizers.fingerprint(built, converter_dir()))
    assert found == "llama-bpe"
    # The same split written as another regex: unknown by structure, named by the fingerprint...
    pattern = built["pre_tokenizer"]["pretokenizers"][0]["pattern"]
    pattern["Regex"] = f"(?:{pattern['Regex']})"
    assert gguf_pretokenizers.by_structure(built) is None
    assert gguf_pretokenizers.name(built, converter_dir()) == "llama-bpe"
    # ...and without the converter it is refused with the pre-tokenizer shown.
    with pytest.raises(NotImplementedError, match="no llama.cpp pre-tokenizer is known"):
        gguf_pretokenizers.name(built, None)


@pytest.mark.parametrize("name", REFUSED)
def test_unknown_structure_refused_as_source(name: str) -> None:
    meta = read_metadata(MODELS / f"ggml-vocab-{name}.gguf")
    pre = meta.fields["tokenizer.ggml.pre"]
    with pytest.raises(NotImplementedError, match=f"'{pre}' has no Hugging Face equivalent"):
        gguf_import.tokenizer_json(meta)


def test_every_fingerprinted_name_is_written_or_refused() -> None:
    """Each name llama.cpp's converter can give a tokenizer is either read back by structure or
    refused as a source with its name; none falls through."""
    names = set(gguf_pretokenizers.fingerprints(converter_dir()).values())
    assert {"llama-bpe", "qwen2", "smollm", "gpt-2"} <= names
    for pre in names:
        if pre in gguf_pretokenizers.PRE_TOKENIZERS:
            assert gguf_pretokenizers.hf_pre_tokenizer(pre).name == pre
        else:
            with pytest.raises(NotImplementedError, match=pre):
                gguf_pretokenizers.hf_pre_tokenizer(pre)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    from distill.backends.gguf_metadata import GgufFormatError

    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x01" * 5)
    with pytest.raises(GgufFormatError, match="ends inside its metadata"):
        read_metadata(bad)
    bad.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(GgufFormatError, match="magic"):
        read_metadata(bad)
