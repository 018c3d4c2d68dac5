"""Text normalization for extracted sources.

Two levels:

- ``normalize_text``: one text on its own (a text or Markdown file): NFKC, invisible and control
  characters, de-hyphenation of words split across line breaks, and whitespace.
- ``normalize_pages``: a whole PDF document, because some decisions need every page: lines that
  recur at the top or bottom of many pages (running headers, footers, page numbers), words split
  across a page break, paragraph breaks (text layers mark them with a plain line break), and
  paragraphs repeated anywhere in the document.

``run_together_share`` and ``better_text`` measure and pick between text-layer extractions of one
page, for PDFs whose text layer has no spaces between words (see ``runtime/sources/pdf.py``).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from distill.runtime.sources.records import Page

# A letter run longer than this is counted as words run together. English words past 15 letters
# are rare ("responsibilities" is 16, "internationalization" 20): across the 261 pages of the
# Debian Reference as poppler extracts it, 31 of 82,385 letter runs pass 15 letters.
LONG_WORD_LETTERS = 15
# Share of a page's letters in long runs above which the page is treated as run together. Measured
# on every 10th page of three real manuals: pages with spaces score at most 0.047 (gnuplot), pages
# without score at least 0.21 (Debian Reference); 0.1 sits between the two.
RUN_TOGETHER_TRIGGER = 0.1
# An alternative extraction may replace the current one only if it keeps this share of its
# letters: a layout that loses a column must not win because the column held the long words.
KEEP_LETTERS = 0.9

# Lines looked at from each end of a page for running headers and footers. Two covers a title line
# plus a page-number line; deeper lines are body text far more often than furniture.
EDGE_LINES = 2
# A line is page furniture when the same line sits in the same place (the first, second, last or
# second-to-last line) on at least this many pages. "The same" allows one change: a number that
# is the page number plus a fixed offset ("Page 12 of 40", "- xii -"). Masking every number
# instead made templated body lines ("Item 17 weighs 42 kg") look alike and removed them (45% of
# the characters of a 600-page templated report). The same body line opening three pages is rare;
# a running header recurs on every page of its chapter.
FURNITURE_MIN_PAGES = 3
# Furniture is a title, a chapter name, a page number: the running lines of the Debian Reference,
# gnuplot's and CamlIDL's manuals have 1-4 words ("Debian Reference 13 / 233"). A longer line is
# body text, even when a template repeats it with the page number in it.
FURNITURE_MAX_WORDS = 10
# Share of a document's characters that furniture removal may take before the report warns: a
# running header and a page number are 1.0% of the Debian Reference and 0.5% of gnuplot's manual
# (measured on 40 body pages each); 5% means short pages or body lines taken for furniture.
FURNITURE_WARN_SHARE = 0.05

# PDF text layers separate paragraphs with a plain line break. A line ends its paragraph when it
# ends a sentence, is shorter than this share of the page's longest line and the next line starts
# like a sentence. A wrapped line falls short of the measure by at most the next word (about 8 of
# 90 characters: 91%), even ragged-right; a paragraph's last line is anywhere in 0-100%, so 0.85
# finds 85% of paragraph ends. Pages under PARAGRAPH_MIN_LINES lines give no measure; a long
# outlier line (a URL) only adds breaks.
PARAGRAPH_END_RATIO = 0.85
PARAGRAPH_MIN_LINES = 4
_SENTENCE_END = ".!?:"
# Paragraphs shorter than this are headings or labels ("Example", "Note:"): repeating them is
# structure, not duplication, so they are never removed.
DUP_MIN_WORDS = 8
# Near duplicates: Jaccard similarity of word 5-gram sets. One word changed in a 50-word paragraph
# touches at most 5 of its 46 shingles, so J >= 41 / (46 + 5) = 0.80; a threshold of 0.8 removes
# copies that differ by about one word in 50 (reflowed text, a changed date or version) and keeps
# paragraphs with real edits.
SHINGLE_WORDS = 5
NEAR_DUP_JACCARD = 0.8

_LETTERS = re.compile(r"[^\W\d_]+")
_WORDS = re.compile(r"\w+")
# Removed outright: soft hyphen (a hyphenation hint), zero-width space and the byte-order mark.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\ufeff"))
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")
# A word, a hyphen at the end of its line, and the word's continuation at the start of the next
# with what sticks to it ("lation-based;"), never ending in a hyphen: moved to the line end, that
# would make a new line-break hyphen.
_LINE_BREAK_HYPHEN = re.compile(r"(?P<left>\w+)-\n(?P<right>\w+)(?P<rest>(?:\S*[^\s-])?)[ \t]*")
_COMPOUND = re.compile(r"\w+-\w+")
_PAGE_END_HYPHEN = re.compile(r"(?P<left>\w+)-$")
_PAGE_START_WORD = re.compile(r"(?P<right>\w+)[ \t]*\n?")
_ROMAN = re.compile(r"(?=[ivxlcdm])m{0,3}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})")
_ROMAN_DIGITS = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100, "d": 500, "m": 1000}


@dataclass(frozen=True)
class NormalizeReport:
    """What normalization removed or joined in one document.

    Attributes:
        furniture_lines: running header, footer and page-number lines removed.
        furniture_characters: the characters of those lines.
        characters: the document's characters before anything was removed (whitespace cleaned).
        hyphens_joined: words split by a line-break (or page-break) hyphen that were joined.
        duplicate_paragraphs: paragraphs removed because an earlier one has the same words.
        near_duplicate_paragraphs: paragraphs removed as near copies of an earlier one.
    """

    furniture_lines: int = 0
    hyphens_joined: int = 0
    duplicate_paragraphs: int = 0
    near_duplicate_paragraphs: int = 0
    furniture_characters: int = 0
    characters: int = 0

    @property
    def furniture_share(self) -> float:
        """Share of the document's characters that furniture removal took."""
        return self.furniture_characters / self.characters if self.characters else 0.0


