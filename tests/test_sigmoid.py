"""The sigmoid core (softmax_multilabel_layer/losses/sigmoid.py): float32 precision on trained-like inputs against
float64 math and against Caffe's own SigmoidCrossEntropyLoss, one BCE, and the asymmetric loss (ASL).

Every random input has a fixed seed. The float64 references below are written out here, independently of
the core: softplus by np.logaddexp, sigmoid as exp(-softplus(-x)) in float64.
"""
import json
import math
import warnings
from typing import Any

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from softmax_multilabel_layer.cli import main as cli_main
from softmax_multilabel_layer.losses import sigmoid as S
from softmax_multilabel_layer.losses.common import Workspace
from softmax_multilabel_layer.params import MultilabelLossError, SigmoidOptions
from softmax_multilabel_layer.tools.netspec import sigmoid_multilabel_loss

from caffe_nets import assert_gradient_close, native_loss_net, numeric_gradient, python_loss_net, run
from test_functional import central_difference, peak_of_second_call

SIGMOID = "SigmoidMultilabelLossLayer"
EPS32 = float(np.finfo(np.float32).eps)


def trained_like(n, c, margin, seed=0, positives=3, noise=0.5):
    """Binary targets with ``positives`` per row; logits +-margin + N(0, noise) on the right side."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, c), np.float32)
    for i in range(n):
        y[i, rng.choice(c, positives, replace=False)] = 1
    x = (np.where(y > 0, margin, -margin) + rng.normal(0, noise, (n, c))).astype(np.float32)
    return x, y


def sigmoid64(x):
    return np.exp(-np.logaddexp(0, -np.asarray(x, np.float64)))


def bce64(x, y):
    """Loss (batch_size normalization) and gradient in float64 on the given (float32) inputs."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = x.shape[0]
    loss = (y * np.logaddexp(0, -x) + (1 - y) * np.logaddexp(0, x)).sum() / n
    grad = ((1 - y) * sigmoid64(x) - y * sigmoid64(-x)) / n
    return loss, grad


def asl64(x, y, gamma_neg, gamma_pos, clip):
    """The official ASL formula in float64, elementwise (batch_size normalization: divide the sum by N).

    p_m = max(p - m, 0); l = -[y log p + (1 - y) log(1 - p_m)] (1 - p_t)^(gamma_pos y + gamma_neg (1 - y)),
    with 1 - p_t = y (1 - p) + (1 - y) p_m. log p = -softplus(-x); for m = 0, log(1 - p) = -softplus(x).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    p, one_minus_p = sigmoid64(x), sigmoid64(-x)
    p_m = np.maximum(p - clip, 0)
    log_p = -np.logaddexp(0, -x)
    log_1_p_m = np.log1p(-p_m) if clip > 0 else -np.logaddexp(0, x)
    q = y * one_minus_p + (1 - y) * p_m
    return -(y * log_p + (1 - y) * log_1_p_m) * q ** (gamma_pos * y + gamma_neg * (1 - y))


def forward_backward(x, y, **options):
    loss, ctx = S.sigmoid_multilabel_forward(x, y, **options)
    return loss, S.sigmoid_multilabel_backward(ctx)


@pytest.fixture(params=[True, False], ids=["log1p", "corrected-log"])
def log1p_form(request, monkeypatch):
    """Run a test with each form of log1p(u) the kernel can take, whatever this CPU is: numpy's ``log1p``
    (chosen where it is SIMD code) and log(1 + u) corrected by the rounding error of 1 + u."""
    monkeypatch.setattr(S, "LOG1P_IS_SIMD", request.param)
    return request.param


# ---------------------------------------------------------------- float32 precision, trained regime

@pytest.mark.parametrize("margin", [8, 14, 20])
@pytest.mark.parametrize("shape", [(64, 17000), (256, 1000)])
def test_bce_float32_at_least_as_precise_as_caffe(tmp_path, shape, margin, log1p_form):
    """Loss and max-abs gradient error against float64 math: ours (core and in caffe.Net) <= Caffe's C++ layer."""
    n, c = shape
    x, y = trained_like(n, c, margin, seed=margin)
    true_loss, true_grad = bce64(x, y)
    feeds = {"scores": x, "labels": y}
    inputs = {k: v.shape for k, v in feeds.items()}
    caffe_loss, caffe_grad = run(native_loss_net(tmp_path, "SigmoidCrossEntropyLoss", inputs), feeds)
    net_loss, net_grad = run(python_loss_net(tmp_path, SIGMOID, inputs), feeds)
    core_loss, core_grad = forward_backward(x, y)
    caffe_error = abs(caffe_loss - true_loss)
    caffe_grad_error = np.abs(caffe_grad - true_grad).max()
    for loss, grad in ((core_loss, core_grad), (net_loss, net_grad)):
        assert loss > 0
        # the loss top is float32: allow its rounding, and require far better than Caffe's accumulated error
        assert abs(loss - true_loss) <= 2 * EPS32 * true_loss + 1e-3 * caffe_error
        assert np.abs(grad - true_grad).max() <= 0.05 * caffe_grad_error
    # and the core (a Python float) is exact to a few float32 ulp, where Caffe loses the tiny terms
    assert abs(core_loss - true_loss) <= 4 * EPS32 * true_loss
    if margin == 20:
        assert caffe_loss == 0.0 and core_loss > 0.99 * true_loss


