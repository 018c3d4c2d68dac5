"""Metric arithmetic, pure, with numpy and rouge-score only (the llama.cpp child imports it without
torch).

Answer metrics follow the SQuAD v1.1 evaluation script: answers are normalized (lower case, no
punctuation, no articles a/an/the, whitespace collapsed) before exact match and bag-of-words F1.
ROUGE-L is Google's ``rouge-score`` package's, not a re-implementation: its own tokenizer, no SQuAD
normalization (imported on first use: it brings nltk, about 0.6 s).
"""

from __future__ import annotations

import math
import re
import statistics
import string
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any

IGNORE = -100  # label of a token that is not scored (HF's ignore_index)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, punctuation and articles removed, whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD bag-of-words F1 of the normalized words; two empty answers agree (1.0)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@cache
def _rouge_l_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])  # use_stemmer=False, the package's default


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1) as ``rouge-score`` computes it: lower case, every run of
    characters other than ``[a-z0-9]`` a word break (so non-ASCII letters are dropped), no
    stemming, LCS over the words; 0.0 when either side has no words (two empty answers too)."""
    return float(_rouge_l_scorer().score(reference, prediction)["rougeL"].fmeasure)


def nll_from_logits(logits: Any, ids: Sequence[int], labels: Sequence[int]) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of the scored tokens, and how many were scored.

    Position ``t`` is scored when ``labels[t] != -100`` and ``t >= 1``: the logits at ``t - 1``
    predict ``ids[t]`` (labels are unshifted, HF convention). Log-softmax runs in float64, so
    every backend's logits go through the same arithmetic.
    """
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    targets = [t for t in range(1, len(ids)) if labels[t] != IGNORE]
    if not targets:
        return 0.0, 0
    rows = logits[[t - 1 for t in targets]]
    peak = rows.max(axis=-1, keepdims=True)
    log_norm = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=-1))
    picked = rows[np.arange(len(targets)), [ids[t] for t in targets]]
    return float((log_norm - picked).sum()), len(targets)


def perplexity(total_nll: float, tokens: int) -> float | None:
    """exp(mean NLL per token); None when nothing was scored."""
    return math.exp(total_nll / tokens) if tokens else None


def best_span(start: Sequence[float], end: Sequence[float], allowed: Sequence[bool],
              max_len: int = 30) -> tuple[int, int] | None:
    """The (start, end) token pair, both ``allowed`` (context tokens), ``start <= end <
    start + max_len``, with the highest start + end logit; None when no token is allowed."""
    import numpy as np

    start_arr, end_arr = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    mask = np.asarray(allowed, dtype=bool)
    if not mask.any():
        return None
    n = len(start_arr)
    scores = start_arr[:, None] + end_arr[None, :]
    ok = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), k=max_len)
    ok &= mask[:, None] & mask[None, :]
    flat = int(np.where(ok, scores, -np.inf).argmax())
    return flat // n, flat % n


def latency(seconds: Sequence[float], tokens: int) -> dict[str, float]:
    """Median ms per token and tokens/s over timed runs of ``tokens`` tokens each."""
    median = statistics.median(seconds)
    return {"latency_ms": 1000.0 * median / tokens, "tokens_per_s": tokens / median}


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
