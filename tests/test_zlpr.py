"""The ZLPR core (softmax_multilabel_layer/losses/zlpr.py): the paper's formula in float64, float32 precision at
confident margins, label forms, options refused by name
(the Caffe layer: tests/test_family_layers.py).

References are written here from the formula of Su et al. (arXiv 2208.02955), per sample with Python's math:
L = log(1 + sum_neg e^s) + log(1 + sum_pos e^-s); d/ds_j = e^s_j / (1 + sum_neg e^s) on a negative and
-e^-s_i / (1 + sum_pos e^-s) on a positive. Seeds are fixed and printed.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from softmax_multilabel_layer import ZLPROptions, zlpr_backward, zlpr_forward, zlpr_loss, zlpr_probabilities
from softmax_multilabel_layer.losses.common import Workspace
from softmax_multilabel_layer.params import MultilabelLossError

from test_functional import assert_matches_central_difference, central_difference, seeded_rng

EPS32 = float(np.finfo(np.float32).eps)


def zlpr64(scores, labels):
    """The paper's loss (mean over the rows of N x C) and its gradient, in float64 with math.fsum and log1p."""
    s = np.asarray(scores, np.float64)
    n, _ = s.shape
    loss_terms, grad = [], np.zeros_like(s)
    for r in range(n):
        pos = [c for c in range(s.shape[1]) if labels[r][c]]
        neg = [c for c in range(s.shape[1]) if not labels[r][c]]
        sum_neg = math.fsum(math.exp(s[r, j]) for j in neg)
        sum_pos = math.fsum(math.exp(-s[r, i]) for i in pos)
        loss_terms += [math.log1p(sum_neg), math.log1p(sum_pos)]
        for j in neg:
            grad[r, j] = math.exp(s[r, j]) / (1 + sum_neg) / n
        for i in pos:
            grad[r, i] = -math.exp(-s[r, i]) / (1 + sum_pos) / n
    return math.fsum(loss_terms) / n, grad


def random_batch(rng, n, c, density=0.3, scale=3.0):
    labels = (rng.random((n, c)) < density).astype(np.float64)
    scores = rng.normal(0, scale, (n, c))
    return scores, labels


@pytest.mark.parametrize("n,c,scale", [(1, 1, 3.0), (3, 5, 3.0), (7, 40, 3.0), (4, 2, 3.0), (6, 9, 40.0)])
def test_float64_matches_the_formula_to_1e9(n, c, scale):
    # scale 40: scores above 60, so the exponentials are shifted (masked_logsumexp), not taken of the scores
    rng = seeded_rng("zlpr64", n, c, scale)
    scores, labels = random_batch(rng, n, c, scale=scale)
    labels[0, :] = 0                                   # a sample with no positive: negative term only
    if n > 1:
        labels[1, :] = 1                               # one with no negative: positive term only
    loss, grad = zlpr_loss(scores, labels)
    ref_loss, ref_grad = zlpr64(scores, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-300)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-15)
    numeric = central_difference(lambda x: zlpr_forward(x, labels)[0], scores)
    assert_matches_central_difference(grad, numeric, loss)


def test_published_example_and_threshold_zero():
    # one positive at 2, negatives at -1 and 0.5: log(1 + e^-1 + e^0.5) + log(1 + e^-2)
    loss, grad = zlpr_loss(np.array([[2.0, -1.0, 0.5]]), np.array([[1, 0, 0]]))
    assert loss == pytest.approx(math.log(1 + math.exp(-1) + math.exp(0.5)) + math.log(1 + math.exp(-2)), rel=1e-14)
    assert grad[0, 0] < 0 < grad[0, 2]
    # the zero bound: with one class, ZLPR is softplus(-s) for a positive and softplus(s) for a negative (BCE)
    for s, y in ((0.3, 1), (0.3, 0), (-4.0, 1)):
        loss, _ = zlpr_loss(np.array([[s]]), np.array([[y]]))
        assert loss == pytest.approx(math.log1p(math.exp(-s if y else s)), rel=1e-14)


