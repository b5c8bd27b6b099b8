"""netspec.py: the NetSpec helpers and layer_prototxt() rebuild our prototxts exactly,
reject bad options when the net is built, and produce nets that load and run in caffe.Net.
"""
import difflib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from softmax_multilabel_layer.params import MultilabelLossError, SigmoidOptions, SoftmaxOptions
from softmax_multilabel_layer.tools.netspec import (
    MODULE,
    image_list_priors,
    layer_prototxt,
    prior_bias,
    prior_bias_filler,
    python_param,
    set_prior_bias,
    sigmoid_multilabel_loss,
    softmax_multilabel_loss,
    tag_priors,
    two_way_loss,
    write_prior_weights,
    zlpr_loss,
)

from caffe_nets import net_from_text, run

PROTOTXT = Path(__file__).resolve().parents[1] / "prototxt"


def parse(text, message=None):
    message = caffe_pb2.NetParameter() if message is None else message
    text_format.Merge(text, message)
    return message


def assert_same(built, expected):
    """Protobuf message equality, with a unified diff of the text forms on failure."""
    if built != expected:
        diff = difflib.unified_diff(str(expected).splitlines(), str(built).splitlines(),
                                    "expected (file)", "built", lineterm="")
        pytest.fail("messages differ:\n" + "\n".join(diff))


def inputs(**shapes):
    """A NetSpec with one Input layer per named shape."""
    n = caffe.NetSpec()
    for name, shape in shapes.items():
        n[name] = L.Input(shape=dict(dim=list(shape)))
    return n


def name_tops(n, built):
    """Name the helper's output in NetSpec ``n``: "loss", plus "prob" when it has two tops."""
    if isinstance(built, tuple):
        n.loss, n.prob = built
    else:
        n.loss = built


def layer_named(net, name):
    matches = [layer for layer in net.layer if layer.name == name]
    assert len(matches) == 1, "expected one layer %r, found %d" % (name, len(matches))
    return matches[0]


# ---------------------------------------------------------------- the reusable layer snippets

# file -> (loss, bottoms, options); bottoms are the snippet's blob names
SNIPPETS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "softmax_multilabel_loss.prototxt": (
        "softmax", ("scores", "labels"),
        dict(normalize_targets="count", normalization="batch_size", axis=1, label_smoothing=0.0, label_format="dense")),
    "softmax_multilabel_loss_indices.prototxt": (
        "softmax", ("scores", "labels", "label_weights"), dict(label_format="indices")),
    "sigmoid_multilabel_loss.prototxt": (
        "sigmoid", ("scores", "labels"), dict(gamma=2.0, alpha=0.25, normalization="batch_size")),
    "zlpr_loss.prototxt": ("zlpr", ("scores", "labels"), dict(normalization="batch_size")),
    "two_way_loss.prototxt": ("two_way", ("scores", "labels"), dict(tp=4.0, tn=1.0)),
}
HELPERS: dict[str, Callable[..., Any]] = {"softmax": softmax_multilabel_loss, "sigmoid": sigmoid_multilabel_loss,
                                          "zlpr": zlpr_loss, "two_way": two_way_loss}


def snippet_layer(name):
    net = parse((PROTOTXT / "layers" / name).read_text())
    assert len(net.layer) == 1
    return net.layer[0]


def test_every_layer_snippet_is_covered():
    assert sorted(p.name for p in (PROTOTXT / "layers").glob("*.prototxt")) == sorted(SNIPPETS)


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_netspec_helper_rebuilds_layer_snippet(name):
    loss, bottoms, options = SNIPPETS[name]
    n = inputs(**{blob: (4, 6) for blob in bottoms})
    n.loss = HELPERS[loss](*(n[blob] for blob in bottoms), **options)
    assert_same(layer_named(n.to_proto(), "loss"), snippet_layer(name))


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_layer_prototxt_rebuilds_layer_snippet(name):
    loss, bottoms, options = SNIPPETS[name]
    text = layer_prototxt(loss, bottoms=bottoms, **options)
    assert_same(parse(text).layer[0], snippet_layer(name))


# ---------------------------------------------------------------- whole example nets

