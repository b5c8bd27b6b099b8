"""Multi-label softmax cross-entropy (Mahajan et al., ECCV 2018): the numpy core. No Caffe import.

For one sample with scores s (C classes), p = softmax(s) and labels y >= 0, the
targets are t = a y + b (a and b set by ``normalize_targets`` and
``label_smoothing``) and the loss is L = -sum_c t_c log p_c. See
:func:`softmax_multilabel_forward`.
"""
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax_multilabel_layer.losses.common import (
    Workspace,
    check_fresh,
    float_view,
    loss_normalizer,
    output_view,
    row_sum,
    scores_not_finite_error,
)
from softmax_multilabel_layer.losses.labels import (
    DenseLabels,
    SparseLabels,
    check_label_shapes,
    check_label_sums,
    dense_label_form,
    index_label_form,
)
from softmax_multilabel_layer.params import MultilabelLossError, SoftmaxOptions

# Range of the per-sample maximum score m in which the exponentials are taken of the scores themselves,
# skipping the pass that forms s - m (sparse labels, no smoothing). Low bound 0: exp(s_c) then underflows no
# sooner than exp(s_c - m), so no precision is lost. High bound 60: exp(m) and C exp(m) stay far below the
# float32 maximum 3.4e38 (C up to 1e12).
UNSHIFTED_MAX_RANGE = (0.0, 60.0)


@dataclass
class SoftmaxContext:
    """What :func:`softmax_multilabel_backward` needs from the forward pass.

    Its arrays live in the forward pass's :class:`Workspace`: the next forward
    on that workspace makes this context stale (backward then raises).
    """
    exps: np.ndarray             # e = exp(s - u), (O, C, I), u = m = max_c s, or u = 0 (see UNSHIFTED_MAX_RANGE)
    top_exp: np.ndarray          # e at each sample's argmax, exp(m - u), float64 (O, 1, I); 1 when u = m
    rest: np.ndarray             # r = sum over the other classes of exp(s_c - m), float64 (O, 1, I)
    target_total: np.ndarray     # T = sum_c t_c, float64 (O, 1, I)
    label_scale: np.ndarray      # a, in t = a * y + b, float64 (O, 1, I)
    label_offset: np.ndarray     # b
    labels: DenseLabels | SparseLabels   # the label form
    normalizer: float
    shape: tuple                 # the scores' shape
    shape3: tuple                # (O, C, I)
    top: np.ndarray              # flat (O, C, I) position of each sample's argmax, in sample order
    workspace: Workspace
    generation: int


def _argmax_positions(s3, workspace):
    """Flat positions in the (O, C, I) array of each sample's first maximum, ordered by sample (o, i)."""
    outer, classes, inner = s3.shape
    if inner == 1:
        return np.arange(outer) * classes + s3.reshape(outer, classes).argmax(axis=1)
    transposed = workspace.get("scores_transposed", (outer, inner, classes), s3.dtype)
    np.copyto(transposed, s3.transpose(0, 2, 1))    # argmax along a strided axis is many times slower
    arg = transposed.argmax(axis=2)
    return ((np.arange(outer)[:, None] * classes + arg) * inner + np.arange(inner)).reshape(-1)


