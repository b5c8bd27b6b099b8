"""evaluation.metrics against scikit-learn (to 1e-9) on trained-like, tied and degenerate inputs,
and against plain per-sample loops where scikit-learn has no counterpart."""
import warnings
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from softmax_multilabel_layer.evaluation import metrics as M
from softmax_multilabel_layer.evaluation.report import report
from softmax_multilabel_layer.params import MultilabelLossError

TOL = 1e-9


def trained_like(rng, n, c, density=0.05, dtype=np.float64, margin=1.5):
    """Sparse labels (at least one per sample) and scores correlated with them, as a trained net gives."""
    y = rng.random((n, c)) < density
    y[np.arange(n), rng.integers(0, c, n)] = True
    logits = rng.normal(size=(n, c)) + margin * y
    p = np.exp(logits - logits.max(1, keepdims=True))
    return y.astype(np.int64), (p / p.sum(1, keepdims=True)).astype(dtype)


def tied(rng, n, c):
    """Coarse scores (one decimal): many ties inside classes and inside samples."""
    y = (rng.random((n, c)) < 0.3).astype(np.int64)
    return y, np.round(rng.random((n, c)) * 0.5 + 0.3 * y, 1)


def degenerate(rng, n=40, c=7):
    """All-zero rows, an all-one row, all-zero columns, an all-one column, ties."""
    y, s = tied(rng, n, c)
    y[:5] = 0
    y[5] = 1
    y[:, 2] = 0
    y[:, 4] = 1
    return y, s


def cases():
    rng = np.random.default_rng(15)
    out = {"trained64": trained_like(rng, 300, 40),
           "trained32": trained_like(rng, 300, 40, dtype=np.float32),
           "tied": tied(rng, 200, 12),
           "degenerate": degenerate(rng)}
    y, s = trained_like(rng, 1000, 200, density=0.01, dtype=np.float32)
    out["large_sparse"] = (y, s)
    # half the labels true: many true labels per sample, so the ranks come from sorting the rows
    # (the sparse cases above take the comparison path for samples, the sorting path for classes)
    out["dense"] = trained_like(rng, 150, 40, density=0.5, dtype=np.float32)
    # classes longer than _SEARCH_LENGTH with many true labels each: the per-class ranks come from searching the
    # sorted true scores, not from sorting the class; tied, so a score equal to a true score must count as >= it
    out["long_classes"] = trained_like(rng, 2500, 6, density=0.1, dtype=np.float32)
    out["long_tied"] = tied(rng, 2100, 5)
    return out


CASES = cases()


def sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # sklearn warns on classes / samples with no positive
        return fn(*args, **kwargs)


def _predicted(s):
    predicted = (s >= np.quantile(s, 0.8)).astype(np.int64)
    predicted[0] = 0                  # an empty prediction
    return predicted


def sklearn_references(y, s):
    """scikit-learn's values on one case, computed once when the module is imported (so mutation testing,
    which forks per mutant after collection, runs only our code per mutant)."""
    has, rows, predicted = y.any(0), y.any(1), _predicted(s)
    ref: dict[Any, Any] = {"ap_none": sk(skm.average_precision_score, y[:, has], s[:, has], average=None),
           "ap_macro_has": sk(skm.average_precision_score, y[:, has], s[:, has]),
           "ap_macro_all": sk(skm.average_precision_score, y, s),
           "ap_micro": sk(skm.average_precision_score, y, s, average="micro"),
           "ap_samples": sk(skm.average_precision_score, y[rows], s[rows], average="samples"),
           "lrap": skm.label_ranking_average_precision_score(y, s), "ranking_loss": skm.label_ranking_loss(y, s),
           "coverage": skm.coverage_error(y, s) - 1, "hamming": skm.hamming_loss(y, predicted),
           "exact": skm.accuracy_score(y, predicted)}
    for average in ("micro", "macro", "samples", None):
        for zero_division in (0.0, 1.0):
            ref["f1", average, zero_division] = sk(skm.f1_score, y, predicted, average=average,
                                                   zero_division=zero_division)
    return ref


SK = {name: sklearn_references(*CASES[name]) for name in CASES}


@pytest.fixture(params=sorted(CASES))
def case_name(request):
    return request.param


@pytest.fixture
def case(case_name):
    return CASES[case_name]


def test_average_precision_per_class_and_macro(case_name):
    (y, s), ref = CASES[case_name], SK[case_name]
    has = y.any(0)
    ours = M.average_precision(y, s, None)
    assert np.isnan(ours[~has]).all()
    np.testing.assert_allclose(ours[has], ref["ap_none"], rtol=0, atol=TOL)
    assert abs(M.average_precision(y, s) - ref["ap_macro_has"]) < TOL
    if (~has).any():     # sklearn scores a class with no positive 0 and keeps it in the mean; we leave it out
        assert ref["ap_macro_all"] < M.average_precision(y, s) - 1e-3
        assert M.missing_positives(y)["classes"] == np.flatnonzero(~has).tolist()


def test_average_precision_micro_and_samples(case_name):
    (y, s), ref = CASES[case_name], SK[case_name]
    assert abs(M.average_precision(y, s, "micro") - ref["ap_micro"]) < TOL
    assert abs(M.average_precision(y, s, "samples") - ref["ap_samples"]) < TOL


def test_ranking_metrics(case_name):
    (y, s), ref = CASES[case_name], SK[case_name]
    assert abs(M.label_ranking_average_precision(y, s) - ref["lrap"]) < TOL
    assert abs(M.ranking_loss(y, s) - ref["ranking_loss"]) < TOL
    assert abs(M.coverage(y, s) - ref["coverage"]) < TOL


