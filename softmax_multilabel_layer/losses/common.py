"""Shared pieces of the numpy core: the workspace, the (O, C, I) view, sums and normalizers. No Caffe import.

Shapes. ``scores`` has a class axis ``axis`` of size C. Every position along
the other axes is one *sample*: scores of shape N x C give N samples, and
N x C x H x W with axis 1 give N*H*W samples (one softmax per pixel). The core
views arrays as (O, C, I): O = prod(shape[:axis]), I = prod(shape[axis+1:]).
"""
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from softmax_multilabel_layer.params import MultilabelLossError


class Workspace:
    """Named scratch arrays, reallocated only when a shape or dtype changes.

    Lifetime: a forward pass returns a context whose arrays live in the
    workspace. The next forward pass on the same workspace overwrites them, so
    it invalidates every earlier context: :func:`check_fresh` (called by each
    backward) raises :class:`MultilabelLossError` for such a stale context
    rather than returning a wrong gradient. Use one workspace per layer, or none
    (each forward then makes its own).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, NDArray[Any]] = {}
        self.generation = 0

    def begin(self) -> int:
        """Start a forward pass: contexts made before it become stale. Returns the new generation."""
        self.generation += 1
        return self.generation

    @property
    def nbytes(self) -> int:
        """Bytes held by the workspace's arrays."""
        return sum(buf.nbytes for buf in self._buffers.values())

    def get(self, name: str, shape: Sequence[int], dtype: DTypeLike) -> NDArray[Any]:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._buffers[name] = buf
        return buf


def check_fresh(ctx: Any, owner: str) -> None:
    """Raise if ``ctx`` came from a forward pass whose workspace has run another forward since."""
    if ctx.workspace.generation != ctx.generation:
        raise MultilabelLossError("%s: this context is stale: forward pass %d on its Workspace has run since it was "
                                  "made (pass %d) and overwrote its buffers; call backward before the next forward, "
                                  "or give each forward its own Workspace"
                                  % (owner, ctx.workspace.generation, ctx.generation))


def output_view(out: NDArray[Any] | None, shape: Sequence[int], shape3: Sequence[int], dtype: DTypeLike,
                owner: str) -> tuple[NDArray[Any], NDArray[Any]]:
    """``out`` (shaped like the scores) viewed as the context's (O, C, I) shape; a new array if ``out`` is None.

    ``out`` must be a C-contiguous array of the scores' shape and dtype, since
    a reshape of any other array would be a copy that is never seen again.
    """
    if out is None:
        out = np.empty(shape, dtype)
    elif not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != dtype \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise MultilabelLossError("%s: out must be a writeable C-contiguous %s array of shape %s (the scores' shape), "
                                  "got %s" % (owner, np.dtype(dtype), tuple(shape), _describe_array(out)))
    return out, out.reshape(shape3)


def _describe_array(a):
    if not isinstance(a, np.ndarray):
        return type(a).__name__
    flags = [] if a.flags.c_contiguous else ["not C-contiguous"]
    if not a.flags.writeable:
        flags.append("read-only")
    return "%s array of shape %s%s" % (a.dtype, a.shape, "".join(", " + f for f in flags))


def class_axis_shape(shape: Sequence[int], axis: int, owner: str, blob: str) -> tuple[int, int, int]:
    """Return (O, C, I) for ``shape`` split around ``axis``; raise if the axis is out of range."""
    ndim = len(shape)
    if ndim < 1 or not -ndim <= axis < ndim:
        raise MultilabelLossError("%s: axis %d is out of range for %s of shape %s (%d axes); expected -%d <= axis < %d"
                                  % (owner, axis, blob, tuple(shape), ndim, ndim, ndim))
    axis %= ndim
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1:])
    return outer, int(shape[axis]), inner


def float_view(array: Any, owner: str, blob: str, axis: int, shape: Sequence[int] | None = None) -> NDArray[Any]:
    """``array`` as a float32/float64 (O, C, I) view; ``shape`` (checked by the caller) replaces its own shape.

    Integer and boolean labels become float64; any other dtype than float32/float64, or an empty array, raises
    :class:`MultilabelLossError` naming ``owner`` and ``blob``.
    """
    array = np.asarray(array)
    if blob != "scores" and (array.dtype.kind in "biu"):
        array = array.astype(np.float64)      # integer or boolean labels from numpy users
    if array.dtype not in (np.float32, np.float64):
        raise MultilabelLossError("%s: %s must be float32 or float64, got %s" % (owner, blob, array.dtype))
    if array.size == 0:
        raise MultilabelLossError("%s: %s is empty (shape %s)" % (owner, blob, array.shape))
    return array.reshape(class_axis_shape(array.shape if shape is None else shape, axis, owner, blob))


