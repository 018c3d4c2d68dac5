"""Codecs for schema strings that the Spec stores in a more useful form.

A codec sits in a Spec field's ``Annotated`` metadata; ``compiler/codec.py`` calls ``parse`` when
building a Spec from validated data and ``dump`` when turning it back into Distillfile data.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

_UNITS = {
    "B": 1,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}
_SIZE = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?) ?(?P<unit>[KMGT]i?B|B)$")


class Codec(Protocol):
    @staticmethod
    def parse(value: Any) -> Any: ...

    @staticmethod
    def dump(value: Any) -> Any: ...


def parse_size(text: str) -> int:
    """``"16GiB"`` -> 17179869184 bytes. Fractions round down to whole bytes."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match["number"]) * _UNITS[match["unit"]])


def format_size(n_bytes: int) -> str:
    """Largest binary unit that keeps 2 decimals honest: 17179869184 -> ``"16.00 GiB"``."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if n_bytes >= _UNITS[unit]:
            return f"{n_bytes / _UNITS[unit]:.2f} {unit}"
    return f"{n_bytes} B"


class ByteSize:
    """A size string in the Distillfile, an int of bytes in the Spec."""

    @staticmethod
    def parse(value: str) -> int:
        return parse_size(value)

    @staticmethod
    def dump(value: int) -> str:
        return f"{value}B"


class LayerMap:
    """``{1: 3, 3: 7}`` in the Distillfile (student layer -> teacher layer), sorted pairs in the
    Spec so that it is immutable and hashes the same however the mapping was written."""

    @staticmethod
    def parse(value: dict[str, int]) -> tuple[tuple[int, int], ...]:
        return tuple(sorted((int(student), teacher) for student, teacher in value.items()))

    @staticmethod
    def dump(value: tuple[tuple[int, int], ...]) -> dict[str, int]:
        return {str(student): teacher for student, teacher in value}
