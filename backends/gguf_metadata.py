"""A GGUF file's metadata (key-value pairs and tensor names), read without loading tensors.

Written by hand because gguf-py's ``GGUFReader`` makes one numpy view per string while it opens
a file: 6.1 s for SmolLM2-135M's 49,152 tokens and 48,900 merges (measured here), where this reader
takes 0.26 s for the whole metadata; ``distill plan`` reads this for every GGUF model source.
The layout is GGUF v2/v3 (``docs/gguf.md`` of llama.cpp): header, key-value pairs, tensor infos.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
VERSIONS = (2, 3)
# Value type ids -> struct formats of the scalar types; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GgufFormatError(ValueError):
    """The file is not a GGUF file distill can read; the message says where it broke."""


@dataclass(frozen=True)
class GgufMetadata:
    """Attributes:
        version: the GGUF format version.
        fields: every key-value pair (arrays as lists).
        tensors: tensor name -> its llama.cpp type id, in file order.
    """

    version: int
    fields: dict[str, Any]
    tensors: dict[str, int]


class _Cursor:
    def __init__(self, data: Any) -> None:
        self.data, self.at = data, 0

    def scalar(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.data, self.at)[0]
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.scalar("<Q")
        raw = bytes(self.data[self.at:self.at + size])
        if len(raw) != size:
            raise GgufFormatError(f"a string of {size} bytes runs past the end of the file at byte {self.at}")
        self.at += size
        return raw.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.scalar("<I"), self.scalar("<Q")
            return [self.value(item) for _ in range(count)]
        raise GgufFormatError(f"unknown value type {kind} at byte {self.at}")


def read_metadata(path: Path) -> GgufMetadata:
    """The key-value pairs and tensor names of a GGUF file.

    Raises:
        GgufFormatError: for a file that is not GGUF v2/v3 or is cut short.
    """
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != MAGIC:
            raise GgufFormatError(f"{path.name} does not start with the GGUF magic bytes")
        cursor = _Cursor(data)
        cursor.at = 4
        try:
            version = cursor.scalar("<I")
            if version not in VERSIONS:
                raise GgufFormatError(f"{path.name} is GGUF version {version}; distill reads {VERSIONS}")
            tensor_count, field_count = cursor.scalar("<Q"), cursor.scalar("<Q")
            fields = {}
            for _ in range(field_count):
                key = cursor.string()
                fields[key] = cursor.value(cursor.scalar("<I"))
            tensors = {}
            for _ in range(tensor_count):
                name = cursor.string()
                dims = cursor.scalar("<I")
                cursor.at += 8 * dims
                tensors[name] = cursor.scalar("<I")
                cursor.scalar("<Q")  # the tensor's offset in the data section
        except struct.error as error:
            raise GgufFormatError(f"{path.name} ends inside its metadata ({error})") from None
    return GgufMetadata(version, fields, tensors)
