"""prototxt/digits: the loss variants parse and differ only in the loss."""
import os

from caffe.proto import caffe_pb2
from google.protobuf import text_format

DIR = os.path.join(os.path.dirname(__file__), "..", "prototxt", "digits")
VARIANTS = ("softmax_multilabel", "sigmoid_native", "sigmoid_focal", "sigmoid_asl", "zlpr", "two_way")
DEPLOY_OUTPUT = {"softmax_multilabel": "Softmax", "two_way": "Power"}     # the others: Sigmoid


def load(variant, kind):
    msg = caffe_pb2.SolverParameter() if kind == "solver" else caffe_pb2.NetParameter()
    with open(os.path.join(DIR, "%s_%s.prototxt" % (variant, kind))) as f:
        text_format.Merge(f.read(), msg)
    return msg


def split_loss(net):
    body = [layer for layer in net.layer if layer.name not in ("loss", "prob")]
    tail = [layer for layer in net.layer if layer.name in ("loss", "prob")]
    return body, tail


def test_train_val_identical_except_loss():
    nets = {v: load(v, "train_val") for v in VARIANTS}
    bodies = {v: split_loss(n)[0] for v, n in nets.items()}
    for v in VARIANTS[1:]:
        assert bodies[v] == bodies[VARIANTS[0]]
    types = [layer.type for layer in bodies[VARIANTS[0]]]
    assert types == ["HDF5Data", "HDF5Data", "Convolution", "ReLU", "Pooling", "Convolution", "ReLU",
                     "Pooling", "InnerProduct", "ReLU", "InnerProduct"]
    for layer in bodies[VARIANTS[0]][:2]:
        assert not layer.hdf5_data_param.shuffle        # resume stays exact
    losses = {v: split_loss(n)[1] for v, n in nets.items()}
    for (loss,) in losses.values():
        assert list(loss.bottom) == ["fc_out", "label"] and list(loss.loss_weight) == [1.0]
    assert losses["sigmoid_native"][0].type == "SigmoidCrossEntropyLoss"
    assert losses["softmax_multilabel"][0].python_param.layer == "SoftmaxMultilabelLossLayer"
    assert '"normalize_targets": "count"' in losses["softmax_multilabel"][0].python_param.param_str
    assert losses["sigmoid_focal"][0].python_param.layer == "SigmoidMultilabelLossLayer"
    assert '"gamma": 2' in losses["sigmoid_focal"][0].python_param.param_str
    assert losses["sigmoid_asl"][0].python_param.layer == "SigmoidMultilabelLossLayer"
    assert '"gamma_neg": 4, "gamma_pos": 0, "clip": 0.05' in losses["sigmoid_asl"][0].python_param.param_str
    assert losses["zlpr"][0].python_param.layer == "ZLPRLossLayer"
    assert losses["two_way"][0].python_param.layer == "TwoWayLossLayer"
    assert losses["two_way"][0].python_param.param_str == '{"tp": 4, "tn": 1}'


def test_deploy_matches_train_val():
    for v in VARIANTS:
        deploy_body, (prob,) = split_loss(load(v, "deploy"))
        train_body = split_loss(load(v, "train_val"))[0]
        assert deploy_body[0].type == "Input" and deploy_body[1:] == train_body[2:]   # see also test_deploy.py
        assert prob.type == DEPLOY_OUTPUT.get(v, "Sigmoid")


def test_solvers_identical_except_net_and_prefix():
    solvers = {v: load(v, "solver") for v in VARIANTS}
    for v, s in solvers.items():
        assert s.net == "prototxt/digits/%s_train_val.prototxt" % v
        assert s.snapshot_prefix == "output/digits/%s/snap" % v
        assert s.solver_mode == caffe_pb2.SolverParameter.CPU and s.HasField("random_seed")
        s.ClearField("net")
        s.ClearField("snapshot_prefix")
    for v in VARIANTS[1:]:
        assert solvers[v] == solvers[VARIANTS[0]]
    s = solvers[VARIANTS[0]]
    # snapshots on epoch boundaries of the 9600-image train set (batch 64 -> 150 iterations)
    assert s.snapshot % 150 == 0 and s.max_iter % s.snapshot == 0
