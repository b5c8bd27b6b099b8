"""Decision rules: label sets from scores, per-class threshold calibration and threshold files.

The rules and the calibration are numpy only (no Caffe import)::

    >>> import numpy as np
    >>> p = np.array([[0.6, 0.3, 0.1], [0.4, 0.35, 0.25]])
    >>> predict_labels(p, mass(0.9)).astype(int)       # smallest top set with probability >= 0.9
    array([[1, 1, 0],
           [1, 1, 1]])
    >>> predict_labels(p, parse_rule("top-k:1")).astype(int)
    array([[1, 0, 0],
           [1, 0, 0]])

``threshold`` and ``class_thresholds`` predict a label when its score is >= the
threshold. ``top_k`` and ``mass`` take a group of scores tied at the last place whole (every label
scoring >= the k-th highest score), so a set is larger than asked only on a tie and never depends on
the order of the classes (:func:`softmax_multilabel_layer.evaluation.metrics.top_k_labels`).

Which rule fits which loss: ``zlpr`` (score > 0) is ZLPR's own threshold. The
two-way loss gives ranking scores with no threshold or probability meaning
(its deploy output is the scores themselves): use ``top-k``, per-class
``thresholds`` calibrated on validation data, or the ranking metrics; a fixed
``threshold`` or ``mass`` means nothing there.
"""
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from softmax_multilabel_layer.evaluation.metrics import check_labels, check_scores, top_k_labels
from softmax_multilabel_layer.params import MultilabelLossError
from softmax_multilabel_layer.tools.docblocks import write_atomic

RULE_SYNTAX = "top-k:K, threshold:T, thresholds:FILE.json, mass:Q or zlpr"
_CHUNK_ELEMENTS = 1 << 22           # pragma: no mutate (block size only: any value >= 1 gives the same thresholds)


@dataclass(frozen=True)
class top_k:
    """The k top-scored labels of each sample (a tie at the k-th place: the whole tied group)."""
    k: int

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise MultilabelLossError("rule top-k: k must be an integer >= 1, got %r" % (self.k,))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return top_k_labels(scores, self.k)

    def __str__(self) -> str:
        return "top-k:%d" % self.k


@dataclass(frozen=True)
class threshold:
    """Every label whose score is >= t."""
    t: float

    def __post_init__(self) -> None:
        if isinstance(self.t, bool) or not isinstance(self.t, (int, float)) or not math.isfinite(self.t):
            raise MultilabelLossError("rule threshold: t must be a finite number, got %r" % (self.t,))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return scores >= self.t

    def __str__(self) -> str:
        return "threshold:%g" % self.t


class class_thresholds:
    """Label c when its score is >= thresholds[c]; ``values`` is an array or a JSON file written by
    :func:`save_thresholds` (``null`` = never predict the class)."""

    def __init__(self, values: "str | ArrayLike") -> None:
        self.source = values if isinstance(values, str) else None
        t = load_thresholds(values) if isinstance(values, str) else np.asarray(values, dtype=np.float64)
        if t.ndim != 1 or np.isnan(t).any():
            raise MultilabelLossError("rule thresholds: expected one number per class, got %r" % (values,))
        self.thresholds = t

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        if scores.shape[1] != len(self.thresholds):
            raise MultilabelLossError("rule thresholds%s: %d thresholds but the scores have C=%d classes"
                                      % (":" + self.source if self.source else "", len(self.thresholds),
                                         scores.shape[1]))
        return scores >= self.thresholds[None, :]

    def __str__(self) -> str:
        return "thresholds:%s" % (self.source or "<%d values>" % len(self.thresholds))


