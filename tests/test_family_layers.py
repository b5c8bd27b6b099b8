"""The Caffe layers ZLPRLossLayer and TwoWayLossLayer (softmax_multilabel_layer/losses/layers.py): values and
gradients through caffe.Net against the formulas (tests/test_zlpr.py, tests/test_two_way.py), numeric-versus-analytic
gradients, loss_weight, label checks and tops; and what iter_size does to the two-way loss.
"""
import numpy as np
import pytest

import softmax_multilabel_layer
from softmax_multilabel_layer import layers, two_way_loss
from softmax_multilabel_layer.params import MultilabelLossError

from caffe_nets import assert_gradient_close, numeric_gradient, python_loss_net, run
from test_functional import seeded_rng
from test_two_way import two_way64, two_way_grad64
from test_zlpr import random_batch, zlpr64

ZLPR, TWO_WAY = "ZLPRLossLayer", "TwoWayLossLayer"


def test_zlpr_layer_gradient_loss_weight_and_probabilities(tmp_path):
    rng = seeded_rng("zlpr caffe")
    scores, labels = random_batch(rng, 4, 6, scale=2.0)
    net = python_loss_net(tmp_path, "ZLPRLossLayer", {"scores": (4, 6), "labels": (4, 6)}, loss_weight=2.5,
                          extra_tops=("probabilities",))
    feeds = {"scores": scores.astype(np.float32), "labels": labels.astype(np.float32)}
    loss, diff = run(net, feeds)
    ref_loss, ref_grad = zlpr64(feeds["scores"], labels)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    np.testing.assert_allclose(diff, 2.5 * ref_grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.blobs["probabilities"].data, 1 / (1 + np.exp(-feeds["scores"])), rtol=1e-6)
    assert_gradient_close(diff, numeric_gradient(net, feeds, 2.5))
    # indices labels through Caffe
    net = python_loss_net(tmp_path, "ZLPRLossLayer", {"scores": (4, 6), "labels": (4, 6)},
                          params={"label_format": "indices"})
    indices = np.where(labels > 0, np.arange(6), -1).astype(np.float32)
    loss_i, diff_i = run(net, {"scores": feeds["scores"], "labels": indices})
    assert loss_i == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(diff_i, diff / 2.5, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("params", [{}, {"tp": 1.0, "tn": 0.5}])
def test_two_way_layer_gradient_and_loss_weight(tmp_path, params):
    rng = seeded_rng("two-way caffe", sorted(params.items()))
    scores, labels = random_batch(rng, 5, 6, density=0.4, scale=2.0)
    tp, tn = params.get("tp", 4.0), params.get("tn", 1.0)
    net = python_loss_net(tmp_path, TWO_WAY, {"scores": (5, 6), "labels": (5, 6)}, params=params, loss_weight=0.5)
    feeds = {"scores": scores.astype(np.float32), "labels": labels.astype(np.float32)}
    loss, diff = run(net, feeds)
    assert loss == pytest.approx(two_way64(feeds["scores"], labels, tp, tn), rel=1e-6)
    np.testing.assert_allclose(diff, 0.5 * two_way_grad64(feeds["scores"], labels, tp, tn), rtol=1e-5, atol=1e-7)
    assert_gradient_close(diff, numeric_gradient(net, feeds, 0.5))


def test_layers_resolve_from_every_stable_path():
    for name in (ZLPR, TWO_WAY):
        assert getattr(softmax_multilabel_layer, name) is getattr(layers, name)
        assert name in dir(softmax_multilabel_layer)


@pytest.mark.parametrize("layer,params,shapes,tops,fragment", [
    (ZLPR, {}, {"scores": (4, 6), "labels": (4, 5)}, (), "ZLPRLossLayer: labels shape (4, 5) does not match scores "
                                                        "shape (4, 6)"),
    (ZLPR, {}, {"scores": (4, 6), "labels": (4,)}, (), '"label_format": "indices"'),
    (ZLPR, {"gamma": 2}, {"scores": (4, 6), "labels": (4, 6)}, (),
     "ZLPRLossLayer: unknown param_str key(s) gamma; known keys: normalization, axis, label_format; gamma is an "
     "option of SigmoidMultilabelLossLayer"),
    (TWO_WAY, {"label_format": "indices"}, {"scores": (4, 6), "labels": (4, 2)}, (),
     "TwoWayLossLayer: unknown param_str key(s) label_format; known keys: tp, tn, axis"),
    (TWO_WAY, {}, {"scores": (4, 6), "labels": (4, 6)}, ("probabilities",),
     "TwoWayLossLayer: got 2 tops, expected 1 (loss): its scores rank, they are no probabilities"),
    (ZLPR, {}, {"scores": (4, 6), "labels": (4, 6), "extra": (4, 6)}, (),
     "ZLPRLossLayer: got 3 bottoms, expected 2 (scores, labels)"),
])
def test_bad_nets_are_refused_before_training(tmp_path, layer, params, shapes, tops, fragment):
    with pytest.raises(MultilabelLossError) as info:
        python_loss_net(tmp_path, layer, shapes, params=params, extra_tops=tops)
    assert fragment in str(info.value)


@pytest.mark.parametrize("layer", [ZLPR, TWO_WAY])
def test_bad_label_values_name_the_layer_and_the_position(tmp_path, layer):
    net = python_loss_net(tmp_path, layer, {"scores": (3, 4), "labels": (3, 4)})
    labels = np.zeros((3, 4))
    labels[2, 1] = 255
    with pytest.raises(MultilabelLossError, match=r"^%s: labels must be 0 or 1 \(multi-hot\), found 255.0 at "
                                                  r"labels\[2, 1\] \(sample 2, class 1\)$" % layer):
        run(net, {"scores": np.zeros((3, 4)), "labels": labels})


def test_iter_size_averages_separate_batches_for_the_two_way_loss():
    """Caffe's iter_size runs iter_size batches and averages their gradients: for the two-way loss that is not
    the gradient of one batch iter_size times larger (its class direction contrasts the samples of a batch),
    unlike a loss that is a mean over samples."""
    rng = seeded_rng("iter_size")
    scores, labels = random_batch(rng, 8, 5, density=0.4)
    labels[:, 0] = [1, 0, 0, 0, 0, 0, 0, 1]          # class 0 has a positive in each half
    whole_loss, whole_grad = two_way_loss(scores, labels)
    halves = [two_way_loss(scores[i:i + 4], labels[i:i + 4]) for i in (0, 4)]
    accumulated_loss = (halves[0][0] + halves[1][0]) / 2
    accumulated_grad = np.concatenate([halves[0][1], halves[1][1]]) / 2
    assert abs(accumulated_loss - whole_loss) > 1e-3
    assert np.abs(accumulated_grad - whole_grad).max() > 1e-3


def test_zlpr_rule_is_score_above_zero_on_the_sigmoid_outputs():
    from softmax_multilabel_layer.evaluation.netio import probabilities
    from softmax_multilabel_layer.evaluation.rules import RULE_SYNTAX, parse_rule, predict_labels
    scores = np.array([[3.0, -0.2, 1e-6, -1e-6], [0.0, -30.0, 40.0, 0.7]])
    labels = predict_labels(probabilities(scores, "Sigmoid"), parse_rule("zlpr"))
    np.testing.assert_array_equal(labels, scores > 0)
    assert str(parse_rule("zlpr")) == "zlpr" and "zlpr" in RULE_SYNTAX
    np.testing.assert_array_equal(predict_labels(scores, parse_rule("threshold:0"))[:, 1:], scores[:, 1:] > 0)


@pytest.mark.parametrize("layer,output", [(ZLPR, "Sigmoid"), (TWO_WAY, "Power")])
def test_deploy_gives_zlpr_the_sigmoid_and_the_two_way_loss_its_scores(tmp_path, layer, output):
    import caffe

    from softmax_multilabel_layer.evaluation.deploy import deploy_net, deploy_prototxt
    from softmax_multilabel_layer.evaluation.netio import find_loss, read_net
    train = tmp_path / "train.prototxt"
    train.write_text(
        'layer { name: "data" type: "Input" top: "data" top: "label" input_param { shape { dim: 4 dim: 3 } '
        'shape { dim: 4 dim: 5 } } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 5 '
        'weight_filler { type: "gaussian" std: 1 } } }\n'
        'layer { name: "loss" type: "Python" bottom: "fc" bottom: "label" top: "loss" loss_weight: 1 '
        'python_param { module: "softmax_multilabel_layer.layers" layer: "%s" } }\n' % layer)
    assert find_loss(read_net(str(train)))[1] == output
    assert [lay.type for lay in deploy_net(str(train)).layer] == ["Input", "InnerProduct", output]
    caffe.set_mode_cpu()
    net = caffe.Net(str(train), caffe.TEST)
    x = seeded_rng("deploy", layer).normal(size=(4, 3)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = np.eye(4, 5)
    net.forward()
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(deploy_prototxt(str(train)))
    dnet = caffe.Net(str(deploy), weights, caffe.TEST)
    dnet.blobs["data"].data[...] = x
    prob = dnet.forward()["prob"].astype(np.float64)
    fc = net.blobs["fc"].data.astype(np.float64)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-fc)) if output == "Sigmoid" else fc, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layer,param_str,labels", [
    (ZLPR, "", "bernoulli:0.4"), (ZLPR, '{"label_format": "indices"}', "randint:-1:6"),
    (TWO_WAY, "", "bernoulli:0.4"), (TWO_WAY, '{"tp": 1, "tn": 2}', "bernoulli:0.4")])
