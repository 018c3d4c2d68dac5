"""sha256 and size of input files, streamed so a 2 GB PDF costs 1 MiB of memory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class FileDigest:
    """A file as the lock records it: its path as shown to the user, sha256 and size in bytes."""

    path: str
    sha256: str
    size: int


def digest_file(path: Path, shown: str) -> FileDigest:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            sha.update(block)
            size += len(block)
    return FileDigest(shown, sha.hexdigest(), size)