def position(shape: Sequence[int], axis: int, flat_index: int, blob: str, slot: str = "class") -> str:
    """Where element ``flat_index`` of a blob of ``shape`` sits: its index, its sample and its class (or slot).

    For example ``labels[2, 3] (sample 2, class 3)``, or for N x C x H x W with
    axis 1 ``labels[0, 3, 1, 2] (sample 0 at (1, 2), class 3)``.
    """
    shape = tuple(shape)
    index = tuple(int(i) for i in np.unravel_index(int(flat_index), shape))
    axis %= len(shape)
    outer, inner = index[:axis], index[axis + 1:]
    sample = "sample" if not outer else "sample %d" % outer[0] if len(outer) == 1 else "sample %s" % (outer,)
    if inner:
        sample += " at (%s)" % ", ".join(map(str, inner))
    return "%s[%s] (%s, %s %d)" % (blob, ", ".join(map(str, index)), sample, slot, index[axis])


def first_bad(array: NDArray[Any], bad: NDArray[np.bool_]) -> tuple[int, Any]:
    """Flat index and value of the first element where ``bad`` holds (error path only)."""
    flat = int(np.flatnonzero(bad)[0])
    return flat, array.reshape(-1)[flat].item()


def scores_not_finite_error(owner: str, scores: Any, axis: int) -> MultilabelLossError:
    """The error for scores holding a NaN or an infinity, naming the first one (error path only)."""
    scores = np.asarray(scores)
    flat, value = first_bad(scores, ~np.isfinite(scores))
    return MultilabelLossError("%s: scores are not finite: found %r at %s; training has probably diverged: lower "
                               "the learning rate or check the layers below"
                               % (owner, value, position(scores.shape, axis, flat, "scores")))


def row_sum(a3: NDArray[Any]) -> NDArray[np.float64]:
    """Sum over the class axis of an (O, C, I) array, as float64 of shape (O, 1, I).

    The sum accumulates in the array's own dtype (float32 for float32 input),
    then converts to float64: the relative error of a float32 sum of C
    non-negative terms is below about sqrt(C) float32 ulps in practice (C - 1
    ulps at worst). einsum is several times faster than np.sum here and, unlike
    a BLAS matrix-vector product, runs on one thread: its result cannot depend
    on the thread count, and it does not compete with Caffe's BLAS threads.
    """
    return np.einsum("oci->oi", a3).astype(np.float64)[:, None, :]


def loss_normalizer(mode: str, outer: int, inner: int, valid_count: float) -> float:
    """The divisor of the summed loss: O, O*I, the valid count (at least 1), or 1."""
    if mode == "batch_size":
        return float(outer)
    if mode == "full":
        return float(outer * inner)
    if mode == "valid":
        return float(max(1, valid_count))
    return 1.0


# ---------------------------------------------------------------- log-sum-exp over a subset (ZLPR, two-way)

def rows_view(a3: NDArray[Any], workspace: Workspace, name: str) -> NDArray[Any]:
    """An (O, C, I) array as (O*I, C) rows, one row per sample: a view when I == 1, else a workspace copy."""
    outer, classes, inner = a3.shape
    if inner == 1:
        return a3.reshape(outer, classes)
    rows = workspace.get(name, (outer, inner, classes), a3.dtype)
    np.copyto(rows, a3.transpose(0, 2, 1))
    return rows.reshape(outer * inner, classes)


def _sum_along(a: NDArray[Any], axis: int) -> NDArray[np.float64]:
    """Sum of a 2-D array along ``axis`` (accumulated in its dtype, by einsum: one thread), as float64."""
    return np.einsum("sc->c" if axis == 0 else "sc->s", a).astype(np.float64)