@pytest.mark.parametrize("margin", [14, 20])
def test_bce_gradient_relative_precision_in_both_tails(margin):
    """p = sigmoid(x) below 1e-6 for negatives and 1 - p below 1e-6 for positives: a few ulp relative error."""
    x, y = trained_like(64, 2000, margin, seed=1, noise=2.0)
    _, true_grad = bce64(x, y)
    _, grad = forward_backward(x, y)
    relative = np.abs(grad - true_grad) / np.abs(true_grad)
    tiny = np.abs(true_grad) * x.shape[0] < 1e-6
    assert tiny[y == 0].mean() > 0.5 and tiny[y == 1].mean() > 0.5
    assert relative[tiny & (y == 0)].max() < 4e-7        # numpy's float32 exp is within 2.5 ulp
    assert relative[tiny & (y == 1)].max() < 4e-7
    assert np.median(relative[tiny]) < 1e-7


def test_probabilities_keep_relative_precision():
    x = np.array([[-80, -30, -14, -0.0, 0.0, 1e-30, 14, 30, 80, 1e4, -1e4]], np.float32)
    y = np.zeros_like(x)
    _, ctx = S.sigmoid_multilabel_forward(x, y)
    p = S.sigmoid_probabilities(ctx).astype(np.float64)
    true = sigmoid64(x)
    assert np.all(np.abs(p - true) <= 4 * EPS32 * true)
    _, grad = forward_backward(x, 1 - y)                  # positives: p - 1 = -sigmoid(-x)
    true_neg = sigmoid64(-x)
    assert np.all(np.abs(-grad.astype(np.float64) - true_neg) <= 4 * EPS32 * true_neg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_are_finite_and_exact(dtype, log1p_form):
    x = np.array([[-1e4, -200, -90, 90, 200, 1e4]], dtype)
    y = np.array([[0, 1, 0, 1, 0, 1]], dtype)
    for options in ({}, {"gamma": 2}, {"gamma_neg": 4, "clip": 0.05}, {"gamma_neg": 3.5, "gamma_pos": 0.5}):
        loss, grad = forward_backward(x, y, **options)
        assert np.isfinite(loss) and np.isfinite(grad).all(), options
    loss, grad = forward_backward(x, y)
    true_loss, true_grad = bce64(x, y)
    assert loss == pytest.approx(true_loss, rel=4 * EPS32) and true_loss >= 400
    assert np.allclose(grad, true_grad, rtol=4 * EPS32, atol=float(np.finfo(dtype).tiny))
    assert grad[0, 2] > 0                                   # sigmoid(-90) = 8e-40, not rounded to 0


def test_soft_targets_against_float64(log1p_form):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(32, 300)) * 6).astype(np.float32)
    y = rng.random((32, 300)).astype(np.float32)
    true_loss, true_grad = bce64(x, y)
    loss, grad = forward_backward(x, y)
    assert abs(loss - true_loss) <= 4 * EPS32 * true_loss
    assert np.abs(grad - true_grad).max() <= 2 * EPS32 / x.shape[0]


