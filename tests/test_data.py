"""MultilabelImageDataLayer in real caffe.Nets: values equal Caffe's own ImageData, tops, phases, shards, shutdown."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import caffe
import numpy as np
import pytest
from image_files import decoded_ids, id_list, label_sets, pattern_image, write_images, write_list

from softmax_multilabel_layer.params import MultilabelLossError

from caffe_nets import net_from_text

REPO = Path(__file__).resolve().parents[1]
CAFFE = str(REPO / ".venv" / "bin" / "caffe")


def ours(params, name="data", tops=("data", "label")):
    return ('layer { name: "%s" type: "Python" %s python_param { module: "softmax_multilabel_layer.data" '
            'layer: "MultilabelImageDataLayer" param_str: \'%s\' } }\n'
            % (name, " ".join('top: "%s"' % t for t in tops), json.dumps(params)))


def image_data(source, batch_size, transform="", extra="", tops=("cdata", "clabel")):
    return ('layer { name: "ref" type: "ImageData" %s image_data_param { source: "%s" batch_size: %d %s } '
            'transform_param { %s } }\n' % (" ".join('top: "%s"' % t for t in tops), source, batch_size, extra,
                                            transform))


def single_label_list(tmp_path, image_paths):
    """ImageData's list: the same images with one integer label."""
    return write_list(tmp_path / "single.txt", image_paths, [[0]] * len(image_paths))


@pytest.mark.parametrize("ext,is_color", [(".jpg", True), (".png", True), (".jpg", False), (".png", False)])
def test_values_equal_caffe_image_data(tmp_path, ext, is_color):
    """TEST phase (no randomness): resize, centre crop (odd margins 5 and 13), mean_value, scale; BGR or grey."""
    images = [pattern_image(i, (37 + i % 3, 45)) for i in range(7)]
    paths = write_images(tmp_path / "img", images, ext)
    labels = label_sets(len(paths), 6)
    source = write_list(tmp_path / "list.txt", paths, labels)
    mean = [101.5, 117.0, 123.25] if is_color else [99.5]
    params = dict(source=source, batch_size=3, num_classes=6, new_height=34, new_width=42, crop_size=29,
                  mean_value=mean, scale=0.25, is_color=is_color, mirror=True)
    transform = "crop_size: 29 scale: 0.25 %s" % " ".join("mean_value: %r" % m for m in mean)
    color = "is_color: %s" % str(is_color).lower()
    text = ours(params) + image_data(single_label_list(tmp_path, paths), 3, transform,
                                     "new_height: 34 new_width: 42 " + color)
    (tmp_path / "test.prototxt").write_text(text)
    net = caffe.Net(str(tmp_path / "test.prototxt"), caffe.TEST)
    seen = []
    for _ in range(4):                                  # 12 samples: wraps around the 7 images
        net.forward()
        assert net.blobs["data"].data.shape == (3, 3 if is_color else 1, 29, 29)
        np.testing.assert_array_equal(net.blobs["data"].data, net.blobs["cdata"].data)
        seen.append(net.blobs["label"].data.copy())
    dense = np.concatenate(seen)
    for row, i in zip(dense, list(range(7)) + list(range(5)), strict=True):
        assert np.flatnonzero(row).tolist() == labels[i]
    assert np.abs(net.blobs["data"].data).max() > 1     # not a constant image


