"""Every metric at once: :func:`report`, the metrics of :mod:`.metrics` plus the rule-based ones."""
from softmax_multilabel_layer.evaluation.metrics import (
    average_precision,
    check_pair,
    coverage,
    exact_match,
    f1,
    hamming_loss,
    label_ranking_average_precision,
    missing_positives,
    one_error,
    precision_at_k,
    ranking_loss,
    recall_at_k,
)
from softmax_multilabel_layer.evaluation.rules import parse_rule, predict_labels


def report(labels, scores, rule="top-k:1", k=(1, 3, 5)):
    """Every metric of this module as one dict.

    Args:
        labels: N x C multi-hot.
        scores: N x C scores (the net's probabilities).
        rule: the decision rule turning scores into label sets for hamming_loss, f1 and exact_match:
            a rule object or text such as ``"top-k:3"``, ``"threshold:0.5"``, ``"thresholds:FILE"``,
            ``"mass:0.9"`` (see :func:`softmax_multilabel_layer.evaluation.rules.parse_rule`).
        k: the k of precision_at_k and recall_at_k (those above C are skipped).

    Returns:
        dict of floats (and ``missing_positives``, ``rule``, ``samples``, ``classes``).
    """
    y, s = check_pair("metrics.report", labels, scores)
    rule = parse_rule(rule) if isinstance(rule, str) else rule
    predicted = predict_labels(s, rule)
    out = {"samples": int(y.shape[0]), "classes": int(y.shape[1]), "rule": str(rule),
           "mAP": average_precision(y, s, "macro"),
           "AP_micro": average_precision(y, s, "micro"),
           "AP_samples": average_precision(y, s, "samples"),
           "label_ranking_average_precision": label_ranking_average_precision(y, s),
           "ranking_loss": ranking_loss(y, s),
           "coverage": coverage(y, s),
           "one_error": one_error(y, s)}
    for kk in k:
        if kk <= y.shape[1]:
            out["precision_at_%d" % kk] = precision_at_k(y, s, kk)
            out["recall_at_%d" % kk] = recall_at_k(y, s, kk)
    out.update({"hamming_loss": hamming_loss(y, predicted),
                "f1_micro": f1(y, predicted, "micro"),
                "f1_macro": f1(y, predicted, "macro"),
                "f1_samples": f1(y, predicted, "samples"),
                "exact_match": exact_match(y, predicted),
                "missing_positives": missing_positives(y)})
    return out



__all__ = ["report"]