def masked_logsumexp(t: NDArray[Any], axis: int,
                     with_zero: bool) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Log-sum-exp of each row (``axis=1``) or column (``axis=0``) of ``t`` over its finite entries.

    Entries excluded from the sum hold -inf. With ``with_zero`` a term
    :math:`e^0` is added: :math:`\log(1 + \sum_j e^{t_j})` (ZLPR); else
    :math:`\log \sum_j e^{t_j}` (-inf for a group with no entry).

    ``t`` (float32 or float64) is overwritten with :math:`e^{t_j - u}`,
    :math:`u` the group's shift (its maximum, or max(0, maximum) with the zero
    term; 0 where that is not finite), so that the softmax weights of the group's
    terms are ``t * weight`` (broadcast along ``axis``). The value is formed in float64 as
    :math:`u + \mathrm{log1p}(r)` with :math:`r` the sum of the other terms
    (the top term is exactly 1 and is removed from the sum by subtracting 1;
    with the zero term and :math:`u = 0`, no term is removed): so each value
    is within a few float32 ulp of 1 + r absolute, like a stable float32
    log-sum-exp, and never rounds r away where :math:`u = 0`.

    Returns:
        ``(value, weight)``, float64 arrays with one entry per group.
    """
    top = t.max(axis=axis).astype(np.float64)
    if with_zero:
        shift = np.maximum(top, 0.0)
    else:
        shift = np.where(np.isfinite(top), top, 0.0)
    np.subtract(t, np.expand_dims(shift.astype(t.dtype), axis), out=t)
    np.exp(t, out=t)
    total = _sum_along(t, axis)
    if with_zero:
        lifted = top > 0                 # the top term is a score: it is 1 in the sum, and e^-u joins the rest
        rest = np.where(lifted, np.maximum(total - 1.0, 0.0) + np.exp(-shift), total)
    else:
        rest = np.maximum(total - 1.0, 0.0)
    value = shift + np.log1p(rest)
    if not with_zero:
        value[np.isneginf(top)] = -np.inf
    return value, 1.0 / (1.0 + rest)


def segment_logsumexp(values: NDArray[Any], segment: NDArray[np.intp], segments: int,
                      with_zero: bool) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Log-sum-exp of ``values`` grouped by ``segment`` (ids in [0, segments)), in float64.

    The same value as :func:`masked_logsumexp` for the groups' listed entries
    (-inf for an empty group without the zero term, 0 with it), for a few
    entries per group given as a flat list (the positives).

    Returns:
        ``(value, weights)``: one value per segment, and the softmax weight of each entry.
    """
    v = np.asarray(values, np.float64)
    top = np.full(segments, -np.inf)
    np.maximum.at(top, segment, v)
    shift = np.maximum(top, 0.0) if with_zero else np.where(np.isfinite(top), top, 0.0)
    e = np.exp(v - shift[segment])
    total = np.bincount(segment, e, minlength=segments)
    if with_zero:
        rest = np.where(top > 0, np.maximum(total - 1.0, 0.0) + np.exp(-shift), total)
    else:
        rest = np.maximum(total - 1.0, 0.0)
    value = shift + np.log1p(rest)
    if not with_zero:
        value[np.isneginf(top)] = -np.inf
    return value, e / (1.0 + rest)[segment]


# The exponentials of the terms are taken unshifted (one shared buffer, no max and subtract passes) when every
# term lies in this range: above -80 each e^t is a normal float32 (> 1.8e-35, full relative precision), and below
# 60 a sum of up to 1e12 of them stays far below the float32 maximum 3.4e38.
UNSHIFTED_RANGE = (-80.0, 60.0)


def unshifted_logsumexp(e: NDArray[Any], axis: int,
                        with_zero: bool) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""The values and weights of :func:`masked_logsumexp` from ``e`` = :math:`e^{t}` (0 for an excluded entry).

    For terms in :data:`UNSHIFTED_RANGE` only (the caller checks): the value is
    :math:`\mathrm{log1p}(S)` with the zero term, :math:`\log S` without (-inf for an
    empty group, whose weight is 0), :math:`S` the float64 sum of the float32 (or
    float64) exponentials along ``axis``; the weight is 1 / (1 + S), or 1 / S. ``e`` is not changed.
    """
    total = _sum_along(e, axis)
    if with_zero:
        return np.log1p(total), 1.0 / (1.0 + total)
    empty = total == 0
    with np.errstate(divide="ignore"):
        value = np.log(total)                   # -inf for an empty group
    return value, np.where(empty, 0.0, 1.0 / np.where(empty, 1.0, total))
