"""Zhang & Zhou's multi-label metrics on one fold, and the thresholded decision rule.

Definitions (Zhang & Zhou, Pattern Recognition 2007, Sec. 2; also TKDE 2006): for
scores f(x, l) and true label sets Y_i,
- Hamming loss: fraction of (sample, label) pairs where the predicted set is wrong;
- one-error: fraction of samples whose top-scored label is not in Y_i;
- coverage: mean over samples of (the deepest rank of a true label) - 1;
- ranking loss: mean fraction of (relevant, irrelevant) label pairs ordered wrongly;
- average precision: label-ranking average precision.
Macro mAP (mean over labels of the per-label average precision) is added.

``fold_metrics`` is the one adapter: it computes them with scikit-learn (coverage_error
minus 1, label_ranking_loss, label_ranking_average_precision_score, hamming_loss,
average_precision_score) and is where the project's metrics module
(softmax_multilabel_layer/evaluation/metrics.py, issue 15) can be switched in: hamming_loss,
one_error, coverage, ranking_loss, label_ranking_average_precision and
average_precision(average="macro") there gave the same values (|difference| <= 1e-15)
on this benchmark's test-fold predictions when checked against branch i15.
"""
import numpy as np
from sklearn import metrics as skm

METRICS = ("hamming_loss", "one_error", "coverage", "ranking_loss", "average_precision", "macro_map")
LOWER_IS_BETTER = {"hamming_loss": True, "one_error": True, "coverage": True, "ranking_loss": True,
                   "average_precision": False, "macro_map": False}
THRESHOLDS = np.round(np.arange(0.01, 0.99, 0.01), 2)


def fold_metrics(Y, scores, Y_pred):
    """Zhang & Zhou metrics of one fold.

    Args:
        Y: (N, L) 0/1 true labels; every row has at least one label (true for yeast).
        scores: (N, L) real scores, higher = more relevant.
        Y_pred: (N, L) 0/1 predicted label sets (for the Hamming loss).

    Returns:
        dict of floats keyed by METRICS.
    """
    Y = np.asarray(Y).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    top = np.argmax(scores, axis=1)
    return {
        "hamming_loss": float(skm.hamming_loss(Y, np.asarray(Y_pred).astype(int))),
        "one_error": float(np.mean(Y[np.arange(len(Y)), top] == 0)),
        "coverage": float(skm.coverage_error(Y, scores) - 1.0),
        "ranking_loss": float(skm.label_ranking_loss(Y, scores)),
        "average_precision": float(skm.label_ranking_average_precision_score(Y, scores)),
        "macro_map": float(skm.average_precision_score(Y, scores, average="macro")),
    }


def decide(probs, threshold):
    """The decision rule: labels whose probability is >= threshold; the top label if none is.

    Every yeast gene has at least one class, so an empty set is never right.
    """
    probs = np.asarray(probs)
    pred = (probs >= threshold).astype(np.uint8)
    empty = pred.sum(axis=1) == 0
    pred[empty, np.argmax(probs[empty], axis=1)] = 1
    return pred


def best_threshold(Y, probs, thresholds=THRESHOLDS):
    """The threshold of ``decide`` with the lowest Hamming loss on (Y, probs): -> (t, loss).

    Used on validation predictions from training folds only. Ties go to the smaller t.
    """
    losses = [float(np.mean(decide(probs, t) != Y)) for t in thresholds]
    i = int(np.argmin(losses))
    return float(thresholds[i]), losses[i]


def summarize(per_fold):
    """[{metric: value}] over folds -> {metric: {"mean", "std"}} (std: sample std, ddof=1)."""
    out = {}
    for m in per_fold[0]:
        v = np.array([f[m] for f in per_fold], dtype=np.float64)
        out[m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out