# ---------------------------------------------------------------- one BCE

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_bce_binary_targets_bit_for_bit(dtype):
    """BCE in its one-term form (default) and its two-term form (a pos_weight list of ones) agree exactly."""
    x, y = trained_like(16, 500, 9, seed=4, noise=4.0)
    x, y = x.astype(dtype), y.astype(dtype)
    loss, grad = forward_backward(x, y)
    loss2, grad2 = forward_backward(x, y, pos_weight=[1.0] * 500)
    assert np.array_equal(grad, grad2)
    assert loss == pytest.approx(loss2, rel=1e-12)        # same elements, summed in the same order
    focal, focal_grad = forward_backward(x, y, gamma=2)
    focal2, focal_grad2 = forward_backward(x, y, gamma=2, pos_weight=[1.0] * 500)
    assert np.array_equal(focal_grad, focal_grad2) and focal == pytest.approx(focal2, rel=1e-12)


def test_one_bce_soft_targets_within_rounding():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(16, 400)) * 5).astype(np.float32)
    y = rng.random((16, 400)).astype(np.float32)
    loss, grad = forward_backward(x, y)
    loss2, grad2 = forward_backward(x, y, pos_weight=[1.0] * 400)
    assert loss == pytest.approx(loss2, rel=4 * EPS32)
    assert np.abs(grad - grad2).max() <= 2 * EPS32 / 16


@pytest.mark.parametrize("options", [{}, {"gamma": 2, "alpha": 0.25, "pos_weight": 2.0},
                                     {"gamma_neg": 4, "clip": 0.05, "class_weight": list(range(1, 8))}])
def test_blocks_do_not_change_the_result(monkeypatch, options):
    """Rows split into blocks, and rows split along the class axis (with per-class weights), give the same
    elementwise gradient as one block, and the same loss up to the summation order."""
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(5, 7, 3)) * 4).astype(np.float32)
    y = (rng.random((5, 7, 3)) < 0.3).astype(np.float32)
    reference = forward_backward(x, y, **options)
    for size in (7, 21, 50):                              # 3 classes per block; a row; 2 rows
        monkeypatch.setattr(S, "BLOCK_SIZE", size)
        loss, grad = forward_backward(x, y, **options)
        assert np.array_equal(grad, reference[1]), size
        assert loss == pytest.approx(reference[0], rel=1e-6)


def test_probabilities_false_keeps_loss_and_gradient():
    x, y = trained_like(8, 300, 5, seed=7, noise=3.0)
    ws = Workspace()
    loss, ctx = S.sigmoid_multilabel_forward(x, y, workspace=ws, probabilities=False)
    grad = S.sigmoid_multilabel_backward(ctx)
    assert (loss, grad.tolist()) == (forward_backward(x, y)[0], forward_backward(x, y)[1].tolist())
    with pytest.raises(MultilabelLossError, match="probabilities=False"):
        S.sigmoid_probabilities(ctx)


# ---------------------------------------------------------------- asymmetric loss (ASL)

