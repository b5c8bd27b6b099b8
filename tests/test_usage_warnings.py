"""Mistakes that run without error: no loss_weight, and labels above 1 with "count".

Each test makes the mistake and checks what the user sees: the warning in the
``caffe train`` log (the way most users meet it), or the warning pycaffe
users get, once, and nothing for the correct net.
"""
import os
import re
import subprocess
import warnings
from pathlib import Path

import caffe
import numpy as np
import pytest

from softmax_multilabel_layer.data.hdf5_labels import write_dense_labels, write_list_file
from softmax_multilabel_layer.losses.usage_warnings import (
    MultilabelLossWarning,
    count_labels_message,
    loss_weight_message,
)

from caffe_nets import python_loss_net, run

REPO = Path(__file__).resolve().parents[1]
SOFTMAX = "SoftmaxMultilabelLossLayer"
SIGMOID = "SigmoidMultilabelLossLayer"
WARNING = "MultilabelLossWarning: "


def hdf5_net(tmp_path, labels, loss_line="loss_weight: 1", param_str='{"normalize_targets": "count"}'):
    """A solver (4 iterations) for HDF5Data -> InnerProduct -> our softmax loss, ``loss_line`` in the loss layer."""
    rng = np.random.default_rng(0)
    write_dense_labels(tmp_path / "train.h5", rng.normal(size=(len(labels), 6)), labels)
    write_list_file(tmp_path / "train.txt", [tmp_path / "train.h5"])
    net = tmp_path / "train.prototxt"
    net.write_text(
        'layer { name: "data" type: "HDF5Data" top: "data" top: "label"\n'
        '  hdf5_data_param { source: "%s" batch_size: 4 } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"\n'
        '  inner_product_param { num_output: %d weight_filler { type: "gaussian" std: 0.1 } } }\n'
        'layer { name: "my_loss" type: "Python" bottom: "fc" bottom: "label" top: "loss" %s\n'
        '  python_param { module: "softmax_multilabel_layer.layers" layer: "%s" param_str: \'%s\' } }\n'
        % (tmp_path / "train.txt", np.shape(labels)[1], loss_line, SOFTMAX, param_str))
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 4\ndisplay: 1\nsolver_mode: CPU\n'
                      'snapshot_prefix: "%s/snap"\nsnapshot_after_train: false\n' % (net, tmp_path))
    return solver


