"""The yeast benchmark's metrics (examples/yeast/yeast_eval.fold_metrics, computed with the package's own
softmax_multilabel_layer.evaluation.metrics) against scikit-learn's, on yeast-like data: 14 classes, about 4
labels a gene, every gene at least one, trained-like float32 and float64 scores with ties."""
import os
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "yeast"))
import yeast_eval as E  # noqa: E402


def yeast_like(n, seed, dtype):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 14)) < 0.3).astype(np.uint8)
    Y[np.arange(n), rng.integers(0, 14, n)] = 1                 # every gene has a class (as in yeast)
    S = (1.5 * Y + rng.normal(0, 1.0, (n, 14))).astype(dtype)   # informative, not perfect
    S[:20] = np.round(S[:20], 1)                                # ties within some rows
    return Y, S


def one_error_over_ties(Y, S):
    """One-error with a tie at the top counted as the expected value over its orders (scikit-learn has none)."""
    return np.mean([np.mean(y[s == s.max()] == 0) for y, s in zip(Y, S, strict=True)])


def sklearn_fold_metrics(Y, S, pred):
    """The scikit-learn form of the Zhang & Zhou metrics (what yeast_eval used before)."""
    return {"hamming_loss": skm.hamming_loss(Y, pred), "one_error": one_error_over_ties(Y, S),
            "coverage": skm.coverage_error(Y, S) - 1.0, "ranking_loss": skm.label_ranking_loss(Y, S),
            "average_precision": skm.label_ranking_average_precision_score(Y, S),
            "macro_map": skm.average_precision_score(Y, S, average="macro")}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_fold_metrics_match_scikit_learn(dtype, seed):
    Y, S = yeast_like(242, seed, dtype)                         # one fold of yeast's 2,417 genes
    pred = E.decide(1 / (1 + np.exp(-S.astype(np.float64))), 0.5)
    got = E.fold_metrics(Y, S, pred)
    want = sklearn_fold_metrics(Y, S.astype(np.float64), pred)
    assert set(got) == set(E.METRICS) == set(want)
    for key in E.METRICS:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), key
    assert 0.05 < got["ranking_loss"] < 0.4 and 0.5 < got["macro_map"] < 0.95     # not a trivial case
    top_ties = sum(int(np.count_nonzero(row == row.max()) > 1) for row in S)
    assert top_ties > 0                                        # ties at the top are among the cases
