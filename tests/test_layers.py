"""The Caffe layers inside a real caffe.Net (float32): gradients, agreement with Caffe's C++ layers, wiring."""
import numpy as np
import pytest

from caffe_nets import assert_gradient_close, native_loss_net, numeric_gradient, python_loss_net, run
from conftest import warns_if
from test_functional import load_precision_script

SOFTMAX = "SoftmaxMultilabelLossLayer"
SIGMOID = "SigmoidMultilabelLossLayer"


def assert_label_diffs_zeroed(net, names):
    """Fill the label bottoms' diffs with NaN, run backward again: the layer must write zeros there.

    Caffe zero-fills diffs itself when it allocates them, so "the diff is 0" after one run proves nothing.
    """
    for name in names:
        net.blobs[name].diff[...] = np.nan
    net.backward()
    for name in names:
        assert (net.blobs[name].diff == 0).all(), name


def multilabel(rng, shape, axis=1, real=False):
    labels = (rng.random(shape) < 0.35).astype(np.float32)
    if real:
        labels *= rng.random(shape).astype(np.float32) * 2
    np.moveaxis(labels, axis, -1)[(0,) * (len(shape) - 1)] = 0     # one sample without positives
    return labels


SOFTMAX_CASES = [
    ((4, 6), {}),
    ((4, 6), {"normalize_targets": "sum", "normalization": "valid"}),
    ((4, 6), {"normalize_targets": "none", "normalization": "none", "label_smoothing": 0.1}),
    ((2, 4, 3, 2), {"normalization": "full"}),
    ((2, 3, 5), {"axis": 2, "label_smoothing": 0.2}),
]


@pytest.mark.parametrize("shape,params", SOFTMAX_CASES)
@pytest.mark.parametrize("loss_weight", [1.0, 3.0])
@pytest.mark.parametrize("real", [False, True])
def test_softmax_layer_gradient(tmp_path, shape, params, loss_weight, real):
    rng = np.random.default_rng(0)
    axis = params.get("axis", 1)
    feeds = {"scores": rng.normal(size=shape).astype(np.float32),
             "labels": multilabel(rng, shape, axis, real)}
    net = python_loss_net(tmp_path, SOFTMAX, {k: v.shape for k, v in feeds.items()}, params, loss_weight)
    with warns_if(real and params.get("normalize_targets", "count") == "count"):
        loss, analytic = run(net, feeds)
    assert loss > 0
    assert_gradient_close(analytic, numeric_gradient(net, feeds, loss_weight))
    net.forward()
    assert_label_diffs_zeroed(net, ["labels"])


SIGMOID_CASES = [
    {},
    {"pos_weight": 2.0},
    {"pos_weight": [1, 2, 3, 0.5]},
    {"class_weight": [0.5, 1, 2, 0]},
    {"gamma": 2.0},
    {"gamma": 2.0, "alpha": 0.25},
    {"ignore_label": -1, "normalization": "valid"},
    {"gamma": 1.5, "alpha": 0.6, "pos_weight": [1, 2, 3, 4], "class_weight": [4, 3, 2, 1], "ignore_label": -1,
     "normalization": "full"},
]


@pytest.mark.parametrize("params", SIGMOID_CASES)
@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 2, 2)])
@pytest.mark.parametrize("loss_weight", [1.0, 3.0])
def test_sigmoid_layer_gradient(tmp_path, params, shape, loss_weight):
    rng = np.random.default_rng(1)
    targets = (rng.random(shape) < 0.4).astype(np.float32)
    if "ignore_label" in params:
        targets[rng.random(shape) < 0.25] = params["ignore_label"]
    feeds = {"scores": (rng.normal(size=shape) * 2).astype(np.float32), "targets": targets}
    net = python_loss_net(tmp_path, SIGMOID, {k: v.shape for k, v in feeds.items()}, params, loss_weight)
    _, analytic = run(net, feeds)
    assert_gradient_close(analytic, numeric_gradient(net, feeds, loss_weight))
    net.forward()
    assert_label_diffs_zeroed(net, ["targets"])


@pytest.mark.parametrize("loss_weight", [1.0, 3.0])
def test_softmax_equals_caffe_softmax_with_loss_for_one_positive(tmp_path, loss_weight):
    rng = np.random.default_rng(2)
    n, c = 16, 10
    scores = (rng.normal(size=(n, c)) * 4).astype(np.float32)
    index = rng.integers(0, c, n)
    onehot = np.eye(c, dtype=np.float32)[index]
    ours = python_loss_net(tmp_path, SOFTMAX, {"scores": (n, c), "labels": (n, c)}, {}, loss_weight)
    native = native_loss_net(tmp_path, "SoftmaxWithLoss", {"scores": (n, c), "label": (n,)},
                             "loss_param { normalization: BATCH_SIZE }", loss_weight)
    our_loss, our_grad = run(ours, {"scores": scores, "labels": onehot})
    native_loss, native_grad = run(native, {"scores": scores, "label": index.astype(np.float32)})
    assert our_loss == pytest.approx(native_loss, rel=1e-5)
    np.testing.assert_allclose(our_grad, native_grad, atol=1e-5)


