"""Every metric at once: :func:`report`, the metrics of :mod:`.metrics` plus the rule-based ones."""
from collections.abc import Sequence
from typing import Any

from numpy.typing import ArrayLike

from softmax_multilabel_layer.evaluation.metrics import (
    average_precision,
    check_pair,
    coverage,
    exact_match,
    f1,
    hamming_loss,
    label_ranking_average_precision,
    missing_positives,
    ranking_loss,
    top_k_metrics,
)
from softmax_multilabel_layer.evaluation.rules import Rule, parse_rule, predict_labels


def report(labels: ArrayLike, scores: ArrayLike, rule: "str | Rule" = "top-k:1",
           k: Sequence[int] = (1, 3, 5)) -> dict[str, Any]:
    """Every metric of this module as one dict.

    Args:
        labels: N x C multi-hot.
        scores: N x C scores (the net's probabilities).
        rule: the decision rule turning scores into label sets for hamming_loss, f1 and exact_match:
            a rule object or text such as ``"top-k:3"``, ``"threshold:0.5"``, ``"thresholds:FILE"``,
            ``"mass:0.9"`` (see :func:`softmax_multilabel_layer.evaluation.rules.parse_rule`).
        k: the k of precision_at_k and recall_at_k (those above C are skipped).

    Returns:
        dict of floats (and ``missing_positives``, ``rule``, ``samples``, ``classes``), in this order:
        mAP, AP_micro, AP_samples, label_ranking_average_precision, ranking_loss, coverage, one_error,
        precision_at_k and recall_at_k for each k, hamming_loss, f1_micro, f1_macro, f1_samples,
        exact_match.
    """
    y, s = check_pair("metrics.report", labels, scores)
    rule = parse_rule(rule)
    predicted = predict_labels(s, rule)
    top = top_k_metrics(y, s, [kk for kk in k if kk <= y.shape[1]])
    out = {"samples": int(y.shape[0]), "classes": int(y.shape[1]), "rule": str(rule),
           "mAP": average_precision(y, s),                 # macro
           "AP_micro": average_precision(y, s, "micro"),
           "AP_samples": average_precision(y, s, "samples"),
           "label_ranking_average_precision": label_ranking_average_precision(y, s),
           "ranking_loss": ranking_loss(y, s),
           "coverage": coverage(y, s)}
    out.update(top)
    out.update({"hamming_loss": hamming_loss(y, predicted),
                "f1_micro": f1(y, predicted, "micro"),
                "f1_macro": f1(y, predicted),                   # macro
                "f1_samples": f1(y, predicted, "samples"),
                "exact_match": exact_match(y, predicted),
                "missing_positives": missing_positives(y)})
    return out


__all__ = ["report"]
