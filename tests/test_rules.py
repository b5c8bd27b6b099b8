"""Decision rules at their edges: scores exactly on a threshold, the calibration's tie-break, rules that
cannot mean what was asked (evaluation/rules.py; the rules against loops are in tests/test_predict.py)."""
import numpy as np
import pytest

from softmax_multilabel_layer.evaluation.rules import (
    calibrate_thresholds,
    check_rule,
    class_thresholds,
    predict_labels,
    threshold,
    top_k,
)
from softmax_multilabel_layer.params import MultilabelLossError


def test_a_score_exactly_on_the_threshold_is_predicted():
    s = np.array([[0.25, 0.5, 0.75], [0.5, 0.25, 0.7499999]])
    np.testing.assert_array_equal(predict_labels(s, class_thresholds([0.25, 0.5, 0.75])), [[1, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(predict_labels(s, threshold(0.5)), [[0, 1, 1], [1, 0, 1]])
    np.testing.assert_array_equal(predict_labels(s, "threshold:0.5"), [[0, 1, 1], [1, 0, 1]])


def test_calibration_takes_the_highest_of_equally_good_thresholds():
    # one class: +0.9, -0.8, -0.7, +0.6: threshold 0.9 and 0.6 both give F1 2/3; the higher one is taken and
    # moved half-way to the next lower score (0.85), never the lower one (0.6)
    y = np.array([[1], [0], [0], [1]])
    s = np.array([[0.9], [0.8], [0.7], [0.6]])
    t, f1 = calibrate_thresholds(y, s)
    assert t[0] == pytest.approx(0.85, abs=1e-15) and f1[0] == pytest.approx(2 / 3, abs=1e-15)
    # the best threshold is the lowest score: it stays there (nothing below to move towards)
    t, f1 = calibrate_thresholds([[1], [1], [1]], [[0.9], [0.8], [0.1]])
    assert t[0] == 0.1 and f1[0] == 1.0


@pytest.mark.parametrize("rule, match", [
    (top_k(4), r"--rule top-k:4: k=4 is more than the C=3 classes; expected k in 1..3"),
    (threshold(5), r"--rule threshold:5 predicts no label at all: the highest score is 0.9"),
    (threshold(-5), r"--rule threshold:-5 predicts every label: the lowest score is 0.1"),
    (threshold(0.1), r"predicts every label"),
])
def test_rules_that_cannot_mean_what_was_asked(rule, match):
    s = np.array([[0.1, 0.5, 0.9], [0.2, 0.3, 0.5]])
    with pytest.raises(MultilabelLossError, match=match):
        check_rule(rule, s, "--rule")


def test_rules_that_can():
    s = np.array([[0.1, 0.5, 0.9], [0.2, 0.3, 0.5]])
    for rule in (top_k(3), top_k(1), threshold(0.9), threshold(0.1000001), "mass:0.5"):
        assert check_rule(rule, s) is not None
    assert str(check_rule("top-k:3", s)) == "top-k:3"
