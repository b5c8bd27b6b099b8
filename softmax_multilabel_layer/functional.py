"""Pure-numpy core of the multi-label losses. No Caffe import.

Shapes. ``scores`` has a class axis ``axis`` of size C. Every position along
the other axes is one *sample*: scores of shape N x C give N samples, and
N x C x H x W with axis 1 give N*H*W samples (one softmax per pixel). The core
views arrays as (O, C, I): O = prod(shape[:axis]), I = prod(shape[axis+1:]).

Each loss comes as a forward function that returns ``(loss, ctx)`` and a
backward function that turns ``ctx`` into d loss / d scores. Both work in
float32 and float64 and never write to their inputs. A :class:`Workspace`
passed to forward keeps the N x C buffers alive between calls, so a training
loop allocates them once.
"""
import math
from dataclasses import dataclass

import numpy as np

from .params import MultilabelLossError, SigmoidOptions, SoftmaxOptions

# Dense labels with at most this fraction of non-zeros are handled sparsely (measured
# break-even on 2 cores: 2 to 3 % non-zeros at 64 x 17000, 256 x 1000 and 32 x 21 x 14 x 14).
SPARSE_FRACTION = 1.0 / 40
# Range of per-sample maximum scores for which softmax skips the max shift.
SAFE_UNSHIFTED_MAX = (-30.0, 60.0)


class Workspace:
    """Named scratch arrays, reallocated only when a shape or dtype changes."""

    def __init__(self):
        self._buffers = {}

    def get(self, name, shape, dtype):
        buf = self._buffers.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._buffers[name] = buf
        return buf


# ---------------------------------------------------------------- helpers

def class_axis_shape(shape, axis, owner, blob="scores"):
    """Return (O, C, I) for ``shape`` split around ``axis``; raise if the axis is out of range."""
    ndim = len(shape)
    if ndim < 1 or not -ndim <= axis < ndim:
        raise MultilabelLossError("%s: axis %d is out of range for %s of shape %s (%d axes); expected -%d <= axis < %d"
                                  % (owner, axis, blob, tuple(shape), ndim, ndim, ndim))
    axis %= ndim
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1:])
    return outer, int(shape[axis]), inner


def _float_view(array, owner, blob, axis):
    array = np.asarray(array)
    if blob != "scores" and (array.dtype.kind in "biu"):
        array = array.astype(np.float64)      # integer or boolean labels from numpy users
    if array.dtype not in (np.float32, np.float64):
        raise MultilabelLossError("%s: %s must be float32 or float64, got %s" % (owner, blob, array.dtype))
    if array.size == 0:
        raise MultilabelLossError("%s: %s is empty (shape %s)" % (owner, blob, array.shape))
    return array.reshape(class_axis_shape(array.shape, axis, owner, blob))


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


def _first_bad(array, bad):
    """Index tuple and value of the first element where ``bad`` holds (error path only)."""
    where = np.argwhere(bad)[0]
    return tuple(int(i) for i in where), array[tuple(where)].item()


def _scores_not_finite(owner, scores):
    index, value = _first_bad(scores, ~np.isfinite(scores))
    return MultilabelLossError("%s: scores are not finite (found %r at index %s); training has probably "
                               "diverged: lower the learning rate or check the layers below" % (owner, value, index))


def _row_sum(a3):
    """Sum over the class axis of an (O, C, I) array, as float64 of shape (O, 1, I).

    einsum is several times faster than np.sum here and, unlike a BLAS
    matrix-vector product, runs on one thread: its result cannot depend on the
    thread count, and it does not compete with Caffe's BLAS threads for cores.
    """
    return np.einsum("oci->oi", a3).astype(np.float64)[:, None, :]


def _normalizer(mode, outer, inner, valid_count):
    if mode == "batch_size":
        return float(outer)
    if mode == "full":
        return float(outer * inner)
    if mode == "valid":
        return float(max(1, valid_count))
    return 1.0


# ---------------------------------------------------------------- targets

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


# ---------------------------------------------------------------- softmax

@dataclass
class SoftmaxContext:
    """What :func:`softmax_multilabel_backward` needs from the forward pass."""
    exp_shifted: np.ndarray      # exp(s - m), (O, C, I), m = max_c s or 0
    exp_sum: np.ndarray          # sum_c exp(s - m), float64 (O, 1, I)
    target_total: np.ndarray     # T = sum_c t_c, float64 (O, 1, I)
    label_scale: np.ndarray      # a: t = a * y + b
    label_offset: np.ndarray     # b
    targets: object
    normalizer: float
    shape: tuple


