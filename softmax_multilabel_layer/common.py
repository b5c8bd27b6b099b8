"""Shared pieces of the numpy core: the workspace, the (O, C, I) view, sums and normalizers. No Caffe import.

Shapes. ``scores`` has a class axis ``axis`` of size C. Every position along
the other axes is one *sample*: scores of shape N x C give N samples, and
N x C x H x W with axis 1 give N*H*W samples (one softmax per pixel). The core
views arrays as (O, C, I): O = prod(shape[:axis]), I = prod(shape[axis+1:]).
"""
import math

import numpy as np

from .params import MultilabelLossError


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
