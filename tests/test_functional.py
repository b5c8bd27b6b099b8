"""The numpy core: values against independent references, and numeric-vs-analytic gradients in float64."""
import importlib.util
import itertools
import math
import os
import tracemalloc
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import expit, log_expit, log_softmax

from softmax_multilabel_layer.losses import functional as F
from softmax_multilabel_layer.losses import labels as label_forms

NORMALIZE_TARGETS = ("count", "sum", "none")
NORMALIZATIONS = ("batch_size", "valid", "full", "none")


def reference_softmax_loss(scores, labels, axis=1, normalize_targets="count", normalization="batch_size",
                           label_smoothing=0.0):
    """The formula written out directly in float64 with scipy's log_softmax."""
    s = np.moveaxis(np.asarray(scores, np.float64), axis, -1)
    y = np.moveaxis(np.asarray(labels, np.float64), axis, -1)
    classes = s.shape[-1]
    s, y = s.reshape(-1, classes), y.reshape(-1, classes)
    total = 0.0
    for row_s, row_y in zip(s, y, strict=True):
        if not (row_y > 0).any():
            continue
        t = {"count": row_y / np.count_nonzero(row_y), "sum": row_y / row_y.sum(), "none": row_y}[normalize_targets]
        t = (1 - label_smoothing) * t + label_smoothing / classes
        total -= (t * log_softmax(row_s)).sum()
    outer = int(np.prod(np.shape(scores)[:axis]))
    samples = s.shape[0]
    norm = {"batch_size": outer, "full": samples, "none": 1,
            "valid": max(1, int((y > 0).any(axis=1).sum()))}[normalization]
    return total / norm


def central_difference(f, x, step=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += step
        minus[index] -= step
        grad[index] = (f(plus) - f(minus)) / (2 * step)
    return grad


def assert_matches_central_difference(grad, numeric, loss):
    """Rule: |analytic - numeric| <= 1e-6 |numeric| + 1e-8 max(1, |loss|).

    The absolute floor is the round-off of a float64 central difference with
    step 1e-6 (about 1e-16 |loss| / 1e-6), with a 50x margin.
    """
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8 * max(1.0, abs(loss)))


def seeded_rng(*key):
    """A generator seeded from ``key`` by CRC-32 (Python's hash() of a string changes per process); prints the seed."""
    seed = zlib.crc32(repr(key).encode())
    print("seed %d for %r" % (seed, key))
    return np.random.default_rng(seed)


def random_labels(rng, shape, kind):
    if kind == "binary":
        labels = (rng.random(shape) < 0.3).astype(np.float64)
    elif kind == "real":
        labels = rng.random(shape) * (rng.random(shape) < 0.5) * 3
    else:  # "dense_real": every label non-zero, exercises the dense path
        labels = rng.random(shape) + 0.1
    return labels


