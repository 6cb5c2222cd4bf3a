"""broker.stats against numbers worked out by hand (arithmetic in the comments)."""
from __future__ import annotations

import pytest

from broker.stats import Z95, rank, summarize, summarize_scales, wilson_lower

# z = 1.959963984540054, z^2 = 3.841458820694124


def test_wilson_lower_of_nothing_is_zero():
    assert wilson_lower(0, 0) == 0.0


def test_wilson_lower_8_of_10():
    # p = 0.8, n = 10
    # centre = p + z^2/(2n)            = 0.8 + 3.8414588/20          = 0.99207294
    # margin = z * sqrt(p(1-p)/n + z^2/(4n^2))
    #        = 1.959964 * sqrt(0.016 + 3.8414588/400)
    #        = 1.959964 * sqrt(0.02560365) = 1.959964 * 0.16001140 = 0.31361768
    # lower  = (centre - margin) / (1 + z^2/n) = 0.67845526 / 1.38414588 = 0.49016
    assert wilson_lower(8, 10) == pytest.approx(0.49016, abs=1e-5)


def test_wilson_lower_all_satisfied_has_a_closed_form():
    # With p = 1: centre = 1 + z^2/(2n), margin = z * sqrt(z^2/(4n^2)) = z^2/(2n),
    # so lower = 1 / (1 + z^2/n) = n / (n + z^2).
    # n = 2: 2 / 5.8414588 = 0.342380
    assert wilson_lower(2, 2) == pytest.approx(2 / (2 + Z95**2))
    assert wilson_lower(2, 2) == pytest.approx(0.342380, abs=1e-6)


def test_wilson_lower_485_of_500():
    # p = 0.97, n = 500
    # centre = 0.97 + 3.8414588/1000 = 0.97384146
    # margin = 1.959964 * sqrt(0.0291/500 + 3.8414588/1000000)
    #        = 1.959964 * sqrt(0.0000582 + 0.00000384146) = 1.959964 * sqrt(0.00006204146)
    #        = 1.959964 * 0.00787664 = 0.01543793
    # lower  = (0.97384146 - 0.01543793) / (1 + 3.8414588/500) = 0.95840353 / 1.00768292 = 0.95110
    assert wilson_lower(485, 500) == pytest.approx(0.95110, abs=1e-5)


def test_wilson_lower_rejects_impossible_counts():
    with pytest.raises(ValueError):
        wilson_lower(11, 10)


def test_summarize_by_hand():
    # One 1, one 2, three 3s, five 4s on a 4-button counter; two flagged presses aside.
    s = summarize({1: 1, 2: 1, 3: 3, 4: 5}, 4, flagged=2)
    # ratings 10; satisfied = scores >= 3 (the top two levels) = 3 + 5 = 8; rate 0.8
    # mean  = (1 + 2 + 3*3 + 4*5) / 10 = 32 / 10 = 3.2
    # index = (0/3 + 1/3 + 3 * 2/3 + 5 * 3/3) / 10 * 100 = (0.3333 + 2 + 5) / 10 * 100 = 73.33 -> 73.3
    # wilson_lower(8, 10) = 0.49016 -> 0.4902
    assert s == {"ratings": 10, "counts": {"1": 1, "2": 1, "3": 3, "4": 5}, "satisfied": 8, "rate": 0.8,
                 "mean": 3.2, "index": 73.3, "wilson_lower": 0.4902, "flagged": 2}


def test_summarize_with_satisfied_from():
    # Only "very satisfied" (4) counts: 5 of 10, rate 0.5.
    # wilson_lower(5, 10): centre = 0.5 + 0.19207294 = 0.69207294
    # margin = 1.959964 * sqrt(0.025 + 0.00960365) = 1.959964 * 0.18602056 = 0.36459370
    # lower = 0.32747924 / 1.38414588 = 0.23659 -> 0.2366
    s = summarize({1: 1, 2: 1, 3: 3, 4: 5}, 4, satisfied_from=4)
    assert (s["satisfied"], s["rate"], s["wilson_lower"]) == (5, 0.5, 0.2366)
    # Everything from 2 up: 9 of 10.
    assert summarize({1: 1, 2: 1, 3: 3, 4: 5}, 4, satisfied_from=2)["satisfied"] == 9
    # The figures that do not depend on the threshold do not move.
    assert summarize({1: 1, 2: 1, 3: 3, 4: 5}, 4, satisfied_from=4)["index"] == 73.3