def asl_inputs(dtype, soft=False, seed=8):
    rng = np.random.default_rng(seed)
    y = (rng.random((24, 40)) < 0.2).astype(dtype)
    if soft:
        y = rng.random((24, 40)).astype(dtype)
    x = (np.where(y > 0.5, 2.0, -2.0) + rng.normal(0, 2.5, y.shape)).astype(dtype)
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_asl_defaults_are_bce_exactly(dtype):
    x, y = asl_inputs(dtype)
    loss, grad = forward_backward(x, y)
    for options in ({"gamma_neg": 0, "gamma_pos": 0, "clip": 0}, {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0}):
        asl_loss, asl_grad = forward_backward(x, y, **options)
        assert asl_loss == loss and np.array_equal(asl_grad, grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma", [1, 2, 1.5])
@pytest.mark.parametrize("soft", [False, True])
def test_asl_with_equal_gammas_is_focal_exactly(dtype, gamma, soft):
    x, y = asl_inputs(dtype, soft)
    focal_loss, focal_grad = forward_backward(x, y, gamma=gamma)
    asl_loss, asl_grad = forward_backward(x, y, gamma_neg=gamma, gamma_pos=gamma, clip=0)
    assert asl_loss == focal_loss and np.array_equal(asl_grad, focal_grad)
    # and a different pair is not the focal loss (the test can fail)
    other_loss, _ = forward_backward(x, y, gamma_neg=gamma, gamma_pos=gamma + 1)
    assert other_loss != focal_loss


ASL_CASES = [(4, 0, 0.05), (4, 1, 0.05), (2, 2, 0), (1.5, 0.5, 0.2), (3, 0, 0.3), (0, 2, 0), (0, 0, 0.1),
             (0, 1, 0), (0, 0.5, 0)]   # gamma_pos alone, at and below 1: focusing must still switch on


@pytest.mark.parametrize("gamma_neg,gamma_pos,clip", ASL_CASES)
@pytest.mark.parametrize("soft", [False, True])
def test_asl_values_against_the_formula(gamma_neg, gamma_pos, clip, soft, log1p_form):
    x, y = asl_inputs(np.float64, soft)
    if clip > 0 and not soft:
        assert ((sigmoid64(x) < clip) & (y == 0)).sum() > 50          # many negatives with p below m
        assert ((sigmoid64(x) > clip) & (y == 0)).sum() > 50
    true = asl64(x, y, gamma_neg, gamma_pos, clip).sum() / x.shape[0]
    loss, _ = forward_backward(x, y, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)
    assert loss == pytest.approx(true, rel=1e-13)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    true32 = asl64(x32, y32, gamma_neg, gamma_pos, clip).sum() / x.shape[0]
    loss32, _ = forward_backward(x32, y32, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)
    assert loss32 == pytest.approx(true32, rel=1e-6)


def test_asl_negatives_below_the_clip_add_nothing():
    x = np.array([[-5.0, -3.0, -2.0, 0.0, 3.0]])                        # p = 0.0067, 0.047, 0.12, 0.5, 0.95
    y = np.zeros_like(x)
    loss, grad = forward_backward(x, y, gamma_neg=4, clip=0.05)
    elementwise = asl64(x, y, 4, 0, 0.05)[0]
    assert elementwise[:2].tolist() == [0, 0] and (elementwise[2:] > 0).all()
    assert grad[0, :2].tolist() == [0, 0] and (grad[0, 2:] > 0).all()
    assert loss == pytest.approx(elementwise.sum(), rel=1e-13)


@pytest.mark.parametrize("gamma_neg,gamma_pos,clip", ASL_CASES)
@pytest.mark.parametrize("soft", [False, True])
def test_asl_gradient_float64_core(gamma_neg, gamma_pos, clip, soft):
    """Analytic gradient against central differences of the float64 formula (written above)."""
    x, y = asl_inputs(np.float64, soft, seed=9)
    x, y = x[:6, :15], y[:6, :15]
    _, grad = forward_backward(x, y, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)
    numeric = central_difference(lambda v: asl64(v, y, gamma_neg, gamma_pos, clip).sum() / x.shape[0], x)
    kink = (np.abs(sigmoid64(x) - clip) < 1e-4) & (y < 1)              # p_m = max(p - m, 0) has a kink
    assert not kink.any()
    assert np.abs(grad - numeric).max() < 1e-8


@pytest.mark.parametrize("params", [{"gamma_neg": 4, "clip": 0.05}, {"gamma_neg": 4, "gamma_pos": 1, "clip": 0.05},
                                    {"gamma_neg": 2.5, "gamma_pos": 0.5, "clip": 0.2, "pos_weight": [1, 2, 3, 0.5],
                                     "alpha": 0.4, "ignore_label": -1}])
@pytest.mark.parametrize("loss_weight", [1.0, 3.0])
def test_asl_layer_gradient_through_caffe(tmp_path, params, loss_weight):
    """float32 in a caffe.Net, Caffe's GradientChecker rule (step 1e-2, threshold 1e-2)."""
    rng = np.random.default_rng(10)
    targets = (rng.random((3, 4)) < 0.4).astype(np.float32)
    if "ignore_label" in params:
        targets[0, 0] = params["ignore_label"]
    scores = (rng.normal(size=(3, 4)) * 2).astype(np.float32)
    scores[1, 2], scores[2, 0] = -4.0, -3.5                               # negatives with p below the clip
    p = sigmoid64(scores)
    assert (np.abs(p - params["clip"]) > 0.01).all()                     # no kink within the step
    assert ((p < params["clip"]) & (targets == 0)).any()
    feeds = {"scores": scores, "targets": targets}
    net = python_loss_net(tmp_path, SIGMOID, {k: v.shape for k, v in feeds.items()}, params, loss_weight)
    loss, analytic = run(net, feeds)
    core_loss, core_grad = forward_backward(scores, targets, **params)
    assert loss == pytest.approx(core_loss, rel=1e-6)
    assert np.allclose(analytic, loss_weight * core_grad, rtol=1e-6, atol=0)
    assert_gradient_close(analytic, numeric_gradient(net, feeds, loss_weight))


@pytest.mark.parametrize("params,fragments", [
    ({"gamma_neg": -1}, ["gamma_neg", "[0.0, inf]", "-1"]),
    ({"gamma_pos": "2"}, ["gamma_pos", "number", "'2'"]),
    ({"gamma_pos": float("nan")}, ["gamma_pos", "finite", "nan"]),
    ({"clip": 1.0}, ["clip", "[0.0, 1.0)", "1.0"]),
    ({"clip": -0.05}, ["clip", "-0.05"]),
    ({"clip": True}, ["clip", "number", "True"]),
    ({"gamma": 2, "gamma_neg": 4}, ["gamma = 2", "gamma_pos and gamma_neg", "not both"]),
    ({"gamma_negative": 4}, ["unknown", "gamma_negative", "gamma_neg"]),
])
def test_asl_bad_options(tmp_path, params, fragments):
    for owner, make in (("sigmoid_multilabel_forward", lambda: forward_backward(*asl_inputs(np.float32), **params)),
                        (SIGMOID, lambda: python_loss_net(tmp_path, SIGMOID, {"scores": (4, 5), "labels": (4, 5)},
                                                          params))):
        with pytest.raises(MultilabelLossError) as info:
            make()
        message = str(info.value)
        assert message.startswith(owner + ":"), message
        for fragment in fragments:
            assert fragment in message, (fragment, message)


def test_asl_options_parse_and_default():
    defaults = SigmoidOptions()
    assert (defaults.gamma_neg, defaults.gamma_pos, defaults.clip) == (0.0, 0.0, 0.0)
    options = SigmoidOptions.from_param_str('{"gamma_neg": 4, "gamma_pos": 1, "clip": 0.05}', "L")
    assert (options.gamma_neg, options.gamma_pos, options.clip) == (4.0, 1.0, 0.05)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("options", [{}, {"gamma": 2}, {"alpha": 0.0}, {"alpha": 1.0}, {"pos_weight": 0.0},
                                     {"gamma_neg": 4, "clip": 0.05}, {"class_weight": [0, 1, 1, 1, 1]},
                                     {"ignore_label": -1}])
@pytest.mark.parametrize("target", [0.0, 1.0, -1.0])
def test_non_finite_scores_are_reported_with_every_option(bad, options, target):
    """The scores are checked only when the loss is not finite: every option must keep it so."""
    if target < 0 and "ignore_label" not in options:
        return
    x, y = asl_inputs(np.float32)
    x, y = x[:4, :5].copy(), y[:4, :5].copy()
    x[2, 3], y[2, 3] = bad, target
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # inf * 0 and inf - inf inside the kernel: no numpy warning
        with pytest.raises(MultilabelLossError, match="scores are not finite"):
            S.sigmoid_multilabel_forward(x, y, **options)


ASL_DEMO: dict[str, Any] = {"gamma_neg": 4, "gamma_pos": 0, "clip": 0.05}


def asl_net_feeds():
    x, y = asl_inputs(np.float32)
    return x[:4, :6].copy(), y[:4, :6].copy()


def test_asl_netspec_keywords(tmp_path):
    x, y = asl_net_feeds()
    n = caffe.NetSpec()
    n.scores = L.Input(shape=dict(dim=list(x.shape)))
    n.labels = L.Input(shape=dict(dim=list(y.shape)))
    n.loss = sigmoid_multilabel_loss(n.scores, n.labels, **ASL_DEMO)
    path = tmp_path / "asl.prototxt"
    path.write_text("force_backward: true\n" + str(n.to_proto()))
    layer = text_format.Merge(path.read_text(), caffe_pb2.NetParameter()).layer[-1]
    assert json.loads(layer.python_param.param_str) == ASL_DEMO
    net = caffe.Net(str(path), caffe.TRAIN)
    loss, grad = run(net, {"scores": x, "labels": y})
    core_loss, core_grad = forward_backward(x, y, **ASL_DEMO)
    assert loss == pytest.approx(core_loss, rel=1e-6) and np.allclose(grad, core_grad, rtol=1e-6, atol=0)
    assert loss != pytest.approx(forward_backward(x, y)[0], rel=1e-3)      # not BCE
    with pytest.raises(MultilabelLossError, match="sigmoid_multilabel_loss: clip"):
        sigmoid_multilabel_loss(n.scores, n.labels, clip=1.5)


@pytest.mark.parametrize("spelling", ["-", "_"])
def test_asl_prototxt_cli_flags(tmp_path, capsys, spelling):
    flags = []
    for key, value in ASL_DEMO.items():
        flags += ["--" + (key.replace("_", "-") if spelling == "-" else key), json.dumps(value)]
    assert cli_main(["prototxt", "--loss", "sigmoid", "--bottom", "scores", "--bottom", "labels"] + flags) == 0
    out = capsys.readouterr().out
    layer = text_format.Merge(out, caffe_pb2.NetParameter()).layer[0]
    assert json.loads(layer.python_param.param_str) == ASL_DEMO
    x, y = asl_net_feeds()
    net = python_loss_net(tmp_path, SIGMOID, {"scores": x.shape, "labels": y.shape}, layer.python_param.param_str)
    assert run(net, {"scores": x, "labels": y})[0] == pytest.approx(forward_backward(x, y, **ASL_DEMO)[0], rel=1e-6)
    assert cli_main(["prototxt", "--loss", "sigmoid", "--gamma-neg", "-4"]) == 2
    assert "gamma_neg must be in [0.0, inf], got -4" in capsys.readouterr().err


# ---------------------------------------------------------------- every option against float64 math (mutation testing)

def weighted64(x, y, gamma_neg=0.0, gamma_pos=0.0, clip=0.0, pos_weight=1.0, alpha=-1.0, class_weight=None,
               gamma=0.0):
    """Elementwise loss in float64 with every option: ASL (asl64) with pos_weight on the positive term,
    times alpha y + (1 - alpha)(1 - y) (if alpha >= 0) and class_weight_c. Classes on axis 1."""
    if gamma > 0:
        gamma_neg = gamma_pos = gamma
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    pw = (np.asarray(pos_weight, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2)) if np.ndim(pos_weight)
          else pos_weight)
    p, one_minus_p = sigmoid64(x), sigmoid64(-x)
    p_m = np.maximum(p - clip, 0)
    log_1_p_m = np.log1p(-p_m) if clip > 0 else -np.logaddexp(0, x)
    q = y * one_minus_p + (1 - y) * p_m
    ce = pw * y * np.logaddexp(0, -x) - (1 - y) * log_1_p_m
    loss = ce * q ** (gamma_pos * y + gamma_neg * (1 - y))
    if alpha >= 0:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    if class_weight is not None:
        loss = loss * np.asarray(class_weight, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))
    return loss


