"""The label bottoms of the losses: shape checks, value checks, and the label forms of the softmax loss.

No Caffe import. Shared by the softmax and sigmoid cores, the layers' ``reshape``
and :mod:`.hdf5_labels` (which validates index labels with :func:`first_bad_index`).

The softmax core reads labels through a *label form*, which gives the per-sample
count M of non-zero labels, their sum, and the two operations the loss needs:

* :class:`DenseLabels`: the labels as an (O, C, I) array;
* :class:`SparseLabels`: only the non-zero labels, as flat positions into the
  (O, C, I) scores with their values; used for dense labels with few non-zeros
  (at most ``SPARSE_FRACTION`` of the entries) and for ``label_format: "indices"``.
"""
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax_multilabel_layer.losses.common import Workspace, first_bad, position, row_sum
from softmax_multilabel_layer.params import (
    MultilabelLossError,
    SigmoidOptions,
    SoftmaxOptions,
    TwoWayOptions,
    ZLPROptions,
)

# Dense labels with at most this fraction of non-zeros are handled sparsely (measured
# break-even on 2 cores: 2 to 3 % non-zeros at 64 x 17000, 256 x 1000 and 32 x 21 x 14 x 14).
SPARSE_FRACTION = 1.0 / 40


def _strip_trailing_ones(shape):
    shape = tuple(shape)
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def check_label_shapes(options: SoftmaxOptions | SigmoidOptions | ZLPROptions | TwoWayOptions,
                       scores_shape: Sequence[int], labels_shape: Sequence[int],
                       weights_shape: Sequence[int] | None = None, blob: str = "labels") -> None:
    """Raise unless the label bottoms fit the scores (shared by the core and the layers' ``reshape``).

    Dense labels (and sigmoid targets) must have the scores' shape, up to
    trailing axes of size 1 (N x C x 1 x 1 labels from a ``Data`` layer or a
    4-D HDF5 dataset fit N x C scores). Index labels must have the scores'
    shape with K slots on the class axis; their weights, the labels' shape.
    """
    owner, scores_shape, labels_shape = options.owner, tuple(scores_shape), tuple(labels_shape)
    if getattr(options, "label_format", "dense") == "dense":
        if labels_shape != scores_shape and \
                _strip_trailing_ones(labels_shape) != _strip_trailing_ones(scores_shape):
            raise MultilabelLossError("%s: %s shape %s does not match scores shape %s%s"
                                      % (owner, blob, labels_shape, scores_shape,
                                         _one_label_hint(options, scores_shape, labels_shape, blob)))
        return
    axis = options.axis % len(scores_shape)
    if len(labels_shape) != len(scores_shape) or \
            labels_shape[:axis] + labels_shape[axis + 1:] != scores_shape[:axis] + scores_shape[axis + 1:]:
        raise MultilabelLossError("%s: labels (indices format) shape %s does not fit scores shape %s; expected the "
                                  "scores shape with the class axis %d replaced by K label slots"
                                  % (owner, labels_shape, scores_shape, axis))
    if weights_shape is not None and tuple(weights_shape) != labels_shape:
        raise MultilabelLossError("%s: label_weights shape %s does not match labels shape %s"
                                  % (owner, tuple(weights_shape), labels_shape))


def _one_label_hint(options, scores_shape, labels_shape, blob):
    """A hint when the labels look like one class index per sample (shape N for N x C scores)."""
    axis = options.axis % len(scores_shape)        # the axis was checked against the scores before
    if _strip_trailing_ones(labels_shape) != _strip_trailing_ones(scores_shape[:axis] + scores_shape[axis + 1:]):
        return ""
    if hasattr(options, "label_format"):
        return ("; the %s look like one class index per sample: for class indices use "
                "\"label_format\": \"indices\" with labels of shape N x K (K label slots per sample, padded with -1)"
                % blob)
    return ("; the %s look like one class index per sample: this loss takes multi-hot targets shaped like the "
            "scores (convert with softmax_multilabel_layer.data.hdf5_labels.dense_from_indices)" % blob)