def run_together_share(text: str) -> float:
    """Share of the letters of ``text`` that sit in letter runs longer than LONG_WORD_LETTERS.

    Near 0 for text with spaces between words; 0.2-0.9 for a text layer that lacks them
    ("Therearetwomethodsofassociatingafile").
    """
    runs = _LETTERS.findall(unicodedata.normalize("NFKC", text))
    letters = sum(map(len, runs))
    if letters == 0:
        return 0.0
    return sum(len(run) for run in runs if len(run) > LONG_WORD_LETTERS) / letters


def better_text(current: str, candidate: str) -> str:
    """The better of two extractions of one page: fewer words run together, same letters.

    Args:
        current: the extraction in use.
        candidate: another extraction of the same page (layout mode, another extractor).

    Returns:
        ``candidate`` if it runs fewer words together and keeps at least KEEP_LETTERS of
        ``current``'s letters; otherwise ``current``.
    """
    kept = _letter_count(candidate) >= KEEP_LETTERS * _letter_count(current)
    return candidate if kept and run_together_share(candidate) < run_together_share(current) else current


def normalize_text(text: str, collapse_spaces: bool = True) -> str:
    """Normalize one text on its own: characters, line-break hyphens, whitespace.

    Args:
        text: raw text.
        collapse_spaces: collapse runs of spaces inside lines and strip indentation (right for PDF
            text, whose spacing is layout); False keeps indentation (Markdown code blocks).

    Returns:
        The normalized text, with paragraphs separated by one blank line.
    """
    text = _clean_whitespace(_clean_characters(text), collapse_spaces)
    words, compounds = _vocabulary([text])
    return _clean_whitespace(_dehyphenate(text, words, compounds)[0], collapse_spaces)


def normalize_pages(pages: Sequence[Page]) -> tuple[list[Page], NormalizeReport]:
    """Normalize the pages of one document, using what recurs across them.

    Pages keep their order, numbers and ``ocr`` flags; a page may end up with empty text (a blank
    page, or one that held only a header and a page number).

    Args:
        pages: the document's extracted pages, in page order.

    Returns:
        The normalized pages and what was removed or joined.
    """
    texts = [_clean_whitespace(_clean_characters(page.text), True) for page in pages]
    characters = sum(map(len, texts))
    texts, furniture, furniture_characters = _remove_furniture(texts, [page.page for page in pages])
    texts = [_clean_whitespace(text, True) for text in texts]
    words, compounds = _vocabulary(texts)
    joined = 0
    for i, text in enumerate(texts):
        texts[i], count = _dehyphenate(text, words, compounds)
        joined += count
    joined += _join_across_pages(pages, texts, words, compounds)
    texts, exact, near = _dedupe_paragraphs([_mark_paragraphs(text) for text in texts])
    result = [replace(page, text=_clean_whitespace(text, True)) for page, text in zip(pages, texts, strict=True)]
    return result, NormalizeReport(furniture, joined, exact, near, furniture_characters, characters)


def _letter_count(text: str) -> int:
    return sum(map(len, _LETTERS.findall(text)))


