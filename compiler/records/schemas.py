"""The records' JSON Schemas, shipped in ``docs/records/`` for whoever reads distill's files with
other tools: ``python -m distill.compiler.records.schemas docs/records`` writes them, and
``tests/compiler/test_records.py`` fails when one is out of step with its dataclass."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from distill.compiler.fsutil import write_atomic
from distill.compiler.records.data_card import DataCard
from distill.compiler.records.evaluation import Evaluation, Measurement
from distill.compiler.records.lock import Lock
from distill.compiler.records.manifest import Manifest
from distill.compiler.records.record import Record
from distill.compiler.records.report import Report
from distill.compiler.records.stage import BuildRecord, StageMeta, WorkerError

RECORDS: tuple[type[Record], ...] = (Lock, Manifest, StageMeta, BuildRecord, WorkerError, Evaluation, Measurement,
                                     DataCard, Report)
REGENERATE = "python -m distill.compiler.records.schemas docs/records"


def schema_files() -> dict[str, str]:
    """File name -> text of every record's schema."""
    return {f"{record.KIND}.schema.json": json.dumps(record.json_schema(), indent=2, ensure_ascii=False) + "\n"
            for record in RECORDS}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {REGENERATE}", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    for name, text in schema_files().items():
        write_atomic(folder / name, text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