@pytest.mark.parametrize("average", ["micro", "macro", "samples", None])
def test_label_set_metrics(case_name, average):
    (y, s), ref = CASES[case_name], SK[case_name]
    predicted = _predicted(s)
    for zero_division in (0.0, 1.0):
        ours = M.f1(y, predicted, average, zero_division=zero_division)
        np.testing.assert_allclose(ours, ref["f1", average, zero_division], rtol=0, atol=TOL)
    assert abs(M.hamming_loss(y, predicted) - ref["hamming"]) < TOL
    assert abs(M.exact_match(y, predicted) - ref["exact"]) < TOL
    assert abs(M.exact_match(y, y) - 1.0) < TOL


def _top_k_probability(row, c, k):
    """Probability that label c is among the k top-scored of ``row`` when tied scores are ordered at random:
    with a labels above it and t tied with it (itself included), k - a of the t tied places are in the top k."""
    above = sum(v > row[c] for v in row)
    tied = sum(v == row[c] for v in row)
    return min(max(k - above, 0), tied) / tied


def _expected_hits_by_loop(y, s, k):
    return np.array([sum(_top_k_probability(s[i], c, k) for c in range(len(s[i])) if y[i, c])
                     for i in range(len(y))])


LOOP_ROWS = 120
LOOP: dict[tuple[str, Any], np.ndarray] = {}
for _name, (_y, _s) in CASES.items():             # the loops' values, once at import (see sklearn_references)
    _y, _s = _y[:LOOP_ROWS], _s[:LOOP_ROWS]
    for _k in (1, 3, 5, 12, 40):
        LOOP[_name, _k] = _expected_hits_by_loop(_y, _s, _k)
    LOOP[_name, "m"] = np.array([_expected_hits_by_loop(_y[i:i + 1], _s[i:i + 1], _y[i].sum())[0]
                                 for i in range(len(_y))])


@pytest.mark.parametrize("k", [1, 3, 5, 12, 40])
def test_precision_recall_at_k_and_one_error_against_loops(case_name, k):
    y, s = CASES[case_name]
    y, s = y[:LOOP_ROWS], s[:LOOP_ROWS]
    hits = LOOP[case_name, k]
    assert abs(M.precision_at_k(y, s, k) - np.mean(hits / k)) < TOL       # / k, also for k > C (tied: C = 12)
    m = y.sum(1)
    assert abs(M.recall_at_k(y, s, k) - np.mean(hits[m > 0] / m[m > 0])) < TOL
    assert abs(M.one_error(y, s) - np.mean(1 - LOOP[case_name, 1])) < TOL
    # per-sample k: precision@M (R-precision) over samples with M > 0
    hits_m = LOOP[case_name, "m"]
    assert abs(M.precision_at_k(y, s, m) - np.mean(hits_m[m > 0] / m[m > 0])) < TOL
    assert abs(M.recall_at_k(y, s, m) - np.mean(hits_m[m > 0] / m[m > 0])) < TOL
    if k <= y.shape[1]:
        got = M.top_k_metrics(y, s, [k])
        assert got == {"one_error": M.one_error(y, s), "precision_at_%d" % k: M.precision_at_k(y, s, k),
                       "recall_at_%d" % k: M.recall_at_k(y, s, k)}


def test_precision_at_k_divides_by_k_beyond_c():
    assert M.precision_at_k([[1, 1, 0]], [[.5, .4, .1]], 10) == pytest.approx(0.2, abs=1e-15)
    assert M.precision_at_k([[1, 1, 0]], [[.5, .4, .1]], 3) == pytest.approx(2 / 3, abs=1e-15)
    assert M.recall_at_k([[1, 1, 0]], [[.5, .4, .1]], 10) == 1.0
    assert M.precision_at_k([[1, 1, 0], [0, 0, 1]], [[.5, .4, .1], [.2, .2, .2]], np.array([4, 0])) == 0.5


def test_ties_average_over_every_order_of_the_classes():
    """Brute force: the mean over all 5! column orders of the old rule (ties by lower class index) is the
    expected value, and any column order gives the same value."""
    import itertools
    y = np.array([[1, 0, 0, 1, 0], [0, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 1]])
    s = np.array([[.3, .3, .3, .1, .3], [.2, .5, .5, .5, .1], [.4, .4, .4, .4, .4], [.9, .1, .1, .1, .1]])
    for k in (1, 2, 3, 4):
        per_order = []
        for order in itertools.permutations(range(5)):
            ys, ss = y[:, order], s[:, order]
            top = np.argsort(-ss, axis=1, kind="stable")[:, :k]
            per_order.append(np.take_along_axis(ys, top, axis=1).sum(1))
        want = np.mean(per_order, axis=0)
        assert abs(M.precision_at_k(y, s, k) - np.mean(want / k)) < 1e-12, k
        assert abs(M.recall_at_k(y, s, k) - np.mean(want / y.sum(1))) < 1e-12, k
        if k == 1:
            assert abs(M.one_error(y, s) - np.mean(1 - want)) < 1e-12
    rng = np.random.default_rng(8)
    yb, sb = tied(rng, 300, 12)
    for perm in (np.arange(12)[::-1], rng.permutation(12)):
        for k in (1, 3):
            assert M.precision_at_k(yb[:, perm], sb[:, perm], k) == pytest.approx(M.precision_at_k(yb, sb, k),
                                                                                    abs=1e-12)
            assert M.recall_at_k(yb[:, perm], sb[:, perm], k) == pytest.approx(M.recall_at_k(yb, sb, k), abs=1e-12)
            np.testing.assert_array_equal(M.top_k_labels(sb[:, perm], k), M.top_k_labels(sb, k)[:, perm])
        assert M.one_error(yb[:, perm], sb[:, perm]) == pytest.approx(M.one_error(yb, sb), abs=1e-12)
    # 64 classes of coarse scores: the top-k search bounds the k-th score by group maxima (C >= 16 k) amid ties
    yw, sw = tied(rng, 60, 64)
    for k in (1, 2, 4):
        want = _expected_hits_by_loop(yw, sw, k)
        assert abs(M.precision_at_k(yw, sw, k) - np.mean(want / k)) < 1e-12, k
        np.testing.assert_array_equal(M.top_k_labels(sw, k), sw >= np.sort(sw, axis=1)[:, [64 - k]])


