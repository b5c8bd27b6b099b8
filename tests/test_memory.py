"""Steady state allocates no new N x C arrays: tracemalloc over one forward + backward of a caffe.Net.

After 3 warm-up iterations (which fill the layers' workspaces), the peak of
memory traced by ``tracemalloc`` (numpy reports its array data to it) during
one ``net.forward(); net.backward()`` must stay under a quarter of one N x C
float32 array: ``THRESHOLD_FRACTION * N * C * 4`` bytes. A single N x C
temporary anywhere in the layer's forward or backward breaks that. Caffe's
own blobs are C++ memory, not traced, and they are allocated at net set-up.
"""
import tracemalloc

import numpy as np
import pytest

from caffe_nets import python_loss_net
from conftest import warns_if

SOFTMAX = "SoftmaxMultilabelLossLayer"
SIGMOID = "SigmoidMultilabelLossLayer"
THRESHOLD_FRACTION = 0.25
WARMUP = 3


def binary_labels(rng, n, c, positives):
    labels = np.zeros((n, c), np.float32)
    for i in range(n):
        labels[i, rng.choice(c, positives, replace=False)] = 1
    return labels


def index_labels(dense, k):
    out = np.full((dense.shape[0], k), -1, np.float32)
    for i, row in enumerate(dense):
        chosen = np.flatnonzero(row)
        out[i, :len(chosen)] = chosen
    return out


def iteration_peak(net):
    """Bytes of the tracemalloc peak (above the level at the start) of one forward + backward after warm-up."""
    for _ in range(WARMUP):
        net.forward()
        net.backward()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        net.forward()
        net.backward()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


def check(net, feeds, n, c):
    for name, value in feeds.items():
        net.blobs[name].data[...] = value
    peak = iteration_peak(net)
    array_bytes = n * c * 4
    limit = THRESHOLD_FRACTION * array_bytes
    assert peak < limit, ("one iteration peaked at %d bytes of new allocations (%.2f of one %d x %d float32 "
                          "array = %d bytes); the limit is %.2f of it = %d bytes"
                          % (peak, peak / array_bytes, n, c, array_bytes, THRESHOLD_FRACTION, limit))
    assert np.isfinite(net.blobs["loss"].data).all() and net.blobs["scores"].diff.any()
    return peak


def test_softmax_binary_labels_64x17000(tmp_path):
    rng = np.random.default_rng(0)
    n, c = 64, 17000
    feeds = {"scores": rng.normal(size=(n, c)).astype(np.float32), "labels": binary_labels(rng, n, c, 3)}
    net = python_loss_net(tmp_path, SOFTMAX, {k: v.shape for k, v in feeds.items()})
    check(net, feeds, n, c)


def test_softmax_dense_real_labels_256x1000(tmp_path):
    """Every label non-zero and real-valued: the dense (not sparse) target path."""
    rng = np.random.default_rng(1)
    n, c = 256, 1000
    feeds = {"scores": rng.normal(size=(n, c)).astype(np.float32),
             "labels": (rng.random((n, c)) + 0.01).astype(np.float32)}
    net = python_loss_net(tmp_path, SOFTMAX, {k: v.shape for k, v in feeds.items()},
                          {"normalize_targets": "sum"})
    check(net, feeds, n, c)


@pytest.mark.parametrize("with_weights", [False, True])
def test_softmax_indices_64x17000(tmp_path, with_weights):
    rng = np.random.default_rng(2)
    n, c, k = 64, 17000, 3
    dense = binary_labels(rng, n, c, 3)
    feeds = {"scores": rng.normal(size=(n, c)).astype(np.float32), "labels": index_labels(dense, k)}
    if with_weights:
        feeds["weights"] = (rng.random((n, k)) + 0.5).astype(np.float32)
    net = python_loss_net(tmp_path, SOFTMAX, {k_: v.shape for k_, v in feeds.items()}, {"label_format": "indices"})
    with warns_if(with_weights, match=r"label_weights has values above 1"):     # weights up to 1.5 with "count"
        check(net, feeds, n, c)


@pytest.mark.parametrize("n,c", [(64, 17000), (256, 1000)])
def test_sigmoid_bce(tmp_path, n, c):
    rng = np.random.default_rng(3)
    feeds = {"scores": rng.normal(size=(n, c)).astype(np.float32), "targets": binary_labels(rng, n, c, 3)}
    net = python_loss_net(tmp_path, SIGMOID, {k: v.shape for k, v in feeds.items()})
    check(net, feeds, n, c)


@pytest.mark.parametrize("params", [{"gamma": 2.0, "alpha": 0.25},
                                    {"gamma": 0.5, "pos_weight": 2.0, "class_weight": [1.0, 2.0] * 500,
                                     "ignore_label": -1}])
def test_sigmoid_general_path_256x1000(tmp_path, params):
    rng = np.random.default_rng(4)
    n, c = 256, 1000
    targets = binary_labels(rng, n, c, 3)
    targets[:, :10] = -1 if "ignore_label" in params else 0
    feeds = {"scores": rng.normal(size=(n, c)).astype(np.float32), "targets": targets}
    net = python_loss_net(tmp_path, SIGMOID, {k: v.shape for k, v in feeds.items()}, params)
    check(net, feeds, n, c)
