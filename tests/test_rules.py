"""Decision rules at their edges: scores exactly on a threshold, the calibration's tie-break, rules that
cannot mean what was asked (evaluation/rules.py; the rules against loops are in tests/test_predict.py)."""
import numpy as np
import pytest

from softmax_multilabel_layer.evaluation import rules
from softmax_multilabel_layer.evaluation.rules import (
    calibrate_thresholds,
    check_rule,
    class_thresholds,
    load_thresholds,
    mass,
    parse_rule,
    predict_labels,
    save_thresholds,
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
    (top_k(4), r"^--rule top-k:4: k=4 is more than the C=3 classes; expected k in 1\.\.3$"),
    (threshold(5), r"^--rule threshold:5 predicts no label at all: the highest score is 0\.9; expected a threshold "
                   r"in \(0\.1, 0\.9\]$"),
    (threshold(-5), r"^--rule threshold:-5 predicts every label: the lowest score is 0\.1; expected a threshold "
                    r"in \(0\.1, 0\.9\]$"),
    (threshold(0.1), r"^--rule threshold:0\.1 predicts every label"),
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


@pytest.mark.parametrize("make, match", [
    (lambda: top_k(0), r"^rule top-k: k must be an integer >= 1, got 0$"),
    (lambda: top_k(True), r"^rule top-k: k must be an integer >= 1, got True$"),
    (lambda: top_k(2.0), r"^rule top-k: k must be an integer >= 1, got 2\.0$"),  # type: ignore[arg-type]
    (lambda: threshold(True), r"^rule threshold: t must be a finite number, got True$"),
    (lambda: threshold("0.5"), r"^rule threshold: t must be a finite number, got '0\.5'$"),  # type: ignore[arg-type]
    (lambda: threshold(float("inf")), r"^rule threshold: t must be a finite number, got inf$"),
    (lambda: mass(0), r"^rule mass: q must be in \(0, 1\], got 0$"),
    (lambda: mass(True), r"^rule mass: q must be in \(0, 1\], got True$"),
    (lambda: mass("0.5"), r"^rule mass: q must be in \(0, 1\], got '0\.5'$"),  # type: ignore[arg-type]
    (lambda: class_thresholds([[0.5]]), r"^rule thresholds: expected one number per class, got \[\[0\.5\]\]$"),
    (lambda: class_thresholds([0.5, float("nan")]), r"^rule thresholds: expected one number per class, got "
                                                      r"\[0\.5, nan\]$"),
    (lambda: parse_rule("top-k:x"), r"^rule 'top-k:x': x is not a number; expected top-k:K, threshold:T, "
                                     r"thresholds:FILE\.json, mass:Q or zlpr$"),
    (lambda: parse_rule("mass"), r"^unknown rule 'mass'; expected top-k:K, threshold:T, thresholds:FILE\.json, "
                                  r"mass:Q or zlpr$"),
    (lambda: parse_rule("Top-K:1"), r"^unknown rule 'Top-K:1'"),
])
def test_rule_errors_word_for_word(make, match):
    with pytest.raises(MultilabelLossError, match=match):
        make()


def test_parse_rule_reads_each_rule_and_its_value(tmp_path):
    path = str(tmp_path / "t.json")
    save_thresholds(path, [0.5, np.inf])
    assert parse_rule("top-k:2") == top_k(2) and parse_rule("threshold:0.25") == threshold(0.25)
    assert parse_rule("mass:0.75") == mass(0.75) and str(parse_rule("zlpr")) == "zlpr"
    rule = parse_rule("thresholds:" + path)
    assert isinstance(rule, class_thresholds)
    np.testing.assert_array_equal(rule.thresholds, [0.5, np.inf])
    assert str(rule) == "thresholds:" + path and rule.source == path
    same = top_k(1)
    assert parse_rule(same) is same
    assert [str(r) for r in (top_k(3), threshold(0.25), mass(0.9), class_thresholds([0.1, 0.2]))] == \
        ["top-k:3", "threshold:0.25", "mass:0.9", "thresholds:<2 values>"]
    assert class_thresholds(np.array([1, 2])).thresholds.dtype == np.float64
    with pytest.raises(MultilabelLossError, match=r"^rule thresholds:%s: 2 thresholds but the scores have C=3 "
                       r"classes$" % path):
        rule(np.zeros((1, 3)))
    with pytest.raises(MultilabelLossError, match=r"^rule thresholds: 2 thresholds but the scores have C=1 classes$"):
        class_thresholds([0.1, 0.2])(np.zeros((1, 1)))


def test_mass_names_the_sample_furthest_from_a_sum_of_one():
    with pytest.raises(MultilabelLossError, match=r"^rule mass: needs softmax probabilities \(rows summing to 1\), "
                       r"sample 0 sums to 0\.2; use it on a Softmax output$"):
        mass(0.5)(np.array([[0.1, 0.1], [0.75, 0.75]]))             # the furthest row has the smallest sum
    with pytest.raises(MultilabelLossError, match=r"sample 1 sums to 1\.9;"):
        mass(0.5)(np.array([[0.4, 0.4], [0.95, 0.95]]))             # ... and here the largest
    np.testing.assert_array_equal(mass(0.5)(np.array([[0.6, 0.3995], [0.2, 0.8]])), [[1, 0], [0, 1]])  # 1e-3 off: ok
    np.testing.assert_array_equal(mass(0.5)(np.zeros((0, 3))), np.zeros((0, 3)))


def test_predict_labels_checks_the_scores_and_returns_bool():
    with pytest.raises(MultilabelLossError, match=r"^predict_labels: scores has 1 non-finite value\(s\), first nan at "
                       r"\(0, 1\)$"):
        predict_labels([[0.5, np.nan]], "top-k:1")
    got = predict_labels([[0, 3, 1]], "top-k:1")
    assert got.dtype == bool and got.tolist() == [[False, True, False]]
    assert predict_labels([[-1.0, 0.0, 0.5, 0.6]], "zlpr").tolist() == [[False, False, False, True]]


def test_calibration_in_blocks_of_classes_at_the_float_edges(monkeypatch):
    """Blocks of 2 of 5 classes (uneven); a class with one true label; adjacent floats (the half-way point rounds
    onto the lower score, so the threshold stays); scores whose sum overflows; a class with no true label."""
    below = np.nextafter(1.0, 0.0)          # 1 - 2**-53: (1 + below) / 2 rounds (to even) onto 1.0
    high = np.nextafter(0.75, 1.0)          # odd last bit: (high + 0.75) / 2 rounds onto 0.75, the lower score
    y = np.array([[1, 1, 1, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
    s = np.array([[0.5, high, 1.7e308, 1.0, 0.3], [0.25, 0.75, 1.6e308, below, 0.2], [0.1, 0.1, 0.0, 0.0, 0.1]])
    monkeypatch.setattr(rules, "_CHUNK_ELEMENTS", 6)
    t, f1 = calibrate_thresholds(y, s)
    np.testing.assert_array_equal(t, [0.375, 0.1, 1.7e308, 1.0, np.inf])
    np.testing.assert_allclose(f1, [1.0, 0.8, 1.0, 1.0, 0.0], rtol=0, atol=1e-15)
    y[:, 1] = [1, 0, 0]
    t, f1 = calibrate_thresholds(y, s)
    assert t[1] == high and f1[1] == 1.0


def test_mass_at_its_edges():
    """A cumulative mass exactly at q (minus the 1e-12 slack) does not reach it; rows 1e-3 off one are scaled by
    their sum."""
    q = 0.6 + 1e-12                                   # q * 1.0 - 1e-12 == 0.6 exactly: 0.6 alone is not < it
    np.testing.assert_array_equal(mass(q)(np.array([[0.6, 0.4]])), [[1, 0]])
    np.testing.assert_array_equal(mass(0.5)(np.array([[0.5, 0.3009, 0.2]])), [[1, 1, 0]])   # 0.5 < 0.5 * 1.0009


def test_custom_rules_and_check_rule_defaults(tmp_path):
    got = predict_labels([[0.2, 0.7]], lambda x: (x > 0.5).astype(int))       # any callable: its output as bool
    assert got.dtype == bool and got.tolist() == [[False, True]]
    with pytest.raises(MultilabelLossError, match=r"^rule top-k:4: k=4 is more than the C=2 classes"):
        check_rule("top-k:4", np.zeros((1, 2)))
    path = str(tmp_path / "a:b.json")                 # a colon in the file name: split at the first one only
    save_thresholds(path, [0.5, 0.6])
    rule = parse_rule("thresholds:" + path)
    assert isinstance(rule, class_thresholds)
    np.testing.assert_array_equal(rule.thresholds, [0.5, 0.6])


def test_calibration_errors_and_dtype():
    with pytest.raises(MultilabelLossError, match=r"^calibrate_thresholds: scores has 1 non-finite value"):
        calibrate_thresholds([[1, 0]], [[0.5, np.nan]])
    with pytest.raises(MultilabelLossError, match=r"^calibrate_thresholds: labels must be 0/1"):
        calibrate_thresholds([[1, -1]], [[0.5, 0.5]])
    with pytest.raises(MultilabelLossError, match=r"^calibrate_thresholds: scores shape \(1, 3\) does not match labels "
                       r"shape \(1, 2\)"):
        calibrate_thresholds([[1, 0]], [[0.5, 0.5, 0.5]])
    t, f1 = calibrate_thresholds([[1, 0]], [[0.5, 0.5]])
    assert t.dtype == np.float64 and t.tolist() == [0.5, np.inf] and f1.tolist() == [1.0, 0.0]


def test_threshold_files_word_for_word(tmp_path):
    path = str(tmp_path / "t.json")
    save_thresholds(path, [0.5, np.inf], [0.75, 0.0])
    with open(path) as f:
        assert f.read() == '{\n "thresholds": [\n  0.5,\n  null\n ],\n "f1": [\n  0.75,\n  0.0\n ]\n}\n'
    for text, want in (("[1, null]", [1.0, np.inf]), ('{"thresholds": [2]}', [2.0])):
        with open(path, "w") as f:
            f.write(text)
        got = load_thresholds(path)
        assert got.dtype == np.float64 and got.tolist() == want
    with pytest.raises(MultilabelLossError, match=r"^thresholds file /nonexistent\.json: No such file or directory$"):
        load_thresholds("/nonexistent.json")
    for text, match in (("{", r"not JSON \(Expecting property name"), ('{"thresholds": 5}', "expected a list"),
                        ("[true]", "expected a list"), ('["x"]', "expected a list")):
        with open(path, "w") as f:
            f.write(text)
        with pytest.raises(MultilabelLossError, match=r"^thresholds file %s: %s" % (path, match)):
            load_thresholds(path)
    with pytest.raises(MultilabelLossError, match=r"^thresholds file %s: expected a list of numbers \(or null\) or "
                       r'\{"thresholds": \[\.\.\.\]\}$' % path):
        load_thresholds(path)


def test_save_thresholds_never_leaves_half_a_file(tmp_path):
    """A write that fails part-way (a class name JSON cannot hold) keeps the old file whole and leaves no
    temporary file behind."""
    path = tmp_path / "thresholds.json"
    path.write_text("old thresholds\n")
    with pytest.raises(TypeError):
        save_thresholds(str(path), [0.5, 0.25], class_names=["cat", object()])
    assert path.read_text() == "old thresholds\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thresholds.json"]
    save_thresholds(str(path), [0.5, np.inf], class_names=["cat", "dog"])
    np.testing.assert_array_equal(load_thresholds(str(path)), [0.5, np.inf])
