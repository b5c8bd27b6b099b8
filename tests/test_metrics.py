"""evaluation.metrics against scikit-learn (to 1e-9) on trained-like, tied and degenerate inputs,
and against plain per-sample loops where scikit-learn has no counterpart."""
import warnings

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
    return out


CASES = cases()


def sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # sklearn warns on classes / samples with no positive
        return fn(*args, **kwargs)


@pytest.fixture(params=sorted(CASES))
def case(request):
    return CASES[request.param]


def test_average_precision_per_class_and_macro(case):
    y, s = case
    has = y.any(0)
    ours = M.average_precision(y, s, None)
    assert np.isnan(ours[~has]).all()
    ref = sk(skm.average_precision_score, y[:, has], s[:, has], average=None)
    np.testing.assert_allclose(ours[has], ref, rtol=0, atol=TOL)
    assert abs(M.average_precision(y, s) - sk(skm.average_precision_score, y[:, has], s[:, has])) < TOL
    if (~has).any():     # sklearn scores a class with no positive 0 and keeps it in the mean; we leave it out
        assert sk(skm.average_precision_score, y, s) < M.average_precision(y, s) - 1e-3
        assert M.missing_positives(y)["classes"] == np.flatnonzero(~has).tolist()


def test_average_precision_micro_and_samples(case):
    y, s = case
    assert abs(M.average_precision(y, s, "micro") - sk(skm.average_precision_score, y, s, average="micro")) < TOL
    rows = y.any(1)
    ref = sk(skm.average_precision_score, y[rows], s[rows], average="samples")
    assert abs(M.average_precision(y, s, "samples") - ref) < TOL


def test_ranking_metrics(case):
    y, s = case
    assert abs(M.label_ranking_average_precision(y, s) - skm.label_ranking_average_precision_score(y, s)) < TOL
    assert abs(M.ranking_loss(y, s) - skm.label_ranking_loss(y, s)) < TOL
    assert abs(M.coverage(y, s) - (skm.coverage_error(y, s) - 1)) < TOL


@pytest.mark.parametrize("average", ["micro", "macro", "samples", None])
def test_label_set_metrics(case, average):
    y, s = case
    predicted = (s >= np.quantile(s, 0.8)).astype(np.int64)
    predicted[0] = 0                  # an empty prediction
    for zero_division in (0.0, 1.0):
        ours = M.f1(y, predicted, average, zero_division=zero_division)
        ref = sk(skm.f1_score, y, predicted, average=average, zero_division=zero_division)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
    assert abs(M.hamming_loss(y, predicted) - skm.hamming_loss(y, predicted)) < TOL
    assert abs(M.exact_match(y, predicted) - skm.accuracy_score(y, predicted)) < TOL
    assert abs(M.exact_match(y, y) - 1.0) < TOL


def _ranked_lists(s):
    """Per sample, class indices by descending score, ties by lower index (the documented rule)."""
    return [sorted(range(len(row)), key=lambda c: (-row[c], c)) for row in s]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_at_k_and_one_error_against_loops(case, k):
    y, s = case
    y, s = y[:300], s[:300]
    ranked = _ranked_lists(s)
    hits = np.array([sum(y[i, c] for c in r[:k]) for i, r in enumerate(ranked)])
    assert abs(M.precision_at_k(y, s, k) - np.mean(hits / min(k, y.shape[1]))) < TOL
    m = y.sum(1)
    assert abs(M.recall_at_k(y, s, k) - np.mean(hits[m > 0] / m[m > 0])) < TOL
    assert abs(M.one_error(y, s) - np.mean([y[i, r[0]] == 0 for i, r in enumerate(ranked)])) < TOL
    # per-sample k: precision@M (R-precision) over samples with M > 0
    hits_m = np.array([sum(y[i, c] for c in r[:m[i]]) for i, r in enumerate(ranked)])
    assert abs(M.precision_at_k(y, s, m) - np.mean(hits_m[m > 0] / m[m > 0])) < TOL


def test_ties_inside_a_sample_break_by_lower_class_index():
    y = np.array([[0, 1, 0], [1, 0, 0]])
    s = np.array([[0.5, 0.5, 0.1], [0.2, 0.4, 0.4]])
    assert M.one_error(y, s) == 1.0                     # sample 0: top is class 0 (tie); sample 1: class 1
    assert M.precision_at_k(y, s, 1) == 0.0
    assert M.precision_at_k(y, s, 2) == 0.25


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


def test_chunked_core_equals_one_chunk(monkeypatch):
    y, s = CASES["trained64"]
    whole = [M.average_precision(y, s, None), M.label_ranking_average_precision(y, s), M.ranking_loss(y, s)]
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 97)       # several rows / classes per chunk, uneven
    chunked = [M.average_precision(y, s, None), M.label_ranking_average_precision(y, s), M.ranking_loss(y, s)]
    np.testing.assert_array_equal(whole[0], chunked[0])
    assert whole[1:] == chunked[1:]


def test_report_has_every_metric():
    y, s = CASES["trained64"]
    r = report(y, s, "top-k:2")
    assert r["mAP"] == M.average_precision(y, s)
    assert r["exact_match"] == M.exact_match(y, M.top_k_labels(s, 2))
    for key in ("AP_micro", "AP_samples", "label_ranking_average_precision", "ranking_loss", "coverage",
                "one_error", "precision_at_3", "recall_at_5", "hamming_loss", "f1_micro", "f1_macro", "f1_samples"):
        assert np.isfinite(r[key]), key
    assert r["rule"] == "top-k:2" and r["missing_positives"] == {"classes": [], "samples": 0}


def test_indices_to_multi_hot():
    y = M.indices_to_multi_hot([[0, 2, -1], [1, -1, -1]], 3)
    np.testing.assert_array_equal(y, [[1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(M.indices_to_multi_hot(np.array([[[[2.0]]], [[[0.0]]]]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(MultilabelLossError, match="class index 3 out of range"):
        M.indices_to_multi_hot([[3]], 3)


@pytest.mark.parametrize("labels, scores, match", [
    ([[1, 0]], [[0.1, np.nan]], r"scores has 1 non-finite value\(s\), first nan at \(0, 1\)"),
    ([[1, 0]], [[0.1, 0.2, 0.3]], r"scores shape \(1, 3\) does not match labels shape \(1, 2\)"),
    ([[2, 0]], [[0.1, 0.2]], r"labels must be 0 or 1 .*found 2 at \(0, 0\)"),
    ([1, 0], [0.1, 0.2], r"labels must be an N x C multi-hot array, got shape \(2,\)"),
])
def test_bad_input(labels, scores, match):
    with pytest.raises(MultilabelLossError, match="metrics.average_precision: " + match):
        M.average_precision(labels, scores)
