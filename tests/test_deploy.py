"""softmax-multilabel deploy: the committed digits deploy nets are its output, and a deploy net's ``prob``
equals the probabilities the train net's loss computes, with no Python layer."""
import os

import caffe
import numpy as np
import pytest

from softmax_multilabel_layer.cli import main
from softmax_multilabel_layer.evaluation.deploy import deploy_net, deploy_prototxt, parse_input_shapes
from softmax_multilabel_layer.params import MultilabelLossError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("softmax_multilabel", "sigmoid_native", "sigmoid_focal", "sigmoid_asl", "zlpr", "two_way")
OUTPUT = {"softmax_multilabel": "Softmax", "two_way": "Power"}      # the deploy output; the others: Sigmoid


@pytest.mark.parametrize("variant", VARIANTS)
def test_digits_deploy_nets_are_what_deploy_generates(variant, monkeypatch, capsys):
    train = "prototxt/digits/%s_train_val.prototxt" % variant
    monkeypatch.chdir(ROOT)
    assert main(["deploy", train, "--input-shape", "100,1,24,24"]) == 0
    with open(os.path.join(ROOT, "prototxt", "digits", "%s_deploy.prototxt" % variant)) as f:
        assert f.read() == capsys.readouterr().out
    net = deploy_net(os.path.join(ROOT, train), {None: (100, 1, 24, 24)})
    types = [layer.type for layer in net.layer]
    assert types == ["Input", "Convolution", "ReLU", "Pooling", "Convolution", "ReLU", "Pooling", "InnerProduct",
                     "ReLU", "InnerProduct", OUTPUT.get(variant, "Sigmoid")]
    assert net.layer[-1].top == ["prob"] and net.layer[-1].bottom == ["fc_out"]


def _python_loss(layer, params):
    return ('type: "Python" python_param { module: "softmax_multilabel_layer.layers" layer: "%s" param_str: \'%s\' }'
            % (layer, params))


N, D, C = 16, 6, 5
LOSSES = {  # name: (loss layer body, label shape, kind, train top holding the probabilities or None)
    "softmax_multilabel": (_python_loss("SoftmaxMultilabelLossLayer", '{"normalize_targets": "count"}')
                           + ' top: "probs" loss_weight: 0', (N, C), "softmax", "probs"),
    "sigmoid_focal": (_python_loss("SigmoidMultilabelLossLayer", '{"gamma": 2}') + ' top: "probs" loss_weight: 0',
                      (N, C), "sigmoid", "probs"),
    "softmax_with_loss": ('type: "SoftmaxWithLoss"', (N,), "softmax", None),
    "sigmoid_cross_entropy": ('type: "SigmoidCrossEntropyLoss"', (N, C), "sigmoid", None),
}


def train_net_text(loss):
    body, label_shape, _, _ = LOSSES[loss]
    label_dims = " ".join("dim: %d" % d for d in label_shape)
    return """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: %d dim: %d } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { %s } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: %d weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" } } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" include { phase: TRAIN } }
layer { name: "loss" bottom: "fc" bottom: "label" top: "loss" loss_weight: 1 %s }
""" % (N, D, label_dims, C, body)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_deploy_prob_equals_train_probabilities(tmp_path, loss):
    _, label_shape, kind, prob_top = LOSSES[loss]
    train = tmp_path / "train.prototxt"
    train.write_text(train_net_text(loss))
    caffe.set_mode_cpu()
    caffe.set_random_seed(5)
    net = caffe.Net(str(train), caffe.TEST)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, D)).astype(np.float32) * 2
    y = (rng.integers(0, C, N) if len(label_shape) == 1
         else (rng.random((N, C)) < 0.3) | (np.arange(C) == rng.integers(0, C, (N, 1)))).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.blobs["label"].data[...] = y
    net.forward()
    weights = str(tmp_path / "w.caffemodel")
    net.save(weights)
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(deploy_prototxt(str(train)))        # the Input shape comes from the train net's own
    types = [layer.type for layer in deploy_net(str(train)).layer]
    assert types == ["Input", "InnerProduct", "Softmax" if kind == "softmax" else "Sigmoid"]
    dnet = caffe.Net(str(deploy), weights, caffe.TEST)
    assert list(dnet.inputs) == ["data"] and list(dnet.outputs) == ["prob"]
    dnet.blobs["data"].data[...] = x
    prob = dnet.forward()["prob"].copy()
    fc = net.blobs["fc"].data.astype(np.float64)
    expected = (np.exp(fc) / np.exp(fc).sum(1, keepdims=True) if kind == "softmax" else 1 / (1 + np.exp(-fc)))
    np.testing.assert_allclose(prob, expected, rtol=1e-5, atol=1e-7)
    if prob_top:
        np.testing.assert_allclose(prob, net.blobs[prob_top].data, rtol=1e-5, atol=1e-7)


def test_layers_removed_and_kept(tmp_path):
    text = """name: "n"
layer { name: "d" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
  hdf5_data_param { source: "missing.txt" batch_size: 4 } }
layer { name: "d" type: "HDF5Data" top: "data" top: "label" include { phase: TEST }
  hdf5_data_param { source: "missing.txt" batch_size: 4 } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include { phase: TEST } }
layer { name: "flat" type: "Reshape" bottom: "label" top: "label_flat" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "eu" type: "EuclideanLoss" bottom: "fc" bottom: "label_flat" top: "eu" }
layer { name: "mine" type: "Python" bottom: "fc" bottom: "label" top: "mine" loss_weight: 0.5
  python_param { module: "my_module" layer: "MyLoss" } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" softmax_param { axis: 1 } }
layer { name: "loss2" type: "SigmoidCrossEntropyLoss" bottom: "fc" bottom: "label" top: "loss2" }
"""
    path = tmp_path / "n.prototxt"
    path.write_text(text)
    net = deploy_net(str(path), parse_input_shapes(["data=4,7"]))
    assert [(layer.name, layer.type) for layer in net.layer] == [
        ("data", "Input"), ("fc", "InnerProduct"), ("prob", "Softmax"), ("prob_loss2", "Sigmoid")]
    assert list(net.layer[0].input_param.shape[0].dim) == [4, 7]
    with pytest.raises(MultilabelLossError, match=r"cannot infer the shape of input data: building the TEST net "
                                                  r"of .* failed \(.*missing.txt.*\); pass --input-shape"):
        deploy_net(str(path))
    with pytest.raises(MultilabelLossError, match="--input-shape names label, but the deploy net's inputs are data"):
        deploy_net(str(path), parse_input_shapes(["label=4,3"]))


def test_bad_input_is_one_line_with_status_2(tmp_path, capsys):
    legacy = os.path.join(ROOT, "prototxt", "digits", "softmax_multilabel_deploy.prototxt")
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "x" type: "InnerProduct" bottom: "a" top: "b" num_output: 3 }')
    cases = [([legacy], "no SoftmaxMultilabelLossLayer"),
             ([str(bad)], "does not parse as a NetParameter"),
             ([str(tmp_path / "none.prototxt")], "cannot read"),
             ([legacy, "--input-shape", "1,x"], "expected positive integers")]
    for args, message in cases:
        assert main(["deploy"] + args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("softmax-multilabel deploy: error: "), err
