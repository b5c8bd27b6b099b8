"""Fuzzing the core with hypothesis: finite outputs, exact gradients, float32 against float64, only documented errors.

Hypothesis draws the shape (1 to 64 samples, 1 to 300 classes, optional
spatial axes), the label kind, every option and a score scale up to 1e4, or a
trained-like batch (scores correlated with the labels, margins up to 60); numpy
draws the values from a seed that hypothesis also chooses.

Replay. Under ``make test`` (the ``ci`` profile of tests/conftest.py)
hypothesis is derandomized: every run draws the same examples, and a failure
prints the example and its numpy seed. ``make fuzz`` runs the ``fuzz`` profile:
random examples, FUZZ_SCALE times as many, with the hypothesis seed printed
first (replay with ``pytest --hypothesis-seed=<seed>``).

Gradient rule. A central difference with step h = 2**-16 (exact: s +- h is
representable for |s| < 2**36, so the step is not rounded) is compared with
the analytic gradient at 4 coordinates and along one random direction of
+-1/0 entries:  |analytic - numeric| <= 1e-6 |numeric| + 1e-9 max(1, |loss|).
The absolute floor is the float64 round-off of L(s+h) - L(s-h), about
2e-16 |L| / h = 1.5e-11 |L|, with a 65x margin; the truncation error h^2 f'''
is below 1e-9 for these losses.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmax_multilabel_layer.losses import functional as F
from softmax_multilabel_layer.params import MultilabelLossError

from test_functional import reference_sigmoid_loss

STEP = 2.0 ** -16
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))   # make fuzz: many more examples; make mutation: fewer
FUZZ = settings(max_examples=max(1, int(400 * SCALE)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS32 = float(np.finfo(np.float32).eps)

shapes = st.tuples(st.integers(1, 64), st.integers(1, 300),
                   st.sampled_from([(), (), (1,), (2,), (3, 2), (2, 1, 2)])).filter(
    lambda t: t[0] * t[1] * int(np.prod(t[2])) <= 20000)


def build_scores(rng, shape, scale, labels=None):
    """Scores of one of four kinds; the fourth is trained-like: margin ``scale`` (capped at 60) on the positives."""
    kind = rng.integers(4 if labels is not None else 3)
    if kind == 0:
        return rng.normal(size=shape) * scale
    if kind == 1:
        return rng.uniform(-scale, scale, size=shape)
    if kind == 2:
        return np.round(rng.normal(size=shape)) * scale      # many exact ties
    return rng.normal(0, 0.5, size=shape) + min(scale, 60.0) * (labels > 0) + rng.uniform(-70, 70)


def dense_labels(rng, shape, kind, axis=1):
    if kind == "binary":
        labels = (rng.random(shape) < rng.uniform(0, 0.5)).astype(np.float64)
    elif kind == "real":
        labels = rng.random(shape) * 5 * (rng.random(shape) < 0.3)
    elif kind == "dense_real":
        labels = rng.random(shape) + 1e-3
    else:  # "none": no sample has a positive
        labels = np.zeros(shape)
    if kind != "none" and labels.size and rng.random() < 0.5:  # some samples without positives
        np.moveaxis(labels, axis, -1)[(0,) * (labels.ndim - 1)] = 0
    return labels


def check_gradient(forward, scores, grad, loss, rng):
    def numeric(direction):
        plus, minus = forward(scores + STEP * direction), forward(scores - STEP * direction)
        return (plus - minus) / (2 * STEP)

    def close(analytic, estimate):
        return abs(analytic - estimate) <= 1e-6 * abs(estimate) + 1e-9 * max(1.0, abs(loss))

    for _ in range(4):
        index = tuple(rng.integers(0, n) for n in scores.shape)
        direction = np.zeros_like(scores)
        direction[index] = 1
        estimate = numeric(direction)
        assert close(grad[index], estimate), ("coordinate", index, grad[index], estimate, loss)
    direction = rng.integers(-1, 2, size=scores.shape).astype(np.float64)
    estimate = numeric(direction)
    assert close(float((grad * direction).sum()), estimate), ("direction", (grad * direction).sum(), estimate, loss)


@FUZZ
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 1.0, 30.0, 1e3, 1e4]),
       kind=st.sampled_from(["binary", "real", "dense_real", "none"]),
       normalize_targets=st.sampled_from(["count", "sum", "none"]),
       normalization=st.sampled_from(["batch_size", "valid", "full", "none"]),
       label_smoothing=st.sampled_from([0.0, 0.1, 0.5]), loss_weight=st.sampled_from([1.0, 3.0]),
       axis_last=st.booleans())
def test_fuzz_softmax_dense(shape, seed, scale, kind, normalize_targets, normalization, label_smoothing,
                            loss_weight, axis_last):
    rng = np.random.default_rng(seed)
    full_shape = (shape[0], shape[1]) + shape[2]
    axis = len(full_shape) - 1 if axis_last and len(full_shape) > 2 else 1
    labels = dense_labels(rng, full_shape, kind, axis)
    scores = build_scores(rng, full_shape, scale, labels)
    options = dict(axis=axis, normalize_targets=normalize_targets, normalization=normalization,
                   label_smoothing=label_smoothing)
    loss, grad = F.softmax_multilabel_loss(scores, labels, loss_weight=loss_weight, **options)
    assert np.isfinite(loss) and loss >= 0 and np.isfinite(grad).all()
    check_gradient(lambda s: loss_weight * F.softmax_multilabel_forward(s, labels, **options)[0],
                   scores, grad, loss_weight * loss, rng)


@FUZZ
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 1.0, 12.0, 30.0, 60.0, 1e3]),
       kind=st.sampled_from(["binary", "real", "dense_real", "none"]),
       normalize_targets=st.sampled_from(["count", "sum", "none"]),
       normalization=st.sampled_from(["batch_size", "valid", "full", "none"]),
       label_smoothing=st.sampled_from([0.0, 0.1]), axis_last=st.booleans())
def test_fuzz_softmax_float32_against_float64(shape, seed, scale, kind, normalize_targets, normalization,
                                              label_smoothing, axis_last):
    """Float32 against float64 on the same float32 inputs.

    Error model: the loss of a sample is a sum of terms >= 0 (T log1p(r), t_c (m - s_c)). Each is formed with a
    relative error of at most about (C + 4 + |m - s_c|) float32 ulps: the float32 sum of r's C terms, the
    exponentials, and the rounding of the shift s_c - m, an absolute error of |m - s_c| ulps/2 that exp turns
    into a relative one. So |L32 - L64| <= (C + 4 + D) eps32 L64, D the largest m - s_c, and a gradient element
    T p_c - t_c (two rounded products) is off by at most (C + 4 + m - s_c) eps32 k (T p_c + t_c), k = 1 /
    normalizer, plus the float32 underflow floor.
    """
    rng = np.random.default_rng(seed)
    full_shape = (shape[0], shape[1]) + shape[2]
    axis = len(full_shape) - 1 if axis_last and len(full_shape) > 2 else 1
    labels = dense_labels(rng, full_shape, kind, axis).astype(np.float32)
    scores = build_scores(rng, full_shape, scale, labels).astype(np.float32)
    options = dict(axis=axis, normalize_targets=normalize_targets, normalization=normalization,
                   label_smoothing=label_smoothing)
    loss32, ctx32 = F.softmax_multilabel_forward(scores, labels, **options)
    grad32 = F.softmax_multilabel_backward(ctx32)
    loss64, ctx64 = F.softmax_multilabel_forward(scores.astype(np.float64), labels.astype(np.float64), **options)
    grad64 = F.softmax_multilabel_backward(ctx64)
    classes = full_shape[axis]
    s3 = scores.astype(np.float64).reshape(ctx64.shape3)
    below = s3.max(axis=1, keepdims=True) - s3                          # m - s_c, exact in float64
    assert loss32 >= 0 and np.isfinite(grad32).all()
    assert abs(loss32 - loss64) <= (classes + 4 + below.max()) * EPS32 * loss64 + 1e-35, (loss32, loss64)
    t = ctx64.label_scale * labels.astype(np.float64).reshape(ctx64.shape3) + ctx64.label_offset
    k = 1.0 / ctx64.normalizer
    t_p = grad64.reshape(ctx64.shape3) / k + t                         # T p_c
    bound = (classes + 4 + below) * EPS32 * k * (t_p + t) + k * 1e-37
    error = np.abs(grad32.astype(np.float64) - grad64).reshape(ctx64.shape3)
    assert (error <= bound).all(), (error.max(), bound.reshape(-1)[np.argmax(error - bound)])


@FUZZ
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
       k=st.integers(1, 5), weighted=st.booleans(), normalize_targets=st.sampled_from(["count", "sum", "none"]),
       normalization=st.sampled_from(["batch_size", "valid", "full", "none"]),
       label_smoothing=st.sampled_from([0.0, 0.2]))
def test_fuzz_softmax_indices(shape, seed, scale, k, weighted, normalize_targets, normalization, label_smoothing):
    rng = np.random.default_rng(seed)
    n, classes, spatial = shape
    full_shape = (n, classes) + spatial
    scores = build_scores(rng, full_shape, scale)
    slots = np.moveaxis(np.full((n, k) + spatial, -1.0), 1, -1)
    weights = np.moveaxis(np.zeros((n, k) + spatial), 1, -1)
    dense = np.moveaxis(np.zeros(full_shape), 1, -1)
    for position in np.ndindex(slots.shape[:-1]):
        chosen = rng.permutation(classes)[:rng.integers(0, min(k, classes) + 1)]
        values = rng.uniform(0.1, 3, len(chosen)) if weighted else np.ones(len(chosen))
        if weighted:
            values[rng.random(len(chosen)) < 0.25] = 0                  # weight 0: not a label, not in M
        order = rng.permutation(k)[:len(chosen)]                 # padding may sit anywhere
        slots[position][order] = chosen
        weights[position][order] = values
        dense[position][chosen] = values
    slots, weights, dense = (np.moveaxis(a, -1, 1) for a in (slots, weights, dense))
    options = dict(normalize_targets=normalize_targets, normalization=normalization, label_smoothing=label_smoothing)
    loss, grad = F.softmax_multilabel_loss(scores, slots, weights if weighted else None, label_format="indices",
                                           **options)
    reference = F.softmax_multilabel_loss(scores, dense, **options)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(reference[0], rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grad, reference[1], rtol=1e-10, atol=1e-15)
    check_gradient(lambda s: F.softmax_multilabel_forward(s, slots, weights if weighted else None,
                                                          label_format="indices", **options)[0],
                   scores, grad, loss, rng)


@FUZZ
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
       soft=st.booleans(), gamma=st.sampled_from([0.0, 0.5, 1.0, 2.0]), alpha=st.sampled_from([-1, 0.0, 0.25, 1.0]),
       pos_weight=st.sampled_from(["none", "scalar", "list"]), class_weight=st.booleans(),
       ignore=st.booleans(), normalization=st.sampled_from(["batch_size", "valid", "full", "none"]))
def test_fuzz_sigmoid(shape, seed, scale, soft, gamma, alpha, pos_weight, class_weight, ignore, normalization):
    rng = np.random.default_rng(seed)
    n, classes, spatial = shape
    full_shape = (n, classes) + spatial
    x = build_scores(rng, full_shape, scale)
    y = rng.random(full_shape) if soft else (rng.random(full_shape) < 0.3).astype(np.float64)
    options = dict(gamma=gamma, alpha=alpha, normalization=normalization)
    if pos_weight == "scalar":
        options["pos_weight"] = float(rng.uniform(0, 5))
    elif pos_weight == "list":
        options["pos_weight"] = list(rng.uniform(0, 5, classes))
    if class_weight:
        options["class_weight"] = list(rng.uniform(0, 3, classes))
    if ignore:
        options["ignore_label"] = -1
        y[rng.random(full_shape) < 0.2] = -1
    loss, grad = F.sigmoid_multilabel_loss(x, y, **options)
    assert np.isfinite(loss) and loss >= 0 and np.isfinite(grad).all()
    reference = reference_sigmoid_loss(x, y, **options)
    # Every elementwise term is formed >= 0 with a relative error of a few ulps (no cancellation, issue 17), and
    # the sum adds terms >= 0: the loss has a relative error of a few ulps at any scale of the scores.
    assert abs(loss - reference) <= 1e-12 * reference + 1e-300, (loss, reference)
    if ignore:
        assert not grad[y == -1].any()
    check_gradient(lambda s: F.sigmoid_multilabel_forward(s, y, **options)[0], x, grad, loss, rng)


def spoil(rng, array):
    """Maybe put a NaN, an inf, a negative or an out-of-range value somewhere."""
    array = array.copy()
    if array.size and rng.random() < 0.6:
        array.flat[rng.integers(array.size)] = rng.choice([np.nan, np.inf, -np.inf, -1.0, -2.0, 2.0, 7.5, 1e30])
    return array


@settings(max_examples=max(1, int(50 * SCALE)), deadline=None)
@given(seed=st.integers(0, 2**32 - 1), layer=st.sampled_from(["softmax", "indices", "sigmoid"]),
       options=st.dictionaries(st.sampled_from(["axis", "normalization", "label_smoothing", "gamma", "alpha",
                                                "pos_weight", "normalize_targets", "bogus"]),
                               st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=5),
                                         st.sampled_from(["full", "valid", "count"]),
                                         st.lists(st.floats(-1, 3), max_size=4)), max_size=3))
def test_fuzz_only_documented_errors(seed, layer, options):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 5)), int(rng.integers(1, 6)))
    scores = spoil(rng, rng.normal(size=shape))
    try:
        if layer == "sigmoid":
            options = {k: v for k, v in options.items() if k not in ("label_smoothing", "normalize_targets")}
            loss, grad = F.sigmoid_multilabel_loss(scores, spoil(rng, (rng.random(shape) < 0.5) * 1.0), **options)
        elif layer == "indices":
            options = {k: v for k, v in options.items() if k not in ("gamma", "alpha", "pos_weight")}
            labels = spoil(rng, rng.integers(-1, shape[1], size=(shape[0], 2)).astype(np.float64))
            loss, grad = F.softmax_multilabel_loss(scores, labels, label_format="indices", **options)
        else:
            options = {k: v for k, v in options.items() if k not in ("gamma", "alpha", "pos_weight")}
            loss, grad = F.softmax_multilabel_loss(scores, spoil(rng, (rng.random(shape) < 0.5) * 1.0), **options)
    except MultilabelLossError:
        return
    assert np.isfinite(loss) and np.isfinite(grad).all()
