"""Zhang & Zhou's multi-label metrics on one fold, and the thresholded decision rule.

Definitions (Zhang & Zhou, Pattern Recognition 2007, Sec. 2; also TKDE 2006): for
scores f(x, l) and true label sets Y_i,
- Hamming loss: fraction of (sample, label) pairs where the predicted set is wrong;
- one-error: fraction of samples whose top-scored label is not in Y_i;
- coverage: mean over samples of (the deepest rank of a true label) - 1;
- ranking loss: mean fraction of (relevant, irrelevant) label pairs ordered wrongly;
- average precision: label-ranking average precision.
Macro mAP (mean over labels of the per-label average precision) is added.

``fold_metrics`` is the one adapter: it computes them with the project's own metrics
(softmax_multilabel_layer.evaluation.metrics: hamming_loss, one_error, coverage,
ranking_loss, label_ranking_average_precision, average_precision(average="macro")), so they
run on every benchmark; tests/test_yeast_metrics.py checks them against scikit-learn's
(coverage_error minus 1, label_ranking_loss, label_ranking_average_precision_score,
hamming_loss, average_precision_score) on yeast-like data.
"""
import numpy as np

from softmax_multilabel_layer.evaluation import metrics as M

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
    return {
        "hamming_loss": float(M.hamming_loss(Y, np.asarray(Y_pred).astype(int))),
        "one_error": float(M.one_error(Y, scores)),
        "coverage": float(M.coverage(Y, scores)),
        "ranking_loss": float(M.ranking_loss(Y, scores)),
        "average_precision": float(M.label_ranking_average_precision(Y, scores)),
        "macro_map": float(M.average_precision(Y, scores, "macro")),
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