def softmax_multilabel_forward(scores: ArrayLike, labels: ArrayLike, label_weights: ArrayLike | None = None,
                               options: SoftmaxOptions | None = None, workspace: Workspace | None = None,
                               **kwargs: Any) -> tuple[float, SoftmaxContext]:
    r"""Multi-label softmax cross-entropy, forward pass.

    For each sample with scores :math:`s` (C classes), :math:`p = \mathrm{softmax}(s)`
    and labels :math:`y \ge 0` (binary, or real values), the targets are
    :math:`t = a y + b`:

    * ``normalize_targets="count"``: :math:`a = 1/M`, M = number of non-zero
      labels, so binary labels give t = 1/M on the M positives (Mahajan et al. 2018);
    * ``"sum"``: :math:`a = 1/\sum_c y_c`; ``"none"``: a = 1;
    * ``label_smoothing`` :math:`\varepsilon`: :math:`a \leftarrow (1-\varepsilon) a`, :math:`b = \varepsilon / C`;
    * a sample with no non-zero label gets t = 0: it adds 0 and gets no gradient.

    .. math::
        L = -\sum_c t_c \log p_c = T \log(1 + r) - \sum_c t_c (s_c - m),
        \quad T = \sum_c t_c,\ m = \max_c s_c,\ r = \sum_{c \ne \arg\max} e^{s_c - m}

    Every term is >= 0 in floating point too, so the loss is never negative
    without any clamp, and ``log1p(r)`` keeps full relative precision on
    confident samples (r -> 0), where ``log(sum exp)`` would round to 0.
    The returned loss is the sum of L over samples divided by the normalizer:
    ``"batch_size"`` O, ``"full"`` O*I, ``"valid"`` the number of samples with a
    non-zero label (at least 1), ``"none"`` 1.

    Args:
        scores: float32 or float64 array with a class axis ``axis`` of size C.
        labels: dense labels shaped like ``scores`` (trailing axes of size 1
            may differ), finite and >= 0; or with ``label_format="indices"``
            class indices padded with -1, shaped like the scores with K slots on
            the class axis. Integer and bool arrays are accepted.
        label_weights: ``"indices"`` only: the label value of each index
            (default 1), shaped like ``labels``; indices of weight 0 are ignored.
        options: a :class:`SoftmaxOptions`; or give the options as keywords
            (``normalize_targets``, ``normalization``, ``axis``,
            ``label_smoothing``, ``label_format``), not both.
        workspace: a :class:`Workspace` whose buffers are reused across calls.

    Shape:
        - scores: (N, C) or (N, C, d1, ...) with ``axis=1``; in general any
          shape, viewed as (O, C, I) around ``axis``. Each of the O*I positions
          is one sample.
        - labels: like scores (dense), or C replaced by K (indices).

    Returns:
        ``(loss, ctx)``: the loss as a Python float, and a
        :class:`SoftmaxContext` for :func:`softmax_multilabel_backward` and
        :func:`softmax_probabilities`, valid until the next forward pass on the
        same workspace.

    Raises:
        MultilabelLossError: for bad options, shapes, dtypes, non-finite scores,
            labels that are negative, not finite or whose sum overflows, and
            invalid or repeated indices.

    Example::

        >>> loss, ctx = softmax_multilabel_forward(np.array([[1, 7, 0, 0, 2.]]), np.array([[1, 0, 0, 0, 1.]]))
        >>> round(loss, 6)
        5.51098
        >>> softmax_multilabel_backward(ctx).round(3)
        array([[-0.498,  0.989,  0.001,  0.001, -0.493]])
    """
    opts = SoftmaxOptions.resolve(options, "softmax_multilabel_forward", kwargs)
    owner, axis = opts.owner, opts.axis
    ws = workspace if workspace is not None else Workspace()
    generation = ws.begin()
    shape = np.shape(scores)
    s3 = float_view(scores, owner, "scores", axis)
    outer, classes, inner = s3.shape
    if opts.label_format == "dense" and label_weights is not None:
        raise MultilabelLossError("%s: label_weights are only used with label_format \"indices\"" % owner)
    check_label_shapes(opts, shape, np.shape(labels), None if label_weights is None else np.shape(label_weights))
    if opts.label_format == "dense":
        label_form = dense_label_form(float_view(labels, owner, "labels", axis, shape), owner, ws, shape, axis)
    else:
        label_form = index_label_form(labels, label_weights, s3.shape, owner, axis)
    check_label_sums(owner, label_form.label_sum, s3.dtype, shape, axis)

    # m = max_c s per sample, at its first argmax. A NaN or +inf score becomes some sample's max; -inf, the minimum.
    top = _argmax_positions(s3, ws)
    smax = s3.reshape(-1)[top].reshape(outer, 1, inner)
    smin = s3.min()
    if not (np.isfinite(smax).all() and math.isfinite(smin)):
        raise scores_not_finite_error(owner, scores, axis)
    exps = ws.get("exps", s3.shape, s3.dtype)
    eps = opts.label_smoothing
    low, high = UNSHIFTED_MAX_RANGE
    if isinstance(label_form, SparseLabels) and not eps and low <= smax.min() and smax.max() <= high:
        below = label_form.dot_below(s3, smax)      # sum_c y_c (m - s_c) >= 0, term by term in float64
        below_sum: NDArray[np.float64] | float = 0.0
        np.exp(s3, out=exps)                        # e = exp(s): the shift needs a pass of its own
    else:
        if float(smax.max()) - float(smin) > np.finfo(s3.dtype).max:
            # b = s - m may overflow to -inf (scores spanning more than the dtype's range): exp(b) = 0 there, and
            # the loss check below refuses the infinite loss with a clear error; numpy's overflow warning is not
            # the user's news. Checked on two scalars, so the usual path pays no np.errstate.
            with np.errstate(over="ignore"):
                shifted = np.subtract(s3, smax, out=exps)
        else:
            shifted = np.subtract(s3, smax, out=exps)   # b = s - m <= 0, exactly 0 at the argmax
        below = -label_form.dot(shifted)            # sum_c y_c (m - s_c) = -sum_c y_c b_c >= 0
        below_sum = -row_sum(shifted) if eps else 0.0    # sum_c (m - s_c) >= 0
        np.exp(shifted, out=exps)                   # e = exp(b); the buffer now holds exponentials
    flat_exps = exps.reshape(-1)
    top_exp = flat_exps[top]                        # exp(m), or 1 after the shift
    flat_exps[top] = 0                              # r: the other classes only, so log1p(r) keeps its precision
    top_exp = top_exp.astype(np.float64).reshape(outer, 1, inner)
    rest = row_sum(exps) / top_exp
    flat_exps[top] = top_exp.reshape(-1)

    positive = label_form.count > 0                 # a sample with a non-zero label (then its label sum is > 0)
    if opts.normalize_targets == "count":
        scale = positive / np.maximum(label_form.count, 1.0)
    elif opts.normalize_targets == "sum":
        scale = positive / np.where(positive, label_form.label_sum, 1.0)
    else:
        scale = positive.astype(np.float64)
    scale *= 1.0 - eps
    offset = positive * (eps / classes)
    total = scale * label_form.label_sum + offset * classes
    per_sample = total * np.log1p(rest) + scale * below + offset * below_sum    # three terms, each >= 0
    normalizer = loss_normalizer(opts.normalization, outer, inner, int(np.count_nonzero(positive)))
    loss = float(per_sample.sum() / normalizer)
    if not abs(loss) <= np.finfo(s3.dtype).max:
        raise MultilabelLossError("%s: the loss is not finite in %s (%r) although scores and labels are: the scores "
                                  "span more than the %s range, or the labels are too large"
                                  % (owner, s3.dtype, loss, s3.dtype))
    return loss, SoftmaxContext(exps, top_exp, rest, total, scale, offset, label_form, normalizer, shape, s3.shape,
                                top, ws, generation)