def softmax_multilabel_forward(scores, labels, label_weights=None, options=None, workspace=None, **kwargs):
    r"""Multi-label softmax cross-entropy (Mahajan et al. 2018), forward pass.

    For each sample with scores s (C classes), p = softmax(s) and labels y >= 0
    (binary, or real values), the targets are t = a y + b:

    * ``normalize_targets="count"``: a = 1/M, M = number of non-zero labels,
      so binary labels give t = 1/M on the M positives;
    * ``"sum"``: a = 1/sum(y); ``"none"``: a = 1;
    * ``label_smoothing`` eps: a <- (1 - eps) a and b = eps / C;
    * a sample with no positive label gets t = 0 (it adds 0 and gets no gradient).

    The per-sample loss is L = -sum_c t_c log p_c = T lse(s) - sum_c t_c s_c,
    with T = sum_c t_c, evaluated as T log(sum_c exp(s_c - m)) - sum_c t_c (s_c - m)
    with m = max_c s_c, finite for any finite scores. The returned loss is
    sum over samples of L divided by the normalizer: ``"batch_size"`` O,
    ``"full"`` O*I, ``"valid"`` the number of samples with a positive (at least
    1), ``"none"`` 1.

    With ``label_format="indices"`` the labels are class indices padded with -1,
    shaped like the scores with K slots on the class axis; ``label_weights``
    (same shape) gives each index a real-valued label (default 1).

    Returns ``(loss, ctx)``; pass ``ctx`` to :func:`softmax_multilabel_backward`.
    """
    opts = options if options is not None else SoftmaxOptions.from_kwargs("softmax_multilabel_forward", kwargs)
    owner = opts.owner
    ws = workspace if workspace is not None else Workspace()
    s3 = _float_view(scores, owner, "scores", opts.axis)
    outer, classes, inner = s3.shape
    if opts.label_format == "dense" and label_weights is not None:
        raise MultilabelLossError("%s: label_weights are only used with label_format \"indices\"" % owner)
    check_label_shapes(opts, np.shape(scores), np.shape(labels), None if label_weights is None else np.shape(label_weights))
    if opts.label_format == "dense":
        targets = _dense_targets(_float_view(labels, owner, "labels", opts.axis), owner, ws)
    else:
        targets = _index_targets(labels, label_weights, s3.shape, owner)

    # Global max and min: they catch NaN and +-inf, and usually settle the shift below.
    high, low = s3.max(), s3.min()
    if not (math.isfinite(high) and math.isfinite(low)):
        raise _scores_not_finite(owner, np.asarray(scores))
    shifted = ws.get("exp_shifted", s3.shape, s3.dtype)
    # The shift by m = max_c s only guards exp against overflow and against
    # losing the largest term. When every sample's max lies in [-30, 60],
    # exp(s) cannot overflow (C e^60 << 3e38) and the largest term is >= e^-30,
    # so the shift (a pass over N x C) is skipped; the result is the same to
    # rounding. All scores in [-30, 60] is the cheap sufficient test.
    safe_low, safe_high = SAFE_UNSHIFTED_MAX
    smax = None if low >= safe_low else s3.max(axis=1, keepdims=True)
    if high <= safe_high and (smax is None or smax.min() >= safe_low):
        base = s3
    else:
        if smax is None:
            smax = s3.max(axis=1, keepdims=True)
        base = np.subtract(s3, smax, out=shifted)
    label_dot = targets.dot(base)                   # sum_c y_c b_c, with b = s or s - m
    eps = opts.label_smoothing
    base_sum = _row_sum(base) if eps else 0.0       # sum_c b_c
    np.exp(base, out=shifted)
    exp_sum = _row_sum(shifted)                     # log(exp_sum) = lse(s) - (m or 0)

    positive = targets.count > 0
    if opts.normalize_targets == "count":
        scale = np.divide(1.0, targets.count, out=np.zeros_like(targets.count), where=positive)
    elif opts.normalize_targets == "sum":
        scale = np.divide(1.0, targets.label_sum, out=np.zeros_like(targets.label_sum), where=positive)
    else:
        scale = positive.astype(np.float64)
    scale *= 1.0 - eps
    offset = positive * (eps / classes)
    total = scale * targets.label_sum + offset * classes
    per_sample = total * np.log(exp_sum) - scale * label_dot - offset * base_sum
    np.maximum(per_sample, 0.0, out=per_sample)     # exact value is >= 0 (t >= 0, p <= 1); drop rounding
    normalizer = _normalizer(opts.normalization, outer, inner, int(np.count_nonzero(positive)))
    loss = float(per_sample.sum() / normalizer)
    if not math.isfinite(loss):
        raise MultilabelLossError("%s: the loss is not finite (%r) although scores and labels are; labels too "
                                  "large for %s?" % (owner, loss, s3.dtype))
    return loss, SoftmaxContext(shifted, exp_sum, total, scale, offset, targets, normalizer, np.shape(scores))


