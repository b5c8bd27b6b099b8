"""HDF5 files in the indices label format: round trip, validation, and Caffe's HDF5Data feeding our layer."""
import json

import caffe
import h5py
import numpy as np
import pytest

from softmax_multilabel_layer.data.hdf5_labels import (
    dense_from_indices,
    encode_index_labels,
    read_index_labels,
    write_index_labels,
    write_list_file,
)
from softmax_multilabel_layer.params import MultilabelLossError

from caffe_nets import python_loss_net, run
from conftest import warns_if

SOFTMAX = "SoftmaxMultilabelLossLayer"


def sample_labels(rng, n, c, k, empty_every=5):
    lists, weights = [], []
    for i in range(n):
        m = 0 if i % empty_every == 0 else int(rng.integers(1, k + 1))
        chosen = rng.choice(c, size=m, replace=False)
        lists.append([int(v) for v in chosen])
        weights.append([float(v) for v in rng.random(m) + 0.25])
    return lists, weights


def test_round_trip_with_weights(tmp_path):
    rng = np.random.default_rng(0)
    n, c, k = 12, 9, 4
    data = rng.normal(size=(n, 3, 2, 2))
    lists, weights = sample_labels(rng, n, c, k)
    path = tmp_path / "sub" / "train.h5"
    labels, label_weights = write_index_labels(path, data, lists, c, max_labels=k, weights=weights)
    got = read_index_labels(path)
    assert got.data.dtype == np.float32 and got.data.shape == data.shape
    np.testing.assert_allclose(got.data, data.astype(np.float32))
    assert got.labels.shape == (n, k) and got.labels.dtype == np.float32
    assert got.label_lists() == lists
    assert got.num_classes == c
    np.testing.assert_array_equal(got.labels, labels)
    assert got.weights is not None and label_weights is not None
    np.testing.assert_array_equal(got.weights, label_weights)
    dense = got.dense()
    for i, (row, w) in enumerate(zip(lists, weights, strict=True)):
        expected = np.zeros(c, np.float32)
        expected[row] = w
        np.testing.assert_allclose(dense[i], expected)
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"data", "label", "label_weight"}
        assert f.attrs["label_format"] == "indices"
        assert f["label"].dtype == np.float32


def test_round_trip_without_weights_and_default_k(tmp_path):
    lists = [[3], [0, 2], [], [1, 4, 2]]
    path = tmp_path / "plain.h5"
    write_index_labels(path, np.zeros((4, 5)), lists, 5)
    got = read_index_labels(path)
    assert got.labels.shape == (4, 3)              # K = longest list
    assert got.weights is None
    assert got.label_lists() == lists
    np.testing.assert_array_equal(got.labels[2], [-1, -1, -1])
    np.testing.assert_array_equal(dense_from_indices(got.labels, 5),
                                  [[0, 0, 0, 1, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 1, 0, 1]])
    with h5py.File(path, "r") as f:
        assert "label_weight" not in f


def test_padded_array_input_is_accepted():
    labels, weights = encode_index_labels(np.array([[2, -1], [0, 1]]), 3, weights=np.array([[0.5, 0], [1, 2]]))
    np.testing.assert_array_equal(labels, [[2, -1], [0, 1]])
    assert weights is not None
    np.testing.assert_array_equal(weights, [[0.5, 0.0], [1.0, 2.0]])


@pytest.mark.parametrize("lists,kwargs,message", [
    ([[0], [1, 8]], {}, r"sample 1: label index 8 is out of range; expected 0 <= index < num_classes = 8"),
    ([[0], [-1]], {}, r"sample 1: label index -1 is out of range"),
    ([[2, 0, 2], [1]], {}, r"sample 0: label index 2 appears twice"),
    ([[0.5], [1]], {}, r"sample 0: label 0\.5 is not an integer"),
    ([[0, 1, 2], [1]], {"max_labels": 2}, r"sample 0 has 3 labels but max_labels is 2"),
    ([[0], [1]], {"weights": [[1.0], [-2.0]]}, r"sample 1: weight -2\.0"),
    ([[0], [1]], {"weights": [[1.0], [float("nan")]]}, r"sample 1: weight nan"),
    ([[0], [1, 2]], {"weights": [[1.0], [1.0]]}, r"sample 1 has 2 labels but 1 weights"),
    ([[0]], {}, r"data has 2 samples but label_lists has 1"),
])
def test_validation_errors_name_the_sample(tmp_path, lists, kwargs, message):
    path = tmp_path / "bad.h5"
    with pytest.raises(MultilabelLossError, match=message) as info:
        write_index_labels(path, np.zeros((2, 3)), lists, 8, **kwargs)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("write_index_labels:")
    assert not path.exists()                       # nothing written on error


def test_bad_num_classes_and_dense_from_indices_errors():
    with pytest.raises(MultilabelLossError, match="num_classes must be a positive integer"):
        encode_index_labels([[0]], 0)
    with pytest.raises(MultilabelLossError, match="sample 1: label index 4 is out of range"):
        dense_from_indices(np.array([[0, -1], [4, -1]]), 4)
    with pytest.raises(MultilabelLossError, match="sample 0: label index 1 appears twice"):
        dense_from_indices(np.array([[1, 1]]), 4)


def test_reader_rejects_corrupt_labels(tmp_path):
    path = tmp_path / "corrupt.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((2, 3), np.float32)
        f["label"] = np.array([[0, -1], [2.5, -1]], np.float32)
    with pytest.raises(MultilabelLossError, match=r"sample 1: label 2\.5"):
        read_index_labels(path)


def test_write_list_file(tmp_path):
    lines = write_list_file(tmp_path / "list.txt", [tmp_path / "a.h5", "b.h5"])
    assert (tmp_path / "list.txt").read_text().splitlines() == lines
    assert all(line.startswith("/") for line in lines)