@pytest.mark.parametrize("loss_weight", [1.0, 3.0])
def test_sigmoid_equals_caffe_sigmoid_cross_entropy_loss(tmp_path, loss_weight):
    rng = np.random.default_rng(3)
    n, c = 16, 10
    scores = (rng.normal(size=(n, c)) * 4).astype(np.float32)
    targets = (rng.random((n, c)) < 0.3).astype(np.float32)
    targets[:2] = rng.random((2, c))                       # soft targets too
    shapes = {"scores": (n, c), "targets": (n, c)}
    ours = python_loss_net(tmp_path, SIGMOID, shapes, {}, loss_weight)
    native = native_loss_net(tmp_path, "SigmoidCrossEntropyLoss", shapes, "", loss_weight)
    feeds = {"scores": scores, "targets": targets}
    our_loss, our_grad = run(ours, feeds)
    native_loss, native_grad = run(native, feeds)
    assert our_loss == pytest.approx(native_loss, rel=1e-5)
    np.testing.assert_allclose(our_grad, native_grad, atol=1e-5)


def test_published_value_through_caffe(tmp_path):
    net = python_loss_net(tmp_path, SOFTMAX, {"scores": (1, 5), "labels": (1, 5)})
    loss, _ = run(net, {"scores": [[1, 7, 0, 0, 2]], "labels": [[1, 0, 0, 0, 1]]})
    assert loss == pytest.approx(5.51097965, rel=1e-7)


@pytest.mark.parametrize("layer,params", [(SOFTMAX, {"label_smoothing": 0.1}), (SIGMOID, {"gamma": 2, "alpha": 0.25})])
def test_bottoms_untouched_and_runs_repeat_bit_for_bit(tmp_path, layer, params):
    rng = np.random.default_rng(4)
    feeds = {"scores": rng.normal(size=(8, 12)).astype(np.float32), "labels": multilabel(rng, (8, 12))}
    net = python_loss_net(tmp_path, layer, {k: v.shape for k, v in feeds.items()}, params, 2.0)
    first = run(net, feeds)
    for name, value in feeds.items():
        assert np.array_equal(net.blobs[name].data, value)
    for _ in range(2):
        net.forward()
        net.backward()
        assert float(net.blobs["loss"].data) == first[0]
        assert np.array_equal(net.blobs["scores"].diff, first[1])
    for name, value in feeds.items():
        assert np.array_equal(net.blobs[name].data, value)


@pytest.mark.parametrize("layer", [SOFTMAX, SIGMOID])
def test_second_top_gives_probabilities(tmp_path, layer):
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(3, 2, 4)).astype(np.float32)
    net = python_loss_net(tmp_path, layer, {"scores": scores.shape, "labels": scores.shape}, {},
                          extra_tops=("prob",))
    run(net, {"scores": scores, "labels": multilabel(rng, scores.shape)})
    s = scores.astype(np.float64)
    expected = (np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)) if layer == SOFTMAX else 1 / (1 + np.exp(-s))
    np.testing.assert_allclose(net.blobs["prob"].data, expected, rtol=1e-5)
    assert net.blobs["loss"].data.shape == ()


def test_indices_format_through_caffe_equals_dense(tmp_path):
    rng = np.random.default_rng(6)
    n, c, k = 6, 20, 3
    scores = rng.normal(size=(n, c)).astype(np.float32)
    idx = np.full((n, k), -1, np.float32)
    weights = np.zeros((n, k), np.float32)
    dense = np.zeros((n, c), np.float32)
    for i in range(n):
        chosen = rng.choice(c, size=rng.integers(0, k + 1), replace=False)
        idx[i, :len(chosen)] = chosen
        weights[i, :len(chosen)] = rng.random(len(chosen)) + 0.5
        dense[i, chosen] = weights[i, :len(chosen)]
    sparse_net = python_loss_net(tmp_path, SOFTMAX, {"scores": (n, c), "labels": (n, k), "weights": (n, k)},
                                 {"label_format": "indices"}, 3.0)
    dense_net = python_loss_net(tmp_path, SOFTMAX, {"scores": (n, c), "labels": (n, c)}, {}, 3.0)
    with warns_if(True):                            # weights up to 1.5 with "count": both layers say so
        sparse = run(sparse_net, {"scores": scores, "labels": idx, "weights": weights})
    with warns_if(True):
        reference = run(dense_net, {"scores": scores, "labels": dense})
    assert sparse[0] == pytest.approx(reference[0], rel=1e-6)
    np.testing.assert_allclose(sparse[1], reference[1], atol=1e-7)
    assert_label_diffs_zeroed(sparse_net, ["labels", "weights"])


@pytest.mark.parametrize("classes,margin", [(1000, 12), (1000, 25), (1000, 50), (17000, 12), (17000, 25),
                                            (17000, 50)])
def test_softmax_at_least_as_precise_as_caffe_softmax_with_loss(classes, margin):
    """Float32 in a caffe.Net on confident one-positive inputs: loss and max-abs gradient error against float64
    truth (scripts/precision.py) no larger than those of Caffe's own SoftmaxWithLoss on the same inputs."""
    precision = load_precision_script()
    truth, ours, caffe_errors = precision.softmax_rows(64, classes, margin, seed=classes + margin)
    assert ours["loss"] >= 0 and np.isfinite(ours["loss"])
    assert ours["loss_rel_err"] <= max(caffe_errors["loss_rel_err"], 1e-7), (ours, caffe_errors)
    assert ours["grad_max_abs_err"] <= caffe_errors["grad_max_abs_err"], (ours, caffe_errors)
    # and well within float32 rounding of the truth in absolute terms
    assert ours["loss_rel_err"] <= 2e-7 and ours["grad_max_rel_err"] <= 1e-5
