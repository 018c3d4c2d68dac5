"""What every record shares: the header (``record``, ``version``), the atomic write, the checked
read, the JSON Schema.

pydantic validates and dumps the stdlib dataclasses and writes their JSON Schemas: it already
does, with each error's place in the document, what a reader of a nested record needs. It is
imported in the functions: a command that reads and writes no record (``distill validate``)
starts without it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from distill.compiler.errors import DistillError
from distill.compiler.fsutil import write_atomic

if TYPE_CHECKING:
    from pydantic import TypeAdapter

HEADER = ("record", "version")
T = TypeVar("T")
_REWRITE = "the file was edited or damaged: build again to rewrite it"


class RecordError(DistillError):
    """A file distill wrote cannot be read back: damaged, edited by hand, or written by another
    version of distill."""


class Record:
    """A frozen dataclass written as ``{"record": KIND, "version": VERSION, ...its fields}``.

    VERSION goes up whenever a field is added, removed or changes meaning: a reader then refuses
    the older file by name instead of misreading it."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int]

    def to_data(self) -> dict[str, Any]:
        """The record as JSON data, header first."""
        return {"record": self.KIND, "version": self.VERSION, **_adapter(type(self)).dump_python(self, mode="json")}

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def write(self, path: Path) -> None:
        write_atomic(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> Self:
        """The record in ``path``.

        Raises:
            RecordError: no such file, not JSON, another kind or version, or a field that does not
                fit (named by its place in the document).
        """
        return cls.from_data(read_json(path, RecordError), str(path))

    @classmethod
    def from_data(cls, data: Any, where: str) -> Self:
        """The record ``data`` (JSON data as ``to_data`` gives it) holds; ``where`` names it in
        errors."""
        from pydantic import ValidationError

        if not isinstance(data, dict) or data.get("record") != cls.KIND or data.get("version") != cls.VERSION:
            found = (f"a JSON {type(data).__name__}, not a record" if not isinstance(data, dict)
                     else "no record header" if "record" not in data
                     else f"a {data['record']!r} record of version {data.get('version')!r}")
            raise RecordError(f"{where}: {found}; this distill reads {cls.KIND!r} records of version {cls.VERSION}",
                              hint="it was written by another version of distill or edited: build again to "
                                   "rewrite it (`distill clean` removes old cache folders)")
        body = {key: value for key, value in data.items() if key not in HEADER}
        try:
            return _adapter(cls).validate_python(body)
        except ValidationError as error:
            raise RecordError(f"{where}: {cls.KIND} record, {_first_error(error)}", hint=_REWRITE) from None

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of the file, header included."""
        schema = _adapter(cls).json_schema(mode="serialization")
        header = {"record": {"const": cls.KIND}, "version": {"const": cls.VERSION}}
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
                "properties": {**header, **schema["properties"]},
                "required": [*HEADER, *schema.get("required", [])]}


def read_json(path: Path, error: type[DistillError] = DistillError) -> Any:
    """The JSON in ``path``: the one place distill parses a JSON file, its own records (through
    ``Record.read``) and other tools' files (config.json, tokenizer.json) alike.

    Raises:
        error: no such file, unreadable, or not JSON (with the line and column).
    """
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path} cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}:{exc.colno}: cannot be read as JSON: {exc.msg}") from None
    except RecursionError:
        raise error(f"{path}: cannot be read as JSON: nested too deeply") from None


def read_lines(path: Path, cls: type[T]) -> list[T]:
    """Each line of a JSON Lines file distill wrote, as a ``cls`` (blank lines skipped).

    Raises:
        RecordError: no such file, or a line that is not JSON or does not fit ``cls`` (named by
            its line number and the field's place).
    """
    from pydantic import ValidationError

    adapter = _adapter(cls)
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} cannot be read: {exc}") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(adapter.validate_json(line))
        except ValidationError as error:
            raise RecordError(f"{path}:{number}: {_first_error(error)}", hint=_REWRITE) from None
    return items


def parse_line(text: str, cls: type[T]) -> T | None:
    """One JSON line as a ``cls``; None when it is not JSON or does not fit (a torn or damaged line,
    which the caller names)."""
    from pydantic import ValidationError

    try:
        return _adapter(cls).validate_json(text)
    except ValidationError:
        return None


def lines_text(items: Iterable[Any]) -> str:
    """JSON Lines of dataclasses (or plain data), one per line, as ``read_lines`` reads them; keys
    sorted, so that two runs' files diff line by line."""
    return "".join(json.dumps(_adapter(type(item)).dump_python(item, mode="json"), ensure_ascii=False,
                              sort_keys=True) + "\n" for item in items)


def _first_error(error: Any) -> str:
    """The first of a pydantic ``ValidationError``'s errors: its place in the document, and why."""
    first = error.errors()[0]
    place = ".".join(str(part) for part in first["loc"]) or "(top)"
    return f"{place}: {first['msg']}"


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(cls: Any) -> TypeAdapter[Any]:
    """pydantic's validator and serializer of ``cls``, built once per type (building one walks the
    whole dataclass tree)."""
    from pydantic import TypeAdapter

    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]
