"""Label bottoms of the losses: shape checks, validation, and the dense, sparse and index label forms. No Caffe import."""
import numpy as np

from .common import _first_bad, _row_sum
from .params import MultilabelLossError

# Dense labels with at most this fraction of non-zeros are handled sparsely (measured
# break-even on 2 cores: 2 to 3 % non-zeros at 64 x 17000, 256 x 1000 and 32 x 21 x 14 x 14).
SPARSE_FRACTION = 1.0 / 40


def check_label_shapes(options, scores_shape, labels_shape, weights_shape=None, blob="labels"):
    """Raise unless the label bottoms fit the scores (shared by the core and the layers' reshape)."""
    owner, scores_shape, labels_shape = options.owner, tuple(scores_shape), tuple(labels_shape)
    if getattr(options, "label_format", "dense") == "dense":
        if labels_shape != scores_shape:
            raise MultilabelLossError("%s: %s shape %s does not match scores shape %s"
                                      % (owner, blob, labels_shape, scores_shape))
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


def _bad_labels(owner, array, bad, blob="labels"):
    """The error for labels that are negative, NaN or infinite (error path only)."""
    index, value = _first_bad(array, bad)
    return MultilabelLossError("%s: %s must be finite and >= 0 (0 = negative), found %r at index %s of the "
                               "(O, C, I) view" % (owner, blob, value, index))


class _DenseTargets:
    """Labels stored as an (O, C, I) array."""

    def __init__(self, labels3, positive_mask, owner, workspace):
        self.labels3 = labels3
        if not labels3.min() >= 0:
            raise _bad_labels(owner, labels3, ~(labels3 >= 0))
        self.label_sum = _row_sum(labels3)
        if not np.isfinite(self.label_sum).all():
            raise _bad_labels(owner, labels3, ~np.isfinite(labels3))
        self.count = positive_mask.view(np.uint8).sum(axis=1, keepdims=True, dtype=np.int64).astype(np.float64)
        self.workspace = workspace

    def dot(self, a3):
        """sum_c y_c a_c for each sample, float64 (O, 1, I)."""
        return np.einsum("oci,oci->oi", self.labels3, a3).astype(np.float64)[:, None, :]

    def subtract_scaled(self, out3, k):
        """out3 -= k * y, with k of shape (O, 1, I)."""
        scratch = self.workspace.get("scaled_labels", out3.shape, out3.dtype)
        np.multiply(self.labels3, k.astype(out3.dtype), out=scratch)
        np.subtract(out3, scratch, out=out3)


class _SparseTargets:
    """Non-zero labels as flat positions into the (O, C, I) scores, with their values."""

    def __init__(self, flat, values, shape):
        outer, classes, inner = shape
        self.flat = flat
        self.values = values.astype(np.float64)
        self.sample = (flat // (classes * inner)) * inner + flat % inner
        self.samples_shape = (outer, 1, inner)
        samples = outer * inner
        self.count = np.bincount(self.sample, minlength=samples).astype(np.float64).reshape(self.samples_shape)
        self.label_sum = np.bincount(self.sample, self.values, minlength=samples).astype(np.float64).reshape(
            self.samples_shape)

    def dot(self, a3):
        gathered = a3.reshape(-1)[self.flat] * self.values
        return np.bincount(self.sample, gathered, minlength=self.count.size).astype(np.float64).reshape(
            self.samples_shape)

    def subtract_scaled(self, out3, k):
        flat_out = out3.reshape(-1)
        flat_out[self.flat] -= (k.reshape(-1)[self.sample] * self.values).astype(out3.dtype)


def _dense_targets(labels3, owner, workspace):
    positive = workspace.get("label_nonzero", labels3.shape, np.bool_)
    np.not_equal(labels3, 0, out=positive)
    nonzero = np.count_nonzero(positive)
    if nonzero > SPARSE_FRACTION * labels3.size:
        return _DenseTargets(labels3, positive, owner, workspace)
    flat = np.flatnonzero(positive)
    values = labels3.reshape(-1)[flat]
    if not ((values > 0) & np.isfinite(values)).all():
        raise _bad_labels(owner, labels3, (labels3 != 0) & ~((labels3 > 0) & np.isfinite(labels3)))
    return _SparseTargets(flat, values, labels3.shape)


def _index_targets(indices, weights, shape3, owner):
    """Labels given as class indices (padded with -1) along the class axis, plus optional weights."""
    outer, classes, inner = shape3
    indices = np.asarray(indices)
    idx3 = indices.reshape(outer, -1, inner)
    if not np.isfinite(idx3).all() or (idx3 != np.floor(idx3)).any() or (idx3 < -1).any() or (idx3 >= classes).any():
        bad = ~(np.isfinite(idx3) & (idx3 == np.floor(idx3)) & (idx3 >= -1) & (idx3 < classes))
        index, value = _first_bad(idx3, bad)
        raise MultilabelLossError("%s: label index %r at index %s of the (O, K, I) view is invalid; expected "
                                  "integers in [0, C-1] = [0, %d], or -1 for padding" % (owner, value, index, classes - 1))
    idx3 = idx3.astype(np.int64)
    ordered = np.sort(idx3, axis=1)
    duplicate = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if duplicate.any():
        o, k, i = np.argwhere(duplicate)[0]
        raise MultilabelLossError("%s: label index %d appears twice in sample %s (labels[%d, :, %d] of the (O, K, I) "
                                  "view); expected distinct class indices"
                                  % (owner, ordered[o, k + 1, i], (int(o), int(i)), o, i))
    if weights is None:
        values = np.ones(idx3.shape, np.float64)
    else:
        values = np.asarray(weights, np.float64).reshape(idx3.shape)
        if not (np.isfinite(values) & (values >= 0)).all():
            raise _bad_labels(owner, values, ~(np.isfinite(values) & (values >= 0)), "label_weights")
    keep = (idx3 >= 0) & (values != 0)
    o, _, i = np.nonzero(keep)
    flat = (o * classes + idx3[keep]) * inner + i
    order = np.argsort(flat, kind="stable")
    return _SparseTargets(flat[order], values[keep][order], shape3)
