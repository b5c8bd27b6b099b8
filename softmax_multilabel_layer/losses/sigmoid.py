"""Multi-label sigmoid losses: binary cross-entropy, focal and asymmetric (ASL). The numpy core, no Caffe import.

One elementwise kernel serves every option: plain BCE is the case with no
focusing, no clip and no weights, and runs the same code with those steps
skipped (each skipped step would multiply by exactly 1 or add exactly 0).

Precision (float32 and float64). Every quantity is formed from
u = exp(-|x|) and w = 1 + u, with no subtraction that cancels:

* sigma(-|x|) = u / w and sigma(|x|) = 1 / w, so p = sigmoid(x) and 1 - p
  both keep full relative precision, also where they are below 1e-30;
* log1p(u) = log(w) - ((w - 1) - u): (w - 1) - u is exactly the rounding
  error of w, so this is log1p to about 1 ulp (it is u where w rounds to 1);
  where numpy's ``log1p`` is SIMD code (:data:`LOG1P_IS_SIMD`), it is used instead;
* softplus(x) = log1p(u) + relu(x) and softplus(-x) = log1p(u) + relu(-x)
  elementwise, with relu(-x) = x [x >= 0] - x exact: every elementwise loss
  is >= 0 and has a relative error of a few ulp; the sum is accumulated in
  float64, so the loss is never negative and tiny losses are not rounded away.

Speed. Only ``exp`` and ``log`` are needed: numpy has SIMD kernels for them
in float32 with AVX2 and with AVX-512, unlike ``log1p``, ``tanh`` and
``power``, which run scalar without AVX-512 (with it, ``log1p`` saves four
passes). The elements are
processed in blocks of about ``BLOCK_SIZE`` that keep the ~20 intermediate
arrays in the CPU caches, and every step writes into a
:class:`~.common.Workspace` buffer (``out=``), so a training loop allocates
nothing per iteration.
"""
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softmax_multilabel_layer.losses.common import (
    Workspace,
    check_fresh,
    first_bad,
    float_view,
    loss_normalizer,
    output_view,
    position,
    scores_not_finite_error,
)
from softmax_multilabel_layer.losses.cpu import log1p_is_simd
from softmax_multilabel_layer.losses.labels import check_label_shapes
from softmax_multilabel_layer.params import MultilabelLossError, SigmoidOptions


@dataclass
class SigmoidContext:
    """What :func:`sigmoid_multilabel_backward` and :func:`sigmoid_probabilities` need from the forward pass.

    The arrays are :class:`~.common.Workspace` buffers: the next forward pass
    with the same workspace overwrites them, so a context is stale after the
    next forward on that workspace (backward and probabilities then refuse it).
    """
    normalizer: float
    shape: tuple
    grad: np.ndarray             # d(sum of elementwise losses) / dx, (O, C, I)
    probabilities: np.ndarray | None     # sigmoid(x), (O, C, I); None if forward was told not to keep it
    workspace: Workspace | None = None  # the forward pass's workspace and its generation (see check_fresh)
    generation: int = 0


def _check_targets(y, owner, ignore_label, shape, axis):
    if not (y.min() >= 0 and y.max() <= 1):
        flat, value = first_bad(y, ~((y >= 0) & (y <= 1)))
        raise MultilabelLossError("%s: targets must be in [0, 1]%s, found %r at %s"
                                  % (owner, "" if ignore_label is None else
                                     " or equal to ignore_label %r" % ignore_label, value,
                                     position(shape, axis, flat, "targets")))