def softmax_multilabel_backward(ctx, loss_weight=1.0, out=None):
    r"""Gradient of ``loss_weight`` times the forward loss with respect to the scores.

    dL/ds_c = (T p_c - t_c) * loss_weight / normalizer, with T = sum_c t_c;
    for binary labels and ``"count"`` that is p_c - 1/M on the positives and
    p_c elsewhere. Samples with no positive get 0. Each sample's gradient sums
    to 0 over the classes. ``out`` (shaped like the scores) is filled if given.
    """
    e = ctx.exp_shifted
    if out is None:
        out = np.empty(ctx.shape, e.dtype)
    out3 = out.reshape(e.shape)
    k = loss_weight / ctx.normalizer
    np.multiply(e, (k * ctx.target_total / ctx.exp_sum).astype(e.dtype), out=out3)
    ctx.targets.subtract_scaled(out3, k * ctx.label_scale)
    if ctx.label_offset.any():
        np.subtract(out3, (k * ctx.label_offset).astype(e.dtype), out=out3)
    return out


def softmax_probabilities(ctx, out=None):
    """p = softmax(s) along the class axis, from a forward context."""
    e = ctx.exp_shifted
    if out is None:
        out = np.empty(ctx.shape, e.dtype)
    np.multiply(e, (1.0 / ctx.exp_sum).astype(e.dtype), out=out.reshape(e.shape))
    return out


def softmax_multilabel_loss(scores, labels, label_weights=None, loss_weight=1.0, **kwargs):
    """Convenience: ``(loss, d loss / d scores)`` in one call."""
    loss, ctx = softmax_multilabel_forward(scores, labels, label_weights, **kwargs)
    return loss, softmax_multilabel_backward(ctx, loss_weight)


# ---------------------------------------------------------------- sigmoid

@dataclass
class SigmoidContext:
    """What :func:`sigmoid_multilabel_backward` needs from the forward pass.

    The plain-BCE path keeps tanh(x/2) and the targets (the gradient p - y is
    formed in backward); the general path keeps the elementwise gradient.
    """
    normalizer: float
    shape: tuple
    tanh_half: np.ndarray = None     # plain path: tanh(x / 2), p = (1 + tanh(x/2)) / 2
    targets: np.ndarray = None       # plain path: y, (O, C, I)
    grad: np.ndarray = None          # general path: d(sum of elementwise losses) / dx
    probabilities: np.ndarray = None  # general path: sigmoid(x)


def _sum_all(a3):
    """Sum of all elements of an (O, C, I) array, as a Python float (row sums, then float64)."""
    outer = a3.shape[0]
    return float(_row_sum(a3.reshape(outer, -1, 1)).sum())


def _plain_bce(x, y, ws):
    """Sum over elements of softplus(x) - x y, and the context for p - y, with no N x C temporaries.

    softplus(x) - x y = log1p(exp(-|x|)) + (x + |x|) / 2 - x y, summed term by term.
    """
    buf = ws.get("sigmoid_work", x.shape, x.dtype)
    np.abs(x, out=buf)
    abs_sum = _sum_all(buf)
    np.negative(buf, out=buf)
    np.exp(buf, out=buf)
    np.log1p(buf, out=buf)
    total = _sum_all(buf) + 0.5 * (_sum_all(x) + abs_sum)
    outer = x.shape[0]
    total -= float(np.einsum("ij,ij->i", x.reshape(outer, -1), y.reshape(outer, -1)).sum(dtype=np.float64))
    np.multiply(x, 0.5, out=buf)
    np.tanh(buf, out=buf)
    return total, abs_sum, buf


def _check_targets(y, owner, ignore_label):
    if not (y.min() >= 0 and y.max() <= 1):
        index, value = _first_bad(y, ~((y >= 0) & (y <= 1)))
        raise MultilabelLossError("%s: targets must be in [0, 1]%s, found %r at index %s of the (O, C, I) view"
                                  % (owner, "" if ignore_label is None else
                                     " or equal to ignore_label %r" % ignore_label, value, index))