def test_gradient_checker_passes(tmp_path, layer, param_str, labels):
    from softmax_multilabel_layer.tools.gradcheck import check_layer_gradient, format_report
    label_shape = (5, 3) if "indices" in param_str else (5, 6)
    text = "force_backward: true\n" + "".join(
        'layer { name: "%s" type: "Input" top: "%s" input_param { shape { dim: %d dim: %d } } }\n' % (n, n, *s)
        for n, s in (("scores", (5, 6)), ("labels", label_shape)))
    text += ('layer { name: "loss" type: "Python" bottom: "scores" bottom: "labels" top: "loss" loss_weight: 2 '
             'python_param { module: "softmax_multilabel_layer.layers" layer: "%s" param_str: \'%s\' } }\n'
             % (layer, param_str))
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    fills = {"scores": "gaussian:2", "labels": labels}
    if "indices" in param_str:      # distinct indices per row: class k or -1 in slot k
        np.save(tmp_path / "idx.npy", np.where(seeded_rng("idx").random((5, 3)) < 0.5, np.arange(3), -1))
        fills["labels"] = str(tmp_path / "idx.npy")
    report = check_layer_gradient(str(path), "loss", fills=fills)
    assert report.passed, format_report(report)
    assert report.checks[0].max_rel_error < 1e-3, format_report(report)