def sigmoid_multilabel_forward(scores: ArrayLike, targets: ArrayLike, options: SigmoidOptions | None = None,
                               workspace: Workspace | None = None, probabilities: bool = True,
                               **kwargs: Any) -> tuple[float, SigmoidContext]:
    r"""Multi-label sigmoid loss, forward pass: BCE, focal or asymmetric (ASL), with optional weights.

    Args:
        scores: logits x, float32 or float64, with a class axis ``axis`` of size C.
        targets: y in [0, 1] (binary or soft), same shape as ``scores``.
        options: a :class:`~.params.SigmoidOptions`; or give the options as keywords.
        workspace: a :class:`~.common.Workspace` to reuse buffers across calls.
        probabilities: keep sigmoid(x) for :func:`sigmoid_probabilities` (False saves a pass).

    Shape:
        scores and targets (O, C, I) after viewing around the class axis: O is
        the product of the axes before it, I of the axes after it.

    Returns:
        ``(loss, ctx)``: the loss as a Python float, and the context for
        :func:`sigmoid_multilabel_backward`.

    Per element, with p = sigmoid(x), softplus(z) = log(1 + e^z), the clip
    (probability margin) m and p_m = max(p - m, 0) (p_m = p when m = 0):

    * ce = pos_weight_c y softplus(-x) + (1 - y) (-log(1 - p_m))
      = -[pos_weight_c y log p + (1 - y) log(1 - p_m)]; with m = 0 the second
      term is (1 - y) softplus(x), so ce is the binary cross-entropy;
    * focusing, in the form of the official ASL implementation
      (Ben-Baruch et al., "Asymmetric Loss For Multi-Label Classification",
      ICCV 2021, ``AsymmetricLoss``):
      q = 1 - p_t = y (1 - p) + (1 - y) p_m,
      G = gamma_pos y + gamma_neg (1 - y), l = ce q^G.
      ``gamma`` sets gamma_pos = gamma_neg = gamma (the focal loss, with q = 1 - p_t,
      p_t = p y + (1 - p)(1 - y)); for binary y, l is
      -(1 - p)^gamma_pos log p on positives and -p_m^gamma_neg log(1 - p_m) on negatives;
    * alpha >= 0: l *= alpha y + (1 - alpha)(1 - y) (torchvision ``sigmoid_focal_loss``);
    * ``class_weight``: l *= class_weight_c;
    * entries whose target equals ``ignore_label`` give l = 0 and no gradient.

    Unlike the official ASL code, log p and log(1 - p_m) are not clamped at
    1e-8 (they are finite for any finite x), and the gradient flows through
    q^G (its ``disable_torch_grad_focal_loss=False``), so it is the true gradient.

    The loss is sum(l) / normalizer: ``"batch_size"`` O, ``"full"`` the number of
    elements, ``"valid"`` the number of non-ignored elements (at least 1), ``"none"`` 1.

    Example::

        >>> import numpy as np
        >>> x = np.array([[2.0, -1.0, 0.5]], np.float32); y = np.array([[1, 0, 0]], np.float32)
        >>> loss, ctx = sigmoid_multilabel_forward(x, y, gamma_neg=4, clip=0.05)
        >>> grad = sigmoid_multilabel_backward(ctx)
    """
    opts = SigmoidOptions.resolve(options, "sigmoid_multilabel_forward", kwargs)
    owner = opts.owner
    ws = workspace if workspace is not None else Workspace()
    generation = ws.begin()
    x = float_view(scores, owner, "scores", opts.axis)
    check_label_shapes(opts, np.shape(scores), np.shape(targets), blob="targets")
    y = float_view(targets, owner, "targets", opts.axis, np.shape(scores))
    outer, classes, inner = x.shape
    opts.check_class_count(classes)

    valid = None
    valid_count = x.size
    if opts.ignore_label is not None:
        valid = ws.get("valid", x.shape, np.bool_)
        np.not_equal(y, opts.ignore_label, out=valid)
        y = np.multiply(y, valid, out=ws.get("y", x.shape, x.dtype))   # ignored: y = 0, then weight 0
        valid_count = int(np.count_nonzero(valid))
    _check_targets(y, owner, opts.ignore_label, np.shape(scores), opts.axis)
    if y.dtype != x.dtype:                      # float64 or integer targets with float32 scores
        y_cast = ws.get("y", x.shape, x.dtype)
        np.copyto(y_cast, y)                    # casting="same_kind" (the default): int or float64 to float32
        y = y_cast

    grad = ws.get("grad", x.shape, x.dtype)
    prob = ws.get("probabilities", x.shape, x.dtype) if probabilities else None
    per_class = {key: np.asarray(getattr(opts, key), x.dtype).reshape(1, classes, 1)
                 if isinstance(getattr(opts, key), tuple) else None for key in ("pos_weight", "class_weight")}
    blocks = list(_blocks(x.shape))
    capacity = x[blocks[0][0]].size                     # the first block is a largest one
    scratch = _Scratch(ws, x.dtype, capacity, "block:")
    masks = _Scratch(ws, np.bool_, capacity, "block mask:")
    loss_sum = 0.0
    with np.errstate(invalid="ignore"):                # non-finite scores: reported below
        for block, class_slice in blocks:
            scratch.reshape(x[block].shape)
            masks.reshape(x[block].shape)
            weights = {key: None if value is None else value[:, class_slice] for key, value in per_class.items()}
            loss_sum += _elementwise(x[block], y[block], None if valid is None else valid[block], grad[block],
                                     None if prob is None else prob[block], weights, opts, scratch, masks)
    ctx = SigmoidContext(loss_normalizer(opts.normalization, outer, classes * inner, valid_count), np.shape(scores),
                         grad, prob, ws, generation)
    loss = loss_sum / ctx.normalizer
    if not math.isfinite(loss):
        # a NaN or infinite score always makes its elementwise loss inf or NaN (inf * 0 included), so the
        # scores are checked here, on the error path, instead of by a pass over them on every call
        if not np.isfinite(x).all():
            raise scores_not_finite_error(owner, scores, opts.axis)
        raise MultilabelLossError("%s: the loss is not finite (%r) although scores and targets are" % (owner, loss))
    return loss, ctx


