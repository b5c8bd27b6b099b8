r"""The two-way multi-label loss (Kobayashi, "Two-way Multi-Label Loss", CVPR 2023): the numpy core. No Caffe import.

For scores x (samples x classes) and 0/1 labels, one *group* is a sample (a
row: its classes) or a class (a column: the samples of the batch). For each
group g with at least one positive,

.. math::
    z_g = t_n \log \sum_{j \in \Omega_-(g)} e^{x_j / t_n}
          + t_p \log \sum_{i \in \Omega_+(g)} e^{-x_i / t_p},
    \qquad
    L = \frac{1}{|R|} \sum_{g \in R} \mathrm{softplus}(z_g) + \frac{1}{|K|} \sum_{g \in K} \mathrm{softplus}(z_g)

with R the samples and K the classes that have a positive in the batch: a
soft-max of the negatives (temperature t_n, default 1) contrasted with a
soft-min of the positives (t_p, default 4), in both directions. A group with
no negative has z = -inf and adds 0. (The authors' code masks the excluded
entries with -100 rather than -inf; here they are excluded exactly.)

The loss couples the samples of a batch (the class direction), so it is not
a sum of per-sample losses. Caffe's ``iter_size`` (gradient accumulation)
therefore does not make it the loss of a batch iter_size times larger: each
of the iter_size forward passes contrasts the samples of its own batch only,
with its own |R| and |K|, and the solver averages the iter_size gradients.
The sample direction is then nearly the same as with one large batch (a mean
of per-sample terms, up to the varying |R|); the class direction sees only
batch_size samples per class at a time: fewer positives and negatives to
contrast, so its hardest pairs are less hard. Use iter_size 1 and a larger
batch where the class direction should see them all.

Scores and decision rules: the scores rank (classes within a sample, and
samples within a class); they have no natural threshold and no probability
meaning. Rules that fit: top-k and rank-based metrics (mAP, AP, ranking
loss), and thresholds or per-class thresholds tuned on validation data.
"""
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax_multilabel_layer.losses.common import (
    UNSHIFTED_RANGE,
    Workspace,
    check_fresh,
    float_view,
    masked_logsumexp,
    output_view,
    rows_view,
    scores_not_finite_error,
    segment_logsumexp,
    unshifted_logsumexp,
)
from softmax_multilabel_layer.losses.labels import check_label_shapes, multi_hot_positions
from softmax_multilabel_layer.params import MultilabelLossError, TwoWayOptions


@dataclass
class TwoWayContext:
    """What :func:`two_way_backward` needs from the forward pass (workspace buffers: stale after the next forward)."""
    row_exps: np.ndarray         # e^(x/t_n - u_row) on the negatives, 0 on the positives, (samples, C)
    column_exps: np.ndarray      # e^(x/t_n - u_column), likewise; row_exps itself when unshifted (u = 0)
    row_weight: np.ndarray       # d L / d x_j = row_exps * row_weight[:, None] + column_exps * column_weight
    column_weight: np.ndarray
    positions: np.ndarray        # flat positions of the positives in the (samples, C) rows
    positive_grad: np.ndarray    # d L / d x_i at each positive, float64
    shape: tuple
    shape3: tuple
    workspace: Workspace
    generation: int


def _sigmoid(z):
    """sigmoid(z) in float64, precise in the low tail, 0 at -inf."""
    return np.exp(z - np.logaddexp(0.0, z))


