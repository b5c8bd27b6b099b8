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


def _message(fn, *args, **kwargs):
    with pytest.raises(MultilabelLossError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_every_error_message_exactly(tmp_path):
    """Each message names its function, the sample and the value found, exactly (the message is the behaviour)."""
    from softmax_multilabel_layer.data.hdf5_labels import IndexLabels, write_dense_labels
    enc = encode_index_labels
    assert _message(IndexLabels(np.zeros((1, 1)), np.zeros((1, 1)), None, None).dense) == (
        "IndexLabels.dense: the file records no num_classes; call dense_from_indices(labels, num_classes, weights)")
    assert _message(enc, np.zeros(3), 3) == (
        "encode_index_labels: label_lists as an array must be N x K (padded with -1), got shape (3,)")
    assert _message(enc, 5, 3) == ("encode_index_labels: label_lists must be a sequence of per-sample sequences "
                                   "of class indices, got 'int'")
    assert _message(enc, [[0]], 3, weights=5) == ("encode_index_labels: label_lists must be a sequence of "
                                                  "per-sample sequences of class indices, got 'int'")
    assert _message(enc, [[0], [True]], 3) == (
        "encode_index_labels: sample 1: label True is a bool; expected an integer class index")
    assert _message(enc, [[0], ["a"]], 3) == ("encode_index_labels: sample 1: label 'a' is not an integer class index")
    assert _message(enc, [[0]], 0) == "encode_index_labels: num_classes must be a positive integer, got 0"
    assert _message(enc, [[0]], True) == "encode_index_labels: num_classes must be a positive integer, got True"
    assert _message(enc, [[0]], 2.0) == "encode_index_labels: num_classes must be a positive integer, got 2.0"
    wrong = "encode_index_labels: weights as an array must have the shape of the N x K label array, got %s"
    assert _message(enc, np.array([[0, 1]]), 3, weights=np.ones((1, 3))) == wrong % "(1, 3)"
    assert _message(enc, [[0, 1]], 3, weights=np.ones((1, 2))) == wrong % "(1, 2)"      # lists, not an array
    assert _message(enc, np.array([[0, 1]]), 3, weights=np.ones(2)) == wrong % "(2,)"
    assert _message(enc, [[0], [1]], 3, weights=[[1.0]]) == (
        "encode_index_labels: weights has 1 samples but label_lists has 2")
    for bad in (0, True, 1.0):
        assert _message(enc, [[0]], 3, max_labels=bad) == (
            "encode_index_labels: max_labels must be a positive integer, got %r" % bad)
    assert _message(enc, [[1, 1]], 3) == (
        "encode_index_labels: sample 0: label index 1 appears twice; expected distinct class indices")
    assert _message(enc, [[1]], 3, weights=[[True]]) == (
        "encode_index_labels: sample 0: weight True of label 1 must be a finite number >= 0")
    assert _message(enc, [[1]], 3, weights=[["x"]]) == (
        "encode_index_labels: sample 0: weight 'x' of label 1 must be a finite number >= 0")
    data = "write_index_labels: data must be an N x ... array with N >= 1, got shape %s"
    assert _message(write_index_labels, tmp_path / "a.h5", np.float32(1), [[0]], 3) == data % "()"
    assert _message(write_index_labels, tmp_path / "a.h5", np.zeros((0, 2)), [], 3) == data % "(0, 2)"
    assert _message(write_index_labels, tmp_path / "a.h5", np.zeros(1, complex), [[0]], 3) == (
        "write_index_labels: data must be real numbers, got dtype complex128")
    assert _message(write_index_labels, tmp_path / "a.h5", np.array(["a"]), [[0]], 3) == (
        "write_index_labels: data must be real numbers, got dtype <U1")
    assert _message(write_index_labels, tmp_path / "a.h5", np.zeros((3, 2)), [[0], [1]], 3) == (
        "write_index_labels: data has 3 samples but label_lists has 2")
    dense = "write_dense_labels: data must be an N x ... array with N >= 1, got shape %s"
    assert _message(write_dense_labels, tmp_path / "d.h5", np.float32(1), [[0]]) == dense % "()"
    assert _message(write_dense_labels, tmp_path / "d.h5", np.zeros((0, 2)), np.zeros((0, 2))) == dense % "(0, 2)"
    assert _message(dense_from_indices, np.zeros(3), 3) == (
        "dense_from_indices: labels must be N x K (padded with -1), got shape (3,)")
    assert _message(dense_from_indices, np.zeros((1, 2)), 3, np.ones((1, 3))) == (
        "dense_from_indices: weights shape (1, 3) does not match labels shape (1, 2)")
    assert _message(dense_from_indices, np.array([[0, 1]]), 3, np.array([[1.0, -1.0]])) == (
        "dense_from_indices: sample 0: weight -1.0 of label 1 must be a finite number >= 0")
    assert _message(write_list_file, tmp_path / "l.txt", []) == "write_list_file: no HDF5 paths given"
    assert not any(p.name.endswith(".h5") for p in tmp_path.iterdir())


def test_reader_errors_exactly(tmp_path):
    def file(name, **datasets):
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            for key, value in datasets.items():
                f[key] = value
        return path
    path = file("nolabel.h5", data=np.zeros((2, 1)), other=np.zeros(1))
    assert _message(read_index_labels, path) == (
        "read_index_labels: %s has no 'label' dataset (found ['data', 'other'])" % path)
    path = file("nodata.h5", label=np.zeros((2, 1)))
    assert _message(read_index_labels, path) == "read_index_labels: %s has no 'data' dataset (found ['label'])" % path
    path = file("flat.h5", data=np.zeros((2, 3)), label=np.zeros(2))
    assert _message(read_index_labels, path) == (
        "read_index_labels: %s: label must be N x K with N = 2 samples, got shape (2,)" % path)
    path = file("rows.h5", data=np.zeros((2, 3)), label=np.zeros((3, 2)))
    assert _message(read_index_labels, path) == (
        "read_index_labels: %s: label must be N x K with N = 2 samples, got shape (3, 2)" % path)
    path = file("weights.h5", data=np.zeros((2, 3)), label=np.zeros((2, 1)), label_weight=np.zeros((2, 2)))
    assert _message(read_index_labels, path) == (
        "read_index_labels: %s: label_weight shape (2, 2) does not match label shape (2, 1)" % path)
    path = file("range.h5", data=np.zeros((2, 3)), label=np.array([[0.0], [3.0]]))
    with h5py.File(path, "a") as f:
        f.attrs["num_classes"] = 3
    assert _message(read_index_labels, path) == (
        "read_index_labels: %s: sample 1: label 3.0 is not a class index in [0, 3) or -1" % path)
    # Without a recorded num_classes any index >= 0 is kept; dtypes are float32 whatever was stored.
    got = read_index_labels(file("free.h5", data=np.zeros((2, 3)), label=np.array([[7], [0]], np.int64),
                                 label_weight=np.array([[0.5], [2]], np.float64)))
    assert got.num_classes is None and got.label_lists() == [[7], [0]]
    assert got.labels.dtype == np.float32 and got.weights is not None and got.weights.dtype == np.float32


def test_edge_sizes_compression_and_dtypes(tmp_path):
    """K = 1 and one class are allowed; empty lists give one padded slot; 1-D data and N = 1 are written;
    compression reaches every dataset; dense labels keep the requested dtype."""
    from softmax_multilabel_layer.data.hdf5_labels import write_dense_labels
    labels, weights = encode_index_labels([[0]], 1, max_labels=1)
    assert labels.tolist() == [[0.0]] and weights is None
    labels, weights = encode_index_labels([], 3)
    assert labels.shape == (0, 1) and labels.dtype == np.float32
    labels, weights = encode_index_labels([[2], []], 3, weights=[[0.0], []])     # a weight of 0 is allowed
    assert labels.tolist() == [[2.0], [-1.0]] and weights is not None and weights.tolist() == [[0.0], [0.0]]
    path = tmp_path / "one.h5"
    write_index_labels(path, np.arange(1, dtype=np.float64), [[1, 0]], 2, weights=[[0.5, 1]], compression="gzip")
    with h5py.File(path, "r") as f:
        assert {k: f[k].compression for k in f} == {"data": "gzip", "label": "gzip", "label_weight": "gzip"}
        assert f["data"].dtype == np.float32 and f["data"].shape == (1,) and f.attrs["num_classes"] == 2
    dense_path = tmp_path / "dense.h5"
    write_dense_labels(dense_path, np.zeros((2, 0)), np.array([[True, False], [False, True]]), compression="gzip")
    with h5py.File(dense_path, "r") as f:
        assert {k: f[k].compression for k in f} == {"data": "gzip", "label": "gzip"}
        assert f["label"][...].tolist() == [[1, 0], [0, 1]] and f.attrs["label_format"] == "dense"
    write_dense_labels(dense_path, np.zeros(1), [[0.5]])                     # 1-D data, one sample
    with h5py.File(dense_path, "r") as f:
        assert f["data"].shape == (1,) and f["label"][...].tolist() == [[0.5]] and f["data"].compression is None
    with h5py.File(tmp_path / "plain.h5", "w"):
        pass
    write_index_labels(tmp_path / "plain.h5", np.zeros((1, 2)), [[0]], 2)
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert f["data"].compression is None and f["label"].compression is None
    dense = dense_from_indices(np.array([[1, -1]]), 3, np.array([[0.25, 0]]), dtype=np.float64)
    assert dense.dtype == np.float64 and dense.tolist() == [[0.0, 0.25, 0.0]]
    assert dense_from_indices(np.array([[1, -1]]), 3).dtype == np.float32


def test_write_list_file_relative_and_single_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_list_file("sub/list.txt", "a.h5", absolute=False) == ["a.h5"]
    assert (tmp_path / "sub" / "list.txt").read_text() == "a.h5\n"
    assert write_list_file("list2.txt", tmp_path / "b.h5") == [str(tmp_path / "b.h5")]
    assert (tmp_path / "list2.txt").read_text() == "%s\n" % (tmp_path / "b.h5")


def test_dense_labels_of_every_number_kind(tmp_path):
    """bool, signed, unsigned and float labels are all numbers, written as float32."""
    from softmax_multilabel_layer.data.hdf5_labels import write_dense_labels
    for dtype in (bool, np.int8, np.uint8, np.float64):
        got = write_dense_labels(tmp_path / "k.h5", np.zeros((1, 2)), np.array([[1, 0]], dtype))
        assert got.dtype == np.float32 and got.tolist() == [[1.0, 0.0]]