def sigmoid_multilabel_forward(scores, targets, options=None, workspace=None, **kwargs):
    r"""Multi-label sigmoid cross-entropy with positive/class weights and focal term.

    Per element, with p = sigmoid(x), target y in [0, 1] and softplus(z) = log(1 + e^z):

    * ce = pos_weight_c * y * softplus(-x) + (1 - y) * softplus(x)
      (= -[pos_weight_c y log p + (1 - y) log(1 - p)], finite for any finite x);
    * focal: p_t = p y + (1 - p)(1 - y), l = ce * (1 - p_t)^gamma;
    * alpha >= 0: l *= alpha y + (1 - alpha)(1 - y) (torchvision ``sigmoid_focal_loss``);
    * ``class_weight``: l *= class_weight_c;
    * entries whose target equals ``ignore_label`` give l = 0 and no gradient.

    Gradient per element, with q = 1 - p_t and w the alpha and class weights:
    dl/dx = w [gamma q^(gamma-1) (1 - 2y) p (1 - p) ce + q^gamma (pos_weight_c y (p - 1) + (1 - y) p)],
    which is p - y for plain BCE.

    The loss is sum(l) / normalizer: ``"batch_size"`` O (the size of the axes
    before the class axis), ``"full"`` the number of elements (as Caffe's
    SigmoidCrossEntropyLoss), ``"valid"`` the number of non-ignored elements
    (at least 1), ``"none"`` 1. Returns ``(loss, ctx)``.
    """
    opts = options if options is not None else SigmoidOptions.from_kwargs("sigmoid_multilabel_forward", kwargs)
    owner = opts.owner
    ws = workspace if workspace is not None else Workspace()
    x = _float_view(scores, owner, "scores", opts.axis)
    check_label_shapes(opts, np.shape(scores), np.shape(targets), blob="targets")
    y = _float_view(targets, owner, "targets", opts.axis)
    outer, classes, inner = x.shape
    opts.check_class_count(classes)

    plain = (opts.gamma == 0 and opts.alpha < 0 and opts.class_weight is None and opts.pos_weight == 1.0
             and opts.ignore_label is None)
    if plain:
        _check_targets(y, owner, None)
        total, abs_sum, tanh_half = _plain_bce(x, y, ws)
        if not math.isfinite(abs_sum):
            raise _scores_not_finite(owner, np.asarray(scores))
        ctx = SigmoidContext(_normalizer(opts.normalization, outer, classes * inner, x.size), np.shape(scores),
                             tanh_half=tanh_half, targets=y)
    else:
        total, ctx = _general_sigmoid(x, y, opts, ws, np.shape(scores))
    loss = total / ctx.normalizer
    if not math.isfinite(loss):
        raise MultilabelLossError("%s: the loss is not finite (%r) although scores and targets are" % (owner, loss))
    return loss, ctx