def bad_label_values(owner: str, labels: NDArray[Any], bad: NDArray[np.bool_], shape: Sequence[int], axis: int,
                     blob: str = "labels", slot: str = "class") -> MultilabelLossError:
    """The error for labels that are negative, NaN or infinite (error path only)."""
    flat, value = first_bad(labels, bad)
    return MultilabelLossError("%s: %s must be finite and >= 0 (0 = negative), found %r at %s"
                               % (owner, blob, value, position(shape, axis, flat, blob, slot)))


def check_label_sums(owner: str, label_sum: NDArray[np.float64], dtype: np.dtype[np.floating[Any]],
                     shape: Sequence[int], axis: int, blob: str = "labels") -> None:
    """Raise if a sample's labels sum beyond the largest finite value of the scores' dtype.

    Each label can be finite and the sum still overflow (3e38 + 3e38 in
    float32); the targets and the gradient would then be infinite.
    """
    limit = np.finfo(dtype).max
    if not (label_sum <= limit).all():
        o, _, i = (int(v) for v in np.argwhere(~(label_sum <= limit))[0])
        inner = label_sum.shape[2]
        sample = o * inner + i
        samples_shape = tuple(np.delete(np.array(shape), axis % len(shape)))
        index = tuple(int(v) for v in np.unravel_index(sample, samples_shape))
        raise MultilabelLossError("%s: the %s of sample %s sum to %.4g, beyond the largest %s (%.4g); expected labels "
                                  "whose sum per sample is finite in %s (for example 0/1, or weights of moderate size)"
                                  % (owner, blob, index[0] if len(index) == 1 else index, float(label_sum[o, 0, i]),
                                     np.dtype(dtype), limit, np.dtype(dtype)))


class DenseLabels:
    """Labels stored as an (O, C, I) array."""

    def __init__(self, labels3: NDArray[Any], positive_mask: NDArray[np.bool_], owner: str, workspace: Workspace,
                 shape: Sequence[int], axis: int) -> None:
        self.labels3 = labels3
        if not labels3.min() >= 0:
            raise bad_label_values(owner, labels3, ~(labels3 >= 0), shape, axis)
        if not np.isfinite(labels3.max()):
            raise bad_label_values(owner, labels3, ~np.isfinite(labels3), shape, axis)
        self.label_sum = row_sum(labels3)
        self.count = positive_mask.view(np.uint8).sum(axis=1, keepdims=True, dtype=np.int64).astype(np.float64)
        self.workspace = workspace

    def dot(self, a3: NDArray[Any]) -> NDArray[np.float64]:
        """sum_c y_c a_c for each sample, float64 (O, 1, I)."""
        return np.einsum("oci,oci->oi", self.labels3, a3).astype(np.float64)[:, None, :]

    def values_at(self, flat: NDArray[np.intp]) -> NDArray[np.float64]:
        """The labels at flat positions of the (O, C, I) array, as float64."""
        return self.labels3.reshape(-1)[flat].astype(np.float64)

    def subtract_scaled(self, out3: NDArray[Any], k: NDArray[np.float64]) -> None:
        """out3 -= k * y, with k of shape (O, 1, I)."""
        scratch = self.workspace.get("scaled_labels", out3.shape, out3.dtype)
        np.multiply(self.labels3, k.astype(out3.dtype), out=scratch)
        np.subtract(out3, scratch, out=out3)


