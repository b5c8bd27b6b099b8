"""Multi-label softmax cross-entropy (Mahajan et al. 2018): the numpy core. No Caffe import."""
import math
from dataclasses import dataclass

import numpy as np

from .common import Workspace, _float_view, _normalizer, _row_sum, _scores_not_finite
from .labels import _dense_targets, _index_targets, check_label_shapes
from .params import MultilabelLossError, SoftmaxOptions

# Range of per-sample maximum scores for which softmax skips the max shift.
SAFE_UNSHIFTED_MAX = (-30.0, 60.0)


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
