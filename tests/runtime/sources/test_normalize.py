"""Normalization: characters, line-break hyphens, run-together detection, page furniture, paragraph
breaks and duplicates, on strings and on a PDF built on the spot."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distill.compiler.spec import PdfSource
from distill.runtime.sources.normalize import (
    better_text,
    normalize_pages,
    normalize_text,
    run_together_share,
)
from distill.runtime.sources.pdf import read_pdf
from distill.runtime.sources.records import Page
from tests.runtime.sources.pdf_builders import text_pdf

LIGATURES = "".join(map(chr, range(0xFB00, 0xFB07)))


def pages_of(*texts: str, first: int = 1) -> list[Page]:
    return [Page("doc.pdf", "0" * 64, first + i, text) for i, text in enumerate(texts)]


BODIES = [
    "The pump draws water from the tank through the intake filter.",
    "Each cycle heats the water to sixty degrees before it is released.",
    "A pressure sensor stops the pump when the outlet is blocked.",
    "Descaling removes the mineral layer that builds up inside the heater.",
    "The display shows an error code whenever a sensor reports a fault.",
]


def body(n: int) -> str:
    """A distinct sentence for page ``n`` (1-based) that shares no line with the others."""
    return BODIES[n - 1]


# --- characters and whitespace ------------------------------------------------------------------


def test_nfkc_expands_ligatures_and_compatibility_forms() -> None:
    assert normalize_text("\ufb01lter \ufb02ow e\ufb00ect \uff21\uff22\uff23 x\u00b2") == "filter flow effect ABC x2"


def test_invisible_and_control_characters_go_and_whitespace_collapses() -> None:
    raw = "\ufeffOne\u200b  two\t\tthree\u00a0four\x0c\r\n\r\n\r\n\r\nFive   \n"
    assert normalize_text(raw) == "One two three four\n\nFive"


def test_soft_hyphens_disappear() -> None:
    assert normalize_text("distil\u00adlation") == "distillation"


def test_keeping_indentation_for_markdown() -> None:
    assert normalize_text("Code:\n\n    def f():\n        return 1  \n", collapse_spaces=False) == \
        "Code:\n\n    def f():\n        return 1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Knowledge distil-\nlation trains students.", "Knowledge distillation\ntrains students."),
        ("the distil-\nlation; then", "the distillation;\nthen"),
        ("It is well-known. It is well-\nknown.", "It is well-known. It is well-known."),
        ("distillation rocks. distil-\nlation", "distillation rocks. distillation"),
        ("a state-of-the-\nart model", "a state-of-the-art\nmodel"),
        ("decided case-\nby-case here", "decided case-by-case\nhere"),
        ("the Anglo-\nSaxon era", "the Anglo-Saxon\nera"),
        ("the x86-\n64 port", "the x86-64\nport"),
        ("PRE-\nPROCESSING step", "PREPROCESSING\nstep"),
        ("a dash -\nthen more", "a dash -\nthen more"),
        ("distillation. a distil-\nlation-based model", "distillation. a distillation-based\nmodel"),
        ("1-\n1- 1", "1-1\n- 1"),  # a hyphen moved to the line end would be a new break
    ],
    ids=["syllable", "punctuation", "compound-seen", "word-seen", "chain", "chain-ahead", "capital", "digits", "caps",
         "dash",
         "tail-compound", "tail-hyphen"],
)
def test_line_break_hyphens(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@given(st.text(alphabet=st.sampled_from("ab-\n \t.\ufb01\u00adXY1"), max_size=60) | st.text(max_size=60),
       st.booleans())
def test_normalize_text_is_idempotent(raw: str, collapse_spaces: bool) -> None:
    once = normalize_text(raw, collapse_spaces)
    assert normalize_text(once, collapse_spaces) == once


# --- words run together -------------------------------------------------------------------------


def test_run_together_share_separates_spaced_from_run_together_text() -> None:
    spaced = "There are two methods of associating a file with a different filename."
    run_together = "Therearetwomethodsofassociatingafile with a differentfilename."
    assert run_together_share(spaced) == 0.0
    # 36 + 17 of the 58 letters sit in runs longer than 15 letters
    assert run_together_share(run_together) == pytest.approx((36 + 17) / 58)
    assert run_together_share("") == 0.0


def test_better_text_prefers_spaces_but_not_lost_text() -> None:
    run_together = "Therearetwomethodsofassociatingafile with a differentfilename."
    spaced = "There are two methods of associating a file with a different filename."
    assert better_text(run_together, spaced) == spaced
    assert better_text(spaced, run_together) == spaced
    assert better_text(run_together, "There are two methods") == run_together  # lost most letters


# --- documents ----------------------------------------------------------------------------------


def test_running_header_footer_and_page_numbers_are_removed() -> None:
    texts = [f"KX-200 Service Manual\n{body(n)}\nPage {n} of 5" for n in range(1, 6)]
    texts[1] = f"KX-200 Service Manual\n{body(2)}\nSee chapter 2.\n- 2 -"  # a different footer style
    pages, report = normalize_pages(pages_of(*texts))
    assert [p.text for p in pages] == [body(1), f"{body(2)}\nSee chapter 2.\n- 2 -", body(3), body(4), body(5)]
    assert report.furniture_lines == 5 + 4


def test_edge_lines_recurring_on_two_pages_only_stay() -> None:
    texts = ["Overview\n" + body(1), "Overview\n" + body(2), body(3), body(4)]
    pages, report = normalize_pages(pages_of(*texts))
    assert pages[0].text.startswith("Overview") and report.furniture_lines == 0


def test_roman_page_numbers_and_spacing_variants_are_one_header() -> None:
    headers = ["Debian Reference xii", "DebianReference xiii", "Debian Reference  xiv", "Debian Reference 13 / 233"]
    texts = [f"{header}\n{body(n)}" for n, header in enumerate(headers, 1)]
    pages, report = normalize_pages(pages_of(*texts))
    assert [p.text for p in pages] == [body(1), body(2), body(3), "Debian Reference 13 / 233\n" + body(4)]
    assert report.furniture_lines == 3


def test_word_split_across_a_page_break_is_rejoined() -> None:
    pages, report = normalize_pages(pages_of("the knowledge distil-", "lation step runs.\nNext line."))
    assert [p.text for p in pages] == ["the knowledge distillation", "step runs.\nNext line."]
    assert report.hyphens_joined == 1


def test_no_join_across_a_missing_page() -> None:
    pages = pages_of("the knowledge distil-") + pages_of("lation step runs.", first=3)
    normalized, report = normalize_pages(pages)
    assert [p.text for p in normalized] == ["the knowledge distil-", "lation step runs."]
    assert report.hyphens_joined == 0


def test_paragraph_breaks_are_marked_in_plain_line_breaks() -> None:
    text = ("The pump draws water from the tank through the intake filter and pushes it\n"
            "through the heater.\n"
            "When the cycle ends the valve closes and the pump drains the remaining water\n"
            "back into the tank before it stops.\n"
            "Service intervals depend on water hardness.")
    (page,), _ = normalize_pages(pages_of(text))
    assert page.text.split("\n\n") == [
        "The pump draws water from the tank through the intake filter and pushes it\nthrough the heater.",
        "When the cycle ends the valve closes and the pump drains the remaining water\n"
        "back into the tank before it stops.",
        "Service intervals depend on water hardness.",
    ]


def test_exact_duplicates_go_and_short_repeats_stay() -> None:
    warning = ("Warning: disconnect the mains supply before opening the housing, because the capacitors "
               "keep a dangerous charge for several minutes after the unit is switched off.")
    edited = ("Warning: the housing may only be opened by trained staff who have read chapter 4 and "
              "carry the service key issued with the unit.")
    texts = [f"Note\n\n{warning}", f"Note\n\n{warning.upper()}\n\nNote\n\n{edited}"]
    pages, report = normalize_pages(pages_of(*texts))
    # same words in other case: a duplicate; "Note" (1 word) is a label, repeated on purpose
    assert [p.text for p in pages] == [texts[0], f"Note\n\nNote\n\n{edited}"]
    assert (report.duplicate_paragraphs, report.near_duplicate_paragraphs) == (1, 0)


def test_near_duplicate_threshold_on_long_paragraphs() -> None:
    words = [f"w{i}" for i in range(50)]
    original = " ".join(words) + "."
    one_word = " ".join(words[:25] + ["changed"] + words[26:]) + "."  # 5 of 46 shingles differ
    five_words = " ".join(w if i % 10 else "x" for i, w in enumerate(words)) + "."
    pages, report = normalize_pages(pages_of(original, one_word, five_words))
    assert [p.text for p in pages] == [original, "", five_words]
    assert (report.duplicate_paragraphs, report.near_duplicate_paragraphs) == (0, 1)


def test_pdf_document_end_to_end(tmp_path: Path) -> None:
    """A 4-page manual with a running header, "Page N of 4" footers, a ligature glyph, a word
    hyphenated across lines and a paragraph repeated on a later page (paragraphs wrap over several
    lines, as on a real page, so their breaks can be told from line wraps)."""
    repeated = ("Always wear gloves when you handle the cartridge, because the resin inside it irritates "
                "the skin and the eyes; wash your hands with plenty of water if it touches them.")
    filler = [
        "The assistant answers questions about the appliance from this manual only, and it says so "
        "when the manual does not cover a question instead of guessing an answer.",
        "Open the front panel with the supplied key, turning it a quarter turn to the left, and lift "
        "the panel off its two hinges before you reach for the cartridge behind it.",
        "Slide the cartridge out towards you and keep it upright, so that the water left inside does "
        "not run back into the housing and onto the electronics below the tank.",
        "Close the panel until it clicks into place and run one empty cycle, which rinses the new "
        "cartridge and flushes any loose resin out of the pipes before normal use.",
    ]
    pages_in = [
        ["Knowledge distil-\nlation is how the assistant was trained for this appliance.", filler[0],
         "The \ufb01lter sits behind the front panel, next to the water tank and the pump."],
        [filler[1], repeated],
        [repeated, filler[2]],
        [filler[3]],
    ]
    path = tmp_path / "manual.pdf"
    path.write_bytes(text_pdf(pages_in, header="KX-200 Service Manual", footer=True))
    pages, skipped, report = read_pdf(path, "manual.pdf", "0" * 64, PdfSource(pdf="manual.pdf", ocr="never"),
                                      scratch=tmp_path / "scratch")
    text = "\n\n".join(p.text for p in pages)
    assert skipped == [] and [p.page for p in pages] == [1, 2, 3, 4]
    assert "KX-200" not in text and "Page " not in text
    assert "Knowledge distillation" in text and "The filter sits" in text
    assert not any(c in LIGATURES for c in text)
    assert text.count("Always wear gloves") == 1 and pages[2].text.startswith("Slide the cartridge")
    assert len(pages[0].text.split("\n\n")) == 3  # paragraph breaks found in plain line breaks
    counts = (report.furniture_lines, report.hyphens_joined, report.duplicate_paragraphs,
              report.near_duplicate_paragraphs)
    assert counts == (8, 1, 1, 0)