def two_way_forward(scores: ArrayLike, labels: ArrayLike, options: TwoWayOptions | None = None,
                    workspace: Workspace | None = None, **kwargs: Any) -> tuple[float, TwoWayContext]:
    r"""Two-way multi-label loss (Kobayashi, CVPR 2023), forward pass.

    See the module docstring for the formula: softplus of a soft-max over the
    negatives (temperature ``tn``) plus a soft-min over the positives
    (temperature ``tp``), over the classes of each sample and over the samples
    of each class, averaged over the samples and the classes that have a
    positive (0 if the batch has no positive).

    Args:
        scores: float32 or float64 array with a class axis ``axis`` of size C.
        labels: dense 0/1 labels shaped like ``scores`` (trailing axes of size 1 may differ).
        options: a :class:`~.params.TwoWayOptions`; or the keywords ``tp``, ``tn``, ``axis``.
            Any other option is refused by name.
        workspace: a :class:`~.common.Workspace` whose buffers are reused across calls.

    Shape:
        scores (O, C, I) after viewing around ``axis``; the O*I positions are
        the samples of the batch (the class direction runs over all of them).

    Returns:
        ``(loss, ctx)`` for :func:`two_way_backward`.

    Example::

        >>> loss, ctx = two_way_forward(np.array([[2.0, -1.0], [0.5, 1.0]]), np.array([[1, 0], [0, 1]]))
        >>> grad = two_way_backward(ctx)
    """
    opts = TwoWayOptions.resolve(options, "two_way_forward", kwargs)
    owner, axis = opts.owner, opts.axis
    ws = workspace if workspace is not None else Workspace()
    generation = ws.begin()
    shape = np.shape(scores)
    s3 = float_view(scores, owner, "scores", axis)
    check_label_shapes(opts, shape, np.shape(labels))
    label_rows = rows_view(float_view(labels, owner, "labels", axis, shape), ws, "label_rows")
    positions = multi_hot_positions(label_rows, owner, shape, axis, ws)
    low, high = float(s3.min()), float(s3.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise scores_not_finite_error(owner, scores, axis)
    x = rows_view(s3, ws, "score_rows")
    samples, classes = x.shape
    tp, tn = opts.tp, opts.tn

    row_exps = ws.get("row_exps", x.shape, x.dtype)
    if tn == 1:
        np.copyto(row_exps, x)
    else:
        np.divide(x, x.dtype.type(tn), out=row_exps)
    if UNSHIFTED_RANGE[0] <= low / tn and high / tn <= UNSHIFTED_RANGE[1]:
        # one buffer of e^(x/t_n) serves both directions (see UNSHIFTED_RANGE)
        np.exp(row_exps, out=row_exps)
        row_exps.reshape(-1)[positions] = 0
        column_exps = row_exps
        negative_row, negative_row_weight = unshifted_logsumexp(row_exps, axis=1, with_zero=False)
        negative_column, negative_column_weight = unshifted_logsumexp(row_exps, axis=0, with_zero=False)
    else:
        row_exps.reshape(-1)[positions] = -np.inf
        column_exps = ws.get("column_exps", x.shape, x.dtype)
        np.copyto(column_exps, row_exps)
        negative_row, negative_row_weight = masked_logsumexp(row_exps, axis=1, with_zero=False)
        negative_column, negative_column_weight = masked_logsumexp(column_exps, axis=0, with_zero=False)
    row, column = np.divmod(positions, classes)
    v = -x.reshape(-1)[positions].astype(np.float64) / tp
    positive_row, positive_row_weight = segment_logsumexp(v, row, samples, with_zero=False)
    positive_column, positive_column_weight = segment_logsumexp(v, column, classes, with_zero=False)

    loss = 0.0
    d_z = []
    for negative, positive in ((negative_row, positive_row), (negative_column, positive_column)):
        has_positive = np.isfinite(positive)
        count = int(np.count_nonzero(has_positive))
        z = tn * negative + tp * positive                # -inf for a group with no positive or no negative
        if count:
            loss += float(np.logaddexp(0.0, z[has_positive]).sum()) / count
        d_z.append(_sigmoid(z) / max(count, 1))        # d L / d z_g; 0 for a group with no positive or negative
    if not abs(loss) <= np.finfo(x.dtype).max:
        raise MultilabelLossError("%s: the loss is not finite in %s (%r) although the scores are"
                                  % (owner, x.dtype, loss))
    d_row, d_column = d_z
    # dz/dx_j = softmax weight over the negatives; dz/dx_i = -softmax weight over the positives
    positive_grad = -(d_row[row] * positive_row_weight + d_column[column] * positive_column_weight)
    return loss, TwoWayContext(row_exps, column_exps, d_row * negative_row_weight,
                               d_column * negative_column_weight, positions, positive_grad, shape, s3.shape,
                               ws, generation)


def two_way_backward(ctx: TwoWayContext, loss_weight: float = 1.0,
                     out: NDArray[np.floating[Any]] | None = None) -> NDArray[np.floating[Any]]:
    r"""Gradient of ``loss_weight`` times the forward loss with respect to the scores.

    .. math::
        \frac{\partial L}{\partial x} = \sum_{\text{directions}} \frac{\sigma(z_g)}{|G|}
            \frac{\partial z_g}{\partial x},\quad
        \frac{\partial z_g}{\partial x_j} = \mathrm{softmax}_{\Omega_-(g)}(x / t_n)_j,\
        \frac{\partial z_g}{\partial x_i} = -\mathrm{softmax}_{\Omega_+(g)}(-x / t_p)_i

    Args:
        ctx: the context of :func:`two_way_forward` (the latest forward on its workspace).
        loss_weight: scale of the loss (Caffe's ``top[0].diff``).
        out: optional C-contiguous array of the scores' shape and dtype, filled in place.

    Returns:
        The gradient, shaped like the scores (``out`` if given).
    """
    owner = "two_way_backward"
    check_fresh(ctx, owner)
    e = ctx.row_exps
    out, out3 = output_view(out, ctx.shape, ctx.shape3, e.dtype, owner)
    outer, classes, inner = ctx.shape3
    rows = out3.reshape(outer, classes) if inner == 1 else ctx.workspace.get("grad_rows", e.shape, e.dtype)
    k = float(loss_weight)
    row_weight, column_weight = (k * ctx.row_weight).astype(e.dtype), (k * ctx.column_weight).astype(e.dtype)
    if ctx.column_exps is e:                # one buffer for both directions: (a_r + b_c) e_rc, two passes
        np.add(row_weight[:, None], column_weight[None, :], out=rows)
        np.multiply(rows, e, out=rows)
    else:
        np.multiply(e, row_weight[:, None], out=rows)
        scratch = ctx.workspace.get("grad_scratch", e.shape, e.dtype)
        np.multiply(ctx.column_exps, column_weight[None, :], out=scratch)
        np.add(rows, scratch, out=rows)
    rows.reshape(-1)[ctx.positions] = (k * ctx.positive_grad).astype(e.dtype)
    if inner != 1:
        np.copyto(out3, rows.reshape(outer, inner, classes).transpose(0, 2, 1))
    return out


def two_way_loss(scores: ArrayLike, labels: ArrayLike, tp: float = 4.0, tn: float = 1.0, loss_weight: float = 1.0,
                 **options: Any) -> tuple[float, NDArray[np.floating[Any]]]:
    """``(loss, d loss / d scores)`` in one call: :func:`two_way_forward`, then :func:`two_way_backward`.

    ``tp`` and ``tn`` are the temperatures; with ``options=`` (a :class:`~.params.TwoWayOptions`) the object's
    temperatures are used, and a ``tp`` or ``tn`` other than the default given beside it is an error.

    Example::

        >>> loss, grad = two_way_loss(np.array([[2.0, -1.0], [0.5, 1.0]]), np.array([[1, 0], [0, 1]]), tp=2.0)
    """
    if options.get("options") is None:
        options.pop("options", None)
        options.update(tp=tp, tn=tn)
    else:       # a temperature given beside an options object is refused (as in the other cores), not dropped
        options.update({key: value for key, value, default in (("tp", tp, 4.0), ("tn", tn, 1.0)) if value != default})
    loss, ctx = two_way_forward(scores, labels, **options)
    return loss, two_way_backward(ctx, loss_weight)