def test_summarize_five_and_three_button_scales():
    # Scale 5, default satisfied = 4 and 5. Scores 5, 5, 5, 4, 1:
    # satisfied 4 of 5 = 0.8; mean (15 + 4 + 1) / 5 = 4.0;
    # index (1 + 1 + 1 + 3/4 + 0) / 5 * 100 = 75.0
    s5 = summarize({5: 3, 4: 1, 1: 1}, 5)
    assert s5["counts"] == {"1": 1, "2": 0, "3": 0, "4": 1, "5": 3}
    assert (s5["ratings"], s5["satisfied"], s5["rate"], s5["mean"], s5["index"]) == (5, 4, 0.8, 4.0, 75.0)
    # Scale 3, default satisfied = 2 and 3. Scores 3, 2, 1: satisfied 2 of 3 = 0.6667;
    # mean 2.0; index (1 + 1/2 + 0) / 3 * 100 = 50.0
    s3 = summarize({1: 1, 2: 1, 3: 1}, 3)
    assert (s3["satisfied"], s3["rate"], s3["mean"], s3["index"]) == (2, 0.6667, 2.0, 50.0)


def test_summarize_rounding():
    # 1 of 3 satisfied: rate 0.33333 -> 0.3333; mean (1 + 1 + 4) / 3 = 2.0;
    # index (0 + 0 + 1) / 3 * 100 = 33.33 -> 33.3; a mean of 7/3 = 2.3333 -> 2.333
    s = summarize({1: 2, 4: 1}, 4)
    assert (s["rate"], s["mean"], s["index"]) == (0.3333, 2.0, 33.3)
    assert summarize({2: 2, 3: 1}, 4)["mean"] == 2.333


def test_summarize_without_ratings():
    assert summarize({}, 4, flagged=3) == {
        "ratings": 0, "counts": {"1": 0, "2": 0, "3": 0, "4": 0}, "satisfied": 0, "rate": None, "mean": None,
        "index": None, "wilson_lower": 0.0, "flagged": 3}


def test_summarize_rejects_nonsense():
    with pytest.raises(ValueError):
        summarize({5: 1}, 4)  # score above the scale
    with pytest.raises(ValueError):
        summarize({1: 1}, 4, satisfied_from=5)
    with pytest.raises(ValueError):
        summarize({1: 1}, 4, satisfied_from=0)
    with pytest.raises(ValueError):
        summarize({1: -1}, 4)


def test_summarize_mixed_scales():
    # Stated on scale 4. Two 4s of 4; a 5 and a 3 of 5.
    # satisfied: top two levels of each scale -> 4, 4 (of 4) and 5 (of 5) = 3 of 4 = 0.75
    # index (1 + 1 + 1 + 2/4) / 4 * 100 = 87.5
    # mean on scale 4: 4, 4, 5 of 5 -> 4, 3 of 5 -> 1 + (2/4) * 3 = 2.5 -> (4 + 4 + 4 + 2.5) / 4 = 3.625
    s = summarize_scales({4: {4: 2}, 5: {5: 1, 3: 1}}, 4)
    assert s["counts"] == {"1": 0, "2": 0, "3": 1, "4": 2, "5": 1}
    assert (s["ratings"], s["satisfied"], s["rate"], s["index"], s["mean"]) == (4, 3, 0.75, 87.5, 3.625)
    # satisfied_from=4 on scale 4 means "the top level only": the 4s of 4 and the 5 of 5.
    assert summarize_scales({4: {4: 2, 3: 1}, 5: {5: 1, 4: 1}}, 4, satisfied_from=4)["satisfied"] == 3
    # A single scale is exactly summarize.
    assert summarize_scales({4: {1: 1, 4: 2}}, 4) == summarize({1: 1, 4: 2}, 4)


def row(key, satisfied, ratings):
    return {"key": key, "ratings": ratings, "wilson_lower": round(wilson_lower(satisfied, ratings), 4)}


def test_rank_prefers_evidence_the_issues_example():
    # 2 votes at 100 % (lower bound 0.3424) against 500 at 97 % (0.9511).
    lucky, steady = row("lucky", 2, 2), row("steady", 485, 500)
    assert [r["key"] for r in rank([lucky, steady])] == ["steady", "lucky"]


def test_rank_ties():
    # Equal bounds: more ratings first; then by key, with "nobody" (None) last.
    a = {"key": "b", "ratings": 10, "wilson_lower": 0.5}
    b = {"key": "a", "ratings": 10, "wilson_lower": 0.5}
    c = {"key": "z", "ratings": 20, "wilson_lower": 0.5}
    d = {"key": None, "ratings": 10, "wilson_lower": 0.5}
    e = {"key": "q", "ratings": 0, "wilson_lower": 0.0}
    assert [r["key"] for r in rank([e, d, a, b, c])] == ["z", "a", "b", None, "q"]
