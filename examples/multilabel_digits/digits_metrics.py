"""Multi-label ranking metrics (numpy only).

scores: N x C array (higher = more likely), labels: N x C multi-hot {0, 1}.

- average_precision: non-interpolated AP of one class, ranking samples by score;
  tied scores form one threshold (same definition as sklearn's average_precision_score).
- mean_average_precision: mean of per-class AP over classes with at least one positive.
- precision_at_m: for each sample with M = its number of true labels, the fraction of
  its M top-scored classes that are true; averaged over samples with M > 0.
- exact_set_accuracy: fraction of samples (M > 0) whose top-M classes are exactly the true set.
Ties inside a sample's ranking are broken by the lower class index.
"""
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def average_precision(y_true: ArrayLike, score: ArrayLike) -> float:
    truth = np.asarray(y_true, dtype=np.float64).ravel()
    scores = np.asarray(score, dtype=np.float64).ravel()
    if truth.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    y = truth[order]
    s = scores[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    precision = tps / (last_of_tie + 1.0)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class_average_precision(scores: ArrayLike, labels: ArrayLike) -> list[float]:
    s, y = np.asarray(scores), np.asarray(labels)
    return [average_precision(y[:, c], s[:, c]) for c in range(y.shape[1])]


def mean_average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    return float(np.nanmean(per_class_average_precision(scores, labels)))


def _top_m_hits(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    s = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(labels) > 0.5
    m = positive.sum(axis=1)
    keep = m > 0
    order = np.argsort(-s[keep], axis=1, kind="mergesort")
    ranked_true = np.take_along_axis(positive[keep], order, axis=1)
    mk = m[keep]
    in_top = np.arange(positive.shape[1])[None, :] < mk[:, None]
    hits = (ranked_true & in_top).sum(axis=1)
    return hits, mk


def precision_at_m(scores: ArrayLike, labels: ArrayLike) -> float:
    hits, m = _top_m_hits(scores, labels)
    return float(np.mean(hits / m))


def exact_set_accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    hits, m = _top_m_hits(scores, labels)
    return float(np.mean(hits == m))


def all_metrics(scores: ArrayLike, labels: ArrayLike) -> dict[str, Any]:
    labels = np.asarray(labels)
    hits, m = _top_m_hits(scores, labels)
    by_m = {int(k): float(np.mean(hits[m == k] == k)) for k in np.unique(m)}
    return {
        "mAP": mean_average_precision(scores, labels),
        "precision_at_m": float(np.mean(hits / m)),
        "exact_set_accuracy": float(np.mean(hits == m)),
        "exact_set_accuracy_by_m": by_m,
        "per_class_ap": per_class_average_precision(scores, labels),
        "examples": int(len(labels)),
    }