class SparseLabels:
    """Non-zero labels as sorted flat positions into the (O, C, I) scores, with their values."""

    def __init__(self, flat: NDArray[np.intp], values: NDArray[Any], shape3: Sequence[int],
                 dense: NDArray[Any] | None = None) -> None:
        outer, classes, inner = shape3
        self.flat = flat
        self.values = values.astype(np.float64)
        self.dense = dense              # the (O, C, I) labels these came from, if any: a faster values_at
        self.sample = flat // classes if inner == 1 else (flat // (classes * inner)) * inner + flat % inner
        self.samples_shape = (outer, 1, inner)
        samples = outer * inner
        self.count = np.bincount(self.sample, minlength=samples).astype(np.float64).reshape(self.samples_shape)
        self.label_sum = np.bincount(self.sample, self.values, minlength=samples).astype(np.float64).reshape(
            self.samples_shape)

    def dot(self, a3: NDArray[Any]) -> NDArray[np.float64]:
        """sum_c y_c a_c for each sample, float64 (O, 1, I)."""
        gathered = a3.reshape(-1)[self.flat] * self.values
        return np.bincount(self.sample, gathered, minlength=self.count.size).astype(np.float64).reshape(
            self.samples_shape)

    def dot_below(self, a3: NDArray[Any], amax: NDArray[Any]) -> NDArray[Any]:
        """sum_c y_c (m - a_c) for each sample, float64 (O, 1, I), with m = ``amax`` (O, 1, I) >= a.

        Each term is formed in float64 from float32 or float64 values, so it is >= 0.
        """
        below = amax.reshape(-1)[self.sample].astype(np.float64) - a3.reshape(-1)[self.flat]
        return np.bincount(self.sample, below * self.values, minlength=self.count.size).reshape(self.samples_shape)

    def values_at(self, flat: NDArray[np.intp]) -> NDArray[np.float64]:
        """The labels at flat positions of the (O, C, I) array (0 where no label is stored), as float64."""
        if self.dense is not None:
            return self.dense.reshape(-1)[flat].astype(np.float64)
        if not len(self.flat):
            return np.zeros(len(flat))
        where = np.minimum(np.searchsorted(self.flat, flat), len(self.flat) - 1)
        return np.where(self.flat[where] == flat, self.values[where], 0.0)

    def subtract_scaled(self, out3: NDArray[Any], k: NDArray[np.float64]) -> None:
        """out3 -= k * y, with k of shape (O, 1, I)."""
        flat_out = out3.reshape(-1)
        flat_out[self.flat] -= (k.reshape(-1)[self.sample] * self.values).astype(out3.dtype)