def test_dead_net_is_scored_the_same_in_either_class_order():
    """The issue's case: constant scores, class 0 always true, 9 other classes at random."""
    rng = np.random.default_rng(25)
    y = rng.random((200, 10)) < 0.1
    y[:, 0] = True
    s = np.full((200, 10), 0.1)
    for labels in (y, y[:, ::-1]):
        r = report(labels, s, "top-k:1")
        assert r["precision_at_1"] == pytest.approx(y.sum() / y.size, abs=1e-12)
        assert r["one_error"] == pytest.approx(1 - y.sum() / y.size, abs=1e-12)
        # top-k:1 on a 10-way tie takes every label: F1-micro = 2 TP / (2 TP + FP)
        assert r["f1_micro"] == pytest.approx(2 * y.sum() / (y.sum() + y.size), abs=1e-12)


def test_top_k_labels_take_the_whole_tie_at_the_kth_place():
    s = np.array([[0.5, 0.5, 0.1], [0.2, 0.4, 0.4], [0.3, 0.2, 0.1], [0.1, 0.1, 0.1]])
    np.testing.assert_array_equal(M.top_k_labels(s, 1), [[1, 1, 0], [0, 1, 1], [1, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(M.top_k_labels(s, 2), [[1, 1, 0], [0, 1, 1], [1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(M.top_k_labels(s, [0, 3, 1, 5]), [[0, 0, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]])
    assert M.precision_at_k([[0, 1, 0], [1, 0, 0]], s[:2], 1) == 0.25      # half a hit: 1 of 2 tied is true
    assert M.one_error([[0, 1, 0], [1, 0, 0]], s[:2]) == 0.75


def test_hand_computed_average_precision():
    y = [[1, 0], [0, 1], [1, 1]]
    s = [[0.9, 0.2], [0.3, 0.8], [0.4, 0.1]]
    # class 1: 0.8(+) 0.2(-) 0.1(+) -> (1 + 2/3) / 2; tie {+, -} at the top -> precision 1/2 for both... see below
    np.testing.assert_allclose(M.average_precision(y, s, None), [1.0, (1 + 2 / 3) / 2], rtol=0, atol=1e-15)
    # a tie group counts once, at its end: pos 0.9; tie {pos, neg} at 0.4 -> (1 + 2/3) / 2
    assert M.average_precision([[1], [1], [0]], [[0.9], [0.4], [0.4]]) == pytest.approx((1 + 2 / 3) / 2, abs=1e-15)


def test_digits_demo_case_by_hand():
    """precision@M and exact-set accuracy of the top-M classes (M = true count; M = 0 left out), as the demo."""
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 0]])
    scores = np.array([[0.8, 0.1, 0.1], [0.5, 0.2, 0.3], [0.4, 0.35, 0.25], [0.3, 0.3, 0.4]])
    # class 0: 0.8(+) 0.5(+) 0.4 0.3 -> 1; class 1: 0.35(+) 0.3 0.2(+) 0.1 -> (1 + 2/3) / 2; class 2: -> 1/3
    np.testing.assert_allclose(M.average_precision(labels, scores, None), [1, 5 / 6, 1 / 3], rtol=0, atol=1e-15)
    m = labels.sum(1)
    # top-M: sample 0 {0} hit; sample 1 {0, 2}: 1 of 2; sample 2 {0, 1}: 1 of 2
    assert M.precision_at_k(labels, scores, m) == pytest.approx((1 + 0.5 + 0.5) / 3, abs=1e-15)
    top_m = M.top_k_labels(scores, m)
    np.testing.assert_array_equal(top_m, [[1, 0, 0], [1, 0, 1], [1, 1, 0], [0, 0, 0]])
    assert M.exact_match(labels[m > 0], top_m[m > 0]) == pytest.approx(1 / 3)


def test_single_class():
    rng = np.random.default_rng(3)
    y = (rng.random((50, 1)) < 0.4).astype(int)
    s = rng.random((50, 1))
    assert abs(M.average_precision(y, s) - skm.average_precision_score(y[:, 0], s[:, 0])) < TOL
    assert abs(M.label_ranking_average_precision(y, s) - skm.label_ranking_average_precision_score(y, s)) < TOL
    # sklearn's ranking loss and coverage refuse one column; by their conventions: 0, and depth 1 or 0
    assert M.ranking_loss(y, s) == 0.0
    assert abs(M.coverage(y, s) - (y.mean() - 1)) < TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_at_or_below_is_searchsorted_right(dtype):
    """The branch-free search against numpy's own, for every table size around the powers of two, with queries
    below, between, on and above the values (seed 4)."""
    rng = np.random.default_rng(4)
    for size in (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 255, 256, 257):
        values = np.sort(np.round(rng.random(size) * 20) / 2).astype(dtype)          # ties among the values
        x = np.concatenate([values, values + dtype(0.25), values - dtype(0.25), [-1, 11, values[0]]]).astype(dtype)
        np.testing.assert_array_equal(M._count_at_or_below(values, x), np.searchsorted(values, x, side="right"))


def _hard_values(dtype, rng):
    """Sorted values with every sign and scale, -0.0 beside 0.0, ties, the extremes, and a tight cluster of
    many distinct values beside far ones (so a bucket of equal key ranges holds hundreds of them)."""
    info = np.finfo(dtype)
    wide = np.concatenate([np.logspace(-30, 30, 200), -np.logspace(-30, 30, 200), [0.0, -0.0, 1.0, 1.0, 1.0]])
    cluster = dtype(1) + np.arange(600) * info.eps        # 600 consecutive floats from 1
    extremes = [info.max, -info.max, info.tiny, -info.tiny, info.smallest_subnormal, -info.smallest_subnormal]
    return np.sort(np.concatenate([wide.astype(dtype), cluster.astype(dtype), np.array(extremes, dtype),
                                   rng.standard_normal(300).astype(dtype)]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_at_or_below_on_every_sign_scale_and_tie(dtype):
    """The bucketed search against numpy's on values of every sign and scale, with -0.0 and 0.0 (equal, so
    they must count alike), denormals, the largest floats, and a cluster of 600 neighbouring floats; queries
    are the values, their neighbours above and below, zeros of both signs and random ones; also each half of
    the values alone (all negative: keys of negative floats; all >= 0: raw bits, queries far below) and
    tables starting just below 0 and just above (seed 5)."""
    rng = np.random.default_rng(5)
    values = _hard_values(dtype, rng)
    info = np.finfo(dtype)
    for table in (values, values[values < 0], values[values >= 0], values[values > -0.5], values[values > 1e-10],
                  values[-700:]):
        inner = values[np.abs(values) < info.max]
        x = np.concatenate([values, np.nextafter(inner, dtype(np.inf)), np.nextafter(inner, -dtype(np.inf)),
                            np.array([0.0, -0.0, info.max, -info.max], dtype),
                            (rng.standard_normal(5000) * 10.0 ** rng.integers(-35, 35, 5000)).astype(dtype)])
        for order in (x, x[::-1]):
            np.testing.assert_array_equal(M._count_at_or_below(table, order),
                                          np.searchsorted(table, order, side="right"))
    zeros = np.array([-0.0, 0.0, 0.0], dtype)          # sorted as floats: all equal
    np.testing.assert_array_equal(M._count_at_or_below(zeros, np.array([-0.0, 0.0, -1e-30, 1e-30], dtype)),
                                  [3, 3, 0, 3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_order_keys_follow_the_float_order(dtype):
    """Keys of sorted values never decrease, rise exactly where the values do, and -0.0 and 0.0 share one."""
    values = _hard_values(dtype, np.random.default_rng(6))
    keys = M._order_keys(values)
    assert keys.dtype == (np.int32 if dtype == np.float32 else np.int64)
    np.testing.assert_array_equal(np.diff(keys) > 0, np.diff(values) > 0)
    assert (np.diff(keys) >= 0).all()
    assert M._order_keys(np.array([-0.0, 0.0], dtype)).tolist() == [0, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_micro_average_precision_of_logits_with_signed_zeros_and_ties(dtype):
    """Micro AP of raw logits (negative true scores, the keys of negative floats), with -0.0 and 0.0 tied and
    a quarter of the scores rounded to a few levels, in blocks of 97 scores, against scikit-learn (seed 7)."""
    rng = np.random.default_rng(7)
    y = rng.random((60, 23)) < 0.2
    s = (rng.standard_normal(y.shape) * 3 + 2 * y).astype(dtype)
    s[:15] = np.round(s[:15])
    s[rng.random(y.shape) < 0.05] = 0.0
    s[rng.random(y.shape) < 0.05] = -0.0
    want = skm.average_precision_score(y, s, average="micro")
    assert abs(M.average_precision(y, s, "micro") - want) < TOL
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "_CHUNK_ELEMENTS", 97)
        assert abs(M.average_precision(y, s, "micro") - want) < TOL


@pytest.mark.parametrize("case_name", ["tied", "degenerate", "trained32", "dense"])
def test_average_precision_by_searching_every_class(monkeypatch, case_name):
    """Every class ranked by the search path (short classes too) against scikit-learn."""
    (y, s), ref = CASES[case_name], SK[case_name]
    monkeypatch.setattr(M, "_SEARCH_LENGTH", 1)
    has = y.any(0)
    np.testing.assert_allclose(M.average_precision(y, s, None)[has], ref["ap_none"], rtol=0, atol=TOL)
    assert abs(M.label_ranking_average_precision(y, s) - ref["lrap"]) < TOL


def test_chunked_metrics_equal_references(monkeypatch):
    """Blocks of 97 elements (several rows per block, uneven, and blocks smaller than one row) against
    scikit-learn and the loops, not against the code itself."""
    y, s = CASES["tied"]
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 97)
    has = y.any(0)
    np.testing.assert_allclose(M.average_precision(y, s, None)[has], sk(skm.average_precision_score, y[:, has],
                                                                        s[:, has], average=None), rtol=0, atol=TOL)
    assert abs(M.average_precision(y, s, "micro") - skm.average_precision_score(y, s, average="micro")) < TOL
    rows = y.any(1)
    assert abs(M.average_precision(y, s, "samples") - skm.average_precision_score(y[rows], s[rows],
                                                                                  average="samples")) < TOL
    assert abs(M.label_ranking_average_precision(y, s) - skm.label_ranking_average_precision_score(y, s)) < TOL
    assert abs(M.ranking_loss(y, s) - skm.label_ranking_loss(y, s)) < TOL
    assert abs(M.coverage(y, s) - (skm.coverage_error(y, s) - 1)) < TOL
    assert abs(M.precision_at_k(y, s, 3) - np.mean(_expected_hits_by_loop(y, s, 3) / 3)) < TOL
    np.testing.assert_array_equal(M.top_k_labels(s, 2), s >= np.sort(s, axis=1)[:, -2:-1])
    predicted = s >= 0.5
    for average in ("micro", "macro", "samples", None):
        np.testing.assert_allclose(M.f1(y, predicted, average), sk(skm.f1_score, y, predicted, average=average),
                                   rtol=0, atol=TOL)
    assert abs(M.hamming_loss(y, predicted) - skm.hamming_loss(y, predicted)) < TOL
    assert abs(M.exact_match(y, predicted) - skm.accuracy_score(y, predicted)) < TOL
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 5)            # a block is one row of 12: a bad value in row 150
    bad = s.copy()
    bad[150, 3] = np.inf
    bad[170, 1] = np.nan
    with pytest.raises(MultilabelLossError, match=r"2 non-finite value\(s\), first inf at \(150, 3\)"):
        M.average_precision(y, bad)
    weights = y * 0.5
    weights[160, 2] = -0.5
    with pytest.raises(MultilabelLossError, match=r"found -0.5 at \(160, 2\)"):
        M.check_labels("t", weights)


def test_ranking_loss_by_comparison_in_small_blocks(monkeypatch):
    """The comparison path of ranking_loss (few true labels per row): cache blocks of a few rows, a row with 400
    true labels (its uint8 counts flushed after 255 passes), rows with none, ties between true and false
    labels, float32 and float64; against scikit-learn."""
    rng = np.random.default_rng(25)
    y = np.zeros((300, 800), dtype=bool)
    y[np.arange(1, 300, 2), rng.integers(0, 800, 150)] = True          # even rows have no true label
    y[7, :600] = True                                                  # 600 passes: three uint8 flushes
    s = rng.integers(0, 50, (300, 800)).astype(np.float32)             # 50 levels: ties everywhere
    monkeypatch.setattr(M, "_CACHE_ELEMENTS", 2000)                    # two rows per cache block
    want = skm.label_ranking_loss(y, s)
    assert abs(M.ranking_loss(y, s) - want) < TOL and abs(M.ranking_loss(y, s.astype(np.float64)) - want) < TOL
    assert M.ranking_loss(y[:1], s[:1]) == 0.0
    np.testing.assert_array_equal(M._wrong_pairs_by_comparing(y[6:9], s[6:9]),
                                  [0, int(np.sum(s[7, 600:][None, :] >= s[7, :600][:, None])), 0])


def test_report_has_every_metric():
    """Every key against scikit-learn or a loop; exact keys, in order; k = C is reported, k > C is not."""
    y, s = CASES["trained64"][0][:200, :5], CASES["trained64"][1][:200, :5]
    y = y.copy()
    y[:3] = 0                                             # samples with no true label
    r = report(y, s, "top-k:2", k=(1, 3, 5, 6))
    assert list(r) == ["samples", "classes", "rule", "mAP", "AP_micro", "AP_samples",
                       "label_ranking_average_precision", "ranking_loss", "coverage", "one_error",
                       "precision_at_1", "recall_at_1", "precision_at_3", "recall_at_3", "precision_at_5",
                       "recall_at_5", "hamming_loss", "f1_micro", "f1_macro", "f1_samples", "exact_match",
                       "missing_positives"]
    predicted = np.zeros_like(y)
    np.put_along_axis(predicted, np.argsort(-s, axis=1)[:, :2], 1, axis=1)      # no ties in these scores
    want = {"mAP": skm.average_precision_score(y, s), "AP_micro": skm.average_precision_score(y, s, average="micro"),
            "AP_samples": skm.average_precision_score(y[y.any(1)], s[y.any(1)], average="samples"),
            "label_ranking_average_precision": skm.label_ranking_average_precision_score(y, s),
            "ranking_loss": skm.label_ranking_loss(y, s), "coverage": skm.coverage_error(y, s) - 1,
            "one_error": 1 - np.mean(_expected_hits_by_loop(y, s, 1)),
            "hamming_loss": skm.hamming_loss(y, predicted), "f1_micro": skm.f1_score(y, predicted, average="micro"),
            "f1_macro": skm.f1_score(y, predicted, average="macro"),
            "f1_samples": sk(skm.f1_score, y, predicted, average="samples"),
            "exact_match": skm.accuracy_score(y, predicted)}
    m = y.sum(1)
    for k in (1, 3, 5):
        hits = _expected_hits_by_loop(y, s, k)
        want["precision_at_%d" % k] = np.mean(hits / k)
        want["recall_at_%d" % k] = np.mean(hits[m > 0] / m[m > 0])
    for key, value in want.items():
        assert abs(r[key] - value) < TOL, key
    assert r["rule"] == "top-k:2" and r["samples"] == 200 and r["classes"] == 5
    assert r["missing_positives"] == {"classes": [], "samples": int((~y.any(1)).sum())}


def test_missing_positives_counts_empty_rows_and_columns():
    y = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]])
    assert M.missing_positives(y) == {"classes": [2], "samples": 2}
    assert M.missing_positives(np.ones((2, 3))) == {"classes": [], "samples": 0}


def test_precision_recall_curve_by_hand():
    recall, precision = M.precision_recall_curve([1, 0, 1, 1, 0], [0.9, 0.8, 0.8, 0.3, 0.1])
    np.testing.assert_allclose(recall, [0, 1 / 3, 2 / 3, 1, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(precision, [1, 1, 2 / 3, 3 / 4, 3 / 5], rtol=0, atol=1e-15)
    ap = np.sum(np.diff(recall) * precision[1:])
    assert ap == pytest.approx(M.average_precision([[1], [0], [1], [1], [0]], [[.9], [.8], [.8], [.3], [.1]]),
                               abs=1e-15)


def test_weighted_labels_count_as_positives():
    """A label weight (the data layers' 2:0.5) is a positive: the same values as the 0/1 labels."""
    y, s = CASES["trained32"]
    w = y * np.where(np.arange(y.shape[1]) % 2, 0.5, 2.0)
    for fn in (M.label_ranking_average_precision, M.ranking_loss, M.coverage, M.one_error):
        assert fn(w, s) == fn(y, s)
    assert M.average_precision(w, s) == M.average_precision(y, s)
    assert M.precision_at_k(w, s, 3) == M.precision_at_k(y, s, 3)
    with pytest.raises(MultilabelLossError, match=r"found -1.0 at \(0, 1\)"):
        M.check_labels("t", [[0.5, -1.0]])
    with pytest.raises(MultilabelLossError, match=r"found nan at \(0, 0\)"):
        M.check_labels("t", [[np.nan, 1.0]])
    with pytest.raises(MultilabelLossError, match=r"found -2 at \(0, 1\)"):
        M.check_labels("t", np.array([[1, -2]]))


def test_indices_to_multi_hot():
    y = M.indices_to_multi_hot([[0, 2, -1], [1, -1, -1]], 3)
    np.testing.assert_array_equal(y, [[1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(M.indices_to_multi_hot(np.array([[[[2.0]]], [[[0.0]]]]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(MultilabelLossError, match="class index 3 out of range"):
        M.indices_to_multi_hot([[3]], 3)


@pytest.mark.parametrize("labels, scores, match", [
    ([[1, 0]], [[0.1, np.nan]], r"scores has 1 non-finite value\(s\), first nan at \(0, 1\)"),
    ([[1, 0]], [[0.1, 0.2, 0.3]],
     r"scores shape \(1, 3\) does not match labels shape \(1, 2\) \(expected N x C for both\)"),
    ([[-2, 0]], [[0.1, 0.2]],
     r"labels must be 0/1 multi-hot .*found -2 at \(0, 0\); class indices need converting first "
     r"\(see indices_to_multi_hot\)"),
    ([1, 0], [0.1, 0.2], r"labels must be an N x C multi-hot array, got shape \(2,\)"),
])
def test_bad_input(labels, scores, match):
    with pytest.raises(MultilabelLossError, match="^metrics.average_precision: " + match + "$"):
        M.average_precision(labels, scores)


@pytest.mark.parametrize("fn, owner", [
    (M.average_precision, "metrics.average_precision"), (M.label_ranking_average_precision,
                                                          "metrics.label_ranking_average_precision"),
    (M.ranking_loss, "metrics.ranking_loss"), (M.coverage, "metrics.coverage"), (M.one_error, "metrics.one_error"),
    (lambda y, s: M.precision_at_k(y, s, 1), "metrics.precision_at_k"),
    (lambda y, s: M.recall_at_k(y, s, 1), "metrics.recall_at_k"), (M.top_k_metrics, "metrics.top_k_metrics"),
    (report, "metrics.report"), (lambda y, s: M.top_k_labels(s, 1), "metrics.top_k_labels"),
    (M.hamming_loss, "metrics.hamming_loss"), (M.f1, "metrics.f1"), (M.exact_match, "metrics.exact_match"),
])
def test_every_error_names_its_function(fn, owner):
    with pytest.raises(MultilabelLossError, match="^%s: (scores|predicted) has 1 non-finite value|^%s: predicted "
                       "must be 0/1" % (owner, owner)):
        fn([[1, 0], [0, 1]], [[0.5, np.inf], [0.1, 0.2]])


def test_k_checks_and_empty_inputs():
    y, s = [[1, 0, 0]], [[0.2, 0.5, 0.1]]
    for bad, message in ((0, "k must be >= 1, got 0"), (1.5, "k must be an integer >= 1 or one integer >= 0 per "
                                                             "sample \\(1\\), got 1.5"),
                         ([1, 1], "k must be an integer >= 1 or one integer >= 0 per sample \\(1\\), got \\[1, 1\\]"),
                         ([-1], "k must be an integer >= 1 or one integer >= 0 per sample \\(1\\), got \\[-1\\]")):
        for fn, owner in ((M.precision_at_k, "metrics.precision_at_k"), (M.recall_at_k, "metrics.recall_at_k")):
            with pytest.raises(MultilabelLossError, match="^%s: %s$" % (owner, message)):
                fn(y, s, bad)
    with pytest.raises(MultilabelLossError, match=r"^metrics.top_k_metrics: k must be >= 1, got 0$"):
        M.top_k_metrics(y, s, [1, 0])
    assert M.top_k_metrics(y, s, [2]) == {"one_error": 1.0, "precision_at_2": 0.5, "recall_at_2": 1.0}
    empty = M.top_k_metrics(np.zeros((0, 3)), np.zeros((0, 3)), [2])
    assert list(empty) == ["one_error", "precision_at_2", "recall_at_2"] and all(np.isnan(v) for v in empty.values())
    assert list(report(y, s, k=(2,)))[9:12] == ["one_error", "precision_at_2", "recall_at_2"]
    assert np.isnan(M.precision_at_k(y, s, [0])) and M.recall_at_k(y, s, [0]) == 0.0
    assert np.isnan(M.recall_at_k([[0, 0, 0]], s, 1))
    assert report(y, s)["mAP"] == 1.0 and report(y, s)["AP_micro"] == 0.5      # class 0: its one sample; micro: rank 2


def test_report_defaults_to_the_top_1_rule():
    """No rule given: top-k:1, so class 1 (the top score) is the one label predicted for [[1, 0, 0]]."""
    r = report([[1, 0, 0]], [[0.2, 0.5, 0.1]])
    assert r["rule"] == "top-k:1" and r["f1_micro"] == 0.0 and r["hamming_loss"] == pytest.approx(2 / 3)
    assert list(r)[9:16] == ["one_error", "precision_at_1", "recall_at_1", "precision_at_3", "recall_at_3",
                             "hamming_loss", "f1_micro"]                 # k = 5 > C = 3 is left out


def test_indices_to_multi_hot_word_for_word():
    """One index (0-d), the default owner in every message, the first non-integer, -2 refused (-1 is padding)."""
    np.testing.assert_array_equal(M.indices_to_multi_hot(2, 3), [[0, 0, 1]])
    assert M.indices_to_multi_hot([[1, -1]], 2).dtype == bool
    with pytest.raises(MultilabelLossError, match=r"^indices_to_multi_hot: class indices must be integers, got 2\.5$"):
        M.indices_to_multi_hot([[1, 2.5]], 3)
    with pytest.raises(MultilabelLossError, match=r"^indices_to_multi_hot: class index -2 out of range; expected "
                       r"0\.\.2 or -1 \(padding\)$"):
        M.indices_to_multi_hot([[0, -2]], 3)


def test_one_error_of_one_label():
    assert M.one_error([[1]], [[0.5]]) == 0.0 and M.one_error([[0]], [[0.5]]) == 1.0
    assert np.isnan(M.one_error(np.zeros((0, 2)), np.zeros((0, 2))))


def test_precision_recall_curve_ends_at_recall_one():
    """The lowest score a true label (recall reaches 1 only at the last step); one true label; none."""
    recall, precision = M.precision_recall_curve([1, 0, 1], [0.9, 0.5, 0.1])
    np.testing.assert_allclose(recall, [0, 0.5, 0.5, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(precision, [1, 1, 0.5, 2 / 3], rtol=0, atol=1e-15)
    assert M.precision_recall_curve([1, 0], [0.9, 0.1])[0].tolist() == [0, 1, 1]
    assert M.precision_recall_curve([0, 0], [0.9, 0.1])[0].tolist() == [0, 0, 0]


def test_one_sample_one_class_and_empty_inputs():
    """N = C = 1 is a real input (LRAP 1, coverage 0); N = 0 gives NaN; errors name their function."""
    assert M.label_ranking_average_precision([[1]], [[0.5]]) == 1.0 and M.coverage([[1]], [[0.5]]) == 0.0
    empty = np.zeros((0, 2))
    assert np.isnan(M.label_ranking_average_precision(empty, empty)) and np.isnan(M.coverage(empty, empty))
    with pytest.raises(MultilabelLossError, match=r"^metrics\.missing_positives: labels must be 0/1 multi-hot"):
        M.missing_positives([[1, -1]])
    with pytest.raises(MultilabelLossError, match=r"^metrics\.top_k_metrics: k must be an integer >= 1 or one "
                       r"integer >= 0 per sample \(1\), got 1\.5$"):
        M.top_k_metrics([[1, 0]], [[0.5, 0.2]], [1.5])  # type: ignore[list-item]


def test_ranking_loss_by_sorting_in_blocks_and_one_pair(monkeypatch):
    """Dense rows (the sort path) in blocks of two rows, the last row of a block with no true label; a sample
    with a single (true, false) pair; N = 0."""
    rng = np.random.default_rng(26)
    y = rng.random((6, 64)) < 0.7
    y[[1, 3, 5]] = False
    y[[0, 2, 4], 0] = False
    assert y[::2].sum(1).min() > 2 * (np.log2(64) + 2)         # more true labels in a block than the comparison takes
    s = np.round(rng.random((6, 64)), 1)
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 128)
    assert abs(M.ranking_loss(y, s) - skm.label_ranking_loss(y, s)) < TOL
    assert M.ranking_loss([[1, 0]], [[0.1, 0.5]]) == 1.0 and M.ranking_loss([[1, 0]], [[0.5, 0.1]]) == 0.0
    assert np.isnan(M.ranking_loss(np.zeros((0, 2)), np.zeros((0, 2))))


def test_label_set_metrics_word_for_word():
    y, p = [[1, 0]], [[1, 1]]
    with pytest.raises(MultilabelLossError, match=r"^metrics\.hamming_loss: predicted shape \(1, 3\) does not match "
                       r"labels shape \(1, 2\)$"):
        M.hamming_loss(y, [[1, 1, 0]])
    with pytest.raises(MultilabelLossError, match=r"^metrics\.f1: labels must be 0/1 multi-hot"):
        M.f1([[1, -1]], p)
    with pytest.raises(MultilabelLossError, match=r"^metrics\.f1: average must be one of \('macro', 'micro', "
                       r"'samples', None\), got 'weighted'$"):
        M.f1(y, p, "weighted")
    empty = np.zeros((0, 2))
    assert np.isnan(M.hamming_loss(empty, empty)) and np.isnan(M.exact_match(empty, empty))


def test_top_k_labels_takes_float_k_per_sample_and_returns_bool():
    """k = labels.sum(1) of float labels (the top-M set): a float per sample."""
    got = M.top_k_labels([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], np.array([1.0, 2.0]))
    assert got.dtype == bool and got.tolist() == [[False, True, False], [True, True, False]]
    with pytest.raises(MultilabelLossError, match=r"^metrics\.precision_at_k: k must be an integer >= 1 or one integer "
                       r">= 0 per sample \(1\), got \[\[1\]\]$"):
        M.precision_at_k([[1, 0]], [[0.5, 0.2]], [[1]])


def test_input_checks_word_for_word():
    """Numbers only (bool and integer scores become float64, float32 stays), N x C only, each message whole."""
    with pytest.raises(MultilabelLossError, match=r"^t: scores must be numbers, got dtype <U1$"):
        M.check_scores("t", [["a"]])
    with pytest.raises(MultilabelLossError, match=r"^t: scores must be an N x C array, got shape \(2,\)$"):
        M.check_scores("t", [0.5, 0.2])
    with pytest.raises(MultilabelLossError, match=r"^t: labels must be numbers 0/1 \(or label weights >= 0\), got "
                       r"dtype <U1$"):
        M.check_labels("t", [["a"]])
    assert M.check_scores("t", [[True, False]]).tolist() == [[1.0, 0.0]]
    assert M.check_scores("t", np.array([[1, 2]])).dtype == np.float64
    assert M.check_scores("t", np.zeros((1, 2), np.float32)).dtype == np.float32


def test_blocks_tile_the_rows_within_the_chunk_size(monkeypatch):
    """Row blocks hold as many rows as fit in _CHUNK_ELEMENTS (at least one row each) and tile the rows; the
    class blocks of the ranking metrics are sized by the number of samples (a class list holds N scores), and
    transposed copies keep the scores' own dtype (float32 is never copied to float64)."""
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 8)
    assert list(M._row_blocks(10, 1)) == [(0, 8), (8, 10)]
    assert list(M._row_blocks(7, 3)) == [(0, 2), (2, 4), (4, 6), (6, 7)]
    assert list(M._row_blocks(3, 10)) == [(0, 1), (1, 2), (2, 3)]          # a row larger than a block
    assert list(M._row_blocks(3, 0)) == [(0, 3)] and list(M._row_blocks(0, 4)) == []
    rng = np.random.default_rng(31)
    y = rng.random((600, 3)) < 0.5
    s = rng.random((600, 3)).astype(np.float32)
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 1200)                        # two classes of 600 samples a block
    blocks = list(M._list_blocks(y, s, by_class=True))
    assert [(first, yb.shape, sb.shape) for first, yb, sb in blocks] == [(0, (2, 600), (2, 600)),
                                                                         (2, (1, 600), (1, 600))]
    for first, yb, sb in blocks:                                           # 600 rows: three transposed slabs of 256
        assert sb.dtype == np.float32 and yb.dtype == bool and sb.flags.c_contiguous
        np.testing.assert_array_equal(sb, s[:, first:first + len(sb)].T)
        np.testing.assert_array_equal(yb, y[:, first:first + len(yb)].T)


def test_top_k_search_beyond_16_and_its_dtype():
    """k above 16 where C >= 16 k (the group-maxima bound needs k group maxima), C with and without a remainder
    of 16, ties, float32 and float64: the k highest scores against a full sort, in the scores' own dtype."""
    rng = np.random.default_rng(32)
    for c in (400, 409):
        for dtype in (np.float32, np.float64):
            s = np.round(rng.random((9, c)), 2).astype(dtype)            # 101 levels: ties at the k-th place
            for k in (1, 17, 25):
                top = M._top_scores(s, k)
                assert top.dtype == dtype
                np.testing.assert_array_equal(top, -np.sort(-s, axis=1)[:, :k])
                np.testing.assert_array_equal(M.top_k_labels(s, k), s >= np.sort(s, axis=1)[:, [c - k]])


def test_label_checks_and_messages_at_the_edges():
    """+inf labels refused like NaN and negatives; N x 0 scores accepted; average_precision's average message."""
    with pytest.raises(MultilabelLossError, match=r"^t: labels must be 0/1 multi-hot .*found inf at \(0, 1\);"):
        M.check_labels("t", [[1.0, np.inf]])
    with pytest.raises(MultilabelLossError, match=r"found -inf at \(1, 0\)"):
        M.check_labels("t", [[0.0, 1.0], [-np.inf, 0.0]])
    assert M.check_labels("t", np.array([[0, 3], [1, 0]], dtype=np.uint8)).tolist() == [[False, True], [True, False]]
    assert M.check_scores("t", np.zeros((2, 0), np.float32)).shape == (2, 0)
    with pytest.raises(MultilabelLossError, match=r"^metrics\.average_precision: average must be one of \('macro', "
                       r"'micro', 'samples', None\), got 'weighted'$"):
        M.average_precision([[1, 0]], [[0.5, 0.2]], "weighted")


def test_f1_zero_division_only_for_0_over_0():
    """A class or sample with one label in all (true or predicted, so TP = 0) scores 0, not zero_division."""
    y = np.array([[1, 0, 0], [0, 0, 0]])
    p = np.array([[0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(M.f1(y, p, None, zero_division=1.0), [0.0, 0.0, 1.0])
    assert M.f1(y, p, "samples", zero_division=1.0) == 0.0
    assert M.f1(np.zeros((2, 3)), np.zeros((2, 3)), "micro", zero_division=1.0) == 1.0


def test_ranking_metrics_with_empty_first_blocks(monkeypatch):
    """Blocks of two samples (or two classes) whose first blocks hold no true label at all, against
    scikit-learn: a block with nothing to rank must not end the pass."""
    rng = np.random.default_rng(33)
    y, s = tied(rng, 40, 12)
    y[:6] = 0
    y[:, :4] = 0
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 24)
    rows, cols = y.any(1), y.any(0)
    assert abs(M.label_ranking_average_precision(y, s) - skm.label_ranking_average_precision_score(y, s)) < TOL
    assert abs(M.average_precision(y, s, "samples") - skm.average_precision_score(y[rows], s[rows],
                                                                                  average="samples")) < TOL
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 80)                          # two classes of 40 samples
    np.testing.assert_allclose(M.average_precision(y, s, None)[cols],
                               skm.average_precision_score(y[:, cols], s[:, cols], average=None), rtol=0, atol=TOL)