OPTION_CASES = [{"pos_weight": 2.0}, {"pos_weight": 1.0}, {"pos_weight": 0.5, "clip": 0.0},
                {"pos_weight": [0.5, 1, 2, 3, 0.25, 1, 4]}, {"class_weight": [0, 1, 2, 0.5, 1, 3, 1]},
                {"alpha": 0.25}, {"alpha": 0.25, "gamma": 2}, {"gamma_neg": 1}, {"gamma_neg": 0.5},
                {"gamma_neg": 1, "gamma_pos": 0, "clip": 0.0}, {"gamma": 1}, {"clip": 0.1},
                {"clip": 0.1, "pos_weight": 3.0, "class_weight": [1, 2, 1, 2, 1, 2, 1]},
                {"gamma_pos": 0.5, "gamma_neg": 2, "clip": 0.05, "alpha": 0.75, "pos_weight": 2.0}]


@pytest.mark.parametrize("options", OPTION_CASES)
@pytest.mark.parametrize("probabilities", [True, False])
@pytest.mark.parametrize("soft", [False, True])
def test_every_option_against_the_float64_formula(options, probabilities, soft, log1p_form):
    """Loss, gradient (central differences of the float64 formula) and probabilities, with probabilities
    kept or not: each option must change the result exactly as the formula says (pos_weight 1 and 2,
    gamma_neg alone in (0, 1], clip 0 and > 0, scalar and per-class weights)."""
    rng = np.random.default_rng(21)
    y = (rng.random((6, 7, 2)) < 0.3).astype(np.float64)
    if soft:
        y = rng.random(y.shape)
    x = np.where(y > 0.5, 1.5, -1.5) + rng.normal(0, 2.0, y.shape)
    loss, ctx = S.sigmoid_multilabel_forward(x, y, probabilities=probabilities, **options)
    grad = S.sigmoid_multilabel_backward(ctx)
    true = weighted64(x, y, **options)
    assert loss == pytest.approx(true.sum() / 6, rel=1e-12)
    step = 1e-6
    numeric = (weighted64(x + step, y, **options) - weighted64(x - step, y, **options)) / (2 * step) / 6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    if probabilities:
        np.testing.assert_allclose(S.sigmoid_probabilities(ctx), sigmoid64(x), rtol=1e-14)
    # float32 on the same inputs, the loss within float32 rounding of the float64 formula
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    loss32, _ = S.sigmoid_multilabel_forward(x32, y32, probabilities=probabilities, **options)
    assert loss32 == pytest.approx(weighted64(x32, y32, **options).sum() / 6, rel=1e-5)


