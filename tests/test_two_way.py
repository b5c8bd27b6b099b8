"""The two-way multi-label loss core (softmax_multilabel_layer/losses/two_way.py): the paper's formula in float64,
float32 precision at confident margins, and options refused by name (the Caffe layer: tests/test_family_layers.py).

The reference is written here from Kobayashi, "Two-way Multi-Label Loss" (CVPR 2023), eq. for the sample-wise and
class-wise terms: for each group (a row, or a column) with a positive,
z = t_n log sum_neg e^(x/t_n) + t_p log sum_pos e^(-x/t_p), loss = mean softplus(z) over such rows + the same over
such columns; a group with no negative adds softplus(-inf) = 0. Python's math, group by group.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from softmax_multilabel_layer import TwoWayOptions, two_way_backward, two_way_forward, two_way_loss
from softmax_multilabel_layer.losses.common import Workspace
from softmax_multilabel_layer.params import MultilabelLossError

from test_functional import assert_matches_central_difference, central_difference, seeded_rng
from test_zlpr import confident_batch

EPS32 = float(np.finfo(np.float32).eps)


def softplus(z):
    return 0.0 if z == -math.inf else (z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z)))


def group_z(values, labels, tp, tn):
    """z of one group from its scores and labels (lists); None if the group has no positive."""
    pos = [v for v, y in zip(values, labels, strict=True) if y]
    neg = [v for v, y in zip(values, labels, strict=True) if not y]
    if not pos:
        return None
    if not neg:
        return -math.inf
    n_max, p_max = max(v / tn for v in neg), max(-v / tp for v in pos)
    hard_negative = tn * (n_max + math.log(math.fsum(math.exp(v / tn - n_max) for v in neg)))
    hard_positive = tp * (p_max + math.log(math.fsum(math.exp(-v / tp - p_max) for v in pos)))
    return hard_negative + hard_positive


def two_way64(scores, labels, tp=4.0, tn=1.0):
    x = np.asarray(scores, np.float64)
    y = np.asarray(labels)
    total = 0.0
    for groups in ([(x[r], y[r]) for r in range(x.shape[0])], [(x[:, c], y[:, c]) for c in range(x.shape[1])]):
        zs = [group_z(list(v), list(lab), tp, tn) for v, lab in groups]
        zs = [z for z in zs if z is not None]
        if zs:
            total += math.fsum(softplus(z) for z in zs) / len(zs)
    return total


def two_way_grad64(scores, labels, tp=4.0, tn=1.0):
    """The gradient from the formula: sigma(z)/|G| times the soft-max weights (+ on negatives, - on positives)."""
    x = np.asarray(scores, np.float64)
    y = np.asarray(labels)
    grad = np.zeros_like(x)
    for axis in (0, 1):
        index = [(r, slice(None)) for r in range(x.shape[0])] if axis == 1 else \
            [(slice(None), c) for c in range(x.shape[1])]
        groups = [(i, x[i], y[i]) for i in index if y[i].any()]
        for i, v, lab in groups:
            z = group_z(list(v), list(lab), tp, tn)
            if z == -math.inf:
                continue
            d = 1 / (1 + math.exp(-z)) / len(groups)
            neg = np.where(lab == 0, np.exp(v / tn - (v / tn)[lab == 0].max()), 0)
            pos = np.where(lab != 0, np.exp(-v / tp - (-v / tp)[lab != 0].max()), 0)
            grad[i] += d * (neg / neg.sum() - pos / pos.sum())
    return grad


@pytest.mark.parametrize("n,c,tp,tn,scale", [(5, 7, 4.0, 1.0, 3.0), (8, 3, 1.0, 1.0, 3.0), (3, 12, 2.5, 0.5, 3.0),
                                             (1, 4, 4.0, 1.0, 3.0), (6, 9, 4.0, 1.0, 60.0), (6, 9, 1.0, 0.5, 30.0)])
def test_float64_matches_the_formula_to_1e9(n, c, tp, tn, scale):
    # scale 3: the exponentials unshifted in one buffer; 60 and 30 / tn = 0.5: beyond UNSHIFTED_RANGE, shifted
    rng = seeded_rng("two-way 64", n, c, tp, tn, scale)
    scores = rng.normal(0, scale, (n, c))
    labels = (rng.random((n, c)) < 0.35).astype(np.float64)
    labels[0, :] = 0                                   # a sample with no positive: out of the sample mean
    labels[-1, 0] = 1
    if n > 2:
        labels[1, :] = 1                               # a sample with no negative: softplus(-inf) = 0
    loss, grad = two_way_loss(scores, labels, tp=tp, tn=tn)
    assert loss == pytest.approx(two_way64(scores, labels, tp, tn), rel=1e-9)
    np.testing.assert_allclose(grad, two_way_grad64(scores, labels, tp, tn), rtol=1e-9, atol=1e-15)
    numeric = central_difference(lambda x: two_way_forward(x, labels, tp=tp, tn=tn)[0], scores)
    assert_matches_central_difference(grad, numeric, loss)


def test_hand_value_and_no_positive_in_the_batch():
    # x = [[2, -1], [0.5, 1]], y = [[1, 0], [0, 1]], tp = tn = 1: each group has one positive and one negative,
    # so z = x_neg - x_pos: rows -3 and -0.5, columns 0.5 - 2 = -1.5 and -1 - 1 = -2
    loss, _ = two_way_loss(np.array([[2.0, -1.0], [0.5, 1.0]]), np.array([[1, 0], [0, 1]]), tp=1.0, tn=1.0)
    sp = [math.log1p(math.exp(z)) for z in (-3, -0.5, -1.5, -2)]
    assert loss == pytest.approx((sp[0] + sp[1]) / 2 + (sp[2] + sp[3]) / 2, rel=1e-14)
    loss, grad = two_way_loss(np.array([[2.0, -1.0]]), np.zeros((1, 2)))
    assert loss == 0 and not grad.any()


def test_temperatures_are_soft_max_and_soft_min():
    # as tn -> 0 the negative side tends to the hardest negative, as tp -> 0 the positive side to the hardest positive
    scores = np.array([[3.0, 1.0, -1.0, 0.5]])
    labels = np.array([[1, 1, 0, 0]])
    hard = math.log1p(math.exp(0.5 - 1.0))          # hardest negative 0.5 against hardest positive 1
    # one sample: each column has a positive and no negative (adds 0) or no positive (left out): the row term only
    loss, _ = two_way_loss(scores, labels, tp=1e-3, tn=1e-3)
    assert loss == pytest.approx(hard, abs=2e-3)
    soft, _ = two_way_loss(scores, labels, tp=4.0, tn=1.0)
    assert soft > loss + 0.1                        # soft-max and soft-min (tn 1, tp 4) lie beyond the hardest pair


@pytest.mark.parametrize("classes,margin", [(1000, 5.0), (1000, 12.0), (17000, 12.0), (1000, 30.0)])
def test_float32_at_confident_margins(classes, margin):
    scores, labels = confident_batch(seeded_rng("two-way f32", classes, margin), 16, classes, margin)
    truth = two_way64(scores, labels)
    loss, grad = two_way_loss(scores, labels)
    ours = abs(loss - truth) / truth
    print("C=%d margin %g: truth %.6g, our rel err %.2g" % (classes, margin, truth, ours))
    assert loss > 0 and math.isfinite(loss) and np.isfinite(grad).all()
    # z is formed from float32 exponentials summed in float32: an absolute error of a few float32 ulp in z,
    # hence in the relative error of softplus(z) ~ e^z: as a stable float32 log-sum-exp
    assert ours <= 16 * EPS32


def test_labels_checked_options_refused_and_stale_context():
    scores = np.zeros((2, 3))
    with pytest.raises(MultilabelLossError, match=r"two_way_forward: labels must be 0 or 1 \(multi-hot\), found 2.0 "
                                                  r"at labels\[0, 1\] \(sample 0, class 1\)"):
        two_way_loss(scores, np.array([[0, 2, 0], [0, 0, 0]]))
    with pytest.raises(MultilabelLossError, match=r"unknown option\(s\) label_format; known options: tp, tn, axis; "
                                                  r"label_format is an option of SoftmaxMultilabelLossLayer"):
        two_way_loss(scores, np.zeros((2, 3)), label_format="indices")
    with pytest.raises(MultilabelLossError, match=r"tp must be > 0 \(a temperature\), got 0.0"):
        two_way_loss(scores, np.zeros((2, 3)), tp=0.0)
    with pytest.raises(MultilabelLossError, match="tn must be a finite number, got inf"):
        TwoWayOptions(tn=math.inf)
    with pytest.raises(MultilabelLossError, match="scores are not finite: found nan"):
        two_way_loss(np.array([[np.nan, 0, 0], [0, 0, 0.]]), np.eye(2, 3))
    ws = Workspace()
    _, ctx = two_way_forward(np.ones((2, 3)), np.eye(2, 3), workspace=ws)
    two_way_forward(np.ones((2, 3)), np.eye(2, 3), workspace=ws)
    with pytest.raises(MultilabelLossError, match="two_way_backward: this context is stale"):
        two_way_backward(ctx)


def test_spatial_positions_are_samples_of_the_batch():
    rng = seeded_rng("two-way spatial")
    s4 = rng.normal(0, 2, (2, 4, 3, 1))
    y4 = (rng.random(s4.shape) < 0.4).astype(np.float64)
    rows_s = s4.transpose(0, 2, 3, 1).reshape(-1, 4)
    rows_y = y4.transpose(0, 2, 3, 1).reshape(-1, 4)
    loss, grad = two_way_loss(s4, y4)
    assert loss == pytest.approx(two_way64(rows_s, rows_y), rel=1e-12)
    np.testing.assert_allclose(grad, two_way_grad64(rows_s, rows_y).reshape(2, 3, 1, 4).transpose(0, 3, 1, 2),
                               rtol=1e-12, atol=1e-17)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                  elements=st.floats(-20, 20, allow_nan=False)), st.data())
def test_properties(scores, data):
    labels = data.draw(hnp.arrays(np.float64, scores.shape, elements=st.sampled_from([0.0, 1.0])))
    loss, grad = two_way_loss(scores, labels)
    assert loss >= 0
    assert loss == pytest.approx(two_way64(scores, labels), rel=1e-9, abs=1e-300)
    assert (grad[labels == 1] <= 0).all() and (grad[labels == 0] >= 0).all()
    # each group's weights sum to sigma(z) <= 1 on each side: the whole gradient sums to 0 (positives vs negatives)
    assert abs(grad.sum()) <= 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_beyond_the_float32_exponent_range_take_the_shifted_path(dtype):
    # e^120 overflows float32: the exponentials must be shifted by each group's maximum, in both directions
    scores = np.array([[120.0, -130.0, 5.0], [-95.0, 100.0, 118.0], [0.5, -1.0, 90.0]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    loss, grad = two_way_loss(scores.astype(dtype), labels)
    x = scores.astype(dtype).astype(np.float64)
    assert loss == pytest.approx(two_way64(x, labels), rel=1e-6)
    np.testing.assert_allclose(grad, two_way_grad64(x, labels), rtol=1e-5, atol=1e-12)


def test_options_object_temperatures_are_used_and_keywords_beside_it_refused():
    rng = seeded_rng(30)
    scores = rng.normal(0.0, 2.0, (6, 5))
    labels = (rng.random((6, 5)) < 0.4).astype(np.float64)
    labels[0, 0] = 1.0
    by_keywords, grad_keywords = two_way_loss(scores, labels, tp=2.0, tn=0.5)
    by_object, grad_object = two_way_loss(scores, labels, options=TwoWayOptions(tp=2.0, tn=0.5))
    assert by_object == by_keywords and np.array_equal(grad_object, grad_keywords)
    assert abs(by_object - two_way_loss(scores, labels)[0]) > 1e-3       # the temperatures do change the loss
    for keyword in ({"tp": 2.0}, {"tn": 0.5}, {"tp": 3.0, "tn": 2.0}):
        # a temperature beside an options object was silently dropped before: now refused like any other keyword
        with pytest.raises(MultilabelLossError, match=r"two_way_forward: options= was given together with keyword "
                                                      r"option\(s\) %s" % ", ".join(sorted(keyword))):
            two_way_loss(scores, labels, options=TwoWayOptions(tp=2.0, tn=0.5), **keyword)
