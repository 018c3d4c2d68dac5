"""Chunking: one document's pages -> overlapping chunks sized in the consuming tokenizer's tokens.

The document's text is its pages joined by "\\n\\n"; every chunk is an exact span of it
(``text == joined[char_start:char_end]``) that starts and ends on non-whitespace.

Where chunks are cut. Between words lie boundaries, ranked paragraph (a whitespace run holding two
or more newlines, so every page join) > sentence (whitespace after ``.``, ``!``, ``?`` or ``…``,
optionally closed by quotes or brackets, and right after ``。！？`` and their closers, which need
no space; abbreviations like "e.g." count as sentence ends) > whitespace. A chunk ends at the
furthest boundary that keeps it within ``chunk_tokens``; if a paragraph boundary, else a sentence
boundary, still leaves it at least ``MIN_FILL`` of the budget, it ends there instead. The next
chunk starts inside the previous one so that the shared text is at most ``overlap_tokens`` and as
long as possible, with the same preference and the same ``MIN_FILL`` floor (of
``overlap_tokens``). When overlapping would leave the next chunk no room to go past the previous
one (the word after it is too long), that junction gets no overlap.

A piece with no boundary that alone exceeds the budget (a long URL, a base64 blob, a run of CJK
without punctuation) is cut at the last character that keeps the piece within the budget, never
right before a combining mark; those cuts do not overlap.

Token counts are exact, never assumed additive across pieces: a candidate chunk's own text is
counted. Candidates are found by galloping then bisecting over the boundaries, so each chunk costs
O(log words) calls on texts about its own length: the document is tokenized about ten times over
(9.8 times for a 760 kB book at 384/48 tokens), never O(n^2). The search assumes that adding words
never lowers a count (true of tokenizers that pre-split on whitespace); a violation can only make
a chunk shorter than it might be, never over budget, since the chosen span's count is the one
checked.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence

from distill.runtime.sources.records import Chunk, Page, chunk_id

SPACE, SENTENCE, PARAGRAPH, END = 1, 2, 3, 4  # boundary levels; END is the document's end
MIN_FILL = 0.5  # a stronger boundary is taken only if the chunk (or overlap) keeps half its target
PAGE_JOIN = "\n\n"
_CLOSERS = "\"'”’»)」』）\\]"  # may follow a sentence's final mark, inside the sentence
# A whitespace run (after a sentence's end, or not), or CJK final marks, which need no space after.
_BREAK = re.compile(rf"(?P<stop>[.!?…。！？][{_CLOSERS}]*)?(?P<space>\s+)|[。！？][{_CLOSERS}]*(?=\S)")


def chunk_document(pages: Sequence[Page], count_tokens: Callable[[str], int], chunk_tokens: int,
                   overlap_tokens: int) -> list[Chunk]:
    """Cut one document into overlapping chunks of at most ``chunk_tokens`` tokens.

    Args:
        pages: the document's pages in order, all of one source.
        count_tokens: tokens of a text in the consuming tokenizer, without special tokens.
        chunk_tokens: the budget per chunk.
        overlap_tokens: the target of text shared by consecutive chunks (at most this many tokens).

    Returns:
        The chunks in document order; none for a document that is all whitespace.

    Raises:
        ValueError: for pages of several sources, or ``not 0 <= overlap_tokens < chunk_tokens``.
    """
    if not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError(f"need 0 <= overlap_tokens < chunk_tokens, got {overlap_tokens} and {chunk_tokens}")
    if not pages:
        return []
    if len({(page.source, page.sha256) for page in pages}) > 1:
        raise ValueError("chunk_document takes the pages of one document")
    text = PAGE_JOIN.join(page.text for page in pages)
    page_starts = _page_starts(pages)
    cutter = _Cutter(text, count_tokens, chunk_tokens, overlap_tokens)
    chunks = []
    for start, end in cutter.spans():
        first = pages[bisect_right(page_starts, start) - 1].page
        last = pages[bisect_right(page_starts, end - 1) - 1].page
        piece = text[start:end]
        chunks.append(Chunk(chunk_id(pages[0].sha256, first, last, start, end, piece), piece,
                            pages[0].source, pages[0].sha256, first, last, start, end,
                            cutter.count(start, end)))
    return chunks


def _page_starts(pages: Sequence[Page]) -> list[int]:
    """Character offset of each page's text in the joined document."""
    starts, offset = [], 0
    for page in pages:
        starts.append(offset)
        offset += len(page.text) + len(PAGE_JOIN)
    return starts


