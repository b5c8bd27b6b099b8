"""Digits demo metrics against hand-computed values."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "multilabel_digits"))
import digits_metrics as M  # noqa: E402


def test_average_precision_by_hand():
    # ranking by score: pos, neg, pos, neg, pos -> precision at the hits 1/1, 2/3, 3/5
    y = [1, 0, 1, 0, 1]
    s = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert M.average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert M.average_precision([0, 1], [0.9, 0.1]) == pytest.approx(0.5)
    assert M.average_precision([1, 0, 0], [0.2, 0.1, 0.0]) == pytest.approx(1.0)
    assert np.isnan(M.average_precision([0, 0], [0.3, 0.1]))


def test_average_precision_ties_are_one_threshold():
    # both scored 0.5: one threshold with precision 1/2, recall 1
    assert M.average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    # pos 0.9; tie {pos, neg} at 0.4 -> (1 * 1/2) + (1/2 * 2/3)
    assert M.average_precision([1, 1, 0], [0.9, 0.4, 0.4]) == pytest.approx(0.5 + 1 / 3)


def test_average_precision_matches_sklearn():
    from sklearn.metrics import average_precision_score
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 40)
        y[0] = 1
        s = np.round(rng.random(40), 1)          # coarse scores: many ties
        assert M.average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_small_multilabel_case_by_hand():
    labels = np.array([[1, 0, 0],
                       [1, 1, 0],
                       [0, 1, 1],
                       [0, 0, 0]])           # no labels: left out of precision@M / exact set
    scores = np.array([[0.8, 0.1, 0.1],
                       [0.5, 0.2, 0.3],
                       [0.4, 0.35, 0.25]])
    scores = np.vstack([scores, [0.3, 0.3, 0.4]])
    # class 0: ranking 0.8(+) 0.5(+) 0.4(-) 0.3(-) -> AP 1
    # class 1: ranking 0.35(+) 0.3(-) 0.2(+) 0.1(-) -> (1 + 2/3) / 2
    # class 2: ranking 0.4(-) 0.3(-) 0.25(+) 0.1(-) -> 1/3
    ap = M.per_class_average_precision(scores, labels)
    assert ap == pytest.approx([1.0, (1 + 2 / 3) / 2, 1 / 3])
    assert M.mean_average_precision(scores, labels) == pytest.approx((1 + 5 / 6 + 1 / 3) / 3)
    # top-M: sample0 M=1 {0} hit; sample1 M=2 {0,2} 1 of 2; sample2 M=2 {0,1} 1 of 2
    assert M.precision_at_m(scores, labels) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert M.exact_set_accuracy(scores, labels) == pytest.approx(1 / 3)
    allm = M.all_metrics(scores, labels)
    assert allm["exact_set_accuracy_by_m"] == {1: 1.0, 2: 0.0}
    assert allm["examples"] == 4


def test_perfect_and_reversed_scores():
    rng = np.random.default_rng(1)
    labels = (rng.random((50, 10)) < 0.3).astype(np.float32)
    labels[:, 0] = 1
    perfect = labels + 0.01 * rng.random(labels.shape)
    assert M.mean_average_precision(perfect, labels) == pytest.approx(1.0)
    assert M.precision_at_m(perfect, labels) == 1.0 and M.exact_set_accuracy(perfect, labels) == 1.0
    assert M.exact_set_accuracy(-perfect, labels) == 0.0
    assert M.mean_average_precision(-perfect, labels) < 0.5