def test_published_value():
    loss, grad = F.softmax_multilabel_loss(np.array([[1, 7, 0, 0, 2.]]), np.array([[1, 0, 0, 0, 1.]]))
    # published to 9 digits from a float32 run; exact float64 value is 5.5109799621
    assert loss == pytest.approx(5.51097965, rel=1e-7)
    p = np.exp(log_softmax([1, 7, 0, 0, 2.]))
    np.testing.assert_allclose(grad[0], p - np.array([0.5, 0, 0, 0, 0.5]), atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label_format", ["dense", "indices"])
def test_published_value_both_dtypes_and_formats(dtype, label_format):
    scores = np.array([[1, 7, 0, 0, 2.]], dtype)
    labels = np.array([[1, 0, 0, 0, 1.]], dtype) if label_format == "dense" else np.array([[0, 4]], dtype)
    loss, grad = F.softmax_multilabel_loss(scores, labels, label_format=label_format)
    assert loss == pytest.approx(5.51097965, rel=1e-6)
    assert grad.dtype == dtype


SHAPES = [((4, 6), 1), ((3, 5, 2, 3), 1), ((2, 3, 5), 2), ((4, 6), -1)]


@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("kind", ["binary", "real", "dense_real"])
@pytest.mark.parametrize("normalize_targets,normalization,label_smoothing",
                         [(t, n, e) for t, n in itertools.product(NORMALIZE_TARGETS, NORMALIZATIONS)
                          for e in (0.0, 0.2)])
def test_softmax_value_and_gradient(shape, axis, kind, normalize_targets, normalization, label_smoothing):
    rng = seeded_rng(shape, axis, kind, normalize_targets, normalization, label_smoothing)
    scores = rng.normal(size=shape) * 3
    labels = random_labels(rng, shape, kind)
    # make sure one sample has no positive at all
    np.moveaxis(labels, axis, -1)[(0,) * (len(shape) - 1)] = 0
    options = dict(axis=axis, normalize_targets=normalize_targets, normalization=normalization,
                   label_smoothing=label_smoothing)
    loss, grad = F.softmax_multilabel_loss(scores, labels, loss_weight=1.0, **options)
    assert loss == pytest.approx(reference_softmax_loss(scores, labels, **options), rel=1e-10, abs=1e-12)
    numeric = central_difference(lambda s: F.softmax_multilabel_forward(s, labels, **options)[0], scores)
    assert_matches_central_difference(grad, numeric, loss)
    # the sample without positives gets exactly zero gradient
    assert not np.moveaxis(grad, axis, -1)[(0,) * (len(shape) - 1)].any()


def test_loss_weight_scales_gradient():
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=(5, 7)), random_labels(rng, (5, 7), "binary")
    _, g1 = F.softmax_multilabel_loss(scores, labels)
    _, g3 = F.softmax_multilabel_loss(scores, labels, loss_weight=3.0)
    np.testing.assert_allclose(g3, 3 * g1, rtol=1e-14)


def test_real_valued_gradient_is_exact_where_the_blog_formula_is_not():
    """dL/ds = (sum t) p - t. The blog's p - t is wrong once sum t != 1."""
    scores = np.array([[0.5, -1.0, 2.0, 0.0]])
    labels = np.array([[2.0, 0.0, 0.5, 0.0]])
    loss, grad = F.softmax_multilabel_loss(scores, labels, normalize_targets="count")
    p = np.exp(log_softmax(scores[0]))
    t = labels[0] / 2
    np.testing.assert_allclose(grad[0], t.sum() * p - t, atol=1e-14)
    assert not np.allclose(grad[0], p - t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_score_gaps_stay_finite(dtype):
    scores = np.array([[1e4, -1e4, 0, 5e3], [-1e4, -1e4, -1e4, 1e4]], dtype)
    labels = np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype)
    loss, grad = F.softmax_multilabel_loss(scores, labels)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    # sample 0: targets 1/2 on classes 1 and 3; lse = 1e4 -> loss = 0.5*(2e4) + 0.5*(5e3)
    assert loss == pytest.approx((0.5 * 2e4 + 0.5 * 5e3 + 2e4) / 2, rel=1e-6)


def test_inputs_are_not_modified_and_outputs_repeat_bit_for_bit():
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=(6, 9)).astype(np.float32), random_labels(rng, (6, 9), "real").astype(np.float32)
    s0, y0 = scores.copy(), labels.copy()
    ws = F.Workspace()
    results = []
    for _ in range(3):
        loss, ctx = F.softmax_multilabel_forward(scores, labels, workspace=ws, label_smoothing=0.1)
        results.append((loss, F.softmax_multilabel_backward(ctx, 2.0)))
    assert np.array_equal(scores, s0) and np.array_equal(labels, y0)
    for loss, grad in results[1:]:
        assert loss == results[0][0] and np.array_equal(grad, results[0][1])


@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("kind", ["binary", "real"])
def test_sparse_and_dense_label_paths_agree(monkeypatch, shape, axis, kind):
    """Dense labels are handled sparsely below SPARSE_FRACTION non-zeros; both paths give the same result."""
    rng = np.random.default_rng(7)
    scores, labels = rng.normal(size=shape), random_labels(rng, shape, kind)
    results = []
    for fraction in (0.0, 1.0):                      # force the dense path, then the sparse one
        monkeypatch.setattr(label_forms, "SPARSE_FRACTION", fraction)
        results.append(F.softmax_multilabel_loss(scores, labels, axis=axis, label_smoothing=0.1, loss_weight=2.0))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("size", [8000, 8001, 7])