def _clean_characters(text: str) -> str:
    """NFKC (ligatures such as U+FB01 become "fi", full-width forms ASCII), one newline style, no
    invisible or control characters (a form feed from a page break among them); tabs stay."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROL.sub("", text.translate(_INVISIBLE))


def _clean_whitespace(text: str, collapse_spaces: bool) -> str:
    lines = text.split("\n")
    if collapse_spaces:
        lines = [_SPACES.sub(" ", line).strip() for line in lines]
    else:
        lines = [line.rstrip() for line in lines]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


def _vocabulary(texts: Iterable[str]) -> tuple[set[str], set[str]]:
    """Casefolded words and hyphenated compounds that occur whole (not split by a line break)."""
    words: set[str] = set()
    compounds: set[str] = set()
    for text in texts:
        words.update(word.casefold() for word in _WORDS.findall(text))
        compounds.update(compound.casefold() for compound in _COMPOUND.findall(text))
    return words, compounds


def _rejoin(left: str, right: str, in_chain: bool, words: set[str], compounds: set[str]) -> str:
    """The word a line-break hyphen split, with or without its hyphen.

    The document decides first: a form seen whole elsewhere wins ("distillation", "well-known").
    Otherwise the hyphen stays inside hyphen chains (``in_chain``: "state-of-the-art",
    "case-by-case"), by numbers ("COVID-19", "x86-64") and before capitalized second parts
    ("Anglo-Saxon"); everything else is joined, because a hyphen at a line end in typeset text is
    a syllable break far more often than a compound. (Keeping it whenever both halves are words
    seen elsewhere would fix "time-consuming" but break "repre-sentable" and "condi-tionally":
    the halves of other split words are in the vocabulary too.)
    """
    if (left + right).casefold() in words:
        return left + right
    hyphenated = f"{left}-{right}"
    capitalized = right[0].isupper() and not left.isupper()
    digits = any(c.isdigit() for c in left + right)
    if hyphenated.casefold() in compounds or in_chain or capitalized or digits:
        return hyphenated
    return left + right


def _dehyphenate(text: str, words: set[str], compounds: set[str]) -> tuple[str, int]:
    """Rejoin words split by a hyphen at a line end. The word's tail (with its punctuation) moves
    up to the first line and the rest of the second line stays where it was, so no line is left
    empty. Returns the text and the joins made."""
    joined = 0

    def rejoin(match: re.Match[str]) -> str:
        nonlocal joined
        in_chain = text[match.start() - 1 : match.start()] == "-" or match["rest"].startswith("-")
        word = _rejoin(match["left"], match["right"], in_chain, words, compounds)
        joined += word == match["left"] + match["right"]
        line_goes_on = match.end() < len(text) and text[match.end()] != "\n"
        return word + match["rest"] + ("\n" if line_goes_on else "")

    return _LINE_BREAK_HYPHEN.sub(rejoin, text), joined


def _join_across_pages(pages: Sequence[Page], texts: list[str], words: set[str], compounds: set[str]) -> int:
    """Move the tail of a word split across a page break back to its page ("distil-" | "lation").

    Only consecutive page numbers are joined: a skipped page in between breaks the text.
    """
    joined = 0
    for i in range(len(texts) - 1):
        if pages[i + 1].page != pages[i].page + 1:
            continue
        end = _PAGE_END_HYPHEN.search(texts[i])
        start = _PAGE_START_WORD.match(texts[i + 1])
        if end is None or start is None:
            continue
        left, right = end["left"], start["right"]
        in_chain = texts[i][end.start() - 1 : end.start()] == "-" or texts[i + 1][start.end("right"):][:1] == "-"
        word = _rejoin(left, right, in_chain, words, compounds)
        joined += word == left + right
        texts[i] = texts[i][: end.start()] + word
        texts[i + 1] = texts[i + 1][start.end():]
    return joined


def _mark_paragraphs(text: str) -> str:
    """Insert a blank line after each line that looks like the end of a paragraph."""
    lines = text.split("\n")
    if len(lines) < PARAGRAPH_MIN_LINES:
        return text
    full = max(map(len, lines))
    marked = []
    for line, following in zip(lines, lines[1:] + [""], strict=True):
        marked.append(line)
        ends = bool(line) and line[-1] in _SENTENCE_END and len(line) < PARAGRAPH_END_RATIO * full
        if ends and following and (following[0].isupper() or following[0].isdigit()):
            marked.append("")
    return "\n".join(marked)


def _line_keys(line: str, page: int) -> set[str]:
    """What a furniture line looks like on every page: casefolded and without spaces ("Debian
    Reference" and "DebianReference" agree), as it is, and with each number (arabic or roman) in
    turn written as its offset from the page number ("Page 12 of 40" on page 12 and "Page 13 of
    40" on page 13 both give "page<+0>of40"). No key for a line too long to be furniture."""
    tokens = re.findall(r"\w+|[^\w\s]", line.casefold())
    if not tokens or len(_WORDS.findall(line)) > FURNITURE_MAX_WORDS:
        return set()
    keys = {"".join(tokens)}
    for i, token in enumerate(tokens):
        number = _number(token)
        if number is not None:
            keys.add("".join(tokens[:i]) + f"<{number - page:+d}>" + "".join(tokens[i + 1:]))
    return keys


def _number(token: str) -> int | None:
    if token.isdecimal():
        return int(token) if len(token) < 10 else None  # no page number has 10 digits
    if _ROMAN.fullmatch(token):
        return _roman_value(token)
    return None


def _roman_value(numeral: str) -> int:
    values = [_ROMAN_DIGITS[c] for c in numeral]
    return sum(-v if v < after else v for v, after in zip(values, values[1:] + [0], strict=True))


def _edge_slots(lines: list[str]) -> dict[int, list[str]]:
    """The edge lines of a page by index, each with its places: "top0", "top1" from the first
    non-blank line down, "end0", "end1" from the last one up."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    slots: dict[int, list[str]] = {}
    for rank, i in enumerate(filled[:EDGE_LINES]):
        slots.setdefault(i, []).append(f"top{rank}")
    for rank, i in enumerate(reversed(filled[-EDGE_LINES:])):
        slots.setdefault(i, []).append(f"end{rank}")
    return slots


def _remove_furniture(texts: list[str], numbers: list[int]) -> tuple[list[str], int, int]:
    """Drop edge lines that recur in the same place on at least FURNITURE_MIN_PAGES pages (see
    ``_line_keys`` for "recur"). ``numbers`` are the pages' numbers, for page-number lines.
    Returns the texts, the lines removed and their characters."""
    split = [text.split("\n") for text in texts]
    edges = [{i: {(slot, key) for slot in places for key in _line_keys(lines[i], number)}
              for i, places in _edge_slots(lines).items()}
             for lines, number in zip(split, numbers, strict=True)]
    pages_with = Counter(found for page in edges for found in set().union(*page.values()))
    furniture = {found for found, count in pages_with.items() if count >= FURNITURE_MIN_PAGES}
    lines_removed = characters_removed = 0
    result = []
    for lines, page in zip(split, edges, strict=True):
        drop = {i for i, found in page.items() if found & furniture}
        lines_removed += len(drop)
        characters_removed += sum(len(lines[i]) for i in drop)
        result.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    return result, lines_removed, characters_removed


def _dedupe_paragraphs(texts: list[str]) -> tuple[list[str], int, int]:
    """Remove paragraphs (blank-line separated) that repeat an earlier one exactly (same words,
    ignoring case, punctuation and spacing) or nearly (shingle Jaccard >= NEAR_DUP_JACCARD).

    The shingle index maps each shingle to the first kept paragraph that holds it, so memory is
    one dict entry per distinct shingle (normalizing the 311-page gnuplot manual, 850,000
    characters, peaks at 18 MB) and the shared count it gives is a lower bound: a paragraph is
    only removed when its similarity is certainly at or above the threshold.
    """
    seen: set[str] = set()
    first_holder: dict[int, int] = {}
    sizes: list[int] = []
    exact = near = 0
    result = []
    for text in texts:
        kept = []
        for paragraph in text.split("\n\n"):
            words = [word.casefold() for word in _WORDS.findall(paragraph)]
            if len(words) < DUP_MIN_WORDS:
                kept.append(paragraph)
                continue
            key = " ".join(words)
            shingles = {hash(tuple(words[i:i + SHINGLE_WORDS])) for i in range(len(words) - SHINGLE_WORDS + 1)}
            if key in seen:
                exact += 1
            elif _max_jaccard(shingles, first_holder, sizes) >= NEAR_DUP_JACCARD:
                near += 1
            else:
                seen.add(key)
                for shingle in shingles:
                    first_holder.setdefault(shingle, len(sizes))
                sizes.append(len(shingles))
                kept.append(paragraph)
        result.append("\n\n".join(kept))
    return result, exact, near


def _max_jaccard(shingles: set[int], first_holder: dict[int, int], sizes: list[int]) -> float:
    shared = Counter(first_holder[s] for s in shingles if s in first_holder)
    return max((n / (len(shingles) + sizes[p] - n) for p, n in shared.items()), default=0.0)