class _Cutter:
    """Finds chunk spans in one text. Boundary ``i`` separates the text before ``ends[i]`` from
    the text from ``starts[i]`` (the whitespace between them belongs to neither chunk); the last
    boundary is the document's end."""

    def __init__(self, text: str, count_tokens: Callable[[str], int], budget: int, overlap: int) -> None:
        self.text, self.budget, self.overlap = text, budget, overlap
        self._count_tokens = count_tokens
        self._counts: dict[tuple[int, int], int] = {}
        self._guesses = [1, 1]  # boundaries spanned by the last chunk and by the last overlap
        self.first = len(text) - len(text.lstrip())
        last = len(text.rstrip())
        self.ends: list[int] = []
        self.starts: list[int] = []
        self.levels: list[int] = []
        for match in _BREAK.finditer(text, self.first, last):
            self.ends.append(match.start("space") if match.group("space") else match.end())
            self.starts.append(match.end())
            self.levels.append(_level(match))
        self.ends.append(last)
        self.starts.append(last)
        self.levels.append(END)

    def count(self, start: int, end: int) -> int:
        """Tokens of ``text[start:end]``, each span counted once."""
        if (start, end) not in self._counts:
            self._counts[(start, end)] = self._count_tokens(self.text[start:end])
        return self._counts[(start, end)]

    def spans(self) -> Iterator[tuple[int, int]]:
        """(start, end) of each chunk, in order."""
        if self.first >= self.ends[-1]:
            return
        start, previous_end, fallback = self.first, -1, self.first
        while True:
            end, boundary = self._end(start, previous_end)
            if end <= previous_end:  # the overlap left no room to advance: restart without it
                start = fallback
                end, boundary = self._end(start, previous_end)
            yield start, end
            if boundary is None:  # cut inside an unbreakable piece: the next chunk goes on from here
                start, previous_end, fallback = end, end, end
                continue
            if self.levels[boundary] == END:
                return
            fallback, previous_end = self.starts[boundary], end
            start = self._next_start(start, boundary)

    def _end(self, start: int, beyond: int) -> tuple[int, int | None]:
        """Where the chunk from ``start`` ends, and at which boundary (``None``: a character cut).
        A stronger boundary is only preferred past ``beyond`` (the previous chunk's end): going
        back to it would make no progress."""
        first = bisect_right(self.ends, start)
        if self.count(start, self.ends[first]) > self.budget:
            return self._cut_unbreakable(start, self.ends[first]), None
        furthest = _furthest(first, len(self.ends) - 1,
                             lambda i: self.count(start, self.ends[i]) <= self.budget, self._guesses[0])
        self._guesses[0] = furthest - first
        lowest = max(first, bisect_right(self.ends, beyond))
        if furthest < lowest:
            return self.ends[furthest], furthest
        floor = MIN_FILL * self.budget
        chosen = self._prefer(range(furthest, lowest - 1, -1),
                              lambda i: floor <= self.count(start, self.ends[i]) <= self.budget)
        return self.ends[chosen], chosen

    def _next_start(self, start: int, boundary: int) -> int:
        """Where the chunk after ``text[start:ends[boundary]]`` starts: inside it by up to
        ``overlap`` tokens, or right after it."""
        end = self.ends[boundary]
        first = bisect_right(self.ends, start)  # boundaries inside the chunk: first .. boundary - 1
        if self.overlap == 0 or first == boundary or self.count(self.starts[boundary - 1], end) > self.overlap:
            return self.starts[boundary]
        earliest = _furthest(boundary - 1, first,
                             lambda i: self.count(self.starts[i], end) <= self.overlap, self._guesses[1])
        self._guesses[1] = boundary - 1 - earliest
        floor = MIN_FILL * self.overlap
        chosen = self._prefer(range(earliest, boundary),
                              lambda i: floor <= self.count(self.starts[i], end) <= self.overlap)
        return self.starts[chosen]

    def _prefer(self, candidates: range, full_enough: Callable[[int], bool]) -> int:
        """The first candidate at a paragraph boundary (or the end), else at a sentence boundary,
        if it is ``full_enough`` (which also re-checks the limit: counts need not be monotone);
        else the first candidate. Candidates come best-filled first."""
        for level in (PARAGRAPH, SENTENCE):
            strong = next((i for i in candidates if self.levels[i] >= level), None)
            if strong is not None and full_enough(strong):
                return strong
        return candidates[0]

    def _cut_unbreakable(self, start: int, limit: int) -> int:
        """The furthest character cut in ``text[start:limit]`` within budget (one character at
        least), moved back off combining marks."""
        good, bad = start + 1, limit
        while bad - good > 1:
            middle = (good + bad) // 2
            if self.count(start, middle) <= self.budget:
                good = middle
            else:
                bad = middle
        while good - 1 > start and unicodedata.combining(self.text[good]):
            good -= 1
        return good


def _level(match: re.Match[str]) -> int:
    space = match.group("space")
    if space is None:  # right after 。！？ (and closers), with no space
        return SENTENCE
    if space.count("\n") >= 2:
        return PARAGRAPH
    return SENTENCE if match.group("stop") is not None else SPACE


def _furthest(origin: int, limit: int, fits: Callable[[int], bool], guess: int) -> int:
    """The index furthest from ``origin`` toward ``limit`` (inclusive, either direction) that
    ``fits``, given that ``origin`` fits and that once an index fails all further ones do.

    The first probe is ``guess`` indices out (the last search's answer: chunks are alike); from
    there jumps of a sixteenth of the guess, doubling, bracket the answer, and bisection finishes.
    A good guess costs about 2 + log2(guess / 16) calls instead of 2 * log2(distance).
    """
    step = 1 if limit >= origin else -1
    good, bad = origin, limit + step
    probe = origin + step * min(max(guess, 1), abs(limit - origin))
    jump = max(1, guess // 16)
    if probe != origin and fits(probe):
        good = probe
        while good != limit:  # gallop out until a probe fails
            probe = good + step * min(jump, abs(limit - good))
            if not fits(probe):
                bad = probe
                break
            good, jump = probe, jump * 2
    elif probe != origin:
        bad = probe
        while abs(bad - good) > jump:  # gallop back until a probe fits
            probe = bad - step * jump
            if fits(probe):
                good = probe
                break
            bad, jump = probe, jump * 2
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good