def test_large_scores_take_the_shifted_path_exactly():
    # scores far beyond float32's exp range: the shift u = max(0, max) must be used, and the value stays exact
    scores = np.array([[300.0, -200.0, 150.0, 90.0], [-500.0, 40.0, -30.0, 0.0]])
    labels = np.array([[1, 0, 0, 1], [1, 1, 0, 0]])
    loss, grad = zlpr_loss(scores, labels)
    # by hand: row 0: negatives -200, 150 -> 150 + log1p(e^-150 + e^-350); positives 300, 90 -> log1p(e^-300 + e^-90)
    row0 = 150 + math.log1p(math.exp(-150) + math.exp(-350)) + math.log1p(math.exp(-300) + math.exp(-90))
    row1 = math.log1p(math.exp(-30) + math.exp(0)) + 500 + math.log1p(math.exp(-500) + math.exp(-540))
    assert loss == pytest.approx((row0 + row1) / 2, rel=1e-14)
    assert np.isfinite(grad).all()
    for dtype in (np.float32, np.float64):
        loss32, grad32 = zlpr_loss(scores.astype(dtype), labels)
        assert loss32 == pytest.approx((row0 + row1) / 2, rel=1e-6)
        assert grad32[0, 2] == pytest.approx(0.5, rel=1e-6)      # the top negative carries the whole weight


def test_indices_equal_dense_and_axis_with_spatial_positions():
    rng = seeded_rng("zlpr indices")
    scores, labels = random_batch(rng, 6, 9)
    labels[2] = 0
    k = int(labels.sum(axis=1).max())
    indices = -np.ones((6, k))
    for r in range(6):
        where = np.flatnonzero(labels[r])
        indices[r, :len(where)] = rng.permutation(where)   # any order, padded with -1
    dense = zlpr_loss(scores, labels)
    sparse = zlpr_loss(scores, indices, label_format="indices")
    assert sparse[0] == dense[0]
    np.testing.assert_array_equal(sparse[1], dense[1])
    # N x C x H x W with axis 1: one ZLPR per pixel, "batch_size" divides by N, "full" by N*H*W
    s4 = rng.normal(0, 2, (2, 5, 3, 2))
    y4 = (rng.random(s4.shape) < 0.4).astype(np.float64)
    rows_s = s4.transpose(0, 2, 3, 1).reshape(-1, 5)
    rows_y = y4.transpose(0, 2, 3, 1).reshape(-1, 5)
    ref_loss, ref_grad = zlpr64(rows_s, rows_y)
    ref_grad = ref_grad.reshape(2, 3, 2, 5).transpose(0, 3, 1, 2) * 12 / 2
    loss, grad = zlpr_loss(s4, y4)
    assert loss == pytest.approx(ref_loss * 12 / 2, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-17)
    full, _ = zlpr_loss(s4, y4, normalization="full")
    assert full == pytest.approx(ref_loss, rel=1e-12)
    # the class axis last: O = N*H*W samples, so "batch_size" divides by all 12
    loss_last, grad_last = zlpr_loss(np.moveaxis(s4, 1, -1).copy(), np.moveaxis(y4, 1, -1).copy(), axis=-1)
    assert loss_last == pytest.approx(full, rel=1e-12)
    np.testing.assert_allclose(np.moveaxis(grad_last, -1, 1), grad * 2 / 12, rtol=1e-12)


def confident_batch(rng, n, classes, margin):
    """float32 scores +margin on 3 positives per sample and -margin elsewhere, plus N(0, 0.5); 0/1 labels."""
    labels = np.zeros((n, classes), np.float32)
    for r in range(n):
        labels[r, rng.choice(classes, 3, replace=False)] = 1
    return (np.where(labels > 0, margin, -margin) + rng.normal(0, 0.5, labels.shape)).astype(np.float32), labels


def stable_float32_zlpr(scores, labels):
    """A float32 log-sum-exp written the stable way, for comparison: u = max(0, max t), u + log(e^-u + sum e^(t-u))."""
    total = np.float32(0)
    for s, y in zip(scores, labels, strict=True):
        for t in (s[y == 0], -s[y == 1]):
            u = np.float32(max(0.0, float(t.max()) if t.size else 0.0))
            total += u + np.log(np.exp(-u) + np.exp(t - u).sum(dtype=np.float32))
    return float(total) / len(scores)


@pytest.mark.parametrize("classes,margin", [(1000, 5.0), (1000, 12.0), (1000, 25.0), (17000, 12.0), (17000, 50.0),
                                            (1000, -2.0)])