def caffe_train(tmp_path, solver):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    env.update(GLOG_logtostderr="1", GLOG_minloglevel="0")
    result = subprocess.run([str(REPO / ".venv" / "bin" / "caffe"), "train", "--solver", str(solver)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    return result.stdout


def binary_labels(n=8, c=5):
    labels = np.zeros((n, c), np.float32)
    labels[np.arange(n), np.arange(n) % c] = 1
    labels[::2, (np.arange(0, n, 2) + 2) % c] = 1
    return labels


# ---------------------------------------------------------------- loss_weight, through caffe train

def test_caffe_train_without_loss_weight_warns_once_naming_the_layer(tmp_path):
    log = caffe_train(tmp_path, hdf5_net(tmp_path, binary_labels(), loss_line=""))
    assert log.count(WARNING) == 1, log
    warning = log[log.index(WARNING):]
    assert warning.startswith(WARNING + 'layer "my_loss" (SoftmaxMultilabelLossLayer) has no loss weight'), warning
    assert "does not learn" in warning and "add loss_weight: 1 to the layer" in warning
    assert 'layer { name: "my_loss" type: "Python" ... top: "loss" loss_weight: 1' in warning
    assert "deliberate" not in log                            # the net has no loss_weight: 0, so no hedging
    # What the user saw before: the solver's loss stays 0 while the layer's own output is not.
    assert re.search(r"Iteration 4, loss = 0\n", log), log


def test_caffe_train_with_deliberate_loss_weight_0_gets_its_own_wording(tmp_path):
    log = caffe_train(tmp_path, hdf5_net(tmp_path, binary_labels(), loss_line="loss_weight: 0"))
    assert log.count(WARNING) == 1, log
    warning = log[log.index(WARNING):].split("\n")[0]
    assert 'layer "my_loss" (SoftmaxMultilabelLossLayer) has loss_weight: 0' in warning
    assert "monitor-only loss" in warning and "to train with it, set loss_weight: 1" in warning
    assert "has no loss weight" not in warning


def test_caffe_train_with_loss_weight_says_nothing(tmp_path):
    log = caffe_train(tmp_path, hdf5_net(tmp_path, binary_labels()))
    assert WARNING not in log, log
    assert not re.search(r"Iteration 4, loss = 0\n", log)


# ---------------------------------------------------------------- loss_weight, through pycaffe

@pytest.mark.parametrize("layer", [SOFTMAX, SIGMOID])
def test_pycaffe_net_without_loss_weight_warns_once_in_train_only(tmp_path, layer):
    labels = binary_labels()
    feeds = {"scores": np.random.default_rng(1).normal(size=labels.shape), "labels": labels}
    net = python_loss_net(tmp_path, layer, {"scores": labels.shape, "labels": labels.shape}, loss_weight=0)
    with pytest.warns(MultilabelLossWarning) as record:
        run(net, feeds)
        run(net, feeds)
    assert len(record) == 1
    message = str(record[0].message)
    # pycaffe cannot tell the layer its prototxt name, nor a missing weight from a 0.
    assert message.startswith("this %s layer has no loss weight" % layer), message
    assert "add loss_weight: 1" in message and "If loss_weight: 0 is deliberate" in message
    assert record[0].filename.endswith("layers.py")        # points at the layer, not at the helper
    test_net = caffe.Net(str(sorted(tmp_path.glob("net_*.prototxt"))[-1]), caffe.TEST)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MultilabelLossWarning)
        run(test_net, feeds)                                 # TEST phase: a loss weight is not needed
        run(python_loss_net(tmp_path, layer, {"scores": labels.shape, "labels": labels.shape}), feeds)


def test_loss_weight_message_variants():
    assert loss_weight_message("X", ["a", "b"], [[], []]).startswith('layer "a" or "b" (X) has no loss weight')
    assert "deliberate" not in loss_weight_message("X", ["a"], [[]])
    assert "loss_weight: 0, so" in loss_weight_message("X", ["a"], [[0.0]])


# ---------------------------------------------------------------- labels above 1 with "count"

def test_caffe_train_with_0_255_labels_warns_once_with_value_and_fixes(tmp_path):
    labels = binary_labels() * 255                          # uint8 masks stored as float
    log = caffe_train(tmp_path, hdf5_net(tmp_path, labels))
    assert log.count(WARNING) == 1, log
    warning = log[log.index(WARNING):].split("\n")[0]
    assert warning.startswith(WARNING + "SoftmaxMultilabelLossLayer: labels has values above 1 (largest 255, "
                              "at index (0, 0) of shape (4, 5))"), warning
    assert '"normalize_targets": "count"' in warning
    assert "labels in 0/1 (for 0/255 masks, divide by 255)" in warning and '"normalize_targets": "sum"' in warning
    losses = [float(v) for v in re.findall(r"Iteration \d+, loss = (\S+)", log)]
    assert max(losses) > 100, losses                         # the symptom the warning explains


def test_caffe_train_with_0_255_labels_and_sum_says_nothing(tmp_path):
    log = caffe_train(tmp_path, hdf5_net(tmp_path, binary_labels() * 255, param_str='{"normalize_targets": "sum"}'))
    assert WARNING not in log, log


@pytest.mark.parametrize("labels,params,warns", [
    (binary_labels() * 255, {}, True),
    (binary_labels() * 1.5, {"normalize_targets": "count"}, True),
    (binary_labels(), {}, False),
    (binary_labels() * 0.7, {}, False),                      # real-valued labels <= 1: legal, no warning
    (binary_labels() * 255, {"normalize_targets": "sum"}, False),
    (binary_labels() * 255, {"normalize_targets": "none"}, False),
])
def test_count_labels_warning_in_pycaffe(tmp_path, labels, params, warns):
    feeds = {"scores": np.random.default_rng(1).normal(size=labels.shape), "labels": labels}
    net = python_loss_net(tmp_path, SOFTMAX, {"scores": labels.shape, "labels": labels.shape}, params)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            loss, _ = run(net, feeds)
    assert np.isfinite(loss)                                  # never refused
    got = [str(w.message) for w in record if issubclass(w.category, MultilabelLossWarning)]
    assert len(got) == (1 if warns else 0), got
    if warns:
        assert "largest %g" % labels.max() in got[0]


def test_count_labels_warning_checks_label_weights_in_indices_format(tmp_path):
    indices = np.array([[0, 2], [1, -1]], np.float32)
    weights = np.array([[3, 1], [1, 0]], np.float32)
    inputs = {"scores": (2, 4), "labels": indices.shape, "label_weights": weights.shape}
    net = python_loss_net(tmp_path, SOFTMAX, inputs, {"label_format": "indices"})
    with pytest.warns(MultilabelLossWarning, match=r"label_weights has values above 1 \(largest 3, at index \(0, 0\)"):
        run(net, {"scores": np.zeros((2, 4)), "labels": indices, "label_weights": weights})


def test_count_labels_message_ignores_nan_and_small_values():
    assert count_labels_message(np.array([[np.nan, 1.0]]), "X") is None
    assert count_labels_message(np.array([[1.0, 0.0]]), "X") is None
    message = count_labels_message(np.array([[1.0, 2.0]]), "X")
    assert message is not None and "largest 2" in message
