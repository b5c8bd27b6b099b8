"""Multi-label sigmoid cross-entropy and focal loss: the numpy core. No Caffe import."""
import math
from dataclasses import dataclass

import numpy as np

from .common import (Workspace, _first_bad, _float_view, _normalizer, _row_sum, _scores_not_finite, check_fresh,
                     output_view, position)
from .labels import check_label_shapes
from .params import MultilabelLossError, SigmoidOptions


@dataclass
class SigmoidContext:
    """What :func:`sigmoid_multilabel_backward` needs from the forward pass.

    The plain-BCE path keeps tanh(x/2) and the targets (the gradient p - y is
    formed in backward); the general path keeps the elementwise gradient.
    """
    normalizer: float
    shape: tuple
    workspace: Workspace = None      # the forward pass's workspace and its generation (see check_fresh)
    generation: int = 0
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


def _check_targets(y, owner, ignore_label, shape, axis):
    if not (y.min() >= 0 and y.max() <= 1):
        flat, value = _first_bad(y, ~((y >= 0) & (y <= 1)))
        raise MultilabelLossError("%s: targets must be in [0, 1]%s, found %r at %s"
                                  % (owner, "" if ignore_label is None else
                                     " or equal to ignore_label %r" % ignore_label, value,
                                     position(shape, axis, flat, "targets")))


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
    opts = SigmoidOptions.resolve(options, "sigmoid_multilabel_forward", kwargs)
    owner = opts.owner
    ws = workspace if workspace is not None else Workspace()
    generation = ws.begin()
    x = _float_view(scores, owner, "scores", opts.axis)
    check_label_shapes(opts, np.shape(scores), np.shape(targets), blob="targets")
    y = _float_view(targets, owner, "targets", opts.axis, np.shape(scores))
    outer, classes, inner = x.shape
    opts.check_class_count(classes)

    plain = (opts.gamma == 0 and opts.alpha < 0 and opts.class_weight is None and opts.pos_weight == 1.0
             and opts.ignore_label is None)
    if plain:
        _check_targets(y, owner, None, np.shape(scores), opts.axis)
        total, abs_sum, tanh_half = _plain_bce(x, y, ws)
        if not math.isfinite(abs_sum):
            raise _scores_not_finite(owner, scores, opts.axis)
        ctx = SigmoidContext(_normalizer(opts.normalization, outer, classes * inner, x.size), np.shape(scores),
                             tanh_half=tanh_half, targets=y)
    else:
        total, ctx = _general_sigmoid(x, y, opts, ws, np.shape(scores))
    ctx.workspace, ctx.generation = ws, generation
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
    _check_targets(y, owner, opts.ignore_label, shape, opts.axis)
    if not (math.isfinite(x.max()) and math.isfinite(x.min())):
        raise _scores_not_finite(owner, x.reshape(shape), opts.axis)

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
    """Gradient of ``loss_weight`` times the forward loss: dl/dx * loss_weight / normalizer.

    ``ctx`` must be the latest forward on its workspace; ``out``, if given, a
    C-contiguous array of the scores' shape and dtype, filled in place.
    """
    owner = "sigmoid_multilabel_backward"
    check_fresh(ctx, owner)
    k = loss_weight / ctx.normalizer
    work = ctx.grad if ctx.grad is not None else ctx.tanh_half
    out, out3 = output_view(out, ctx.shape, work.shape, work.dtype, owner)
    if ctx.grad is not None:
        np.multiply(ctx.grad, work.dtype.type(k), out=out3)
    else:                                           # (p - y) k with p = (1 + tanh(x/2)) / 2
        np.multiply(ctx.tanh_half, work.dtype.type(0.5), out=out3)
        np.add(out3, work.dtype.type(0.5), out=out3)
        np.subtract(out3, ctx.targets, out=out3)
        np.multiply(out3, work.dtype.type(k), out=out3)
    return out


def sigmoid_probabilities(ctx, out=None):
    """p = sigmoid(x), from a forward context (``out``: as in the backward)."""
    owner = "sigmoid_probabilities"
    check_fresh(ctx, owner)
    work = ctx.probabilities if ctx.probabilities is not None else ctx.tanh_half
    out, out3 = output_view(out, ctx.shape, work.shape, work.dtype, owner)
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
