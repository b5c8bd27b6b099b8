"""Multi-label metrics over a whole test set: numpy only (no Caffe import), float64, vectorized.

``labels`` is an N x C multi-hot array (0/1 or bool), ``scores`` an N x C array
of real scores (higher = more likely; probabilities or raw outputs), and
``predicted`` an N x C 0/1 array (a label set per sample, see
:func:`softmax_multilabel_layer.predict.predict_labels`).

Every ranking metric reduces to two counts per true label (sample i, class c):
``all_ge`` = how many scores of the ranked list are >= its score and ``pos_ge`` =
how many *true* labels of the list are >= its score. Ties therefore count at
their worst rank, which is scikit-learn's convention throughout. The counts come
from one ``np.sort`` per list and a vectorized binary search of the true labels
only, so the cost is one sort of the scores plus work proportional to the number
of true labels, with no Python loop over classes or samples. Scores are compared
in their own precision (float32 or float64, exact); counts and averages are float64.

Each function equals its scikit-learn counterpart to 1e-9 (``tests/test_metrics.py``),
with these conventions, scikit-learn's except where marked *ours*:

================================ ======================================================================
metric                           degenerate inputs
================================ ======================================================================
average_precision                *ours*: a class (macro, None) or sample ("samples") with no true label
                                 is left out of the mean and reported by :func:`missing_positives`;
                                 per class (``average=None``) its AP is NaN. scikit-learn scores it 0
                                 (and warns). Micro AP with no true label at all is NaN.
label_ranking_average_precision  a sample with no true label, or with every label true, scores 1
ranking_loss                     a sample with no true label, or with every label true, scores 0
coverage                         ``coverage_error - 1``; scikit-learn counts a sample with no true
                                 label as depth 0, so it counts -1 here
one_error                        a sample with no true label counts as an error (its top label is wrong)
f1                               0/0 (no true and no predicted label) gives ``zero_division`` (default 0,
                                 scikit-learn's default)
precision_at_k, recall_at_k      ties broken by the lower class index; recall leaves out samples with
                                 no true label
================================ ======================================================================
"""
import numpy as np

from softmax_multilabel_layer.params import MultilabelLossError

AVERAGES = ("macro", "micro", "samples", None)
_CHUNK_ELEMENTS = 1 << 22          # sort at most this many scores at once (32 MB of float64)


# ---------------------------------------------------------------------------------------------------------------
# input checks

def check_labels(owner, labels, name="labels"):
    """``labels`` as an N x C bool array; a clear error for another shape or a value other than 0/1."""
    y = np.asarray(labels)
    if y.ndim != 2:
        raise MultilabelLossError("%s: %s must be an N x C multi-hot array, got shape %s" % (owner, name, y.shape))
    if y.dtype == bool:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise MultilabelLossError("%s: %s must be numbers 0/1, got dtype %s" % (owner, name, y.dtype))
    bad = (y != 0) & (y != 1)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise MultilabelLossError("%s: %s must be 0 or 1 (multi-hot), found %r at %s; class indices need "
                                  "converting first (see indices_to_multi_hot)" % (owner, name, y[where], where))
    return y != 0


def check_scores(owner, scores, shape=None, name="scores"):
    """``scores`` as a float32 or float64 array of ``shape`` (other types become float64); a clear error
    for NaN/inf or a shape mismatch."""
    s = np.asarray(scores)
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer) or s.dtype == bool):
        raise MultilabelLossError("%s: %s must be numbers, got dtype %s" % (owner, name, s.dtype))
    if s.dtype not in (np.float32, np.float64):    # compared and sorted in their own precision: exact
        s = s.astype(np.float64)
    if shape is not None and s.shape != tuple(shape):
        raise MultilabelLossError("%s: %s shape %s does not match labels shape %s (expected N x C for both)"
                                  % (owner, name, s.shape, tuple(shape)))
    if s.ndim != 2:
        raise MultilabelLossError("%s: %s must be an N x C array, got shape %s" % (owner, name, s.shape))
    finite = np.isfinite(s)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise MultilabelLossError("%s: %s has %d non-finite value(s), first %r at %s"
                                  % (owner, name, int((~finite).sum()), s[where], where))
    return s


