"""Multi-label metrics over a whole test set: numpy only (no Caffe import), vectorized, in bounded memory.

``labels`` is an N x C multi-hot array (0/1 or bool; a label weight > 0 counts as a positive, see
:func:`check_labels`), ``scores`` an N x C array of real scores (higher = more likely; probabilities
or raw outputs), and ``predicted`` an N x C 0/1 array (a label set per sample, see
:func:`softmax_multilabel_layer.evaluation.rules.predict_labels`).

Every ranking metric reduces to two counts per true label (sample i, class c):
``all_ge`` = how many scores of the ranked list are >= its score and ``pos_ge`` =
how many *true* labels of the list are >= its score. Ties therefore count at
their worst rank, which is scikit-learn's convention throughout. The counts come
from one of three exact paths, chosen by the shape of the lists: comparing each list with its few true
scores (a handful of true labels per list), a branch-free binary search of every score among its list's
sorted true scores (long lists, such as the classes of a large test set: no sort of the scores, which
numpy 1.26 vectorizes only with AVX-512), or one ``np.sort`` per list and a vectorized binary search of
the true labels (short lists with many true labels). Scores are compared
in their own precision (float32 or float64, exact: float32 scores are never copied to float64);
counts and averages are float64. Work is done in blocks of about ``_CHUNK_ELEMENTS`` scores, so the
memory a metric needs beyond its inputs is a few blocks and arrays the size of the true labels.

**Ties inside a sample in the top-k family** (``precision_at_k``, ``recall_at_k``, ``one_error``): a
group of tied scores straddling the k-th place counts as the *expected value over the orders of the
group*: with ``a`` labels above the k-th score, ``t`` labels tied at it of which ``h`` are true,
the k-th place takes ``k - a`` of them, ``(k - a) * h / t`` true on average. The value is therefore
independent of the class order, as the ranking metrics are (which count a tie group once, at its
end); a net with constant scores gets precision@1 = one minus one_error = (true labels) / C whatever
the order of its classes. The decision rule ``top_k`` (:func:`top_k_labels`) must return a set: it
takes the whole tied group at the k-th place (every label scoring >= the k-th highest score), so a
set holds more than k labels only on a tie, again independent of the class order.

Each function with a scikit-learn counterpart equals it to 1e-9 (``tests/test_metrics.py``) on every
input where both are defined (ties included), with these exceptions (*ours* marks our convention):

================================ ======================================================================
metric                           degenerate inputs
================================ ======================================================================
average_precision                *ours*: a class (macro, None) or sample ("samples") with no true label
                                 is left out of the mean and reported by :func:`missing_positives`;
                                 per class (``average=None``) its AP is NaN. scikit-learn scores it 0
                                 (and warns) and keeps it in the mean, so the two differ exactly when a
                                 class (macro) or sample (samples) has no true label. Micro AP with no
                                 true label at all is NaN (scikit-learn: 0 with a warning).
label_ranking_average_precision  a sample with no true label, or with every label true, scores 1
ranking_loss                     a sample with no true label, or with every label true, scores 0
coverage                         ``coverage_error - 1``; scikit-learn counts a sample with no true
                                 label as depth 0, so it counts -1 here
one_error                        a sample with no true label counts as an error (its top label is
                                 wrong); ties at the top: expected value (above); no scikit-learn
                                 counterpart
f1                               0/0 (no true and no predicted label) gives ``zero_division`` (default 0,
                                 scikit-learn's default)
precision_at_k, recall_at_k      no scikit-learn counterpart; P@k divides by k even when k > C (the
                                 extreme-classification definition); recall leaves out samples with no
                                 true label; ties: expected value (above)
================================ ======================================================================

An empty input (N = 0) gives NaN everywhere. ``sample_weight`` is not offered: scikit-learn has it for
``average_precision_score``, ``label_ranking_average_precision_score``, ``label_ranking_loss``,
``coverage_error``, ``f1_score``, ``hamming_loss`` and ``accuracy_score``; every metric here weighs
each sample (and, for macro averages, each class) equally.
"""
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from softmax_multilabel_layer.params import MultilabelLossError

AVERAGES = ("macro", "micro", "samples", None)
_CHUNK_ELEMENTS = 1 << 22          # work on at most this many scores at once (16 MB of float32)
_SEARCH_LENGTH = 2048   # pragma: no mutate (speed only: lists this long search their true scores; both paths exact)
_CACHE_ELEMENTS = 1 << 16          # ranking_loss compares this many scores many times over (256 KB of float32)


# ---------------------------------------------------------------------------------------------------------------
# input checks