@dataclass(frozen=True)
class mass:
    """The smallest set of top-ranked labels whose probabilities sum to >= q (softmax outputs; the natural
    rule for targets 1/M: a sample with M equally likely labels gets them all for q <= 1 - (other mass))."""
    q: float

    def __post_init__(self) -> None:
        if isinstance(self.q, bool) or not isinstance(self.q, (int, float)) or not 0 < self.q <= 1:
            raise MultilabelLossError("rule mass: q must be in (0, 1], got %r" % (self.q,))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        sums = scores.sum(axis=1, dtype=np.float64)
        # (> and >= agree: no float64 sum in [0.5, 2] lies exactly 1e-3 from 1, and |sum - 1| >= 0.5 outside it)
        if len(sums) and (np.abs(sums - 1) > 1e-3).any():    # pragma: no mutate
            i = int(np.argmax(np.abs(sums - 1)))
            raise MultilabelLossError("rule mass: needs softmax probabilities (rows summing to 1), sample %d sums "
                                      "to %.6g; use it on a Softmax output" % (i, sums[i]))
        ranked = np.cumsum(-np.sort(-scores), axis=1, dtype=np.float64)      # each row, highest first
        k = np.minimum(1 + np.count_nonzero(ranked < self.q * sums[:, None] - 1e-12, axis=1), scores.shape[1])
        return top_k_labels(scores, k)

    def __str__(self) -> str:
        return "mass:%g" % self.q


@dataclass(frozen=True)
class zlpr:
    """ZLPR's own rule: label c when its score s_c > 0, that is sigmoid(s_c) > 0.5.

    It reads the outputs that ``evaluate``, ``predict`` and ``deploy`` give a
    ZLPR net (the sigmoid of the scores). On raw ZLPR scores use ``threshold:0``
    (s >= 0: the same label sets but where a score is exactly 0).
    """

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return scores > 0.5

    def __str__(self) -> str:
        return "zlpr"


Rule = Callable[[np.ndarray], np.ndarray]
"""A decision rule: N x C scores -> N x C label sets (``top_k``, ``threshold``, ``class_thresholds``, ``mass``,
``zlpr``)."""


def parse_rule(text: "str | Rule") -> Rule:
    """A rule from its command-line text: ``top-k:3``, ``threshold:0.5``, ``thresholds:FILE``, ``mass:0.9``,
    ``zlpr``."""
    if not isinstance(text, str):
        return text
    name, sep, value = text.partition(":")
    if text == "zlpr":
        return zlpr()
    try:
        if sep and name == "top-k":
            return top_k(int(value))
        if sep and name == "threshold":
            return threshold(float(value))
        if sep and name == "thresholds":
            return class_thresholds(value)
        if sep and name == "mass":
            return mass(float(value))
    except ValueError as exc:
        if isinstance(exc, MultilabelLossError):
            raise
        raise MultilabelLossError("rule %r: %s is not a number; expected %s" % (text, value, RULE_SYNTAX)) from None
    raise MultilabelLossError("unknown rule %r; expected %s" % (text, RULE_SYNTAX))


def check_rule(rule: "str | Rule", scores: np.ndarray, owner: str = "rule") -> Rule:
    """The rule, refused with a clear error where it cannot mean what was asked on these scores: ``top-k``
    with k above the C classes, or a ``threshold`` at which no label or every label is predicted (above
    the highest score, or at or below the lowest)."""
    rule = parse_rule(rule)
    s = np.asarray(scores)
    if isinstance(rule, top_k) and rule.k > s.shape[1]:
        raise MultilabelLossError("%s %s: k=%d is more than the C=%d classes; expected k in 1..%d"
                                  % (owner, rule, rule.k, s.shape[1], s.shape[1]))
    if isinstance(rule, threshold) and s.size:
        low, high = float(s.min()), float(s.max())
        if rule.t > high:
            raise MultilabelLossError("%s %s predicts no label at all: the highest score is %.6g; expected a "
                                      "threshold in (%.6g, %.6g]" % (owner, rule, high, low, high))
        if rule.t <= low:
            raise MultilabelLossError("%s %s predicts every label: the lowest score is %.6g; expected a threshold "
                                      "in (%.6g, %.6g]" % (owner, rule, low, low, high))
    return rule


def predict_labels(scores: ArrayLike, rule: "str | Rule") -> np.ndarray:
    """N x C bool label sets from N x C scores under ``rule`` (a rule object or its text, see :func:`parse_rule`)."""
    s = check_scores("predict_labels", scores)
    return np.asarray(parse_rule(rule)(s), dtype=bool)