def test_train_phase_crops_and_mirrors_images(tmp_path):
    """TRAIN: every sample is a crop of its image, some mirrored, at several offsets (ImageData's own crops)."""
    images = [pattern_image(i, (24, 30)) for i in range(5)]
    paths = write_images(tmp_path / "img", images)
    source = write_list(tmp_path / "list.txt", paths, [[i] for i in range(5)])
    params = dict(source=source, batch_size=5, num_classes=5, crop_size=20, mirror=True, shuffle=False, seed=2)
    net = net_from_text(tmp_path, ours(params))
    offsets, flips = set(), set()
    for _ in range(6):
        net.forward()
        for sample, label in zip(net.blobs["data"].data, net.blobs["label"].data, strict=True):
            img = images[int(np.flatnonzero(label)[0])].transpose(2, 0, 1).astype(np.float32)
            found = [(y, x, f) for y in range(5) for x in range(11) for f in (0, 1)
                     if np.array_equal(sample, img[:, y:y + 20, x:x + 20][:, :, ::-1] if f else
                                       img[:, y:y + 20, x:x + 20])]
            assert found, "a sample is no crop of its image"
            offsets.add(found[0][:2])
            flips.add(found[0][2])
    assert flips == {0, 1} and len(offsets) > 10


def test_indices_format_with_weight_top(tmp_path):
    paths = write_images(tmp_path / "img", [pattern_image(i, (8, 8)) for i in range(3)])
    source = tmp_path / "list.txt"
    source.write_text("%s 4 1:0.5\n%s\n%s 2:2\n" % tuple(paths))
    params = dict(source=str(source), batch_size=3, num_classes=5, label_format="indices", max_labels=3,
                  shuffle=False)
    net = net_from_text(tmp_path, ours(params, tops=("data", "label", "label_weight")))
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [[4, 1, -1], [-1, -1, -1], [2, -1, -1]])
    np.testing.assert_array_equal(net.blobs["label_weight"].data, [[1, 0.5, 0], [0.0, 0, 0], [2.0, 0, 0]])


def test_feeds_our_loss_and_trains(tmp_path):
    """The layer's labels go straight into SoftmaxMultilabelLossLayer; the loss equals the numpy core's."""
    from softmax_multilabel_layer.losses.functional import softmax_multilabel_loss
    source, _ = id_list(tmp_path, n=8, num_classes=5)
    text = ours(dict(source=source, batch_size=4, num_classes=5, scale=0.01))
    text += ('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "scores" inner_product_param { '
             'num_output: 5 weight_filler { type: "gaussian" std: 0.1 } } }\n'
             'layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" top: "loss" loss_weight: 1 '
             'python_param { module: "softmax_multilabel_layer.layers" layer: "SoftmaxMultilabelLossLayer" } }\n')
    net = net_from_text(tmp_path, text)
    net.forward()
    scores, label = net.blobs["scores"].data.copy(), net.blobs["label"].data.copy()
    assert float(net.blobs["loss"].data) == pytest.approx(float(softmax_multilabel_loss(scores, label)[0]), rel=1e-5)
    assert len(np.unique(label, axis=0)) > 1


@pytest.mark.parametrize("params,fragments", [
    ({"num_classes": 3}, ["MultilabelImageDataLayer", "source (the list file) is required"]),
    ({"source": "x.txt", "num_classes": 3, "crop_sise": 4}, ["unknown param_str key(s) crop_sise", "crop_size"]),
    ({"source": "x.txt", "num_classes": 3, "new_height": 10}, ["new_height and new_width must both be 0"]),
    ({"source": "x.txt", "num_classes": 3, "mean_value": [1, 2]}, ["mean_value must have 1 or 3 values"]),
    ({"source": "x.txt", "num_classes": 3, "threads": 0}, ["threads must be an integer >= 1, got 0"]),
    ({"source": "x.txt", "num_classes": 3, "mirror": 1}, ["mirror must be true or false, got 1"]),
])
def test_option_errors_at_net_construction(tmp_path, params, fragments):
    with pytest.raises(MultilabelLossError) as err:          # pycaffe passes the layer's exception through
        net_from_text(tmp_path, ours(params))
    for fragment in fragments:
        assert fragment in str(err.value)
    # the same message from the options alone, without Caffe
    from softmax_multilabel_layer.params import ImageDataOptions
    with pytest.raises(MultilabelLossError) as err:
        ImageDataOptions.from_param_str(json.dumps(params), "MultilabelImageDataLayer")
    for fragment in fragments:
        assert fragment in str(err.value)