def _general_sigmoid(x, y, opts, ws, shape):
    """Weights, focal term and ignore_label, in workspace buffers (no per-iteration N x C allocations)."""
    owner = opts.owner
    outer, classes, inner = x.shape
    dtype = x.dtype

    def buf(name):
        return ws.get(name, x.shape, dtype)

    valid = None
    valid_count = x.size
    if opts.ignore_label is not None:
        valid = ws.get("valid", x.shape, np.bool_)
        np.not_equal(y, opts.ignore_label, out=valid)
        y = np.multiply(y, valid, out=buf("y"))        # ignored entries count as y = 0, then get weight 0
        valid_count = int(np.count_nonzero(valid))
    _check_targets(y, owner, opts.ignore_label)
    if not (math.isfinite(x.max()) and math.isfinite(x.min())):
        raise _scores_not_finite(owner, x)

    # softplus(x) = max(x, 0) + log1p(exp(-|x|)); p = exp(-softplus(-x)) and 1 - p = exp(-softplus(x)),
    # both with full relative precision in the tails.
    tmp, sp_pos, sp_neg, p, one_minus_p = buf("tmp"), buf("softplus_pos"), buf("softplus_neg"), buf("p"), buf("1-p")
    np.abs(x, out=tmp)
    np.negative(tmp, out=tmp)
    np.exp(tmp, out=tmp)
    np.log1p(tmp, out=tmp)
    np.maximum(x, 0, out=sp_pos)
    sp_pos += tmp
    np.subtract(sp_pos, x, out=sp_neg)
    np.exp(np.negative(sp_neg, out=p), out=p)
    np.exp(np.negative(sp_pos, out=one_minus_p), out=one_minus_p)

    pos_weight = opts.pos_weight
    if isinstance(pos_weight, tuple):
        pos_weight = np.asarray(pos_weight, dtype).reshape(1, classes, 1)
    not_y = np.subtract(1, y, out=buf("1-y"))
    weighted_y = np.multiply(y, pos_weight, out=buf("pos_weight*y"))
    ce = np.multiply(weighted_y, sp_neg, out=buf("ce"))
    ce += np.multiply(not_y, sp_pos, out=tmp)
    grad = np.multiply(not_y, p, out=buf("grad"))          # d ce / dx = (1 - y) p - pos_weight y (1 - p)
    grad -= np.multiply(weighted_y, one_minus_p, out=tmp)

    if opts.gamma > 0:
        q = np.multiply(y, one_minus_p, out=sp_pos)        # 1 - p_t = y (1 - p) + (1 - y) p
        q += np.multiply(not_y, p, out=tmp)
        dq = np.multiply(p, one_minus_p, out=tmp)           # d q / dx = (1 - 2y) p (1 - p)
        dq *= np.subtract(not_y, y, out=sp_neg)
        modulator = np.power(q, dtype.type(opts.gamma), out=sp_neg)
        if opts.gamma < 1:   # q^(gamma-1) is infinite at q = 0, where dq = 0: use a tiny floor there
            np.maximum(q, dtype.type(1e-30), out=q)
        dq *= np.power(q, dtype.type(opts.gamma - 1), out=q)
        dq *= ce
        dq *= dtype.type(opts.gamma)
        grad *= modulator
        grad += dq
        ce *= modulator
    weight = None                                         # alpha, class and ignore weights, built in tmp
    if opts.alpha >= 0:                                   # alpha y + (1 - alpha)(1 - y)
        weight = np.multiply(y, dtype.type(2 * opts.alpha - 1), out=tmp)
        weight += dtype.type(1 - opts.alpha)
    class_weight = None if opts.class_weight is None else np.asarray(opts.class_weight, dtype).reshape(1, classes, 1)
    for factor in (class_weight, valid):
        if factor is None:
            continue
        if weight is None:
            weight = tmp
            np.copyto(weight, factor)
        else:
            weight *= factor
    if weight is not None:
        ce *= weight
        grad *= weight
    normalizer = _normalizer(opts.normalization, outer, classes * inner, valid_count)
    return float(ce.sum(dtype=np.float64)), SigmoidContext(normalizer, shape, grad=grad, probabilities=p)


def sigmoid_multilabel_backward(ctx, loss_weight=1.0, out=None):
    """Gradient of ``loss_weight`` times the forward loss: dl/dx * loss_weight / normalizer."""
    k = loss_weight / ctx.normalizer
    work = ctx.grad if ctx.grad is not None else ctx.tanh_half
    if out is None:
        out = np.empty(ctx.shape, work.dtype)
    out3 = out.reshape(work.shape)
    if ctx.grad is not None:
        np.multiply(ctx.grad, work.dtype.type(k), out=out3)
    else:                                           # (p - y) k with p = (1 + tanh(x/2)) / 2
        np.multiply(ctx.tanh_half, work.dtype.type(0.5), out=out3)
        np.add(out3, work.dtype.type(0.5), out=out3)
        np.subtract(out3, ctx.targets, out=out3)
        np.multiply(out3, work.dtype.type(k), out=out3)
    return out


def sigmoid_probabilities(ctx, out=None):
    """p = sigmoid(x), from a forward context."""
    work = ctx.probabilities if ctx.probabilities is not None else ctx.tanh_half
    if out is None:
        out = np.empty(ctx.shape, work.dtype)
    out3 = out.reshape(work.shape)
    if ctx.probabilities is not None:
        np.copyto(out3, ctx.probabilities)
    else:                                           # p = (1 + tanh(x/2)) / 2, written straight into out
        np.multiply(ctx.tanh_half, work.dtype.type(0.5), out=out3)
        out3 += work.dtype.type(0.5)
    return out


def sigmoid_multilabel_loss(scores, targets, loss_weight=1.0, **kwargs):
    """Convenience: ``(loss, d loss / d scores)`` in one call."""
    loss, ctx = sigmoid_multilabel_forward(scores, targets, **kwargs)
    return loss, sigmoid_multilabel_backward(ctx, loss_weight)
