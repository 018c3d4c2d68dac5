"""``distill inspect``: what an artifact is, from its manifest, or from the file itself; as tables
for people and as JSON for tools."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from distill.compiler.errors import UsageError
from distill.compiler.records.manifest import MANIFEST, Manifest

if TYPE_CHECKING:
    from rich.console import Console

    from distill.backends.gguf_metadata import GgufMetadata

NO_MANIFEST = "none recorded (no manifest.json beside the file)"
FIRST_LINE_CHARS = 80


def describe(path: Path) -> dict[str, Any]:
    """The artifact's manifest when it has one (a folder, or a file beside one); otherwise what
    the file says about itself (ONNX: opset, inputs, outputs, weights; GGUF: architecture,
    quantization, tokenizer, chat template)."""
    folder = path if path.is_dir() else path.parent
    if (folder / MANIFEST).is_file():
        return Manifest.read(folder / MANIFEST).to_data()
    if path.is_file() and path.suffix == ".onnx":
        return _onnx_facts(path)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _gguf_facts(path)
    raise UsageError(f"{path}: not an artifact distill knows",
                     hint="pass an export folder (with manifest.json), a .gguf or a .onnx file")


def _onnx_facts(path: Path) -> dict[str, Any]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises protobuf and OS errors alike
        raise UsageError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    return {
        "kind": "onnx", "file": str(path), "size": path.stat().st_size,
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output],
        "initializers": len(model.graph.initializer), "initializer_bytes": weights,
        "verification": NO_MANIFEST,
    }


def _gguf_facts(path: Path) -> dict[str, Any]:
    """Read with distill's metadata reader, not gguf-py's GGUFReader: on llama.cpp's
    ggml-vocab-llama-bpe.gguf (Llama 3's 128,256 tokens) GGUFReader took 47 s here, this reader
    1.5 s. It skips tensor shapes, so the model's size is the converter's ``general.size_label``
    (such as "1.3M"), not an exact parameter count."""
    import gguf

    from distill.backends.gguf_metadata import read_metadata

    try:
        meta = read_metadata(path)
    except (OSError, ValueError) as exc:  # GgufFormatError is a ValueError; mmap of an empty file too
        raise UsageError(f"{path}: not a readable GGUF file ({exc})",
                         hint="pass a .gguf file written by distill export or llama.cpp's converter") from None
    fields = meta.fields
    arch = fields.get("general.architecture")
    types = Counter(_enum_name(gguf.GGMLQuantizationType, kind) for kind in meta.tensors.values())
    # distill and recent llama.cpp converters write the flag; a file without it is read as adding
    # no BOS (llama.cpp itself then goes by the vocabulary type).
    adds_bos = bool(fields.get("tokenizer.ggml.add_bos_token", False))
    return {
        "kind": "gguf", "file": str(path), "size": path.stat().st_size, "gguf_version": meta.version,
        "architecture": arch, "name": fields.get("general.name"),
        "file_type": _enum_name(gguf.LlamaFileType, fields.get("general.file_type")),
        "tensors": len(meta.tensors), "tensor_types": dict(sorted(types.items())),
        "size_label": fields.get("general.size_label"), "context_length": fields.get(f"{arch}.context_length"),
        "vocab_size": len(fields.get("tokenizer.ggml.tokens") or []),
        "tokenizer": {"model": fields.get("tokenizer.ggml.model"), "pre": fields.get("tokenizer.ggml.pre"),
                      "bos": _token(meta, "bos"), "eos": _token(meta, "eos"),
                      "adds_bos": adds_bos},
        "chat_template": _chat_template(meta, adds_bos),
        "verification": NO_MANIFEST,
    }


def _enum_name(enum: Any, value: Any) -> str | None:
    """A ggml type or file type by name (``Q4_K_M``, not ``MOSTLY_Q4_K_M``), or ``unknown (id)``
    for an id this gguf-py does not know."""
    if value is None:
        return None
    try:
        return enum(value).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return f"unknown ({value})"


def _special(meta: GgufMetadata, name: str) -> tuple[int, str] | None:
    """The id and text of ``tokenizer.ggml.<name>_token_id``, when the file has it."""
    token_id = meta.fields.get(f"tokenizer.ggml.{name}_token_id")
    tokens = meta.fields.get("tokenizer.ggml.tokens") or []
    return (token_id, tokens[token_id]) if isinstance(token_id, int) and 0 <= token_id < len(tokens) else None


def _token(meta: GgufMetadata, name: str) -> str | None:
    special = _special(meta, name)
    return f"{special[1]} ({special[0]})" if special else None


def _chat_template(meta: GgufMetadata, adds_bos: bool) -> dict[str, Any]:
    """Whether the file has a chat template, its size and first line, and which Ollama format
    it renders (``ollama.chat_format``, given the file's BOS and EOS texts)."""
    from distill.backends.ollama import chat_format

    template = meta.fields.get("tokenizer.chat_template")
    if not template:
        return {"present": False}
    texts = {f"{name}_token": special[1] for name in ("bos", "eos") if (special := _special(meta, name))}
    first = next((line.strip() for line in template.splitlines() if line.strip()), "")
    return {"present": True, "chars": len(template), "first_line": first[:FIRST_LINE_CHARS],
            "format": chat_format(template, texts, adds_bos).format}


def print_facts(console: Console, facts: Mapping[str, Any]) -> None:
    """``facts`` as tables: the plain values in one table of keys and values, each nested
    mapping in its own, each list of records (files, verification checks) as a table with a
    column per key."""
    tables = [_key_values("artifact", {k: v for k, v in facts.items() if not _own_table(v)})]
    tables += [_key_values(key, value) if isinstance(value, Mapping) else _records(key, value)
               for key, value in facts.items() if _own_table(value)]
    for number, table in enumerate(tables):
        if number:
            console.print()
        console.print(table)


def _own_table(value: Any) -> bool:
    return isinstance(value, Mapping) or (isinstance(value, list) and bool(value)
                                          and all(isinstance(item, Mapping) for item in value))


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=title, show_edge=False, title_justify="left", title_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _key_values(title: str, values: Mapping[str, Any]) -> Table:
    table = _table(title, ["key", "value"])
    for key, value in values.items():
        table.add_row(key, _cell(value))
    return table


def _records(title: str, records: list[Mapping[str, Any]]) -> Table:
    columns = list(dict.fromkeys(key for record in records for key in record))
    table = _table(title, columns)
    for record in records:
        table.add_row(*(_cell(record.get(column)) for column in columns))
    return table


def _cell(value: Any) -> Text:
    """A value as table text: numbers with thousands separators, lists and mappings inline, and
    never read as rich markup (a template line such as ``[INST]`` stays as it is)."""
    if value is None:
        return Text("-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, int):
        return Text(f"{value:,}")
    if isinstance(value, Mapping):
        return Text(", ".join(f"{k}: {_cell(v)}" for k, v in value.items()))
    if isinstance(value, list):
        return Text(", ".join(str(_cell(v)) for v in value))
    return Text(str(value))