def test_netspec_rebuilds_smoke_train_net():
    n = caffe.NetSpec()
    data_params = {"batch_size": 32, "num_classes": 10, "dim": 32, "min_labels": 1, "max_labels": 3,
                   "noise": 0.3, "seed": 1}
    n.data, n.label = L.Python(module="softmax_multilabel_layer.data.synthetic_data",
                               layer="SyntheticMultilabelDataLayer",
                               param_str=json.dumps(data_params), ntop=2)
    n.scores = L.InnerProduct(n.data, num_output=10, weight_filler=dict(type="gaussian", std=0.01),
                              bias_filler=dict(type="constant", value=0))
    n.loss = softmax_multilabel_loss(n.scores, n.label, normalize_targets="count", normalization="batch_size")
    built = n.to_proto()
    built.name = "multilabel_smoke"
    assert_same(built, parse((PROTOTXT / "smoke" / "train.prototxt").read_text()))


def digits_net(loss):
    """The digits CNN of prototxt/digits/*_train_val.prototxt, ending in ``loss(scores, labels)``.

    NetSpec keys layers by top name, so the TRAIN and TEST data layers (both
    named "data", tops data + label) cannot share one NetSpec: the TRAIN one is
    built alone and its layer put first; the rest of the net hangs off the TEST
    one. Both give the same top names, so the bottoms agree.
    """
    def hdf5(phase, source, batch_size):
        return L.HDF5Data(source=source, batch_size=batch_size, shuffle=False, include=dict(phase=phase), ntop=2)

    def learnable(kind, bottom, num_output, **kwargs):
        return kind(bottom, param=[dict(lr_mult=1), dict(lr_mult=2)], num_output=num_output,
                    weight_filler=dict(type="xavier"), bias_filler=dict(type="constant"), **kwargs)

    train = caffe.NetSpec()
    train.data, train.label = hdf5(caffe.TRAIN, "output/digits/data/train_list.txt", 64)
    n = caffe.NetSpec()
    n.data, n.label = hdf5(caffe.TEST, "output/digits/data/test_list.txt", 100)
    n.conv1 = learnable(L.Convolution, n.data, 20, kernel_size=5, pad=2)
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = learnable(L.Convolution, n.pool1, 40, kernel_size=3, pad=1)
    n.relu2 = L.ReLU(n.conv2, in_place=True)
    n.pool2 = L.Pooling(n.relu2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.fc1 = learnable(L.InnerProduct, n.pool2, 128)
    n.relu3 = L.ReLU(n.fc1, in_place=True)
    n.fc_out = learnable(L.InnerProduct, n.relu3, 10)
    n.loss = loss(n.fc_out, n.label)
    net = caffe_pb2.NetParameter(name="MultilabelDigits")
    net.layer.extend(train.to_proto().layer)
    net.layer.extend(n.to_proto().layer)
    return net


@pytest.mark.parametrize("name, loss", [
    ("softmax_multilabel_train_val.prototxt",
     lambda s, y: softmax_multilabel_loss(s, y, normalize_targets="count", normalization="batch_size")),
    ("sigmoid_focal_train_val.prototxt",
     lambda s, y: sigmoid_multilabel_loss(s, y, gamma=2, normalization="batch_size")),
])
def test_netspec_rebuilds_digits_train_val_net(name, loss):
    assert_same(digits_net(loss), parse((PROTOTXT / "digits" / name).read_text()))


# ---------------------------------------------------------------- validation at net-build time

def tops(count):
    return [L.Input(shape=dict(dim=[2, 3])) for _ in range(count)]


# (id, call, fragments expected in the message)
BAD_BUILDS = [
    ("typo_key", lambda: softmax_multilabel_loss(*tops(2), normalise_targets="count"),
     ["softmax_multilabel_loss", "unknown option", "normalise_targets", "normalize_targets"]),
    ("bad_choice", lambda: softmax_multilabel_loss(*tops(2), normalization="mean"),
     ["softmax_multilabel_loss", "normalization", "'mean'", '"batch_size"', '"valid"']),
    ("label_smoothing_too_big", lambda: softmax_multilabel_loss(*tops(2), label_smoothing=1.5),
     ["softmax_multilabel_loss", "label_smoothing", "1.5", "[0.0, 1.0)"]),
    ("sigmoid_negative_gamma", lambda: sigmoid_multilabel_loss(*tops(2), gamma=-1),
     ["sigmoid_multilabel_loss", "gamma", "-1"]),
    ("sigmoid_softmax_only_key", lambda: sigmoid_multilabel_loss(*tops(2), label_format="indices"),
     ["sigmoid_multilabel_loss", "label_format", "gamma"]),
    ("softmax_dense_third_bottom", lambda: softmax_multilabel_loss(*tops(3)),
     ["softmax_multilabel_loss", "got 3 bottoms", "expected 2", "label_format"]),
    ("softmax_indices_fourth_bottom", lambda: softmax_multilabel_loss(*tops(4), label_format="indices"),
     ["softmax_multilabel_loss", "got 4 bottoms", "expected 2 or 3"]),
    ("sigmoid_third_bottom", lambda: sigmoid_multilabel_loss(*tops(3)),
     ["sigmoid_multilabel_loss", "got 3 bottoms", "expected 2 (scores, targets)"]),
    ("loss_weight_nan", lambda: softmax_multilabel_loss(*tops(2), loss_weight=float("nan")),
     ["softmax_multilabel_loss", "loss_weight", "finite", "nan"]),
    ("loss_weight_string", lambda: sigmoid_multilabel_loss(*tops(2), loss_weight="1"),  # type: ignore[arg-type]
     ["sigmoid_multilabel_loss", "loss_weight", "'1'"]),
    ("ntop_3", lambda: softmax_multilabel_loss(*tops(2), ntop=3),
     ["softmax_multilabel_loss", "ntop", "1 (loss) or 2", "got 3"]),
    ("unknown_loss", lambda: python_param("hinge", {}, "owner_name"),
     ["owner_name", "loss", '"softmax"', '"sigmoid"', "'hinge'"]),
    ("prototxt_typo_key", lambda: layer_prototxt("sigmoid", gama=2),
     ["layer_prototxt", "gama", "gamma"]),
    ("prototxt_unknown_loss", lambda: layer_prototxt("focal"),
     ["layer_prototxt", '"softmax"', '"sigmoid"', "'focal'"]),
    ("prototxt_wrong_bottom_count", lambda: layer_prototxt("softmax", bottoms=("scores",)),
     ["layer_prototxt", "got 1 bottoms", "expected 2"]),
    ("prototxt_bottoms_string", lambda: layer_prototxt("softmax", bottoms="scores"),
     ["layer_prototxt", "bottoms", "'scores'"]),
    ("prototxt_three_tops", lambda: layer_prototxt("softmax", top=("a", "b", "c")),
     ["layer_prototxt", "top", "('a', 'b', 'c')"]),
]


@pytest.mark.parametrize("call, fragments", [case[1:] for case in BAD_BUILDS], ids=[c[0] for c in BAD_BUILDS])
def test_bad_options_raise_when_building(call, fragments):
    with pytest.raises(MultilabelLossError) as info:
        call()
    message = str(info.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, "message %r lacks %r" % (message, missing)


# ---------------------------------------------------------------- python_param and layer_prototxt text

def test_python_param_keeps_given_keys_in_order_as_json():
    fields = python_param("softmax", {"normalize_targets": "count", "normalization": "batch_size"}, "x")
    assert fields == {"module": MODULE, "layer": "SoftmaxMultilabelLossLayer",
                      "param_str": '{"normalize_targets": "count", "normalization": "batch_size"}'}


def test_python_param_without_options_has_no_param_str():
    assert python_param("sigmoid", {}, "x") == {"module": MODULE, "layer": "SigmoidMultilabelLossLayer"}
    layer = parse(layer_prototxt("sigmoid")).layer[0]
    assert not layer.python_param.HasField("param_str")


@pytest.mark.parametrize("loss, options_class, params", [
    ("softmax", SoftmaxOptions, dict(label_smoothing=0.1, normalization="valid", label_format="indices", axis=1)),
    ("sigmoid", SigmoidOptions, dict(pos_weight=(1, 2.5), class_weight=[1, 1], gamma=2, alpha=0.25,
                                      ignore_label=-1, normalization="full")),
])
def test_param_str_parses_back_to_the_same_options_in_the_layer(loss, options_class, params):
    param_str = python_param(loss, params, "x")["param_str"]
    assert options_class.from_param_str(param_str, "x") == options_class.from_kwargs("x", params)


def test_layer_prototxt_text_is_a_readable_layer_block():
    text = layer_prototxt("sigmoid", bottoms=("fc_out", "label"), gamma=2)
    lines = text.splitlines()
    assert lines[0] == "layer {" and lines[-1] == "}" and text.endswith("}\n")
    assert '  bottom: "fc_out"' in lines and "  python_param {" in lines
    assert "    param_str: '{\"gamma\": 2}'" in lines


@pytest.mark.parametrize("ntop", [1, 2])
def test_layer_prototxt_equals_the_netspec_layer(ntop):
    options: dict[str, Any] = dict(normalize_targets="sum", label_smoothing=0.1)
    n = inputs(fc_out=(4, 6), label=(4, 6))
    name_tops(n, softmax_multilabel_loss(n.fc_out, n.label, loss_weight=0.5, ntop=ntop, **options))
    top = ("loss", "prob") if ntop == 2 else "loss"
    text = layer_prototxt("softmax", bottoms=("fc_out", "label"), top=top, loss_weight=0.5, **options)
    expected = layer_named(n.to_proto(), "loss")
    assert list(expected.loss_weight) == [0.5, 0.0][:ntop]
    assert_same(parse(text).layer[0], expected)


# ---------------------------------------------------------------- built nets load and run

RNG = np.random.default_rng(0)
SCORES = RNG.normal(size=(4, 6)).astype(np.float32)
DENSE = (np.arange(24).reshape(4, 6) % 3 == 0).astype(np.float32)
INDICES = np.array([[0, 1], [2, -1], [3, 4], [5, 0]], np.float32)
# id -> (helper loss, options, feeds after the scores)
RUNS: dict[str, tuple[str, dict[str, Any], dict[str, np.ndarray]]] = {
    "softmax": ("softmax", {}, {"labels": DENSE}),
    "softmax_indices": ("softmax", {"label_format": "indices"},
                        {"labels": INDICES, "label_weights": np.ones((4, 2), np.float32)}),
    "sigmoid_focal": ("sigmoid", {"gamma": 2, "alpha": 0.25}, {"labels": DENSE}),
}


def load(tmp_path, proto_text):
    return net_from_text(tmp_path, "force_backward: true\n" + proto_text)


def netspec_net(tmp_path, case, ntop=1, loss_weight=1):
    loss, options, feeds = RUNS[case]
    n = inputs(scores=SCORES.shape, **{name: value.shape for name, value in feeds.items()})
    name_tops(n, HELPERS[loss](n.scores, *(n[name] for name in feeds), ntop=ntop, loss_weight=loss_weight, **options))
    return load(tmp_path, str(n.to_proto())), dict(scores=SCORES, **feeds)


@pytest.mark.parametrize("case", sorted(RUNS))
def test_netspec_net_runs_forward_and_backward(tmp_path, case):
    net, feeds = netspec_net(tmp_path, case)
    loss, diff = run(net, feeds)
    assert np.isfinite(loss) and loss > 0
    assert np.abs(diff).sum() > 0


def test_netspec_loss_weight_scales_the_gradient(tmp_path):
    _, one = run(*netspec_net(tmp_path, "softmax"))
    _, three = run(*netspec_net(tmp_path, "softmax", loss_weight=3))
    np.testing.assert_allclose(three, 3 * one, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", sorted(RUNS))
def test_netspec_second_top_holds_the_probabilities(tmp_path, case):
    net, feeds = netspec_net(tmp_path, case, ntop=2)
    loss, diff = run(net, feeds)
    prob = net.blobs["prob"].data
    assert np.isfinite(loss) and loss > 0 and np.abs(diff).sum() > 0
    assert prob.shape == SCORES.shape
    if RUNS[case][0] == "softmax":
        np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    else:
        np.testing.assert_allclose(prob, 1 / (1 + np.exp(-SCORES)), rtol=1e-5)


@pytest.mark.parametrize("case, top", [("softmax", "loss"), ("softmax_indices", "loss"),
                                       ("sigmoid_focal", ("loss", "prob"))])
def test_layer_prototxt_after_input_layers_loads_and_runs(tmp_path, case, top):
    loss, options, feeds = RUNS[case]
    n = inputs(scores=SCORES.shape, **{name: value.shape for name, value in feeds.items()})
    text = str(n.to_proto()) + layer_prototxt(loss, bottoms=["scores", *feeds], top=top, **options)
    net = load(tmp_path, text)
    value, diff = run(net, dict(scores=SCORES, **feeds))
    assert np.isfinite(value) and value > 0
    assert np.abs(diff).sum() > 0
    assert ("prob" in net.blobs) == (top != "loss")


def test_zlpr_and_two_way_helpers_build_their_layers_and_refuse_what_they_lack(tmp_path):
    n = inputs(scores=(4, 6), labels=(4, 6))
    n.loss, n.prob = zlpr_loss(n.scores, n.labels, ntop=2)
    built = n.to_proto()
    assert [layer.python_param.layer for layer in built.layer if layer.type == "Python"] == ["ZLPRLossLayer"]
    message = "two_way_loss: ntop must be 1 (loss) for the two_way loss"
    with pytest.raises(MultilabelLossError, match=re.escape(message)):
        two_way_loss(n.scores, n.labels, ntop=2)
    with pytest.raises(MultilabelLossError, match=re.escape("zlpr_loss: got 3 bottoms, expected 2 (scores, labels)")):
        zlpr_loss(n.scores, n.labels, n.labels)
    with pytest.raises(MultilabelLossError, match="gamma"):
        two_way_loss(n.scores, n.labels, gamma=2)


# ---------------------------------------------------------------- prior bias (Lin et al. 2017)

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prior_bias_is_the_logit_of_the_prior(dtype):
    pi = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 1 - 1e-6], dtype)
    b = prior_bias(pi)
    expected = [-math.log((1 - p) / p) for p in pi.astype(np.float64).tolist()]   # the paper's formula
    np.testing.assert_allclose(b, expected, rtol=1e-12)
    np.testing.assert_allclose(_sigmoid(b), pi.astype(np.float64), rtol=1e-9)
    assert b.dtype == np.float64 and b[3] == 0.0
    assert float(prior_bias(0.01)) == pytest.approx(-4.59511985013459, abs=1e-12)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), float("inf"), [0.2, 0.0], "x"])