def _row_blocks(rows: int, cols: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive row blocks of about _CHUNK_ELEMENTS elements (at least one row each)."""
    step = max(1, _CHUNK_ELEMENTS // max(cols, 1))
    for r0 in range(0, rows, step):
        yield r0, min(r0 + step, rows)


def check_labels(owner: str, labels: ArrayLike, name: str = "labels") -> np.ndarray:
    """``labels`` as an N x C bool array (True = relevant); a clear error for another shape or a bad value.

    0/1 multi-hot labels are taken as they are. A weighted label (a value > 0 other than 1, as the data
    layers write for ``2:0.5``) counts as a positive: every metric here asks only *which* labels are
    relevant (ranking metrics rank them, label-set metrics match them), so a weight changes nothing but
    the training loss. A negative or non-finite value is refused.
    """
    y = np.asarray(labels)
    if y.ndim != 2:
        raise MultilabelLossError("%s: %s must be an N x C multi-hot array, got shape %s" % (owner, name, y.shape))
    if y.dtype == bool:
        return y
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise MultilabelLossError("%s: %s must be numbers 0/1 (or label weights >= 0), got dtype %s"
                                  % (owner, name, y.dtype))
    out = np.empty(y.shape, dtype=bool)
    for r0, r1 in _row_blocks(*y.shape):
        block = y[r0:r1]
        bad = ~((block >= 0) & (block < np.inf))          # negative, NaN or inf
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            where = (where[0] + r0,) + where[1:]
            raise MultilabelLossError("%s: %s must be 0/1 multi-hot (or label weights >= 0, a weight > 0 counting "
                                      "as a positive), found %r at %s; class indices need converting first (see "
                                      "indices_to_multi_hot)" % (owner, name, y[where].item(), where))
        np.not_equal(block, 0, out=out[r0:r1])
    return out


def check_scores(owner: str, scores: ArrayLike, shape: Sequence[int] | None = None,
                 name: str = "scores") -> np.ndarray:
    """``scores`` as a float32 or float64 array of ``shape`` (kept in its own precision, never copied;
    other number types become float64); a clear error for NaN/inf or a shape mismatch."""
    s = np.asarray(scores)
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer) or s.dtype == bool):
        raise MultilabelLossError("%s: %s must be numbers, got dtype %s" % (owner, name, s.dtype))
    if s.dtype not in (np.float32, np.float64):    # compared and sorted in their own precision: exact
        s = np.asarray(s, dtype=np.float64)
    if shape is not None and s.shape != tuple(shape):
        raise MultilabelLossError("%s: %s shape %s does not match labels shape %s (expected N x C for both)"
                                  % (owner, name, s.shape, tuple(shape)))
    if s.ndim != 2:
        raise MultilabelLossError("%s: %s must be an N x C array, got shape %s" % (owner, name, s.shape))
    bad = 0
    first = None
    for r0, r1 in _row_blocks(*s.shape):
        block = s[r0:r1]
        if not block.size or (np.isfinite(block.min()) and np.isfinite(block.max())):    # NaN propagates
            continue
        finite = np.isfinite(block)
        if not finite.all():
            count = int(finite.size - np.count_nonzero(finite))
            if first is None:
                where = np.argwhere(~finite)[0]
                first = (int(where[0]) + r0, int(where[1]))
            bad += count
    if first is not None:
        raise MultilabelLossError("%s: %s has %d non-finite value(s), first %r at %s"
                                  % (owner, name, bad, s[first].item(), first))
    return s


def check_pair(owner: str, labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(labels as N x C bool, scores as float32/float64 of the same shape), checked as above."""
    y = check_labels(owner, labels)
    return y, check_scores(owner, scores, y.shape)


def _check_predicted(owner: str, labels: ArrayLike, predicted: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = check_labels(owner, labels)
    p = check_labels(owner, predicted, "predicted")
    if p.shape != y.shape:
        raise MultilabelLossError("%s: predicted shape %s does not match labels shape %s" % (owner, p.shape, y.shape))
    return y, p


def indices_to_multi_hot(indices: ArrayLike, num_classes: int, owner: str = "indices_to_multi_hot") -> np.ndarray:
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

def _lower_bound(sorted_values: np.ndarray, start: np.ndarray, length: int, values: np.ndarray) -> np.ndarray:
    """Vectorized ``np.searchsorted(side="left")`` for queries that are values of their segment: for each query,
    the first index in ``sorted_values[start:start + length]`` (ascending, ``length`` >= 1) whose value is >= the
    query's value. Branch-free binary search: adds the largest powers of two that keep every probed value < the
    query (a probe past the segment reads its last value, which is >= the query)."""
    below = np.zeros(len(values), dtype=np.int64)          # how many values of the segment are < the query
    step = 1 << (length.bit_length() - 1)
    while step:
        probe = below + step
        below += step * (sorted_values[start + np.minimum(probe, length) - 1] < values)
        step >>= 1
    return start + below


def _transposed(a: np.ndarray, c0: int, c1: int) -> np.ndarray:
    """``a[:, c0:c1].T`` as a C-contiguous copy, transposed 256 rows at a time (about 3x faster than a
    strided copy of the whole column block, which reads one element per row of ``a`` per output row)."""
    out = np.empty((c1 - c0, a.shape[0]), dtype=a.dtype)
    for r0 in range(0, a.shape[0], 256):
        out[:, r0:r0 + 256] = a[r0:r0 + 256, c0:c1].T
    return out


def _list_blocks(y: np.ndarray, s: np.ndarray, by_class: bool) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first list, labels block, scores block) of the ranked lists, one list per row of a block (C-contiguous):
    the samples (rows of y, s), or with ``by_class`` the classes (columns)."""
    if by_class:
        for c0, c1 in _row_blocks(y.shape[1], y.shape[0]):
            yield c0, _transposed(y, c0, c1), _transposed(s, c0, c1)
    else:
        for r0, r1 in _row_blocks(*y.shape):
            yield r0, np.ascontiguousarray(y[r0:r1]), np.ascontiguousarray(s[r0:r1])


def _all_ge_by_sorting(sc: np.ndarray, r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """all_ge of each true label (row r, score v) from a sort of each row and a binary search."""
    length = sc.shape[1]
    ordered = np.sort(sc).ravel()
    return length - (_lower_bound(ordered, r * length, length, v) - r * length)


def _order_keys(a: np.ndarray) -> np.ndarray:
    """Signed integers in the order of the finite float32 (int32 keys) or float64 (int64) values ``a``: a larger
    value has a larger key, and equal values have equal keys (-0.0 and 0.0 both 0). The bits of a positive
    float already are such a key; a negative float's key is minus the bits of its magnitude."""
    kind = np.int32 if a.dtype == np.float32 else np.int64
    bits: np.ndarray[Any, Any] = a.view(kind)
    magnitude = bits & np.iinfo(kind).max
    return np.where(bits < 0, -magnitude, magnitude)


def _count_at_or_below(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.searchsorted(sorted_values, x, side="right")`` (how many values are <= each x) without sorting x and
    without numpy's branching search, which mispredicts on unsorted queries.

    The distinct values are put in buckets of equal ranges of their keys (:func:`_order_keys`), about two per
    bucket, and finer while a bucket holds more than 16 of them and there are fewer buckets than queries / 2. A
    query's key finds its bucket directly: the values of the buckets below are all < it, those above all >.
    A branch-free binary search inside the bucket (one gather, one comparison and one add per level over all
    of ``x``) places it there. Queries below (above) every value go to the first (last) bucket. ``x``: 1-D,
    finite, of the values' dtype (float32 or float64)."""
    ends = np.flatnonzero(np.append(sorted_values[1:] != sorted_values[:-1], True)) + 1
    distinct = sorted_values[ends - 1]                       # ends[j]: how many values are <= distinct[j]
    kind, unsigned = (np.int32, np.uint32) if distinct.dtype == np.float32 else (np.int64, np.uint64)
    keys = _order_keys(distinct)
    lowest, highest = keys[0], keys[-1]
    offset = keys.view(unsigned) - lowest.view(unsigned)     # modulo 2**bits: the true difference, >= 0
    span = int(offset[-1])
    # (any shift >= 0 is exact: the lines marked only choose a fast one)
    shift = (span // (2 * len(distinct))).bit_length()                 # pragma: no mutate
    width = np.bincount((offset >> shift).astype(np.intp))   # distinct values per bucket
    while shift and width.max() > 16 and span >> shift < len(x) // 2:  # pragma: no mutate
        shift -= 1                                                     # pragma: no mutate
        width = np.bincount((offset >> shift).astype(np.intp))
    first = np.append(0, np.cumsum(width))                   # distinct values in the buckets below
    step = 1 << (int(width.max()).bit_length() - 1)
    # table[j] = distinct[j - 1]; NaN beyond the end is never <= x
    table = np.concatenate((distinct[:1], distinct, np.full(step, np.nan, dtype=distinct.dtype)))
    # a negative x is below every value when none is negative: its raw bits need not be keys
    xkeys = x.view(kind) if distinct[0] >= 0 else _order_keys(x)      # pragma: no mutate (> 0 is as exact)
    bucket: np.ndarray[Any, Any] = np.clip(xkeys, lowest, highest).view(unsigned)
    bucket -= lowest.view(unsigned)
    bucket >>= shift
    below = first[bucket]
    while step:
        below += step * (table[below + step] <= x)
        step >>= 1
    return np.append(0, ends)[below]


def _all_ge_by_searching(sc: np.ndarray, counts: np.ndarray, v: np.ndarray) -> np.ndarray:
    """all_ge of each true label from how many true scores of its list each score of the list is >= (a search
    of the list's sorted true scores): L log P work for a list of L scores with P true labels, where a sort
    takes L log L. A score is >= the k-th smallest true score exactly when more than k true scores are <= it."""
    starts = np.cumsum(counts) - counts
    ge = np.empty(len(v), dtype=np.int64)
    for i in np.flatnonzero(counts):
        at = slice(starts[i], starts[i] + counts[i])
        order = np.argsort(v[at])
        true_at_or_below = _count_at_or_below(v[at][order], sc[i])
        # (the list's top score is >= every true score, so the bincount reaches counts[i] without a minlength)
        ge[starts[i] + order] = sc.shape[1] - np.cumsum(np.bincount(true_at_or_below))[:counts[i]]
    return ge


def _all_ge_by_comparing(sc: np.ndarray, counts: np.ndarray, v: np.ndarray) -> np.ndarray:
    """all_ge of each true label by comparing its row with its score: one pass over the rows per true label,
    cheaper than a sort when rows have few true labels. Rows are taken most true labels first, so pass j
    reads the prefix of rows that have a j-th true label (``v`` holds the true scores row by row)."""
    starts = np.cumsum(counts) - counts
    order = np.argsort(-counts)                     # the order among lists of one count does not matter
    most = counts[order]
    rows = sc[order]
    ge = np.empty(len(v), dtype=np.int64)
    for j in range(int(most[0])):
        n = int(np.count_nonzero(most > j))
        at = starts[order[:n]] + j
        ge[at] = np.count_nonzero(rows[:n] >= v[at][:, None], axis=1)
    return ge


def _true_label_ranks(y: np.ndarray, s: np.ndarray, by_class: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every true label of every ranked list (the rows of ``y``, ``s``: N x C; with ``by_class`` the
    columns): (list, pos_ge, all_ge) in list order, where all_ge counts the list's scores >= this label's
    score and pos_ge counts the list's true labels with such a score.

    all_ge comes from comparisons when the lists of a block hold few true labels on average (at most
    log2(length) + 2, e.g. 1-5 hashtags among 17,000), else from a search of each list's sorted true scores
    when lists are at least _SEARCH_LENGTH long (the classes of a test set), else from a sort of each list."""
    rows: list[np.ndarray] = []
    pos_ge: list[np.ndarray] = []
    all_ge: list[np.ndarray] = []
    for r0, yc, sc in _list_blocks(y, s, by_class):
        n_lists, length = yc.shape
        flat = np.flatnonzero(yc)                  # far faster than a 2-D np.nonzero
        if not len(flat):
            continue
        r = flat // length
        v = sc.ravel()[flat]
        counts = np.bincount(r)                    # (the lists after the last true label have none)
        if len(flat) <= (np.log2(length) + 2) * n_lists:  # pragma: no mutate (speed only: the paths are exact)
            ge = _all_ge_by_comparing(sc, counts, v)
        elif length >= _SEARCH_LENGTH:             # pragma: no mutate (speed only: both paths are exact)
            ge = _all_ge_by_searching(sc, counts, v)
        else:
            ge = _all_ge_by_sorting(sc, r, v)
        all_ge.append(ge)
        # In a row, a higher score has a smaller all_ge and a tie the same one, so pos_ge counts the row's true
        # labels whose all_ge is <= this one: integer keys, one sort, one C searchsorted (no float lexsort).
        key = r * (length + 1) + ge
        row_end = np.searchsorted(np.sort(key), key, side="right")
        pos_ge.append(row_end - (np.cumsum(counts) - counts)[r])
        rows.append(r + r0)
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(rows), np.concatenate(pos_ge), np.concatenate(all_ge)


def _ranked_precision(y: np.ndarray, s: np.ndarray, by_class: bool = False) -> np.ndarray:
    """Per row of (y, s) (per column with ``by_class``): the non-interpolated average precision of ranking it
    by score (scikit-learn's step-wise AP: a tie group counts once, at its end), NaN for one with no true label."""
    rows, pos_ge, all_ge = _true_label_ranks(y, s, by_class)
    lists = y.shape[1] if by_class else y.shape[0]
    n = np.bincount(rows, minlength=lists)
    total = np.bincount(rows, weights=pos_ge / all_ge, minlength=lists)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


# ---------------------------------------------------------------------------------------------------------------
# ranking metrics (scores)

def _micro_precision(y: np.ndarray, s: np.ndarray) -> float:
    """AP of one ranking of all N*C (label, score) pairs, in blocks: each score is placed among the sorted true
    scores (:func:`_count_at_or_below`), so the N*C scores are never sorted or copied whole."""
    v = np.sort(s[y])
    if not len(v):
        return np.nan
    true_at_or_below = np.zeros(len(v) + 1, dtype=np.int64)
    for r0, r1 in _row_blocks(*s.shape):
        true_at_or_below += np.bincount(_count_at_or_below(v, s[r0:r1].ravel()), minlength=len(v) + 1)
    # a score is >= the k-th smallest true score exactly when more than k true scores are <= it
    all_ge = np.cumsum(true_at_or_below[::-1])[::-1][1:]
    pos_ge = len(v) - np.searchsorted(v, v)
    return float(np.mean(pos_ge / all_ge))


def average_precision(labels: ArrayLike, scores: ArrayLike, average: str | None = "macro") -> Any:
    r"""Average precision of ranking the samples of each class by score.

    .. math:: AP_c = \frac{1}{P_c} \sum_{i: y_{ic}=1} \frac{|\{j: y_{jc}=1, s_{jc} \ge s_{ic}\}|}
                                                          {|\{j: s_{jc} \ge s_{ic}\}|}

    equal to scikit-learn's ``average_precision_score`` (step-wise, tied scores form one threshold)
    wherever every class (macro) or sample (samples) averaged has a true label; see the module's table.

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
        return _micro_precision(y, s)
    if average == "samples":
        per = _ranked_precision(y, s)
    else:
        per = _ranked_precision(y, s, by_class=True)
        if average is None:
            return per
    return float(np.nanmean(per)) if np.isfinite(per).any() else np.nan


def precision_recall_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of one ranked list at each distinct score, from the highest down, starting at (0, 1).

    A tie group is one step, as in :func:`average_precision`, so the area under the step curve that holds
    each precision over the recall interval ending at it (matplotlib's ``where="pre"``),
    ``sum((recall[i] - recall[i-1]) * precision[i])``, is the list's AP. For plots.

    Shape: (N,), (N,) -> two (T + 1,) arrays, T the number of distinct scores.
    """
    y = np.asarray(labels).ravel() != 0
    s = np.asarray(scores).ravel()
    order = np.argsort(-s)                  # the order inside a tie group is not read (only its last place)
    ranked = s[order]
    last = np.r_[ranked[1:] != ranked[:-1], True]
    tp = np.cumsum(y[order])[last]
    return np.r_[0.0, tp / max(tp[-1], 1)], np.r_[1.0, tp / (np.flatnonzero(last) + 1.0)]


def missing_positives(labels: ArrayLike) -> dict[str, Any]:
    """Which classes and samples have no true label (left out of macro and samples AP).

    Returns ``{"classes": [indices], "samples": count}``.
    """
    y = check_labels("metrics.missing_positives", labels)
    return {"classes": np.flatnonzero(~y.any(axis=0)).tolist(), "samples": int((~y.any(axis=1)).sum())}


def label_ranking_average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    r"""Label ranking average precision (scikit-learn's ``label_ranking_average_precision_score``).

    For each sample, the mean over its true labels of (true labels ranked at or above it) /
    (labels ranked at or above it); a sample with no true label or only true labels scores 1.
    Then the mean over samples. Shape: (N, C) -> float.
    """
    y, s = check_pair("metrics.label_ranking_average_precision", labels, scores)
    if y.size == 0:
        return np.nan
    per = _ranked_precision(y, s)
    per[~y.any(axis=1)] = 1.0               # (a row with every label true has AP 1 already)
    return float(per.mean())


def _wrong_pairs_by_comparing(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per row of (y, s) (R x C): how many (true, false) label pairs have the false label's score >= the true
    one's, by comparing the row with each of its true scores (the false labels only: the true ones are set to
    -inf in a copy). Rows are taken most true labels first, ``_CACHE_ELEMENTS`` scores at a time (a copy that
    stays in the CPU cache for all its passes), and pass j adds ``row >= (j-th true score)`` (+inf where a row
    has fewer) to a uint8 count per score: no argsort, no sort of the row, one comparison and one byte add
    per score and true label."""
    n, c = y.shape
    counts = np.count_nonzero(y, axis=1)
    wrong = np.zeros(n)
    order = np.argsort(-counts)                         # the order among rows of one count does not matter
    step = max(1, _CACHE_ELEMENTS // c)
    for i in range(0, n, step):
        rows = order[i:i + step]
        most = int(counts[rows[0]])
        if most == 0:
            break
        block = s[rows]
        flat = np.flatnonzero(y[rows])
        r = flat // c
        place = np.arange(len(flat)) - (np.cumsum(counts[rows]) - counts[rows])[r]
        true = np.full((len(rows), most), np.inf, dtype=s.dtype)
        true[r, place] = block.ravel()[flat]
        block.ravel()[flat] = -np.inf
        ge = np.empty(block.shape, dtype=bool)
        tally = np.zeros_like(ge, dtype=np.uint8)
        for j0 in range(0, most, 255):                  # a uint8 count holds 255 passes
            tally[...] = 0
            for j in range(j0, min(j0 + 255, most)):
                np.greater_equal(block, true[:, j:j + 1], out=ge)
                np.add(tally, ge.view(np.uint8), out=tally)
            wrong[rows] += tally.sum(axis=1)               # (numpy sums uint8 in uint64)
    return wrong


def ranking_loss(labels: ArrayLike, scores: ArrayLike) -> float:
    r"""Fraction of (true, false) label pairs of a sample ranked wrongly, a tie counting as wrong
    (scikit-learn's ``label_ranking_loss``):

    .. math:: \frac{1}{N} \sum_i \frac{|\{(j, k): y_{ij}=1, y_{ik}=0, s_{ik} \ge s_{ij}\}|}{P_i (C - P_i)}

    A sample with no true label or only true labels scores 0. Shape: (N, C) -> float.

    The pairs are counted by comparison (one pass over a row per true label, in the CPU cache) when a block of
    rows holds few true labels on average (at most log2(C) + 2), else from the ranks of the true labels
    (a sort of each row).
    """
    y, s = check_pair("metrics.ranking_loss", labels, scores)
    if y.size == 0:
        return np.nan
    n, c = y.shape
    wrong = np.zeros(n)
    for r0, r1 in _row_blocks(n, c):
        yc, sc = y[r0:r1], s[r0:r1]
        if np.count_nonzero(yc) <= (np.log2(c) + 2) * (r1 - r0):  # pragma: no mutate (either path is exact)
            wrong[r0:r1] = _wrong_pairs_by_comparing(yc, sc)
        else:
            rows, pos_ge, all_ge = _true_label_ranks(yc, sc)
            wrong[r0:r1] = np.bincount(rows, weights=all_ge - pos_ge, minlength=r1 - r0)
    p = y.sum(axis=1)
    pairs = p * (c - p)
    return float(np.mean(wrong / np.maximum(pairs, 1)))          # no pair: no wrong pair, 0


def coverage(labels: ArrayLike, scores: ArrayLike) -> float:
    r"""Zhang & Zhou's coverage: how far down the ranked labels one must go to cover every true label,
    minus 1 (ties at their worst rank): ``sklearn.metrics.coverage_error - 1``.

    .. math:: \frac{1}{N} \sum_i \max_{j: y_{ij}=1} |\{k: s_{ik} \ge s_{ij}\}| - 1

    A sample with no true label has depth 0 (scikit-learn's convention), so it counts -1.
    Shape: (N, C) -> float.
    """
    y, s = check_pair("metrics.coverage", labels, scores)
    if y.size == 0:
        return np.nan
    depth = np.zeros(len(y))
    for r0, r1 in _row_blocks(*y.shape):
        yc, sc = y[r0:r1], s[r0:r1]
        lowest = np.min(sc, axis=1, where=yc, initial=np.inf)        # inf for a sample with no true label
        depth[r0:r1] = np.count_nonzero(sc >= lowest[:, None], axis=1)
    return float(depth.mean() - 1.0)


# ---------------------------------------------------------------------------------------------------------------
# the top-k family: k-th highest score by partition, a tie at the k-th place counted by its expected value

def _check_k(owner: str, k: ArrayLike, n: int) -> np.ndarray:
    k_arr = np.asarray(k)
    if not np.issubdtype(k_arr.dtype, np.integer) or k_arr.ndim > 1 or (k_arr.ndim == 1 and len(k_arr) != n) \
            or (k_arr < 0).any():
        raise MultilabelLossError("%s: k must be an integer >= 1 or one integer >= 0 per sample (%d), got %r"
                                  % (owner, n, k))
    if k_arr.ndim == 0 and k_arr < 1:
        raise MultilabelLossError("%s: k must be >= 1, got %r" % (owner, k))
    return k_arr


_GROUPS = 16          # the top-k search bounds each row's k-th score by the maxima of groups of this many scores


def _top_scores(s: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``s`` (R x C), its ``k`` highest scores in descending order (R x k), 1 <= k <= C.

    No row is sorted whole (and ``np.partition``, slower than a sort here, is not used): the row is split
    into C/16 interleaved groups of 16 scores, and the k-th highest of the group maxima is at most the row's
    k-th highest score (those k maxima are k scores of the row), so only the scores at or above it (about
    16 k for distinct scores) are gathered and sorted. Rows narrower than 16 k are sorted as they are."""
    n, c = s.shape
    width = c // _GROUPS
    if width < k:
        return np.sort(s)[:, ::-1][:, :k]
    maxima = s[:, :width * _GROUPS].reshape(n, _GROUPS, width).max(axis=1)
    maxima = np.concatenate([maxima, s[:, width * _GROUPS:]], axis=1)      # the last C % 16 are groups of their own
    bound = np.sort(maxima)[:, maxima.shape[1] - k]
    candidate = s >= bound[:, None]
    counts = np.count_nonzero(candidate, axis=1)
    rows = np.repeat(np.arange(n), counts)
    place = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    gathered = np.full((n, int(counts.max())), -np.inf, dtype=s.dtype)
    gathered[rows, place] = s[candidate]
    return np.sort(gathered)[:, ::-1][:, :k]


def _kth_highest(s: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per row of ``s`` (R x C), its k-th highest score; ``k`` (R,) ints in 1..C."""
    top = _top_scores(s, int(k.max()))
    return top[np.arange(len(s)), k - 1]


def _expected_hits(y: np.ndarray, s: np.ndarray, ks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """For each k of ``ks`` (each an (N,) int array, values >= 1): per sample, the expected number of true
    labels among its k top-scored, a tie at the k-th place counted over all orders of the tied group
    (k above C counts as C). Returns one (N,) float64 array per k."""
    n, c = y.shape
    hits = [np.zeros(n) for _ in ks]
    for r0, r1 in _row_blocks(n, c):
        yc, sc = y[r0:r1], s[r0:r1]
        flat = np.flatnonzero(yc)
        r, v = flat // c, sc.ravel()[flat]
        top = _top_scores(sc, min(max(int(k[r0:r1].max()) for k in ks), c))
        for j, k in enumerate(ks):
            kc = np.minimum(k[r0:r1], c)
            kth = top[np.arange(r1 - r0), kc - 1]
            above = np.count_nonzero(sc > kth[:, None], axis=1)
            tied = np.count_nonzero(sc == kth[:, None], axis=1)
            true_above = np.bincount(r, weights=v > kth[r], minlength=r1 - r0)
            true_tied = np.bincount(r, weights=v == kth[r], minlength=r1 - r0)
            hits[j][r0:r1] = true_above + (kc - above) * true_tied / tied
    return hits


def top_k_labels(scores: ArrayLike, k: ArrayLike) -> np.ndarray:
    """N x C bool: each sample's labels scoring >= its k-th highest score (``k`` an int or one int >= 0 per
    sample; k above C takes every label, k = 0 none). A tie at the k-th place takes the whole tied group,
    so a set holds more than k labels only on a tie, and the sets do not depend on the order of the
    classes. With ``k = labels.sum(1)`` it is the "top-M" label set of the digits demo."""
    s = check_scores("metrics.top_k_labels", scores)
    n, c = s.shape
    kk = np.broadcast_to(np.minimum(np.asarray(k, dtype=np.int64), c), (n,))       # k <= 0: no label
    out = np.zeros((n, c), dtype=bool)
    for r0, r1 in _row_blocks(n, c):
        some = np.flatnonzero(kk[r0:r1] > 0)
        if len(some):
            sc = s[r0:r1][some]
            out[r0 + some] = sc >= _kth_highest(sc, kk[r0:r1][some])[:, None]
    return out


def top_k_metrics(labels: ArrayLike, scores: ArrayLike, ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """``one_error`` and, for each k of ``ks``, ``precision_at_k`` and ``recall_at_k`` (keys
    ``"precision_at_%d"``, ``"recall_at_%d"``), from one pass over the scores; equal to the functions of
    those names. Shape: (N, C) -> dict of floats."""
    owner = "metrics.top_k_metrics"
    y, s = check_pair(owner, labels, scores)
    n = len(y)
    for k in ks:
        _check_k(owner, k, n)
    if n == 0:
        return dict({"one_error": np.nan}, **{"%s_at_%d" % (m, k): np.nan for k in ks
                                              for m in ("precision", "recall")})
    ks = list(ks)
    hits = _expected_hits(y, s, [np.full(n, k) for k in [1] + ks])
    p = y.sum(axis=1)
    has = p > 0
    out = {"one_error": float(1.0 - hits[0].mean())}
    for j, k in enumerate(ks):
        h = hits[j + 1]
        out["precision_at_%d" % k] = float(np.mean(h / k))
        out["recall_at_%d" % k] = float(np.mean(h[has] / p[has])) if has.any() else np.nan
    return out


def precision_at_k(labels: ArrayLike, scores: ArrayLike, k: ArrayLike) -> float:
    r"""Precision@k: the mean over samples of (true labels among the k top-scored) / k.

    .. math:: P@k = \frac{1}{N} \sum_i \frac{1}{k} |\{\text{true labels among the } k \text{ top-scored of } i\}|

    The denominator is k even when k > C (the extreme-classification definition), so
    ``precision_at_k([[1, 1, 0]], [[.5, .4, .1]], 10)`` is 0.2. A tie at the k-th place counts as the
    expected value over the orders of the tied group (see the module docstring).

    Args:
        k: an int >= 1, or one int >= 0 per sample (e.g. ``labels.sum(1)`` for R-precision,
            "precision@M"); samples with k = 0 are left out.

    Shape: (N, C) -> float.
    """
    owner = "metrics.precision_at_k"
    y, s = check_pair(owner, labels, scores)
    k = _check_k(owner, k, len(y))
    kk = np.broadcast_to(k, (len(y),))
    keep = kk > 0
    if not keep.any():
        return np.nan
    if not keep.all():                      # (a copy of the samples only when some are left out)
        y, s, kk = y[keep], s[keep], kk[keep]
    hits = _expected_hits(y, s, [kk])[0]
    return float(np.mean(hits / kk))


def recall_at_k(labels: ArrayLike, scores: ArrayLike, k: ArrayLike) -> float:
    """Mean over samples with a true label of (true labels among the k top-scored) / (true labels).

    A tie at the k-th place counts as the expected value over its orders. Shape: (N, C) -> float.
    """
    owner = "metrics.recall_at_k"
    y, s = check_pair(owner, labels, scores)
    k = _check_k(owner, k, len(y))
    p = y.sum(axis=1)
    keep = p > 0
    if not keep.any():
        return np.nan
    kk = np.broadcast_to(k, (len(y),))
    some = keep & (kk > 0)                          # a sample with k = 0 recalls nothing
    hits = np.zeros(len(y))
    if some.all():
        hits = _expected_hits(y, s, [kk])[0]
    elif some.any():
        hits[some] = _expected_hits(y[some], s[some], [kk[some]])[0]
    return float(np.mean(hits[keep] / p[keep]))


def one_error(labels: ArrayLike, scores: ArrayLike) -> float:
    """Fraction of samples whose top-scored label is not a true label; a tie at the top counts as the
    expected value over its orders (the fraction of the tied labels that are false).

    Shape: (N, C) -> float.
    """
    y, s = check_pair("metrics.one_error", labels, scores)
    if y.size == 0:
        return np.nan
    return float(1.0 - _expected_hits(y, s, [np.ones(len(y), dtype=np.int64)])[0].mean())


# ---------------------------------------------------------------------------------------------------------------
# label-set metrics (predicted 0/1)

def hamming_loss(labels: ArrayLike, predicted: ArrayLike) -> float:
    """Fraction of the N*C (sample, class) labels predicted wrongly (scikit-learn's ``hamming_loss``)."""
    y, p = _check_predicted("metrics.hamming_loss", labels, predicted)
    if not y.size:
        return np.nan
    wrong = sum(np.count_nonzero(y[r0:r1] != p[r0:r1]) for r0, r1 in _row_blocks(*y.shape))
    return float(wrong / y.size)


def f1(labels: ArrayLike, predicted: ArrayLike, average: str | None = "macro",
       zero_division: float = 0.0) -> Any:
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
    n, c = y.shape
    tp = np.zeros(n if average == "samples" else c)               # counts per sample or per class, by blocks
    denom = np.zeros_like(tp)
    for r0, r1 in _row_blocks(n, c):
        yc, pc = y[r0:r1], p[r0:r1]
        axis = 1 if average == "samples" else 0
        part = slice(r0, r1) if average == "samples" else slice(None)
        tp[part] += np.count_nonzero(yc & pc, axis=axis)
        denom[part] += np.count_nonzero(yc, axis=axis) + np.count_nonzero(pc, axis=axis)
    if average == "micro":
        tp, denom = tp.sum(), denom.sum()
    score = np.divide(2.0 * tp, denom, out=np.full_like(tp, float(zero_division)), where=denom > 0)
    if average is None:
        return score
    return float(np.mean(score))


def exact_match(labels: ArrayLike, predicted: ArrayLike) -> float:
    """Fraction of samples whose predicted label set equals the true set (scikit-learn's ``accuracy_score``
    on multi-label input, "subset accuracy")."""
    y, p = _check_predicted("metrics.exact_match", labels, predicted)
    if not len(y):
        return np.nan
    same = sum(np.count_nonzero(np.all(y[r0:r1] == p[r0:r1], axis=1)) for r0, r1 in _row_blocks(*y.shape))
    return float(same / len(y))


# ---------------------------------------------------------------------------------------------------------------


__all__ = ["AVERAGES", "average_precision", "check_labels", "check_pair", "check_scores", "coverage", "exact_match",
           "f1", "hamming_loss", "indices_to_multi_hot", "label_ranking_average_precision", "missing_positives",
           "one_error", "precision_at_k", "precision_recall_curve", "ranking_loss", "recall_at_k", "top_k_labels",
           "top_k_metrics"]