def check_pair(owner, labels, scores):
    y = check_labels(owner, labels)
    return y, check_scores(owner, scores, y.shape)


def _check_predicted(owner, labels, predicted):
    y = check_labels(owner, labels)
    p = check_labels(owner, predicted, "predicted")
    if p.shape != y.shape:
        raise MultilabelLossError("%s: predicted shape %s does not match labels shape %s" % (owner, p.shape, y.shape))
    return y, p


def indices_to_multi_hot(indices, num_classes, owner="indices_to_multi_hot"):
    """Class indices padded with -1 (N x K, Caffe's ``label_format: "indices"``) or one integer per sample
    (N, or N x 1 x 1 x 1, e.g. SoftmaxWithLoss labels) -> N x C bool multi-hot."""
    idx = np.asarray(indices)
    idx = idx.reshape(len(idx), -1) if idx.ndim else idx.reshape(1, 1)
    if idx.size and not np.all(np.equal(np.mod(idx, 1), 0)):
        raise MultilabelLossError("%s: class indices must be integers, got %r" % (owner, idx[np.mod(idx, 1) != 0][0]))
    idx = idx.astype(np.int64)
    bad = (idx < -1) | (idx >= num_classes)
    if bad.any():
        raise MultilabelLossError("%s: class index %d out of range; expected 0..%d or -1 (padding)"
                                  % (owner, idx[bad][0], num_classes - 1))
    out = np.zeros((len(idx), num_classes), dtype=bool)
    rows, cols = np.nonzero(idx >= 0)
    out[rows, idx[rows, cols]] = True
    return out


# ---------------------------------------------------------------------------------------------------------------
# the shared core: worst-case ranks of the true labels

def _lower_bound(sorted_values, start, length, values):
    """Vectorized ``np.searchsorted(side="left")``: for each query, the first index in
    ``sorted_values[start:start + length]`` (ascending) whose value is >= the query's value.
    Branch-free binary search: adds the largest powers of two that keep every probed value < the query."""
    start = np.asarray(start, dtype=np.int64)
    length = np.broadcast_to(np.asarray(length, dtype=np.int64), start.shape)
    below = np.zeros(start.shape, dtype=np.int64)          # how many values of the segment are < the query
    step = 1 << max(int(np.max(length, initial=0)).bit_length() - 1, 0)
    while step:
        probe = below + step
        take = probe <= length
        take &= sorted_values[start + np.minimum(probe, length) - 1] < values
        below += step * take
        step >>= 1
    return start + below