def calibrate_thresholds(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """One threshold per class maximizing that class's F1 on a validation set.

    For class c the candidates are its distinct scores (predict c when score >= t); the best F1 is
    taken (the highest threshold among equals) and t is moved half-way to the next lower score so
    new data near the boundary is not decided by float noise. A class with no true label gets
    ``inf`` (never predicted; F1 0).

    Shape: (N, C), (N, C) -> thresholds (C,), F1 at those thresholds (C,).
    """
    owner = "calibrate_thresholds"
    y = check_labels(owner, labels)
    s = check_scores(owner, scores, y.shape)
    n, c = y.shape
    best_t = np.full(c, np.inf)
    best_f1 = np.zeros(c)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))      # pragma: no mutate (block size only, as _CHUNK_ELEMENTS)
    for c0 in range(0, c, step):                    # pragma: no mutate (a step of 1 or any other: same result)
        sc = np.ascontiguousarray(s[:, c0:c0 + step].T)
        order = np.argsort(-sc)                 # each class's scores, highest first (order inside a tie: any)
        ss = np.take_along_axis(sc, order, axis=1)
        tp = np.cumsum(np.take_along_axis(y[:, c0:c0 + step].T, order, axis=1), axis=1)
        positives = tp[:, -1:]
        last = np.diff(ss, append=np.nan) != 0  # the last place of each group of tied scores (the candidates)
        f1 = np.where(last, 2 * tp / (np.arange(1, n + 1)[None, :] + positives), -np.inf)
        i = np.argmax(f1, axis=1)
        rows = np.arange(len(sc))
        t = ss[rows, i]
        below = ss[rows, (i + 1) % n]           # the next lower score (wraps to the highest after the lowest)
        with np.errstate(over="ignore"):         # t + below may overflow to inf: then t stays
            mid = 0.5 * (t + below)
        # half-way down when there is a lower score (mid > below, never after the wrap) and t + below is finite
        t = np.where((mid > below) & np.isfinite(mid), mid, t)
        has = positives[:, 0] > 0
        best_t[c0:c0 + step] = np.where(has, t, np.inf)
        best_f1[c0:c0 + step] = np.where(has, f1[rows, i], 0.0)
    return best_t, best_f1


def save_thresholds(path: str, thresholds: ArrayLike, f1: ArrayLike | None = None,
                    class_names: Sequence[str] | None = None) -> None:
    """Write thresholds (``null`` for a never-predicted class) as JSON, read back by :func:`load_thresholds`,
    under a temporary name renamed over ``path`` when complete."""
    data: dict[str, list[Any]] = {"thresholds": [None if not np.isfinite(t) else float(t)
                                                 for t in np.asarray(thresholds)]}
    if f1 is not None:
        data["f1"] = [float(v) for v in np.asarray(f1)]
    if class_names is not None:
        data["class_names"] = list(class_names)
    write_atomic(path, json.dumps(data, indent=1) + "\n")       # never half a file, nor an old one destroyed


def load_thresholds(path: str) -> np.ndarray:
    """Thresholds from a JSON file: a list of numbers, or an object with a ``thresholds`` list (null = never)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise MultilabelLossError("thresholds file %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise MultilabelLossError("thresholds file %s: not JSON (%s)" % (path, exc)) from None
    values = data.get("thresholds") if isinstance(data, dict) else data
    if not isinstance(values, list) or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                               for v in values):
        raise MultilabelLossError("thresholds file %s: expected a list of numbers (or null) or "
                                  "{\"thresholds\": [...]}" % path)
    return np.array([np.inf if v is None else v for v in values], dtype=np.float64)


__all__ = ["RULE_SYNTAX", "Rule", "calibrate_thresholds", "check_rule", "class_thresholds", "load_thresholds",
           "mass", "parse_rule", "predict_labels", "save_thresholds", "threshold", "top_k"]
