"""Read a Distillfile into plain data plus the line:column of every key and value.

ruamel.yaml composes the node graph (which keeps marks); we convert nodes ourselves instead of
using its constructor so that we can locate every value, report duplicate keys at the second key,
and bound alias expansion (a "billion laughs" file composes to a few nodes but would expand to
billions of values).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.compiler.errors import Diagnostic, Location, SpecError, UsageError
from distill.compiler.sourcefiles import file_kind, open_file
from distill.compiler.yaml_indentation import misindented

# A real Distillfile is a few KB; 1 MiB leaves room for inline prompts and chat templates while
# refusing accidents (a dataset or model file passed by mistake) before reading them.
MAX_FILE_BYTES = 1024 * 1024
# Values produced after expanding aliases. Real files have a few hundred; a YAML alias bomb of
# 9 levels x 9 references expands to 9**9 = 387M, so 50,000 cuts it off within milliseconds.
MAX_EXPANDED_VALUES = 50_000
# Python recursion is the real limit for nested YAML; 200 levels is far beyond any Distillfile.
MAX_DEPTH = 200

DataPath = tuple[str | int, ...]

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
# Tags whose text we keep as a string: a date-like revision or a literal "<<" value is text to us.
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge"}


@dataclass(frozen=True)
class Document:
    """Parsed YAML as JSON-like data, with the location of every mapping key and value."""

    file: str
    data: Any
    key_at: dict[DataPath, Location] = field(default_factory=dict)
    value_at: dict[DataPath, Location] = field(default_factory=dict)

    def is_written(self, path: DataPath) -> bool:
        return path in self.key_at or path in self.value_at

    def locate(self, path: DataPath) -> Location:
        """Where ``path`` is written: its key if it has one, else its value, else its nearest
        written ancestor (a value filled in from a default is reported at its parent's key)."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.key_at:
                return self.key_at[prefix]
            if prefix in self.value_at:
                return self.value_at[prefix]
        return Location(self.file, 1, 1)


def read_text(path: Path, display: str) -> str:
    """Read a Distillfile as UTF-8 text with clear, located errors for what cannot be one."""
    if not path.exists():
        raise UsageError(f"{display}: no such file", hint="check the path, or run `distill init`")
    if path.is_dir():
        raise UsageError(f"{display} is a directory without a Distillfile in it")
    raw = _read_bounded(path, display)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(display, line, column, f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                    "save the Distillfile as UTF-8") from None
    if not text.strip():
        raise _fail(display, 1, 1, "file is empty", "run `distill init` for a starter Distillfile")
    return text


def _read_bounded(path: Path, display: str) -> bytes:
    """The file's bytes, at most MAX_FILE_BYTES of them. Only a regular file is read: a FIFO
    blocks and ``/dev/zero`` never ends; and files under ``/proc`` report size 0 whatever they
    hold, so the read itself stops one byte past the cap instead of trusting the size."""
    try:
        stream, info = open_file(path)
        with stream:
            kind = file_kind(info.st_mode)
            if kind is not None:
                raise UsageError(f"{display} is not a regular file ({kind})",
                                 hint="pass the Distillfile's path (devices, FIFOs and sockets are not read)")
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise UsageError(f"{display}: cannot read: {error.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        size = f"{info.st_size:,} bytes" if info.st_size > MAX_FILE_BYTES else f"over {MAX_FILE_BYTES:,} bytes"
        raise _fail(display, 1, 1, f"file is {size}; a Distillfile may be at most {MAX_FILE_BYTES:,}",
                    "is this the right file? Distillfiles are small YAML specs")
    return raw


def parse_document(text: str, display: str) -> Document:
    """Parse YAML text into a located ``Document``; raises ``SpecError`` with a location."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=True)
    try:
        root = yaml.compose(io.StringIO(text))
    except MarkedYAMLError as exc:
        raise SpecError([_syntax_error(text, display, exc)]) from None
    except YAMLError as exc:
        raise _fail(display, 1, 1, f"YAML syntax: {exc}", None) from None
    except RecursionError:
        raise _fail(display, 1, 1, "YAML nesting is too deep", None) from None
    if root is None:
        raise _fail(display, 1, 1, "file holds no YAML document (only comments?)",
                    "run `distill init` for a starter Distillfile")
    converter = _Converter(display, yaml.constructor)
    data = converter.convert(root, ())
    if converter.errors:
        raise SpecError(converter.errors)
    return Document(display, data, converter.key_at, converter.value_at)


def _syntax_error(text: str, display: str, exc: Any) -> Diagnostic:
    """ruamel's complaint, or the likely cause when the complaint comes from misaligned lines."""
    if exc.problem and exc.problem_mark:
        misaligned = misindented(text, display, exc.problem_mark.line, exc.problem)
        if misaligned is not None:
            return misaligned
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context and exc.context_mark:
        start = exc.context_mark
        problem += f" {exc.context} (started at line {start.line + 1}, column {start.column + 1})"
    return Diagnostic(Location(display, line, column), f"YAML syntax: {problem}", _syntax_hint(problem))


def _syntax_hint(problem: str) -> str | None:
    if "'\\t'" in problem:
        return "replace the tab with spaces; YAML does not allow tabs there"
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted"
    return None


def _fail(file: str, line: int, column: int, message: str, hint: str | None) -> SpecError:
    return SpecError([Diagnostic(Location(file, line, column), message, hint)])


class _Converter:
    """Turns composed nodes into dicts, lists and scalars, recording locations as it goes."""

    def __init__(self, file: str, constructor: Any) -> None:
        self.file = file
        self.constructor = constructor
        self.errors: list[Diagnostic] = []
        self.key_at: dict[DataPath, Location] = {}
        self.value_at: dict[DataPath, Location] = {}
        self.expanded = 0
        self.active: set[int] = set()  # ids of nodes being converted: a repeat is a cycle

    def _where(self, node: Any) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _error(self, node: Any, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(self._where(node), message, hint))

    def convert(self, node: Any, path: DataPath) -> Any:
        self.expanded += 1
        if self.expanded > MAX_EXPANDED_VALUES or len(path) > MAX_DEPTH:
            self._error(node, f"YAML expands to more than {MAX_EXPANDED_VALUES:,} values or "
                        f"{MAX_DEPTH} levels (an alias bomb?)", "write the values out without aliases")
            raise SpecError(self.errors)
        if id(node) in self.active:
            self._error(node, "an alias refers to a value that contains it")
            return None
        self.value_at[path] = self._where(node)
        self.active.add(id(node))
        try:
            if node.id == "mapping":
                return self._mapping(node, path)
            if node.id == "sequence":
                return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
            return self._scalar(node)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: Any, path: DataPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.id != "scalar":
                self._error(key_node, "mapping keys must be plain names, not lists or mappings")
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._error(key_node, "YAML merge keys (<<) are not supported",
                            "write the keys out; aliases of whole values (*name) are fine")
                continue
            key = str(key_node.value)
            if key in result:
                first = self.key_at[path + (key,)]
                self._error(key_node, f"duplicate key '{key}' (first at line {first.line})",
                            "remove one of them; YAML keeps only the last silently, distill refuses")
                continue
            self.key_at[path + (key,)] = self._where(key_node)
            result[key] = self.convert(value_node, path + (key,))
        return result

    def _scalar(self, node: Any) -> Any:
        if node.tag in _TEXT_TAGS:
            return str(node.value)
        if node.tag not in _PLAIN_TAGS:
            self._error(node, f"unsupported YAML tag {node.tag}",
                        "remove the tag; Distillfiles use plain strings, numbers and booleans")
            return None
        value = self.constructor.construct_object(node, deep=True)
        if isinstance(value, float) and not math.isfinite(value):
            self._error(node, f"non-finite number {node.value} is not allowed")
            return None
        return value