def softmax_multilabel_backward(ctx: SoftmaxContext, loss_weight: float = 1.0,
                                out: NDArray[np.floating[Any]] | None = None) -> NDArray[np.floating[Any]]:
    r"""Gradient of ``loss_weight`` times the forward loss with respect to the scores.

    .. math::
        \frac{\partial L}{\partial s_c} = \frac{w}{Z} (T p_c - t_c),\quad T = \sum_c t_c

    with w = ``loss_weight`` and Z the normalizer. For binary labels and
    ``"count"`` that is p_c - 1/M on the positives and p_c elsewhere; samples
    with no positive get 0; each sample's gradient sums to 0 over the classes.
    At each sample's argmax, where T p - t cancels as p -> 1, the value is
    formed in float64 as ((T - t) - t r) / (1 + r), so it keeps full relative
    precision on confident samples.

    Args:
        ctx: the context of :func:`softmax_multilabel_forward`; it must be
            the latest forward on its workspace.
        loss_weight: the factor w (Caffe's ``top[0].diff``).
        out: optional C-contiguous array of the scores' shape and dtype, filled in place.

    Returns:
        The gradient, shaped like the scores (``out`` if given).

    Example::

        >>> _, ctx = softmax_multilabel_forward(np.array([[0., 0.]]), np.array([[1., 0.]]))
        >>> softmax_multilabel_backward(ctx, loss_weight=2.0)
        array([[-1.,  1.]])
    """
    owner = "softmax_multilabel_backward"
    check_fresh(ctx, owner)
    e = ctx.exps
    out, out3 = output_view(out, ctx.shape, ctx.shape3, e.dtype, owner)
    k = loss_weight / ctx.normalizer
    np.multiply(e, (k * ctx.target_total / (ctx.top_exp * (1.0 + ctx.rest))).astype(e.dtype), out=out3)
    ctx.labels.subtract_scaled(out3, k * ctx.label_scale)
    if ctx.label_offset.any():
        np.subtract(out3, (k * ctx.label_offset).astype(e.dtype), out=out3)
    scale, offset = ctx.label_scale.reshape(-1), ctx.label_offset.reshape(-1)
    t_top = scale * ctx.labels.values_at(ctx.top) + offset
    total, rest = ctx.target_total.reshape(-1), ctx.rest.reshape(-1)
    out3.reshape(-1)[ctx.top] = (k * ((total - t_top) - t_top * rest) / (1.0 + rest)).astype(e.dtype)
    return out


def softmax_probabilities(ctx: SoftmaxContext,
                          out: NDArray[np.floating[Any]] | None = None) -> NDArray[np.floating[Any]]:
    """p = softmax(s) along the class axis, from a forward context (``out``: as in the backward)."""
    owner = "softmax_probabilities"
    check_fresh(ctx, owner)
    e = ctx.exps
    out, out3 = output_view(out, ctx.shape, ctx.shape3, e.dtype, owner)
    np.multiply(e, (1.0 / (ctx.top_exp * (1.0 + ctx.rest))).astype(e.dtype), out=out3)
    return out


def softmax_multilabel_loss(scores: ArrayLike, labels: ArrayLike, label_weights: ArrayLike | None = None,
                            loss_weight: float = 1.0, **kwargs: Any) -> tuple[float, NDArray[np.floating[Any]]]:
    """``(loss, d loss / d scores)`` in one call: :func:`softmax_multilabel_forward`, then the backward.

    Example::

        >>> loss, grad = softmax_multilabel_loss(np.array([[1, 7, 0, 0, 2.]]), np.array([[0, 4]]),
        ...                                      label_format="indices")
    """
    loss, ctx = softmax_multilabel_forward(scores, labels, label_weights, **kwargs)
    return loss, softmax_multilabel_backward(ctx, loss_weight)