def dense_label_form(labels3: NDArray[Any], owner: str, workspace: Workspace, shape: Sequence[int],
                     axis: int) -> DenseLabels | SparseLabels:
    """Dense or sparse form of (O, C, I) labels, validated: finite, >= 0 (``shape``: the scores' shape, for errors)."""
    positive = workspace.get("label_nonzero", labels3.shape, np.bool_)
    np.not_equal(labels3, 0, out=positive)
    flat = _few_nonzero(positive.reshape(-1), workspace.get("label_nonzero_words", (labels3.size // 8,), np.bool_),
                        SPARSE_FRACTION * labels3.size)
    if flat is None:
        return DenseLabels(labels3, positive, owner, workspace, shape, axis)
    values = labels3.reshape(-1)[flat]
    if not ((values > 0) & np.isfinite(values)).all():
        raise bad_label_values(owner, labels3, (labels3 != 0) & ~((labels3 > 0) & np.isfinite(labels3)), shape, axis)
    return SparseLabels(flat, values, labels3.shape, labels3)


_OCTET = np.arange(8)


def _few_nonzero(mask, words, limit):
    """``np.flatnonzero(mask)`` of a 1-D contiguous bool array if it has at most ``limit`` True entries, else None.

    Scans 8 bytes at a time (as uint64 words, into the bool buffer ``words`` of
    size ``mask.size // 8``), then expands only the non-zero words: about 25 %
    faster than a count followed by ``np.flatnonzero`` at 3 positives per 1000
    entries, and no array of size ``mask.size`` is allocated.
    """
    if mask.size % 8:
        return np.flatnonzero(mask) if np.count_nonzero(mask) <= limit else None
    np.not_equal(mask.view(np.uint64), 0, out=words)
    if np.count_nonzero(words) > limit:         # each non-zero word holds at least one True
        return None
    hit = np.flatnonzero(words)
    flat = (hit[:, None] * 8 + _OCTET)[mask.reshape(-1, 8)[hit]]
    return flat if len(flat) <= limit else None


def first_bad_index(indices: ArrayLike, num_classes: float) -> int | None:
    """Flat position of the first entry of ``indices`` that is not a class index in [0, C-1] or -1, else None.

    Shared by the indices label format and :mod:`.hdf5_labels`.
    """
    indices = np.asarray(indices)
    good = np.isfinite(indices) & (indices == np.floor(indices)) & (indices >= -1) & (indices < num_classes)
    if good.all():
        return None
    return int(np.flatnonzero(~good)[0])


def first_duplicate_index(indices: ArrayLike, axis: int = -1) -> tuple[tuple[int, ...], int] | None:
    """(sample position, class) of the first class index listed twice along ``axis`` (padding -1 aside), else None."""
    ordered = np.sort(np.moveaxis(np.asarray(indices), axis, -1), axis=-1)
    duplicate = (ordered[..., 1:] == ordered[..., :-1]) & (ordered[..., 1:] >= 0)
    if not duplicate.any():
        return None
    where = tuple(int(v) for v in np.argwhere(duplicate)[0])
    return where[:-1], int(ordered[where])


def index_label_form(indices: ArrayLike, weights: ArrayLike | None, shape3: Sequence[int], owner: str,
                     axis: int) -> SparseLabels:
    """Labels given as class indices (padded with -1) along the class axis, plus optional weights.

    ``shape3`` is the scores' (O, C, I) and ``axis`` their class axis.
    Indices with weight 0 are dropped: they are not labels, so they do not count in M.
    """
    outer, classes, inner = shape3
    indices = np.asarray(indices)
    idx3 = indices.reshape(outer, -1, inner)
    bad = first_bad_index(idx3, classes)
    if bad is not None:
        value = idx3.reshape(-1)[bad].item()
        raise MultilabelLossError("%s: label index %r at %s is invalid; expected integers in [0, C-1] = [0, %d], "
                                  "or -1 for padding"
                                  % (owner, value, position(indices.shape, axis, bad, "labels", "slot"), classes - 1))
    idx3 = idx3.astype(np.int64)
    duplicate = first_duplicate_index(idx3, axis=1)
    if duplicate is not None:
        (o, i), value = duplicate
        k = int(np.flatnonzero(idx3[o, :, i] == value)[1])
        raise MultilabelLossError("%s: label index %d appears twice in one sample, at %s; expected distinct class "
                                  "indices" % (owner, value, position(indices.shape, axis,
                                                                      (o * idx3.shape[1] + k) * inner + i,
                                                                      "labels", "slot")))
    if weights is None:
        values = np.ones(idx3.shape, np.float64)
    else:
        values = np.asarray(weights, np.float64).reshape(idx3.shape)
        if not (np.isfinite(values) & (values >= 0)).all():
            raise bad_label_values(owner, values, ~(np.isfinite(values) & (values >= 0)), np.shape(weights), axis,
                                   "label_weights", "slot")
    keep = (idx3 >= 0) & (values != 0)
    sample_o, _, sample_i = np.nonzero(keep)
    flat = (sample_o * classes + idx3[keep]) * inner + sample_i
    order = np.argsort(flat, kind="stable")
    return SparseLabels(flat[order], values[keep][order], shape3)


def multi_hot_positions(rows: np.ndarray, owner: str, shape: Sequence[int], axis: int, workspace: Workspace,
                        blob: str = "labels") -> np.ndarray:
    """Flat positions of the ones in 0/1 labels viewed as (samples, C) rows; raise for any other value.

    ``shape`` and ``axis`` are the scores', for the error message (ZLPR and the two-way loss). The
    non-zeros are found through a bool mask (:func:`_few_nonzero`): ``np.flatnonzero`` of a float
    array is some 30 times slower.
    """
    nonzero = workspace.get("label_nonzero", rows.shape, np.bool_)
    np.not_equal(rows, 0, out=nonzero)              # NaN is non-zero too
    flat = _few_nonzero(nonzero.reshape(-1), workspace.get("label_nonzero_words", (rows.size // 8,), np.bool_),
                        rows.size)
    assert flat is not None                         # the limit is every entry
    values = rows.reshape(-1)[flat]
    if not (values == 1).all():
        at = int(flat[np.flatnonzero(values != 1)[0]])
        classes = rows.shape[1]
        shape = tuple(shape)
        axis %= len(shape)
        inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
        sample, c = divmod(at, classes)
        o, i = divmod(sample, inner)
        raise MultilabelLossError("%s: %s must be 0 or 1 (multi-hot), found %r at %s"
                                  % (owner, blob, values[values != 1][0].item(),
                                     position(shape, axis, (o * classes + c) * inner + i, blob)))
    return flat