def test_label_weight_top_needs_indices(tmp_path):
    source, _ = id_list(tmp_path, n=2)
    with pytest.raises(MultilabelLossError, match='a label_weight top needs "label_format": "indices"'):
        net_from_text(tmp_path, ours(dict(source=source, batch_size=2, num_classes=5),
                                     tops=("data", "label", "label_weight")))


def test_shard_defaults_from_pycaffe_when_it_has_them(tmp_path, monkeypatch):
    """Feature detection: this pycaffe has no solver_rank; when one does, the layer reads that rank's shard."""
    assert not hasattr(caffe, "solver_rank")            # the build here: single process, rank 0 of 1
    n = 9
    source, _ = id_list(tmp_path, n=n)
    params = dict(source=source, batch_size=3, num_classes=5, seed=4)
    full = np.random.default_rng([4, 0]).permutation(n)
    net = net_from_text(tmp_path, ours(params))
    net.forward()
    assert decoded_ids(net.blobs["data"].data) == full[:3].tolist()
    monkeypatch.setattr(caffe, "solver_rank", lambda: 2, raising=False)
    monkeypatch.setattr(caffe, "solver_count", lambda: 3, raising=False)
    net = net_from_text(tmp_path, ours(params))
    net.forward()
    assert decoded_ids(net.blobs["data"].data) == full[2::3].tolist()
    net = net_from_text(tmp_path, ours(dict(params, rank=0, world_size=1)))     # explicit options win
    net.forward()
    assert decoded_ids(net.blobs["data"].data) == full[:3].tolist()


