"""Satisfaction figures from rating counts: pure functions, no I/O.

Rounding (Python's round, half to even): rate and wilson_lower to 4 decimals,
mean to 3, index to 1. Rounding happens only here, at the very end, so sums and
rankings never compound rounding errors.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["Z95", "rank", "summarize", "summarize_scales", "wilson_lower"]

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_lower(successes: int, n: int, z: float = Z95) -> float:
    """Lower bound of the Wilson score interval for a proportion; 0.0 when n == 0.

    Used for ranking because it rewards evidence: 2 of 2 satisfied is a
    plausible fluke, 485 of 500 is not.
    """
    if n <= 0:
        return 0.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} is outside 0..{n}")
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z2 / n))


def summarize(
    counts_by_score: Mapping[int, int],
    scale: int,
    flagged: int = 0,
    satisfied_from: int | None = None,
) -> dict:
    """Figures for ratings on one scale: counts by score (1 = worst), plus flagged ones aside.

    satisfied = ratings with score >= satisfied_from (default scale - 1: the top two
    levels); rate = satisfied / ratings; mean = average score; index = average of
    (score - 1) / (scale - 1) * 100, i.e. 0 when everyone pressed the worst button
    and 100 when everyone pressed the best. rate, mean and index are None without
    ratings. Flagged ratings are reported, never counted.
    """
    return summarize_scales({scale: counts_by_score}, scale, flagged, satisfied_from)


def summarize_scales(
    counts: Mapping[int, Mapping[int, int]],
    scale: int,
    flagged: int = 0,
    satisfied_from: int | None = None,
) -> dict:
    """`summarize` for ratings that may come from counters with different scales.

    `counts` maps scale -> {score: n}; `scale` is the one the report is stated in.
    Mixing scales needs three choices:
    * satisfied_from is given on `scale` and means "the top (scale - satisfied_from
      + 1) levels" on every scale, so by default the top two everywhere;
    * mean is stated on `scale`: each score is mapped linearly onto it first
      (1 stays 1, the top level becomes `scale`);
    * index is already scale-free; counts are keyed by the level pressed, with every
      level from 1 to the largest scale present.
    With a single scale all of this reduces to the plain definitions.
    """
    if scale < 2:
        raise ValueError(f"scale {scale} must be at least 2")
    if satisfied_from is None:
        satisfied_from = scale - 1
    if not 1 <= satisfied_from <= scale:
        raise ValueError(f"satisfied_from {satisfied_from} is outside 1..{scale}")
    top_levels = scale - satisfied_from + 1

    levels = max([scale, *counts])
    by_level = {str(level): 0 for level in range(1, levels + 1)}
    ratings = satisfied = 0
    score_sum = 0.0  # on the report's scale
    index_sum = 0.0
    for s, by_score in counts.items():
        if s < 2:
            raise ValueError(f"scale {s} must be at least 2")
        threshold = max(1, s - top_levels + 1)
        for score, n in by_score.items():
            if not 1 <= score <= s:
                raise ValueError(f"score {score} is outside 1..{s}")
            if n < 0:
                raise ValueError(f"negative count {n} for score {score}")
            by_level[str(score)] += n
            ratings += n
            if score >= threshold:
                satisfied += n
            share = (score - 1) / (s - 1)
            index_sum += n * share
            score_sum += n * (score if s == scale else 1 + share * (scale - 1))
    if ratings == 0:
        return {"ratings": 0, "counts": by_level, "satisfied": 0, "rate": None, "mean": None,
                "index": None, "wilson_lower": 0.0, "flagged": flagged}
    return {
        "ratings": ratings,
        "counts": by_level,
        "satisfied": satisfied,
        "rate": round(satisfied / ratings, 4),
        "mean": round(score_sum / ratings, 3),
        "index": round(index_sum / ratings * 100, 1),
        "wilson_lower": round(wilson_lower(satisfied, ratings), 4),
        "flagged": flagged,
    }


def rank(rows: Iterable[dict]) -> list[dict]:
    """Best first: by wilson_lower, then more ratings, then key (None, "unattributed", last among equals)."""
    return sorted(rows, key=lambda r: (-r["wilson_lower"], -r["ratings"], r["key"] is None, r["key"] or ""))