def test_prior_bias_refuses_a_prior_outside_0_1(bad):
    with pytest.raises(MultilabelLossError, match="prior_bias: a prior must be strictly between 0 and 1"):
        prior_bias(bad)


def test_prior_bias_filler_is_constant_and_takes_one_number():
    assert prior_bias_filler(0.5) == {"type": "constant", "value": 0.0}
    assert prior_bias_filler(0.25)["value"] == pytest.approx(math.log(1 / 3))
    bad: Any
    for bad in ([0.1, 0.2], True, np.float64(0.1) * np.ones(2)):
        with pytest.raises(MultilabelLossError, match="prior_bias_filler: prior must be one number"):
            prior_bias_filler(bad)


def test_tag_priors_count_present_labels_with_laplace_smoothing():
    labels = np.array([[1, 0, 0.5, 1], [1, 0, 0, 0], [1, 0, 0, 1]], np.float32)    # tag 2: a weight counts
    np.testing.assert_allclose(tag_priors(labels), [4 / 5, 1 / 5, 2 / 5, 3 / 5])
    np.testing.assert_allclose(tag_priors(labels, smoothing=0.5), [3.5 / 4, 0.5 / 4, 1.5 / 4, 2.5 / 4])
    with pytest.raises(MultilabelLossError, match="tag_priors: labels must be N x C"):
        tag_priors(np.zeros(3))
    with pytest.raises(MultilabelLossError, match="tag_priors: smoothing must be > 0"):
        tag_priors(labels, smoothing=0)


