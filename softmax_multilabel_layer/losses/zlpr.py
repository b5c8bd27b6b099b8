r"""ZLPR, the zero-bounded log-sum-exp and pairwise rank-based loss (Su et al., arXiv 2208.02955): the numpy core.

No Caffe import. For one sample with scores s over C classes, positives
:math:`\Omega_+` and negatives :math:`\Omega_-`:

.. math::
    L = \log\Big(1 + \sum_{j \in \Omega_-} e^{s_j}\Big) + \log\Big(1 + \sum_{i \in \Omega_+} e^{-s_i}\Big)

Every positive score is pushed above every negative one, and 0 is the
decision threshold (s > 0: positive). The loss has no hyper-parameter and does
not grow with the number of negative classes as per-class BCE does.

Precision. The negative term is one log-sum-exp over all C classes with the
positives excluded (their entries set to -inf before the exponential, not
subtracted after it, so nothing cancels); the positive term needs only the
positives. Both are formed as u + log1p(r) with u = max(0, max of the terms)
(:func:`~.common.masked_logsumexp`): at confident margins (every negative
below 0, every positive above 0) u = 0 and the loss is log1p of the sum, so a
tiny loss keeps its relative precision and is never negative.
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
    loss_normalizer,
    masked_logsumexp,
    output_view,
    rows_view,
    scores_not_finite_error,
    segment_logsumexp,
    unshifted_logsumexp,
)
from softmax_multilabel_layer.losses.labels import check_label_shapes, index_label_form, multi_hot_positions
from softmax_multilabel_layer.params import MultilabelLossError, ZLPROptions


@dataclass
class ZLPRContext:
    """What :func:`zlpr_backward` and :func:`zlpr_probabilities` need from the forward pass.

    ``exps`` is a :class:`~.common.Workspace` buffer: the next forward pass on
    that workspace makes this context stale (backward then raises).
    """
    scores: np.ndarray           # the scores as (O, C, I), not copied (the probabilities are formed from them)
    exps: np.ndarray             # e^(s_j - u) on the negatives, 0 on the positives, (samples, C) rows
    negative_weight: np.ndarray  # 1 / (1 + r) per sample, float64: d(negative term)/ds_j = exps * this
    positions: np.ndarray        # flat positions of the positives in the (samples, C) rows
    positive_weight: np.ndarray  # d(positive term)/ds_i = -this, one per positive, float64
    normalizer: float
    shape: tuple                 # the scores' shape
    shape3: tuple                # (O, C, I)
    workspace: Workspace
    generation: int


def zlpr_forward(scores: ArrayLike, labels: ArrayLike, options: ZLPROptions | None = None,
                 workspace: Workspace | None = None, **kwargs: Any) -> tuple[float, ZLPRContext]:
    r"""ZLPR loss (Su et al. 2022), forward pass.

    .. math::
        L = \frac{1}{Z} \sum_{\text{samples}} \Big[\log\Big(1 + \sum_{j \in \Omega_-} e^{s_j}\Big)
            + \log\Big(1 + \sum_{i \in \Omega_+} e^{-s_i}\Big)\Big]

    with Z the normalizer: ``"batch_size"`` O (the batch mean for N x C scores),
    ``"full"`` the O*I samples, ``"none"`` 1. A sample with no positive adds
    only its negative term; one with no negative, only its positive term.

    Args:
        scores: float32 or float64 array with a class axis ``axis`` of size C.
        labels: dense 0/1 labels shaped like ``scores`` (trailing axes of size 1
            may differ); or with ``label_format="indices"`` class indices padded
            with -1, shaped like the scores with K slots on the class axis.
        options: a :class:`~.params.ZLPROptions`; or give the options as keywords
            (``normalization``, ``axis``, ``label_format``), not both. Any other
            option (``tp``, ``gamma``, ...) is refused by name.
        workspace: a :class:`~.common.Workspace` whose buffers are reused across calls.

    Shape:
        scores (O, C, I) after viewing around ``axis``; each of the O*I
        positions is one sample.

    Returns:
        ``(loss, ctx)``: the loss as a Python float and a :class:`ZLPRContext`
        for :func:`zlpr_backward` and :func:`zlpr_probabilities`.

    Example::

        >>> loss, ctx = zlpr_forward(np.array([[2.0, -1.0, 0.5]]), np.array([[1, 0, 0]]))
        >>> round(loss, 6)   # log(1 + e^-1 + e^0.5) + log(1 + e^-2)
        1.231059
    """
    opts = ZLPROptions.resolve(options, "zlpr_forward", kwargs)
    owner, axis = opts.owner, opts.axis
    ws = workspace if workspace is not None else Workspace()
    generation = ws.begin()
    shape = np.shape(scores)
    s3 = float_view(scores, owner, "scores", axis)
    outer, classes, inner = s3.shape
    samples = outer * inner
    check_label_shapes(opts, shape, np.shape(labels))
    if opts.label_format == "dense":
        label_rows = rows_view(float_view(labels, owner, "labels", axis, shape), ws, "label_rows")
        positions = multi_hot_positions(label_rows, owner, shape, axis, ws)
    else:
        sparse = index_label_form(labels, None, s3.shape, owner, axis)
        positions = sparse.sample * classes + (sparse.flat // inner) % classes
    top = float(s3.max())
    if not (math.isfinite(top) and math.isfinite(s3.min())):
        raise scores_not_finite_error(owner, scores, axis)

    s = rows_view(s3, ws, "score_rows")
    exps = ws.get("exps", s.shape, s.dtype)
    flat_exps = exps.reshape(-1)
    if top <= UNSHIFTED_RANGE[1]:                       # e^s directly: log1p(sum), as with the shift u = 0
        np.exp(s, out=exps)
        flat_exps[positions] = 0                        # the negatives only: positives leave the sum exactly
        negative, negative_weight = unshifted_logsumexp(exps, axis=1, with_zero=True)
    else:
        np.copyto(exps, s)
        flat_exps[positions] = -np.inf
        negative, negative_weight = masked_logsumexp(exps, axis=1, with_zero=True)
    sample = positions // classes
    positive, positive_weight = segment_logsumexp(-s.reshape(-1)[positions], sample, samples, with_zero=True)
    normalizer = loss_normalizer(opts.normalization, outer, inner, samples)
    loss = float((negative.sum() + positive.sum()) / normalizer)
    if not abs(loss) <= np.finfo(s.dtype).max:
        raise MultilabelLossError("%s: the loss is not finite in %s (%r) although the scores are"
                                  % (owner, s.dtype, loss))
    return loss, ZLPRContext(s3, exps, negative_weight, positions, positive_weight, normalizer, shape, s3.shape,
                             ws, generation)


def zlpr_backward(ctx: ZLPRContext, loss_weight: float = 1.0,
                  out: NDArray[np.floating[Any]] | None = None) -> NDArray[np.floating[Any]]:
    r"""Gradient of ``loss_weight`` times the forward loss with respect to the scores.

    .. math::
        \frac{\partial L}{\partial s_j} = \frac{w}{Z} \frac{e^{s_j}}{1 + \sum_{\Omega_-} e^{s}}\ (j \in \Omega_-),
        \qquad
        \frac{\partial L}{\partial s_i} = -\frac{w}{Z} \frac{e^{-s_i}}{1 + \sum_{\Omega_+} e^{-s}}\ (i \in \Omega_+)

    Args:
        ctx: the context of :func:`zlpr_forward` (the latest forward on its workspace).
        loss_weight: the factor w (Caffe's ``top[0].diff``).
        out: optional C-contiguous array of the scores' shape and dtype, filled in place.

    Returns:
        The gradient, shaped like the scores (``out`` if given).
    """
    owner = "zlpr_backward"
    # The preamble (fresh check, output view, the transposed rows buffer when inner > 1) is the one every loss
    # core's backward has; folding it into common.py would touch the mutation-tested softmax and sigmoid kernels.
    check_fresh(ctx, owner)
    e = ctx.exps
    out, out3 = output_view(out, ctx.shape, ctx.shape3, e.dtype, owner)
    outer, classes, inner = ctx.shape3
    rows = out3.reshape(outer, classes) if inner == 1 else ctx.workspace.get("grad_rows", e.shape, e.dtype)
    k = loss_weight / ctx.normalizer
    np.multiply(e, (k * ctx.negative_weight).astype(e.dtype)[:, None], out=rows)
    rows.reshape(-1)[ctx.positions] = (-k * ctx.positive_weight).astype(e.dtype)
    if inner != 1:
        np.copyto(out3, rows.reshape(outer, inner, classes).transpose(0, 2, 1))
    return out


def zlpr_probabilities(ctx: ZLPRContext,
                       out: NDArray[np.floating[Any]] | None = None) -> NDArray[np.floating[Any]]:
    """sigmoid(s) of the scores of a forward context: ZLPR's threshold s > 0 becomes p > 0.5.

    Not calibrated probabilities (ZLPR does not fit them), but a score in (0, 1)
    whose natural threshold is 0.5; full relative precision in the low tail.
    ``out``: as in the backward.
    """
    owner = "zlpr_probabilities"
    check_fresh(ctx, owner)
    s3 = ctx.scores
    out, out3 = output_view(out, ctx.shape, ctx.shape3, s3.dtype, owner)
    u = np.exp(-np.abs(s3))                             # sigmoid(s) = 1 / (1 + u) for s >= 0, u / (1 + u) below
    np.divide(np.where(s3 >= 0, s3.dtype.type(1), u), u + 1, out=out3)
    return out


def zlpr_loss(scores: ArrayLike, labels: ArrayLike, loss_weight: float = 1.0,
              **options: Any) -> tuple[float, NDArray[np.floating[Any]]]:
    """``(loss, d loss / d scores)`` in one call: :func:`zlpr_forward`, then :func:`zlpr_backward`.

    Example::

        >>> loss, grad = zlpr_loss(np.array([[2.0, -1.0, 0.5]]), np.array([[0, -1]]), label_format="indices")
    """
    loss, ctx = zlpr_forward(scores, labels, **options)
    return loss, zlpr_backward(ctx, loss_weight)