def _true_label_ranks(y, s):
    """For every true label of every row of ``y`` (R x L bool; ``s`` the R x L scores, any strides):
    (row, pos_ge, all_ge) in row order, where all_ge counts the row's scores >= this label's score
    and pos_ge counts the row's true labels with such a score."""
    R, L = y.shape
    rows, pos_ge, all_ge = [], [], []
    step = max(1, _CHUNK_ELEMENTS // max(L, 1))
    for r0 in range(0, R, step):
        yc = np.ascontiguousarray(y[r0:r0 + step])
        flat = np.flatnonzero(yc)                  # far faster than a 2-D np.nonzero
        if not len(flat):
            continue
        r = flat // L
        sc = np.ascontiguousarray(s[r0:r0 + step])
        v = sc.ravel()[flat]
        ordered = np.sort(sc, axis=1).ravel()
        ge = L - (_lower_bound(ordered, r * L, L, v) - r * L)
        all_ge.append(ge)
        # In a row, a higher score has a smaller all_ge and a tie the same one, so pos_ge counts the row's true
        # labels whose all_ge is <= this one: integer keys, one sort, one C searchsorted (no float lexsort).
        key = r * (L + 1) + ge
        row_end = np.searchsorted(np.sort(key), key, side="right")
        counts = np.bincount(r, minlength=len(yc))
        pos_ge.append(row_end - (np.cumsum(counts) - counts)[r])
        rows.append(r + r0)
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(rows), np.concatenate(pos_ge), np.concatenate(all_ge)


def _ranked_precision(y, s):
    """Per row of (y, s): the non-interpolated average precision of ranking the row by score
    (scikit-learn's step-wise AP: a tie group counts once, at its end), NaN for a row with no true label."""
    rows, pos_ge, all_ge = _true_label_ranks(y, s)
    n = np.bincount(rows, minlength=y.shape[0])
    total = np.bincount(rows, weights=pos_ge / all_ge, minlength=y.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


# ---------------------------------------------------------------------------------------------------------------
# ranking metrics (scores)

def average_precision(labels, scores, average="macro"):
    r"""Average precision of ranking the samples of each class by score.

    .. math:: AP_c = \frac{1}{P_c} \sum_{i: y_{ic}=1} \frac{|\{j: y_{jc}=1, s_{jc} \ge s_{ic}\}|}
                                                          {|\{j: s_{jc} \ge s_{ic}\}|}

    equal to scikit-learn's ``average_precision_score`` (step-wise, tied scores form one threshold).

    Args:
        labels: N x C multi-hot (0/1 or bool).
        scores: N x C real scores.
        average: ``"macro"`` (mean of per-class AP over classes with a true label), ``"micro"``
            (one ranking of all N*C pairs), ``"samples"`` (mean over samples with a true label of
            each sample's AP over its classes) or ``None`` (per-class AP, NaN for a class with no
            true label).

    Shape:
        labels, scores: (N, C). Returns a float, or (C,) for ``average=None``.

    Example::

        >>> average_precision([[1, 0], [0, 1], [1, 1]], [[0.9, 0.2], [0.3, 0.8], [0.4, 0.1]], None)
        array([1.        , 0.83333333])
    """
    owner = "metrics.average_precision"
    if average not in AVERAGES:
        raise MultilabelLossError("%s: average must be one of %s, got %r" % (owner, AVERAGES, average))
    y, s = check_pair(owner, labels, scores)
    if average == "micro":
        return float(_ranked_precision(y.reshape(1, -1), s.reshape(1, -1))[0])
    if average == "samples":
        per = _ranked_precision(y, s)
    else:
        per = _ranked_precision(y.T, s.T)
        if average is None:
            return per
    return float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")


def precision_recall_curve(labels, scores):
    """(recall, precision) of one ranked list at each distinct score, from the highest down, starting at (0, 1);
    for plots. Shape: (N,), (N,) -> two (T + 1,) arrays."""
    y = np.asarray(labels).ravel() != 0
    s = np.asarray(scores).ravel()
    order = np.argsort(-s, kind="stable")
    ranked = s[order]
    last = np.r_[ranked[1:] != ranked[:-1], True]
    tp = np.cumsum(y[order])[last]
    return np.r_[0.0, tp / max(tp[-1], 1)], np.r_[1.0, tp / (np.flatnonzero(last) + 1.0)]


def missing_positives(labels):
    """Which classes and samples have no true label (left out of macro and samples AP).

    Returns ``{"classes": [indices], "samples": count}``.
    """
    y = check_labels("metrics.missing_positives", labels)
    return {"classes": np.flatnonzero(~y.any(axis=0)).tolist(), "samples": int((~y.any(axis=1)).sum())}


def label_ranking_average_precision(labels, scores):
    r"""Label ranking average precision (scikit-learn's ``label_ranking_average_precision_score``).

    For each sample, the mean over its true labels of (true labels ranked at or above it) /
    (labels ranked at or above it); a sample with no true label or only true labels scores 1.
    Then the mean over samples. Shape: (N, C) -> float.
    """
    y, s = check_pair("metrics.label_ranking_average_precision", labels, scores)
    if y.size == 0:
        return float("nan")
    per = _ranked_precision(y, s)
    per[~y.any(axis=1) | y.all(axis=1)] = 1.0
    return float(per.mean())


def ranking_loss(labels, scores):
    r"""Fraction of (true, false) label pairs of a sample ranked wrongly, a tie counting as wrong
    (scikit-learn's ``label_ranking_loss``):

    .. math:: \frac{1}{N} \sum_i \frac{|\{(j, k): y_{ij}=1, y_{ik}=0, s_{ik} \ge s_{ij}\}|}{P_i (C - P_i)}

    A sample with no true label or only true labels scores 0. Shape: (N, C) -> float.
    """
    y, s = check_pair("metrics.ranking_loss", labels, scores)
    if y.size == 0:
        return float("nan")
    rows, pos_ge, all_ge = _true_label_ranks(y, s)
    wrong = np.bincount(rows, weights=(all_ge - pos_ge).astype(np.float64), minlength=y.shape[0])
    p = y.sum(axis=1)
    pairs = p * (y.shape[1] - p)
    return float(np.mean(np.where(pairs > 0, wrong / np.maximum(pairs, 1), 0.0)))


def coverage(labels, scores):
    r"""Zhang & Zhou's coverage: how far down the ranked labels one must go to cover every true label,
    minus 1 (ties at their worst rank): ``sklearn.metrics.coverage_error - 1``.

    .. math:: \frac{1}{N} \sum_i \max_{j: y_{ij}=1} |\{k: s_{ik} \ge s_{ij}\}| - 1

    A sample with no true label has depth 0 (scikit-learn's convention), so it counts -1.
    Shape: (N, C) -> float.
    """
    y, s = check_pair("metrics.coverage", labels, scores)
    if y.size == 0:
        return float("nan")
    flat = np.flatnonzero(y)
    rows = flat // y.shape[1]
    lowest = np.full(y.shape[0], np.inf, dtype=s.dtype)
    if len(rows):
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        lowest[rows[starts]] = np.minimum.reduceat(np.ascontiguousarray(s).ravel()[flat], starts)
    depth = (s >= lowest[:, None]).sum(axis=1)       # 0 for a sample with no true label
    return float(depth.mean() - 1.0)


def top_k_labels(scores, k):
    """N x C bool: each sample's k highest scores (``k`` an int or one int per sample), ties broken by the
    lower class index. With ``k = labels.sum(1)`` it is the "top-M" label set of the digits demo."""
    s = check_scores("metrics.top_k_labels", scores)
    n, c = s.shape
    k = np.broadcast_to(np.clip(np.asarray(k, dtype=np.int64), 0, c), (n,))
    out = np.zeros((n, c), dtype=bool)
    some = k > 0
    if not some.any():
        return out
    if np.all(k == k[0]):
        kth = np.partition(s, c - k[0], axis=1)[:, c - k[0]]
    else:
        kth = np.take_along_axis(np.sort(s, axis=1), (c - np.maximum(k, 1))[:, None], axis=1)[:, 0]
    above = s > kth[:, None]
    tied = s == kth[:, None]
    need = k - above.sum(axis=1)
    out = above | (tied & (np.cumsum(tied, axis=1) <= need[:, None]))
    out[~some] = False
    return out


def _check_k(owner, k, n):
    k_arr = np.asarray(k)
    if not np.issubdtype(k_arr.dtype, np.integer) or k_arr.ndim > 1 or (k_arr.ndim == 1 and len(k_arr) != n) \
            or (k_arr < 0).any():
        raise MultilabelLossError("%s: k must be an integer >= 1 or one integer >= 0 per sample (%d), got %r"
                                  % (owner, n, k))
    if k_arr.ndim == 0 and k_arr < 1:
        raise MultilabelLossError("%s: k must be >= 1, got %r" % (owner, k))
    return k_arr


def precision_at_k(labels, scores, k):
    """Mean over samples of (true labels among the k top-scored) / k; ties broken by the lower class index.

    ``k`` is an int, or one int per sample (e.g. ``labels.sum(1)`` for R-precision, "precision@M");
    samples with k = 0 are left out. Shape: (N, C) -> float.
    """
    owner = "metrics.precision_at_k"
    y, s = check_pair(owner, labels, scores)
    k = _check_k(owner, k, len(y))
    kk = np.broadcast_to(k, (len(y),))
    keep = kk > 0
    if not keep.any():
        return float("nan")
    hits = (top_k_labels(s[keep], kk[keep]) & y[keep]).sum(axis=1)
    return float(np.mean(hits / np.minimum(kk[keep], y.shape[1])))


def recall_at_k(labels, scores, k):
    """Mean over samples with a true label of (true labels among the k top-scored) / (true labels).

    Ties broken by the lower class index. Shape: (N, C) -> float.
    """
    owner = "metrics.recall_at_k"
    y, s = check_pair(owner, labels, scores)
    k = _check_k(owner, k, len(y))
    p = y.sum(axis=1)
    keep = p > 0
    if not keep.any():
        return float("nan")
    hits = (top_k_labels(s[keep], np.broadcast_to(k, (len(y),))[keep]) & y[keep]).sum(axis=1)
    return float(np.mean(hits / p[keep]))


def one_error(labels, scores):
    """Fraction of samples whose top-scored label (lowest class index among ties) is not a true label.

    Shape: (N, C) -> float.
    """
    y, s = check_pair("metrics.one_error", labels, scores)
    if y.size == 0:
        return float("nan")
    top = np.argmax(s, axis=1)
    return float(1.0 - y[np.arange(len(y)), top].mean())


# ---------------------------------------------------------------------------------------------------------------
# label-set metrics (predicted 0/1)

def hamming_loss(labels, predicted):
    """Fraction of the N*C (sample, class) labels predicted wrongly (scikit-learn's ``hamming_loss``)."""
    y, p = _check_predicted("metrics.hamming_loss", labels, predicted)
    return float(np.mean(y != p)) if y.size else float("nan")


def f1(labels, predicted, average="macro", zero_division=0.0):
    r"""F1 = 2 TP / (2 TP + FP + FN), as scikit-learn's ``f1_score``.

    Args:
        average: ``"macro"`` (mean over classes, all of them), ``"micro"`` (counts over all labels),
            ``"samples"`` (mean over samples) or ``None`` (per class).
        zero_division: the F1 of a class or sample with no true and no predicted label (0/0).

    Shape: (N, C) -> float, or (C,) with ``average=None``.
    """
    owner = "metrics.f1"
    if average not in AVERAGES:
        raise MultilabelLossError("%s: average must be one of %s, got %r" % (owner, AVERAGES, average))
    y, p = _check_predicted(owner, labels, predicted)
    axis = None if average == "micro" else (1 if average == "samples" else 0)
    tp = np.sum(y & p, axis=axis, dtype=np.float64)
    denom = np.sum(y, axis=axis, dtype=np.float64) + np.sum(p, axis=axis, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), float(zero_division))
    if average is None:
        return score
    return float(np.mean(score))


def exact_match(labels, predicted):
    """Fraction of samples whose predicted label set equals the true set (scikit-learn's ``accuracy_score``
    on multi-label input, "subset accuracy")."""
    y, p = _check_predicted("metrics.exact_match", labels, predicted)
    return float(np.mean(np.all(y == p, axis=1))) if len(y) else float("nan")


# ---------------------------------------------------------------------------------------------------------------


__all__ = ["average_precision", "check_labels", "check_scores", "coverage", "exact_match", "f1", "hamming_loss",
           "indices_to_multi_hot", "label_ranking_average_precision", "missing_positives", "one_error",
           "precision_at_k", "precision_recall_curve", "ranking_loss", "recall_at_k", "top_k_labels"]