def test_netspec_head_with_the_prior_filler_starts_at_the_prior(tmp_path):
    """A NetSpec-built sigmoid head: the loss layer's probabilities top equals the prior before any step."""
    n = caffe.NetSpec()
    n.features = L.Input(shape=dict(dim=[4, 6]))
    n.labels = L.Input(shape=dict(dim=[4, 5]))
    n.scores = L.InnerProduct(n.features, num_output=5, weight_filler=dict(type="gaussian", std=1.0),
                              bias_filler=prior_bias_filler(0.02))
    n.loss, n.prob = sigmoid_multilabel_loss(n.scores, n.labels, ntop=2)
    net = net_from_text(tmp_path, str(n.to_proto()))
    net.blobs["labels"].data[...] = 0
    net.blobs["features"].data[...] = 0
    out = net.forward()
    np.testing.assert_allclose(out["prob"], 0.02, rtol=1e-5)
    # the loss at the start is -log(1 - 0.02) per tag: the zero-bias head would start at log 2
    np.testing.assert_allclose(float(out["loss"]), 5 * -math.log(0.98), rtol=1e-5)
    net.blobs["features"].data[...] = np.random.default_rng(3).normal(size=(4, 6))
    assert not np.allclose(net.forward()["prob"], 0.02)      # the weights are live: only the bias sets the start