# Whether numpy runs float32 log1p as SIMD code (AVX-512 only). Without it, log1p(u) is formed from log(1 + u)
# and the rounding error of 1 + u (3 more passes of cheap arithmetic). Both forms are within about 1 ulp.
LOG1P_IS_SIMD = log1p_is_simd()

# Elements per block: the kernel's block buffers (about 20) then stay in the CPU caches, where buffers of a
# whole 64 x 17000 batch stream every pass through main memory (measured 1.5 to 2x slower on this 2-core VM).
BLOCK_SIZE = 1 << 16


def _blocks(shape):
    """(index into the (O, C, I) view, class slice) for contiguous blocks of about BLOCK_SIZE elements."""
    size = BLOCK_SIZE
    outer, classes, inner = shape
    row = classes * inner
    if row <= size:
        step = max(1, size // row)
        for o in range(0, outer, step):
            yield (slice(o, o + step), slice(None), slice(None)), slice(None)
    else:
        step = max(1, size // inner)
        for o in range(outer):
            for c in range(0, classes, step):
                classes_slice = slice(c, c + step)
                yield (slice(o, o + 1), classes_slice, slice(None)), classes_slice


class _Scratch:
    """Block-shaped scratch arrays by attribute: ``buf.u`` is a view of the flat workspace buffer ``prefix + "u"``.

    Each buffer is allocated once, with ``capacity`` elements of ``dtype``, and reused by every block.
    Call :meth:`reshape` before each block; the views of one shape are made once and reused by the next blocks.
    """

    def __init__(self, ws, dtype, capacity, prefix):
        self._ws, self._dtype, self._capacity, self._prefix = ws, dtype, capacity, prefix
        self._shape: tuple[int, ...] = ()             # set by reshape, before the first block
        self._views: dict[str, np.ndarray] = {}

    def reshape(self, shape: tuple[int, ...]) -> None:
        if shape != self._shape:
            self._shape, self._views = shape, {}

    def __getattr__(self, name):            # only called for names that are not attributes: the buffers
        view = self._views.get(name)
        if view is None:
            flat = self._ws.get(self._prefix + name, (self._capacity,), self._dtype)
            view = self._views[name] = flat[:math.prod(self._shape)].reshape(self._shape)
        return view


def _elementwise(x, y, valid, grad, p, weights, opts, buf, masks):
    """One block: fills ``grad`` (d l / dx) and ``p`` (sigmoid(x), unless None); returns the sum of l.

    ``weights`` holds the block's per-class ``pos_weight`` and ``class_weight`` arrays (or None);
    ``buf.name`` and ``masks.name`` are block-shaped scratch arrays (float and bool).
    """
    dtype = x.dtype
    one = dtype.type(1)

    # h = [x >= 0], f = 1 - 2h (-1 or 1), so -|x| = f x exactly. (Not a masked np.negative(..., where=x >= 0):
    # numpy's masked loops are slow on the short runs of a mask of mixed signs.)
    h_bool = masks.x_nonneg
    np.greater_equal(x, 0, out=h_bool)
    h = buf.h
    np.copyto(h, h_bool)
    f = np.multiply(h, dtype.type(-2), out=buf.f)
    np.add(f, one, out=f)
    # u = exp(-|x|), w = 1 + u, s = sigmoid(-|x|) = u / w
    u = np.multiply(x, f, out=buf.u)
    np.exp(u, out=u)
    w = np.add(u, one, out=buf.w)
    fs = np.divide(u, w, out=buf.fs)
    # fs = f s: sigmoid(x) = h + fs and sigmoid(-x) = (1 - h) - fs, each 1 - s or s
    np.multiply(fs, f, out=fs)
    if LOG1P_IS_SIMD:
        log1p_u = np.log1p(u, out=buf.log1p_u)
    else:                                               # log1p(u) = log(w) - ((w - 1) - u); w is free after
        log1p_u = np.log(w, out=buf.log1p_u)
        np.subtract(w, one, out=w)
        np.subtract(w, u, out=w)
        np.subtract(log1p_u, w, out=log1p_u)
    v = y                                               # pos_weight * y
    if weights["pos_weight"] is not None:
        v = np.multiply(y, weights["pos_weight"], out=buf.v)
    elif opts.pos_weight != 1:
        v = np.multiply(y, dtype.type(opts.pos_weight), out=buf.v)
    gamma_pos, gamma_neg = (opts.gamma, opts.gamma) if opts.gamma > 0 else (opts.gamma_pos, opts.gamma_neg)
    clip = opts.clip
    focus = gamma_pos > 0 or gamma_neg > 0
    two_terms = clip > 0 or v is not y
    if p is None and (focus or two_terms):
        p = buf.p
    if p is not None:
        np.add(h, fs, out=p)                            # sigmoid(x)
    if focus or two_terms:
        p_neg = np.subtract(one, h, out=buf.p_neg)     # sigmoid(-x)
        np.subtract(p_neg, fs, out=p_neg)
        not_y = np.subtract(one, y, out=buf.not_y)
    pq = np.multiply(p, p_neg, out=buf.pq) if focus else None    # d p / dx
    tmp = buf.tmp
    if not two_terms:
        # BCE: y softplus(-x) + (1 - y) softplus(x) = log1p(u) + x (h - y), and d ce / dx = p - y = (h - y) + fs.
        # Every term is >= 0 or exact; for binary y this equals the two-term form below bit for bit.
        # (h - y and ce reuse the buffers of f and u, which are no longer needed: fewer cache lines touched.)
        c = np.subtract(h, y, out=f)
        ce = np.multiply(x, c, out=u)
        np.add(ce, log1p_u, out=ce)
        np.add(c, fs, out=grad)
        neg_p, dp_m = p, pq
    else:
        # softplus(x) = log1p(u) + x h, softplus(-x) = log1p(u) + (x h - x); x h and x h - x are exact
        sp_pos = np.multiply(x, h, out=u)
        sp_neg = np.subtract(sp_pos, x, out=w)
        np.add(sp_neg, log1p_u, out=sp_neg)
        np.add(sp_pos, log1p_u, out=sp_pos)
        if clip > 0:
            # negatives: p_m = max(p - m, 0), -log(1 - p_m) (>= 0; as precise as p_m, which carries p's
            # rounding), and d/dx = [p_m > 0] p (1 - p) / (1 - p_m), with 1 - p_m = (1 - p) + m there.
            p_m = np.subtract(p, dtype.type(clip), out=buf.p_m)
            np.maximum(p_m, 0, out=p_m)
            above = masks.above
            np.greater(p_m, 0, out=above)
            neg_loss = np.subtract(one, p_m, out=buf.neg_loss)
            np.log(neg_loss, out=neg_loss)
            np.negative(neg_loss, out=neg_loss)
            d_neg_loss = np.add(p_neg, dtype.type(clip), out=buf.d_neg_loss)
            dp_m = np.multiply(pq if pq is not None else p, above, out=buf.dp_m)   # pq is set iff focus
            if not focus:
                np.multiply(dp_m, p_neg, out=dp_m)
            np.divide(dp_m, d_neg_loss, out=d_neg_loss)  # d(-log(1 - p_m)) / dx
            neg_p = p_m
        else:
            neg_loss, d_neg_loss, neg_p, dp_m = sp_pos, p, p, pq   # -log(1 - p) = softplus(x), d/dx = p
        # ce = v softplus(-x) + (1 - y) neg_loss; d ce / dx = (1 - y) d_neg_loss - v (1 - p)
        ce = np.multiply(not_y, neg_loss, out=buf.ce)
        np.multiply(v, sp_neg, out=tmp)
        np.add(ce, tmp, out=ce)
        np.multiply(not_y, d_neg_loss, out=grad)
        np.multiply(v, p_neg, out=tmp)
        np.subtract(grad, tmp, out=grad)

    if focus:
        # q = y (1 - p) + (1 - y) p_m, dq/dx = (1 - y) dp_m/dx - y p (1 - p); l = ce q^G,
        # dl/dx = q^G dce/dx + ce G q^(G-1) dq/dx
        assert pq is not None                           # set above iff focus, as dp_m is
        assert dp_m is not None
        q = np.multiply(y, p_neg, out=buf.q)
        np.multiply(not_y, neg_p, out=tmp)
        np.add(q, tmp, out=q)
        dq = np.multiply(not_y, dp_m, out=buf.dq)
        np.multiply(y, pq, out=tmp)
        np.subtract(dq, tmp, out=dq)
        modulator, d_modulator = _focus_power(q, y, not_y, gamma_pos, gamma_neg, buf)
        np.multiply(d_modulator, dq, out=d_modulator)    # G q^(G-1) dq/dx
        np.multiply(d_modulator, ce, out=d_modulator)
        np.multiply(grad, modulator, out=grad)
        np.add(grad, d_modulator, out=grad)
        np.multiply(ce, modulator, out=ce)

    weight = None                                       # alpha, class and ignore weights, built in tmp
    if opts.alpha >= 0:                                 # alpha y + (1 - alpha)(1 - y)
        weight = np.multiply(y, dtype.type(2 * opts.alpha - 1), out=tmp)
        np.add(weight, dtype.type(1 - opts.alpha), out=weight)
    for factor in (weights["class_weight"], valid):
        if factor is None:
            continue
        if weight is None:
            weight = tmp
            np.copyto(weight, factor)
        else:
            np.multiply(weight, factor, out=weight)
    if weight is not None:
        np.multiply(ce, weight, out=ce)
        np.multiply(grad, weight, out=grad)
    # float32 pairwise sum of terms >= 0 (relative error below 30 eps; block sums add up in float64)
    return float(np.add.reduce(ce.reshape(-1)))


def _focus_power(q, y, not_y, gamma_pos, gamma_neg, buf):
    """q^G and G q^(G-1) with G = gamma_pos y + gamma_neg (1 - y), in buffers; exp and log only (SIMD).

    One integer gamma for both (the focal loss) uses products (a few ulp).
    Any other G uses exp(G log q) and exp((G - 1) log q), relative error about
    (|G log q| + 3) ulp; q is floored at the smallest normal number so that
    q^(G-1) stays finite where q = 0 (there ce = 0 and dq/dx = 0, so l and
    dl/dx are 0 all the same).
    """
    dtype = q.dtype
    d_modulator = buf.d_modulator
    if gamma_pos == gamma_neg and float(gamma_pos).is_integer():
        gamma = int(gamma_pos)
        if gamma == 1:
            d_modulator.fill(1)
        else:
            np.copyto(d_modulator, q)
            for _ in range(gamma - 2):
                np.multiply(d_modulator, q, out=d_modulator)   # q^(gamma-1)
        modulator = np.multiply(d_modulator, q, out=buf.modulator)
        if gamma != 1:
            np.multiply(d_modulator, dtype.type(gamma), out=d_modulator)
        return modulator, d_modulator
    log_q = np.maximum(q, np.finfo(dtype).tiny, out=buf.log_q)
    np.log(log_q, out=log_q)
    modulator = buf.modulator
    if gamma_pos == gamma_neg:
        exponent = dtype.type(gamma_pos)
    else:
        exponent = np.multiply(y, dtype.type(gamma_pos), out=buf.exponent)
        np.multiply(not_y, dtype.type(gamma_neg), out=modulator)
        np.add(exponent, modulator, out=exponent)
    np.multiply(log_q, exponent, out=modulator)
    np.subtract(modulator, log_q, out=d_modulator)              # (G - 1) log q
    np.exp(modulator, out=modulator)                             # q^G (exactly 1 where G = 0)
    np.exp(d_modulator, out=d_modulator)                         # q^(G-1)
    np.multiply(d_modulator, exponent, out=d_modulator)
    return modulator, d_modulator


def sigmoid_multilabel_backward(ctx: SigmoidContext, loss_weight: float = 1.0,
                                out: NDArray[np.floating[Any]] | None = None) -> NDArray[np.floating[Any]]:
    """Gradient of ``loss_weight`` times the forward loss with respect to the scores.

    Args:
        ctx: the context from :func:`sigmoid_multilabel_forward` (valid until the
            next forward pass on the same workspace).
        loss_weight: scale of the loss (Caffe's ``top[0].diff``).
        out: optional array shaped like the scores, filled and returned.

    Returns:
        dl/dx * loss_weight / normalizer, shaped like the scores; p - y for plain BCE.
        ``out``, if given, must be a C-contiguous array of the scores' shape and dtype.
    """
    owner = "sigmoid_multilabel_backward"
    check_fresh(ctx, owner)
    k = loss_weight / ctx.normalizer
    out, out3 = output_view(out, ctx.shape, ctx.grad.shape, ctx.grad.dtype, owner)
    np.multiply(ctx.grad, ctx.grad.dtype.type(k), out=out3)
    return out


def sigmoid_probabilities(ctx: SigmoidContext,
                          out: NDArray[np.floating[Any]] | None = None) -> NDArray[np.floating[Any]]:
    """p = sigmoid(x), from a forward context (full relative precision in both tails; ``out``: as in the backward)."""
    owner = "sigmoid_probabilities"
    check_fresh(ctx, owner)
    if ctx.probabilities is None:
        raise MultilabelLossError("%s: the forward pass was run with probabilities=False" % owner)
    out, out3 = output_view(out, ctx.shape, ctx.probabilities.shape, ctx.probabilities.dtype, owner)
    np.copyto(out3, ctx.probabilities)
    return out


def sigmoid_multilabel_loss(scores: ArrayLike, targets: ArrayLike, loss_weight: float = 1.0,
                            **kwargs: Any) -> tuple[float, NDArray[np.floating[Any]]]:
    """Convenience: ``(loss, d loss / d scores)`` in one call."""
    loss, ctx = sigmoid_multilabel_forward(scores, targets, **kwargs)
    return loss, sigmoid_multilabel_backward(ctx, loss_weight)