def test_few_nonzero_matches_flatnonzero(size):
    """The word-wise scan that picks the sparse label path: np.flatnonzero's positions, None above the limit."""
    rng = np.random.default_rng(11)
    for density in (0.0, 0.003, 0.03, 0.5):
        mask = rng.random(size) < density
        mask[-1] = density > 0                       # a True in the last word (or in the tail beyond it)
        count = int(mask.sum())
        for limit in (count - 1, count, count + 5, 0.025 * size):
            found = label_forms._few_nonzero(mask, np.empty(size // 8, np.bool_), limit)
            if count > limit:
                assert found is None
            else:
                np.testing.assert_array_equal(found, np.flatnonzero(mask))


@pytest.mark.parametrize("shape,axis", SHAPES)
def test_probabilities(shape, axis):
    rng = np.random.default_rng(2)
    scores = rng.normal(size=shape) * 4
    _, ctx = F.softmax_multilabel_forward(scores, random_labels(rng, scores.shape, "binary"), axis=axis)
    expected = np.exp(log_softmax(scores, axis=axis))
    np.testing.assert_allclose(F.softmax_probabilities(ctx), expected, rtol=1e-12)
    out = np.full(shape, np.nan)
    assert F.softmax_probabilities(ctx, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_indices_format_equals_dense(shape, axis, weighted):
    rng = np.random.default_rng(3)
    classes = shape[axis]
    samples_shape = np.moveaxis(np.empty(shape), axis, -1).shape[:-1]
    k = 3
    idx = np.full(samples_shape + (k,), -1.0)
    weights = np.zeros(samples_shape + (k,))
    dense = np.zeros(samples_shape + (classes,))
    for pos in np.ndindex(samples_shape):
        m = rng.integers(0, k + 1)
        chosen = rng.choice(classes, size=min(m, classes), replace=False)
        idx[pos][:len(chosen)] = chosen
        w = rng.random(len(chosen)) + 0.5 if weighted else np.ones(len(chosen))
        weights[pos][:len(chosen)] = w
        dense[pos][chosen] = w
    idx, weights, dense = (np.moveaxis(a, -1, axis) for a in (idx, weights, dense))
    scores = rng.normal(size=shape)
    option_sets: tuple[dict[str, Any], ...] = (
        {}, {"normalize_targets": "sum", "normalization": "valid", "label_smoothing": 0.1})
    for opts in option_sets:
        ref = F.softmax_multilabel_loss(scores, dense, axis=axis, **opts)
        got = F.softmax_multilabel_loss(scores, idx, weights if weighted else None, axis=axis,
                                        label_format="indices", **opts)
        assert got[0] == pytest.approx(ref[0], rel=1e-12)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- properties

scores_and_labels = st.integers(1, 6).flatmap(lambda n: st.integers(1, 12).flatmap(lambda c: st.tuples(
    hnp.arrays(np.float64, (n, c), elements=st.floats(-50, 50)),
    hnp.arrays(np.float64, (n, c), elements=st.sampled_from([0.0, 1.0])))))


@settings(max_examples=200, deadline=None)
@given(scores_and_labels, st.sampled_from(NORMALIZE_TARGETS), st.floats(-100, 100))
def test_properties(data, normalize_targets, shift):
    scores, labels = data
    s0, y0 = scores.copy(), labels.copy()
    loss, grad = F.softmax_multilabel_loss(scores, labels, normalize_targets=normalize_targets)
    assert np.array_equal(scores, s0) and np.array_equal(labels, y0)
    assert loss >= 0
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-12)
    shifted_loss, shifted_grad = F.softmax_multilabel_loss(scores + shift, labels, normalize_targets=normalize_targets)
    assert shifted_loss == pytest.approx(loss, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(shifted_grad, grad, atol=1e-9)


# ---------------------------------------------------------------- sigmoid

def reference_sigmoid_loss(x, y, pos_weight=1.0, class_weight=None, gamma=0.0, alpha=-1.0, ignore_label=None,
                           normalization="batch_size", axis=1):
    """torchvision's sigmoid_focal_loss written out in float64, plus pos/class weights and ignore."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    pw = np.reshape(pos_weight, shape) if np.ndim(pos_weight) else pos_weight
    valid = np.ones(x.shape, bool) if ignore_label is None else (y != ignore_label)
    y = np.where(valid, y, 0)
    p = expit(x)
    ce = -(pw * y * log_expit(x) + (1 - y) * log_expit(-x))
    q = y * expit(-x) + (1 - y) * p          # 1 - p_t, p_t = p y + (1 - p)(1 - y), without cancellation
    loss = ce * q ** gamma
    if alpha >= 0:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    if class_weight is not None:
        loss = loss * np.reshape(class_weight, shape)
    loss = np.where(valid, loss, 0)
    norm = {"batch_size": int(np.prod(x.shape[:axis % x.ndim])), "full": x.size, "none": 1,
            "valid": max(1, int(valid.sum()))}[normalization]
    return loss.sum() / norm


SIGMOID_OPTIONS = [
    dict(),
    dict(normalization="valid"),            # no ignore_label: every element is valid, N*C of them
    dict(pos_weight=2.5),
    dict(pos_weight=[0.5, 1.0, 2.0, 3.0, 1.5]),
    dict(class_weight=[1.0, 0.0, 2.0, 0.5, 1.0]),
    dict(gamma=2.0),
    dict(gamma=0.5),
    dict(gamma=1.0, alpha=0.25),
    dict(alpha=0.75),
    dict(ignore_label=-1),
    dict(gamma=2.0, alpha=0.25, pos_weight=[1, 2, 3, 4, 5], class_weight=[5, 4, 3, 2, 1], ignore_label=-1,
         normalization="valid"),
    dict(normalization="full"),
    dict(normalization="none", gamma=3.0),
]


@pytest.mark.parametrize("options", SIGMOID_OPTIONS)
@pytest.mark.parametrize("shape", [(4, 5), (2, 5, 2, 3)])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_value_and_gradient(options, shape, soft):
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape) * 3
    y = rng.random(shape) if soft else (rng.random(shape) < 0.4).astype(np.float64)
    if options.get("ignore_label") is not None:
        y[rng.random(shape) < 0.2] = options["ignore_label"]
    loss, grad = F.sigmoid_multilabel_loss(x, y, **options)
    assert loss == pytest.approx(reference_sigmoid_loss(x, y, **options), rel=1e-10)
    numeric = central_difference(lambda s: F.sigmoid_multilabel_forward(s, y, **options)[0], x)
    assert_matches_central_difference(grad, numeric, loss)
    if options.get("ignore_label") is not None:
        assert not grad[y == options["ignore_label"]].any()


def test_focal_values_match_torchvision_formula():
    x = np.array([[-3.0, -0.5, 0.0, 0.7, 4.0], [2.0, -2.0, 1.0, -1.0, 0.1]])
    y = np.array([[0, 1, 1, 0, 1], [0, 0, 1, 1, 0.]])
    # torchvision.ops.sigmoid_focal_loss(reduction="sum"), written out:
    p = 1 / (1 + np.exp(-x))
    ce = np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0) - x * y
    p_t = p * y + (1 - p) * (1 - y)
    expected = (ce * (1 - p_t) ** 2 * (0.25 * y + 0.75 * (1 - y))).sum() / 2
    for dtype in (np.float64, np.float32):
        loss, _ = F.sigmoid_multilabel_loss(x.astype(dtype), y.astype(dtype), gamma=2.0, alpha=0.25)
        assert loss == pytest.approx(expected, rel=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(), dict(gamma=2.0, alpha=0.25), dict(gamma=0.5, pos_weight=3.0)])
def test_sigmoid_extreme_scores_stay_finite(dtype, options):
    x = np.array([[1e4, -1e4, 1e4, -1e4, 0.0]], dtype)
    y = np.array([[1, 1, 0, 0, 0.5]], dtype)
    loss, grad = F.sigmoid_multilabel_loss(x, y, **options)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    # wrong-way saturated entries cost ~1e4 each (times the weights) and have gradient magnitude 1
    if not options:
        assert loss == pytest.approx(2e4 + np.log(2) + 0.5 * 0, rel=1e-6)
        np.testing.assert_allclose(grad[0, :4], [0, -1, 1, 0], atol=1e-6)


def test_sigmoid_inputs_untouched():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(3, 4)), rng.random((3, 4))
    y[0, 0] = -1
    x0, y0 = x.copy(), y.copy()
    F.sigmoid_multilabel_loss(x, y, gamma=2, ignore_label=-1)
    assert np.array_equal(x, x0) and np.array_equal(y, y0)


# ---------------------------------------------------------------- the trained regime, float32

def trained_softmax_batch(rng, n, classes, margin, positives, dtype=np.float32):
    """Scores correlated with the labels: N(0, 0.5) plus ``margin`` on each of the sample's positives."""
    scores = rng.normal(0, 0.5, (n, classes))
    labels = np.zeros((n, classes))
    for i in range(n):
        labels[i, rng.choice(classes, positives, replace=False)] = 1
    scores += margin * labels
    return scores.astype(dtype), labels.astype(dtype)


def load_precision_script():
    """scripts/precision.py, whose float64 references keep full precision in the tails (no Caffe import)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "precision.py")
    spec = importlib.util.spec_from_file_location("precision_script", path)
    assert spec is not None and spec.loader is not None, "cannot load %s as a module" % path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


precise_softmax_reference = load_precision_script().softmax_truth


@pytest.mark.parametrize("classes", [20, 1000, 17000])
@pytest.mark.parametrize("margin", [4, 12, 25, 50, 60])
@pytest.mark.parametrize("positives", [1, 3, 5])
def test_float32_precision_on_confident_scores(classes, margin, positives):
    """Float32 loss to 5e-7 relative and gradient to 2e-6 of its largest element, against float64 on the same inputs.

    The old form log(sum exp(s)) - s_label rounds the loss of confident samples (margin 25: 1e-7; margin 50:
    3e-19) to 0 or to a rounding error of 1e-7, and T p - t at the argmax cancels to its float32 ulp.
    """
    rng = seeded_rng("precision", classes, margin, positives)
    scores, labels = trained_softmax_batch(rng, 64, classes, margin, positives)
    loss, grad = F.softmax_multilabel_loss(scores, labels)
    truth, truth_grad = precise_softmax_reference(scores, labels)
    assert loss >= 0
    assert abs(loss - truth) <= 5e-7 * truth, (loss, truth)
    error = np.abs(grad - truth_grad)
    assert error.max() <= 2e-6 * np.abs(truth_grad).max(), error.max()
    # relative precision where the gradient is tiny: p_c on the negatives, and p - 1 at a lone positive
    # (with several positives p - 1/M itself cancels in float32, as in any float32 layer)
    tails = (labels == 0) if positives > 1 else np.ones(labels.shape, bool)
    tails &= np.abs(truth_grad) > 1e-30
    assert (error[tails] / np.abs(truth_grad[tails])).max() <= 1e-4


@pytest.mark.parametrize("row,expected_branch", [
    ([[-150.0, -151.0, -152.0]], "shifted"),        # every score far below 0: exp(s) would underflow
    ([[85.0, 84.0, 80.0]], "shifted"),              # exp(85) * C is near the float32 maximum
    ([[0.0, -1.0, -2.0]], "unshifted"),
    ([[60.0, 59.0, 58.0]], "unshifted"),
    ([[-1e-3, -1.0, -2.0]], "shifted"),
    ([[60.5, 59.0, 58.0]], "shifted"),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_exponential_branches_at_their_edges(row, expected_branch, dtype):
    """The sparse-label shortcut (exp of the unshifted scores) and the shifted form both give exact values."""
    scores = np.array(row * 4, dtype)
    scores -= np.sign(row[0][0] - 30) * 0.01 * np.arange(4, dtype=dtype)[:, None]   # toward the range's middle
    labels = np.zeros_like(scores)
    labels[:, 1] = 1
    labels = np.pad(labels, ((0, 0), (0, 200)))          # 200 zero columns: the sparse label form
    scores = np.pad(scores, ((0, 0), (0, 200)), constant_values=row[0][0] - 200)
    loss, grad = F.softmax_multilabel_loss(scores, labels)
    truth, truth_grad = precise_softmax_reference(scores, labels)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(truth, rel=1e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(grad, truth_grad, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-30)
    # the branch really was the one named: the unshifted one keeps exp(m) != 1 at the argmax
    _, ctx = F.softmax_multilabel_forward(scores, labels)
    assert (ctx.top_exp == 1.0).all() == (expected_branch == "shifted")


def test_one_class_gives_exactly_zero():
    """C = 1: p = 1, so the loss and the gradient are exactly 0 for any score, with or without smoothing."""
    scores = np.array([[1e4], [-3.0], [0.5]])
    for eps in (0.0, 0.3):
        loss, grad = F.softmax_multilabel_loss(scores, np.ones((3, 1)), label_smoothing=eps)
        assert loss == 0.0 and not grad.any()


def test_zero_weight_indices_do_not_count_in_m():
    """An index with weight 0 is not a label: M counts only the non-zero weights, as in the dense form."""
    rng = np.random.default_rng(11)
    scores = rng.normal(size=(2, 6))
    idx = np.array([[0, 3, 5], [1, 2, -1]])
    weights = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    dense = np.zeros((2, 6))
    dense[0, [0, 5]] = [1.0, 2.0]
    for opts in (dict(), dict(normalization="valid"), dict(normalize_targets="sum", label_smoothing=0.1)):
        got = F.softmax_multilabel_loss(scores, idx, weights, label_format="indices", **opts)
        ref = F.softmax_multilabel_loss(scores, dense, **opts)
        assert got[0] == pytest.approx(ref[0], rel=1e-14)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-13, atol=1e-16)
    assert F.softmax_multilabel_loss(scores, idx, weights, label_format="indices")[0] == pytest.approx(
        reference_softmax_loss(scores, dense), rel=1e-12)


def peak_of_second_call(call):
    """``(peak bytes tracemalloc traced during the second call, what it returned)``: the first call fills the
    workspace, so the second shows what every later call (a training iteration) allocates."""
    call()
    tracemalloc.start()
    try:
        result = call()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("labels_kind", ["dense", "sparse", "indices"])
def test_softmax_allocates_no_batch_sized_array_per_call(labels_kind):
    """With a Workspace and ``out=``, a second forward and backward allocate only per-sample arrays and small
    objects, never an array of the batch's size (512 KB here): every full pass writes into a buffer."""
    rng = np.random.default_rng(23)
    n, c = 64, 2000
    scores = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    positives = rng.integers(0, c, size=(n, 3))
    labels: Any = np.zeros((n, c), np.float32)
    np.put_along_axis(labels, positives, 1.0, axis=1)
    options: dict[str, Any] = {"label_smoothing": 0.1}
    if labels_kind == "dense":
        labels[::3] = rng.random((len(labels[::3]), c))                 # many non-zeros: the dense path
    elif labels_kind == "indices":
        labels, options = positives.astype(np.float32), {"label_format": "indices"}
    ws, out = F.Workspace(), np.empty_like(scores)

    def call():
        loss, ctx = F.softmax_multilabel_forward(scores, labels, workspace=ws, **options)
        F.softmax_multilabel_backward(ctx, out=out)
        return loss
    peak, loss = peak_of_second_call(call)
    assert peak < scores.nbytes / 2, peak
    assert math.isfinite(loss) and loss > 0