def test_close_stops_the_threads_and_exit_does_not_hang(tmp_path):
    """pycaffe never frees a Python layer (the C++ PythonLayer and its Python object hold each other), so
    deleting a net cannot stop the threads: the layer's close() does, and so does interpreter exit."""
    source, _ = id_list(tmp_path, n=6)
    before = set(threading.enumerate())
    net = net_from_text(tmp_path, ours(dict(source=source, batch_size=2, num_classes=5, threads=3)))
    net.forward()
    workers = [t for t in threading.enumerate() if t not in before and t.name.startswith("MultilabelImageData")]
    assert len(workers) == 3
    net.layers[0].close()
    for t in workers:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in workers)
    script = tmp_path / "exit.py"
    script.write_text("import caffe, sys\nnet = caffe.Net(sys.argv[1], caffe.TRAIN)\nnet.forward()\n"
                      "print('forward done', flush=True)\n")
    done = subprocess.run([sys.executable, str(script), str(sorted(tmp_path.glob("net_*.prototxt"))[-1])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "forward done" in done.stdout, done.stderr[-2000:]


def test_caffe_train_runs_and_exits(tmp_path):
    """The real `caffe train` through our layer ends by itself (no hang at exit with live decode threads)."""
    source, _ = id_list(tmp_path, n=12)
    net = tmp_path / "train.prototxt"
    net.write_text(ours(dict(source=source, batch_size=4, num_classes=5, scale=0.01, threads=2, prefetch=2)) +
                   'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "scores" inner_product_param { '
                   'num_output: 5 weight_filler { type: "xavier" } } }\n'
                   'layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" top: "loss" '
                   'loss_weight: 1 python_param { module: "softmax_multilabel_layer.layers" '
                   'layer: "SoftmaxMultilabelLossLayer" } }\n')
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 10\ndisplay: 5\n'
                      'snapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: 1\n' % net)
    env = dict(os.environ, GLOG_minloglevel="0")
    done = subprocess.run([CAFFE, "train", "--solver", str(solver)], capture_output=True, text=True, timeout=120,
                          env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Optimization Done" in done.stderr


class _Blob(object):
    """A stand-in for a Caffe blob: reshape allocates ``data``."""

    def __init__(self):
        self.data: Any = None

    def reshape(self, *shape):
        self.data = np.full(shape, np.nan, np.float32)


def _bare_layer(params, phase=None):
    """The layer object without a caffe.Net (its Python methods are all a net calls)."""
    from softmax_multilabel_layer.data.layer import MultilabelImageDataLayer
    layer = MultilabelImageDataLayer.__new__(MultilabelImageDataLayer)
    layer.param_str = json.dumps(params)
    if phase is not None:
        layer.phase = phase
    return layer


def test_layer_adapter_without_a_net(tmp_path, monkeypatch):
    """setup / forward / close of the adapter with stand-in blobs: shapes, phase (TRAIN when Caffe gives none),
    the label_weight top, the exact top and bottom errors, and pycaffe's rank and count (both needed)."""
    from softmax_multilabel_layer.data import layer as layer_module
    source, labels = id_list(tmp_path, n=4)
    params = dict(source=source, batch_size=2, num_classes=5, shuffle=False, threads=1)
    lay = _bare_layer(params)
    top = [_Blob(), _Blob()]
    lay.setup([], top)
    assert lay.reader is not None and lay.reader.train and (lay.reader.rank, lay.reader.world_size) == (0, 1)
    assert top[0].data.shape == lay.reader.data_shape and top[1].data.shape == (2, 5)
    lay.reshape([], top)
    lay.forward([], top)
    assert decoded_ids(top[0].data) == [0, 1]
    expected = np.zeros((2, 5), np.float32)
    for row, labs in enumerate(labels[:2]):
        expected[row, labs] = 1
    assert np.array_equal(top[1].data, expected)
    lay.backward(top, [False], [])
    lay.close()
    assert all(not t.is_alive() for t in lay.reader._threads)
    test = _bare_layer(params, phase=caffe.TEST)
    test.setup([], [_Blob(), _Blob()])
    assert not test.reader.train
    test.close()
    three = [_Blob(), _Blob(), _Blob()]
    idx = _bare_layer(dict(params, label_format="indices", max_labels=3))
    idx.setup([], three)
    idx.forward([], three)
    assert three[1].data.shape == three[2].data.shape == (2, 3)
    assert np.array_equal(three[2].data, (three[1].data >= 0).astype(np.float32))
    idx.close()
    name = "MultilabelImageDataLayer"
    for p, tops, bottoms, message in [
        (params, 2, 1, "%s: takes no bottoms, got 1" % name),
        (params, 1, 0, "%s: got 1 tops, expected 2 (data, label); a label_weight top needs "
                       '"label_format": "indices"' % name),
        (params, 3, 0, "%s: got 3 tops, expected 2 (data, label); a label_weight top needs "
                       '"label_format": "indices"' % name),
        (dict(params, label_format="indices", max_labels=2), 4, 0,
         "%s: got 4 tops, expected 2 (data, label) or 3 (data, label, label_weight)" % name),
    ]:
        bad = _bare_layer(p)
        with pytest.raises(MultilabelLossError) as err:
            bad.setup([_Blob()] * bottoms, [_Blob() for _ in range(tops)])
        assert str(err.value) == message
        bad.close()                                   # nothing to stop: no reader was made
        assert bad.reader is None
    _bare_layer(params).close()                       # close before setup
    monkeypatch.setattr(caffe, "solver_rank", lambda: 1, raising=False)
    assert layer_module._solver_shard() == (0, 1)     # a count is needed too
    monkeypatch.setattr(caffe, "solver_count", lambda: 1, raising=False)
    assert layer_module._solver_shard() == (1, 1)     # passed as is: the reader refuses rank 1 of 1
    monkeypatch.delattr(caffe, "solver_rank")
    assert layer_module._solver_shard() == (0, 1)
    monkeypatch.setattr(caffe, "solver_rank", lambda: 0, raising=False)
    monkeypatch.setattr(caffe, "solver_count", lambda: 0, raising=False)
    assert layer_module._solver_shard() == (0, 1)