def _hdf5_net(tmp_path, list_file, batch, with_weights):
    tops = 'top: "data" top: "label"' + (' top: "label_weight"' if with_weights else "")
    bottoms = 'bottom: "data" bottom: "label"' + (' bottom: "label_weight"' if with_weights else "")
    text = ('name: "hdf5_indices"\nforce_backward: true\n'
            'layer { name: "in" type: "HDF5Data" %s hdf5_data_param { source: "%s" batch_size: %d } }\n'
            'layer { name: "loss" type: "Python" %s top: "loss" loss_weight: 1\n'
            '  python_param { module: "softmax_multilabel_layer.layers" layer: "%s" param_str: \'%s\' } }\n'
            % (tops, list_file, batch, bottoms, SOFTMAX, json.dumps({"label_format": "indices"})))
    path = tmp_path / ("hdf5_net_%d.prototxt" % int(with_weights))
    path.write_text(text)
    caffe.set_mode_cpu()
    return caffe.Net(str(path), caffe.TRAIN)


@pytest.mark.parametrize("with_weights", [False, True])
def test_layer_on_hdf5data_equals_dense(tmp_path, with_weights):
    """HDF5Data (data = scores, label, label_weight) -> our indices layer == the dense layer on the same labels."""
    rng = np.random.default_rng(1)
    n, c, k, batch = 10, 13, 3, 5
    scores = (rng.normal(size=(n, c)) * 2).astype(np.float32)
    lists, weights = sample_labels(rng, n, c, k)
    h5 = tmp_path / "train.h5"
    write_index_labels(h5, scores, lists, c, max_labels=k, weights=weights if with_weights else None)
    list_file = tmp_path / "train_h5.txt"
    write_list_file(list_file, [h5])
    net = _hdf5_net(tmp_path, list_file, batch, with_weights)
    stored = read_index_labels(h5)
    dense = dense_from_indices(stored.labels, c, stored.weights)
    dense_net = python_loss_net(tmp_path, SOFTMAX, {"scores": (batch, c), "labels": (batch, c)})
    results = []
    with warns_if(with_weights):                        # weights above 1 with "count": the layers say so
        for start in (0, batch, 0):                     # HDF5Data walks the file and wraps around
            net.forward()
            net.backward()
            rows = slice(start, start + batch)
            results.append((rows, net.blobs["data"].data.copy(), net.blobs["label"].data.copy(),
                            float(net.blobs["loss"].data), net.blobs["data"].diff.copy(),
                            run(dense_net, {"scores": scores[rows], "labels": dense[rows]})))
    for rows, data, label, net_loss, diff, (loss, grad) in results:
        np.testing.assert_array_equal(data, scores[rows])
        np.testing.assert_array_equal(label, stored.labels[rows])
        assert net_loss == pytest.approx(loss, rel=1e-6)
        np.testing.assert_allclose(diff, grad, atol=1e-7)


def test_sparse_labels_example_runs(tmp_path):
    import os
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "examples", "sparse_labels", "run_sparse_labels.py")
    done = subprocess.run([sys.executable, script, "--out", str(tmp_path), "--iters", "20"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "iteration  19  loss" in done.stdout
    assert "indices-format loss" in done.stdout
    assert read_index_labels(tmp_path / "train.h5").labels.shape == (1024, 3)


# ---------------------------------------------------------------- dense labels

def test_dense_labels_read_by_caffe_hdf5data(tmp_path):
    from softmax_multilabel_layer.data.hdf5_labels import write_dense_labels
    rng = np.random.default_rng(7)
    data = rng.normal(size=(6, 2, 3)).astype(np.float64)
    labels = rng.random((6, 5)) < 0.4                        # bool multi-hot, converted to float32 0/1
    written = write_dense_labels(tmp_path / "d" / "train.h5", data, labels)
    assert written.dtype == np.float32 and (written == labels).all()
    with h5py.File(tmp_path / "d" / "train.h5", "r") as f:
        assert f.attrs["label_format"] == "dense" and f.attrs["num_classes"] == 5
    write_list_file(tmp_path / "list.txt", [tmp_path / "d" / "train.h5"])
    net_path = tmp_path / "net.prototxt"
    net_path.write_text('layer { name: "data" type: "HDF5Data" top: "data" top: "label" '
                        'hdf5_data_param { source: "%s" batch_size: 6 } }\n' % (tmp_path / "list.txt"))
    net = caffe.Net(str(net_path), caffe.TRAIN)
    net.forward()
    assert (net.blobs["label"].data == labels).all()
    assert np.array_equal(net.blobs["data"].data, data.astype(np.float32))


@pytest.mark.parametrize("labels,message", [
    (np.array([[0, 1], [1, -1]]), "sample 1, class 1: label -1.0 must be finite and >= 0"),
    (np.array([[0, np.nan], [1, 0]]), "sample 0, class 1: label nan must be finite"),
    (np.ones((3, 2)), "labels must be N x C with N = 2 samples (the data's first axis), got shape (3, 2)"),
    (np.ones(2), "got shape (2,)"),
    (np.array([["a", "b"], ["c", "d"]]), "labels must be numbers, got dtype <U1"),
])
def test_dense_labels_validation_names_sample_and_class(tmp_path, labels, message):
    from softmax_multilabel_layer.data.hdf5_labels import write_dense_labels
    with pytest.raises(MultilabelLossError) as info:
        write_dense_labels(tmp_path / "bad.h5", np.zeros((2, 3)), labels)
    assert str(info.value).startswith("write_dense_labels: ") and message in str(info.value), str(info.value)
    assert not (tmp_path / "bad.h5").exists()                 # nothing written