def test_float32_at_confident_margins_is_at_least_as_precise_as_a_stable_logsumexp(classes, margin):
    scores, labels = confident_batch(seeded_rng("zlpr f32", classes, margin), 16, classes, margin)
    truth, truth_grad = zlpr64(scores, labels)
    loss, grad = zlpr_loss(scores, labels)
    ours = abs(loss - truth) / truth
    stable = abs(stable_float32_zlpr(scores, labels) - truth) / truth
    print("C=%d margin %g: truth %.6g, our rel err %.2g, stable float32 log-sum-exp %.2g"
          % (classes, margin, truth, ours, stable))
    assert loss > 0 and math.isfinite(loss)
    assert ours <= max(stable, 8 * EPS32)
    assert ours <= 8 * EPS32
    scale = np.abs(truth_grad).max()
    assert np.abs(grad - truth_grad).max() <= 8 * EPS32 * scale
    tails = np.abs(truth_grad) > 1e-30
    assert (np.abs(grad - truth_grad)[tails] <= 16 * EPS32 * np.abs(truth_grad)[tails]).all()


def test_labels_checked_and_options_refused_by_name():
    scores = np.zeros((2, 3))
    with pytest.raises(MultilabelLossError, match=r"zlpr_forward: labels must be 0 or 1 \(multi-hot\), found 0.5 at "
                                                  r"labels\[1, 2\] \(sample 1, class 2\)"):
        zlpr_loss(scores, np.array([[1, 0, 0], [0, 0, 0.5]]))
    with pytest.raises(MultilabelLossError, match=r"found nan at labels\[0, 1\]"):
        zlpr_loss(scores, np.array([[0, np.nan, 0], [0, 0, 0]]))
    with pytest.raises(MultilabelLossError, match=r"found -1.0 at labels\[0, 0\]"):
        zlpr_loss(scores, np.array([[-1, 0, 0], [0, 0, 0]]))
    with pytest.raises(MultilabelLossError, match=r"zlpr_forward: unknown option\(s\) gamma, tp; known options: "
                                                  r"normalization, axis, label_format; gamma is an option of "
                                                  r"SigmoidMultilabelLossLayer.*tp is an option of TwoWayLossLayer"):
        zlpr_loss(scores, np.zeros((2, 3)), gamma=2, tp=4.0)
    with pytest.raises(MultilabelLossError, match='normalization must be one of "batch_size", "full", "none", '
                                                  "got 'valid'"):
        zlpr_loss(scores, np.zeros((2, 3)), normalization="valid")
    with pytest.raises(MultilabelLossError, match=r"label index 3 at labels\[0, 1\] .* is invalid"):
        zlpr_loss(scores, np.array([[0, 3], [-1, -1]]), label_format="indices")
    with pytest.raises(MultilabelLossError, match="scores are not finite: found inf"):
        zlpr_loss(np.array([[0, np.inf, 0], [0, 0, 0.]]), np.zeros((2, 3)))
    with pytest.raises(MultilabelLossError, match="scores are not finite: found -inf"):
        zlpr_loss(np.array([[0, -np.inf, 0], [0, 0, 0.]]), np.zeros((2, 3)))


def test_context_goes_stale_and_probabilities_are_the_sigmoid():
    ws = Workspace()
    scores = np.array([[2.0, -80.0, 0.0, 100.0]], np.float32)
    loss, ctx = zlpr_forward(scores, np.array([[1, 0, 0, 1]]), workspace=ws)
    p = zlpr_probabilities(ctx)
    np.testing.assert_allclose(p, [[1 / (1 + math.exp(-2)), math.exp(-80), 0.5, 1.0]], rtol=1e-6)
    assert p.dtype == np.float32
    zlpr_forward(scores, np.array([[0, 0, 0, 1]]), workspace=ws)
    with pytest.raises(MultilabelLossError, match="zlpr_backward: this context is stale"):
        zlpr_backward(ctx)
    assert ZLPROptions().keys() == ["normalization", "axis", "label_format"]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6)),
                  elements=st.floats(-30, 30, allow_nan=False)), st.data())
def test_properties(scores, data):
    labels = data.draw(hnp.arrays(np.float64, scores.shape, elements=st.sampled_from([0.0, 1.0])))
    loss, grad = zlpr_loss(scores, labels)
    ref_loss, ref_grad = zlpr64(scores, labels)
    assert loss >= 0
    assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-300)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-300)
    # positives get a negative gradient, negatives a positive one; each term's weights sum to less than 1
    assert (grad[labels == 1] <= 0).all() and (grad[labels == 0] >= 0).all()
    n = len(scores)
    assert (np.where(labels == 0, grad, 0).sum(axis=1) * n < 1 + 1e-12).all()
    # adding a constant to every score moves the negative and positive terms in opposite directions
    shifted, _ = zlpr_loss(scores + 1.0, labels)
    if labels.all():
        assert shifted <= loss
    elif not labels.any():
        assert shifted >= loss