def test_per_tag_priors_from_an_image_list_reach_the_net_through_a_caffemodel(tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_text("# comment\na.jpg 0 2\nb.jpg 2\nc.jpg 2:0.5 3\nd.jpg\ne.jpg 1:0\n")  # 1:0 is absent
    priors = image_list_priors(str(listing), num_classes=4)
    np.testing.assert_allclose(priors, [2 / 7, 1 / 7, 4 / 7, 2 / 7])
    np.testing.assert_allclose(image_list_priors(str(listing), num_classes=4, smoothing=0.5),
                               [1.5 / 6, 0.5 / 6, 3.5 / 6, 1.5 / 6])
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(MultilabelLossError, match=r"image_list_priors: list file .*empty.txt' has no images"):
        image_list_priors(str(tmp_path / "empty.txt"), num_classes=4)
    text = ('name: "head"\n' + 'layer { name: "features" type: "Input" top: "features" input_param { shape { '
            'dim: 2 dim: 3 } } }\n' + 'layer { name: "scores" type: "InnerProduct" bottom: "features" top: '
            '"scores" inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }\n')
    net_path = tmp_path / "train.prototxt"
    net_path.write_text(text)
    weights = tmp_path / "init.caffemodel"
    written = write_prior_weights(str(net_path), "scores", priors, str(weights), seed=5)
    np.testing.assert_allclose(_sigmoid(written), priors, rtol=1e-12)
    net = caffe.Net(str(net_path), caffe.TEST, weights=str(weights))      # as `caffe train --weights` loads it
    net.blobs["features"].data[...] = 0
    np.testing.assert_allclose(_sigmoid(net.forward()["scores"]), np.tile(priors, (2, 1)), rtol=1e-6)
    assert np.abs(net.params["scores"][0].data).max() > 0        # the other fillers ran
    first = net.params["scores"][0].data.copy()
    for seed, same in ((5, True), (6, False)):                    # the fillers are seeded
        write_prior_weights(str(net_path), "scores", priors, str(weights), seed=seed)
        again = caffe.Net(str(net_path), caffe.TEST, weights=str(weights)).params["scores"][0].data
        assert np.array_equal(again, first) == same
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "init.caffemodel", "train.prototxt", "train.txt"]
    with pytest.raises(MultilabelLossError, match="set_prior_bias: 3 priors for layer 'scores' with 4 outputs"):
        set_prior_bias(net, "scores", [0.1, 0.2, 0.3])
    with pytest.raises(MultilabelLossError, match="set_prior_bias: layer 'fc9' has no bias"):
        set_prior_bias(net, "fc9", 0.1)