@pytest.mark.parametrize("options", [{}, {"gamma": 2}, {"gamma_neg": 4, "clip": 0.05, "pos_weight": 2.0}])
def test_float64_targets_with_float32_scores_are_cast_first(options):
    """Targets of another dtype are cast to the scores' dtype before the kernel: bit for bit the result of
    casting them oneself (soft targets, so that the float64 and float32 arithmetic would differ)."""
    rng = np.random.default_rng(22)
    y64 = rng.random((16, 300))
    x = (np.where(y64 > 0.5, 3.0, -3.0) + rng.normal(0, 2.0, y64.shape)).astype(np.float32)
    loss, grad = forward_backward(x, y64, **options)
    loss_cast, grad_cast = forward_backward(x, y64.astype(np.float32), **options)
    assert grad.dtype == np.float32
    assert loss == loss_cast and np.array_equal(grad, grad_cast)


def test_large_inputs_rows_straddling_blocks_against_float64(log1p_form):
    """More than BLOCK_SIZE elements, rows longer than a block (split on the class axis) and rows that
    fill a block a few times over: loss and gradient against the float64 formula, every element written."""
    for shape in [(3, S.BLOCK_SIZE + 7), (S.BLOCK_SIZE // 1000 * 3 + 2, 1000), (4, 5000, 20)]:
        x, y = trained_like(shape[0], int(np.prod(shape[1:])), 4, seed=23, noise=2.0)
        x, y = x.reshape(shape), y.reshape(shape)
        option_sets: list[dict[str, Any]] = [
            {}, {"gamma_neg": 2, "clip": 0.05, "class_weight": list(np.linspace(0.5, 2, shape[1]))}]
        for options in option_sets:
            ws = Workspace()
            loss, ctx = S.sigmoid_multilabel_forward(x, y, workspace=ws, **options)
            grad = S.sigmoid_multilabel_backward(ctx)
            true = weighted64(x, y, **options)
            assert loss == pytest.approx(true.sum() / shape[0], rel=1e-5), (shape, options)
            step = 1e-5
            x64 = x.astype(np.float64)
            numeric = (weighted64(x64 + step, y, **options) - weighted64(x64 - step, y, **options)) / (2 * step)
            np.testing.assert_allclose(grad, numeric / shape[0], rtol=1e-3, atol=1e-9)
            np.testing.assert_allclose(S.sigmoid_probabilities(ctx), sigmoid64(x), rtol=1e-6)


def test_error_messages_exactly():
    x = np.zeros((2, 3), np.float32)
    y = np.array([[1, 1, 1.5], [0, 0, 0]], np.float32)       # a 1 before the bad value
    with pytest.raises(MultilabelLossError) as error:
        S.sigmoid_multilabel_forward(x, y)
    assert str(error.value).startswith("sigmoid_multilabel_forward: targets must be in [0, 1], found 1.5 at ")
    y[0, 2] = -2
    with pytest.raises(MultilabelLossError) as error:
        S.sigmoid_multilabel_forward(x, y, ignore_label=-1)
    assert str(error.value).startswith(
        "sigmoid_multilabel_forward: targets must be in [0, 1] or equal to ignore_label -1.0, found -2.0 at ")
    # finite scores and targets, infinite loss: pos_weight 1e38 on a confident miss overflows float32
    x[0, 0] = -100
    y[0, 2] = 0
    # numpy says so first (stated, not prevented: predicting it would cost a pass over the scores every call)
    with pytest.raises(MultilabelLossError) as error, pytest.warns(RuntimeWarning, match="overflow encountered"):
        S.sigmoid_multilabel_forward(x, y, pos_weight=1e38)
    assert str(error.value) == ("sigmoid_multilabel_forward: the loss is not finite (inf) although scores "
                                "and targets are")
    _, ctx = S.sigmoid_multilabel_forward(x, y, probabilities=False)
    with pytest.raises(MultilabelLossError) as error:
        S.sigmoid_probabilities(ctx)
    assert str(error.value) == "sigmoid_probabilities: the forward pass was run with probabilities=False"


def test_non_finite_scores_raise_without_a_numpy_warning():
    x, y = asl_inputs(np.float32)
    x[1, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MultilabelLossError, match="scores are not finite"):
            S.sigmoid_multilabel_forward(x, y, gamma_neg=4, clip=0.05)


def test_loss_convenience_applies_loss_weight():
    x, y = asl_inputs(np.float32)
    loss, grad = S.sigmoid_multilabel_loss(x, y, loss_weight=2.5, gamma=2)
    loss1, grad1 = S.sigmoid_multilabel_loss(x, y, gamma=2)
    assert loss == loss1
    np.testing.assert_allclose(grad, grad1 * 2.5, rtol=1e-6)


# ---------------------------------------------------------------- memory: blocks, workspace, no allocation per call

@pytest.mark.parametrize("shape", [(3, 100, 1), (4, 7, 3), (5, 60, 1), (2, 5, 60), (2, 3, 150), (1, 1, 1)])
def test_blocks_tile_the_input_within_the_block_size(monkeypatch, shape):
    """Each element is in exactly one block, in C order, and no block exceeds BLOCK_SIZE elements unless
    one class row alone (the inner axis) does: rows of exactly, just under and over the block size."""
    monkeypatch.setattr(S, "BLOCK_SIZE", 100)
    index = np.arange(math.prod(shape)).reshape(shape)
    blocks = list(S._blocks(shape))
    pieces = [index[block] for block, _ in blocks]
    assert np.array_equal(np.concatenate([piece.reshape(-1) for piece in pieces]), index.reshape(-1))
    assert max(piece.size for piece in pieces) <= max(100, shape[2])
    for (block, class_slice), piece in zip(blocks, pieces, strict=True):      # the class slice is the block's
        assert np.array_equal(index[:, class_slice][block[0]], piece)


def allocation_cases():
    x, y = trained_like(64, 2000, 6, seed=21, positives=20, noise=3.0)   # 2 blocks of 32 rows
    ignored = y.copy()
    ignored[::7, ::5] = -1
    per_class = [float(v) for v in np.linspace(0.5, 2.0, 2000)]
    return [(x, y, {}), (x, y.astype(np.float64), {}),
            (x, y, {"pos_weight": 2.0, "gamma": 2}),
            (x, y, {"pos_weight": per_class, "gamma": 2.5, "alpha": 0.25}),
            (x, ignored, {"gamma_neg": 4, "gamma_pos": 1, "clip": 0.05, "class_weight": per_class,
                          "ignore_label": -1})]


@pytest.mark.parametrize("case", range(5))
def test_a_training_loop_allocates_no_array_per_call(case, log1p_form):
    """With a Workspace and ``out=``, a second forward and backward allocate no array: every step of the
    kernel writes into a buffer. A step without ``out=`` would allocate a block (256 KB here) or more;
    what is allocated is small Python objects and the per-class weights (8 KB each)."""
    x, y, options = allocation_cases()[case]
    ws, out = Workspace(), np.empty_like(x)

    def call():
        loss, ctx = S.sigmoid_multilabel_forward(x, y, workspace=ws, **options)
        S.sigmoid_multilabel_backward(ctx, out=out)
        return loss
    peak, loss = peak_of_second_call(call)
    assert peak < 32 * 2000 * 4 / 2, peak
    assert math.isfinite(loss) and loss > 0


def test_workspace_holds_the_batch_arrays_and_block_sized_scratch():
    """Scratch memory is bounded by the block size, not the batch: at 64 x 17000 float32 the workspace holds
    the gradient, the probabilities and the cast targets, and about 20 scratch buffers of one block each
    (a scratch buffer the size of the batch would add 4.4 MB each)."""
    x, y = trained_like(64, 17000, 8, seed=22)
    ws = Workspace()
    S.sigmoid_multilabel_forward(x, y.astype(np.float64), workspace=ws, gamma_neg=4, gamma_pos=1, clip=0.05,
                                 pos_weight=2.0, alpha=0.25)
    block = S.BLOCK_SIZE // 17000 * 17000 * 4
    assert 3 * x.nbytes + 12 * block < ws.nbytes <= 3 * x.nbytes + 24 * block, (ws.nbytes, x.nbytes, block)
