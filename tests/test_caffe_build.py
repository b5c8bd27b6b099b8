"""The complete Caffe build (issue 13): OpenCV, LMDB and LevelDB are in, the
stock image and database layers read exactly what was written, Caffe's tools
work through the .venv/bin wrappers, and `caffe time`/`test`/`train` run nets
with our loss layer, including the Data (LMDB images) + HDF5Data (multi-hot
labels) recipe of prototxt/image_lmdb_hdf5/.
"""
import os
import re
import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from PIL import Image

from softmax_multilabel_layer.tools.caffe_features import caffe_features

from conftest import REPO, require_caffe_feature

sys.path.insert(0, os.path.join(REPO, "examples", "image_lmdb_hdf5"))
import make_dataset  # noqa: E402

VENV_BIN = os.path.join(REPO, ".venv", "bin")
LOSS_LINE = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-+0-9.eE]+|nan|inf)")


def _env(tmp_path):
    """No PYTHONPATH/LD_LIBRARY_PATH from the caller: the wrappers must do without."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH")}
    env.update(GLOG_minloglevel="0", GLOG_logtostderr="1")
    return env


def _run(tool, args, tmp_path, cwd=None, timeout=300):
    proc = subprocess.run([os.path.join(VENV_BIN, tool)] + [str(a) for a in args], cwd=str(cwd or tmp_path),
                          env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout)
    assert proc.returncode == 0, "%s %s failed (exit %d):\n%s" % (tool, args, proc.returncode, proc.stdout[-4000:])
    return proc.stdout


def test_built_caffe_has_every_feature():
    """`make setup` builds all four in; a system Caffe is reported, not assumed."""
    found = caffe_features()
    for name in found:
        require_caffe_feature(name)
    assert {"ImageData", "WindowData", "Data", "HDF5Data", "Python"} <= set(caffe.layer_type_list())


@pytest.mark.parametrize("tool", ["caffe", "convert_imageset", "compute_image_mean", "extract_features",
                                  "upgrade_net_proto_text"])
def test_tool_wrappers_start_without_environment(tool, tmp_path):
    """Each wrapper runs its binary with no PYTHONPATH or LD_LIBRARY_PATH given:
    each prints its usage (or caffe its version), not a loader error."""
    path = os.path.join(VENV_BIN, tool)
    assert os.access(path, os.X_OK), "%s missing: run `make setup`" % path
    proc = subprocess.run([path, "--help"] if tool != "caffe" else [path, "--version"], env=_env(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    assert "error while loading shared libraries" not in proc.stdout, proc.stdout
    assert "usage" in proc.stdout.lower() or "version 1.0.0" in proc.stdout.lower(), proc.stdout[-2000:]


def _write_images(tmp_path, count=6, seed=5):
    """Random colour PNGs and JPEGs (odd sizes, so no accidental symmetry) and an
    ImageData list; returns the list path and the BGR uint8 arrays that OpenCV's
    loader should give."""
    rng = np.random.RandomState(seed)
    expected = []
    with open(tmp_path / "list.txt", "w") as listing:
        for i in range(count):
            rgb = rng.randint(0, 256, size=(11, 13, 3)).astype(np.uint8)
            ext = "png" if i % 2 == 0 else "jpg"
            path = tmp_path / ("im%d.%s" % (i, ext))
            Image.fromarray(rgb).save(path, quality=95) if ext == "jpg" else Image.fromarray(rgb).save(path)
            # What was stored (a JPEG is lossy: decode it back), as BGR like Caffe's loader.
            stored = np.asarray(Image.open(path).convert("RGB"))
            expected.append(stored[:, :, ::-1])
            listing.write("%s %d\n" % (path.name, i))
    return tmp_path / "list.txt", expected


def test_image_data_layer_reads_png_and_jpeg_as_bgr(tmp_path):
    require_caffe_feature("opencv")
    list_path, expected = _write_images(tmp_path)
    net_path = tmp_path / "net.prototxt"
    net_path.write_text('layer { name: "d" type: "ImageData" top: "data" top: "label" '
                        'image_data_param { source: "%s" root_folder: "%s/" batch_size: %d shuffle: false } }\n'
                        % (list_path, tmp_path, len(expected)))
    net = caffe.Net(str(net_path), caffe.TEST)
    net.forward()
    data = net.blobs["data"].data
    assert data.shape == (len(expected), 3, 11, 13)
    for i, bgr in enumerate(expected):
        got = data[i].transpose(1, 2, 0)
        # PNG is lossless: exact. JPEG: OpenCV and Pillow both decode with
        # libjpeg's default IDCT; allow one grey level for a different build.
        tolerance = 0 if i % 2 == 0 else 1
        assert np.abs(got - bgr.astype(np.float32)).max() <= tolerance, "image %d" % i
        # Not RGB: swapping the channels would not match (random pixels).
        assert np.abs(got - bgr[:, :, ::-1].astype(np.float32)).max() > 10
    np.testing.assert_array_equal(net.blobs["label"].data, np.arange(len(expected)))


def test_convert_imageset_lmdb_read_back_by_data_layer_and_mean(tmp_path):
    require_caffe_feature("opencv")
    require_caffe_feature("lmdb")
    list_path, expected = _write_images(tmp_path)
    db = tmp_path / "images_lmdb"
    _run("convert_imageset", ["--backend=lmdb", "--shuffle=false", str(tmp_path) + "/", list_path, db], tmp_path)
    net_path = tmp_path / "net.prototxt"
    net_path.write_text('layer { name: "d" type: "Data" top: "data" top: "label" '
                        'data_param { source: "%s" backend: LMDB batch_size: %d } }\n' % (db, len(expected)))
    net = caffe.Net(str(net_path), caffe.TEST)
    net.forward()
    for i, bgr in enumerate(expected):
        np.testing.assert_array_equal(net.blobs["data"].data[i].transpose(1, 2, 0), bgr.astype(np.float32))
    np.testing.assert_array_equal(net.blobs["label"].data, np.arange(len(expected)))

    mean_file = tmp_path / "mean.binaryproto"
    _run("compute_image_mean", ["--backend=lmdb", db, mean_file], tmp_path)
    blob = caffe_pb2.BlobProto()
    blob.ParseFromString(mean_file.read_bytes())
    mean = np.array(blob.data, dtype=np.float64).reshape(3, 11, 13)
    truth = np.mean([b.transpose(2, 0, 1).astype(np.float64) for b in expected], axis=0)
    np.testing.assert_allclose(mean, truth, rtol=0, atol=1e-4)


def test_leveldb_backend_round_trip(tmp_path):
    require_caffe_feature("opencv")
    require_caffe_feature("leveldb")
    list_path, expected = _write_images(tmp_path, count=4, seed=9)
    db = tmp_path / "images_leveldb"
    _run("convert_imageset", ["--backend=leveldb", "--shuffle=false", str(tmp_path) + "/", list_path, db], tmp_path)
    net_path = tmp_path / "net.prototxt"
    net_path.write_text('layer { name: "d" type: "Data" top: "data" top: "label" '
                        'data_param { source: "%s" backend: LEVELDB batch_size: 4 } }\n' % db)
    net = caffe.Net(str(net_path), caffe.TEST)
    net.forward()
    for i, bgr in enumerate(expected):
        np.testing.assert_array_equal(net.blobs["data"].data[i].transpose(1, 2, 0), bgr.astype(np.float32))


@pytest.fixture(scope="module")
def lmdb_hdf5_data(tmp_path_factory):
    """The prototxt/image_lmdb_hdf5 data set, built by its own script."""
    require_caffe_feature("opencv")
    require_caffe_feature("lmdb")
    out = tmp_path_factory.mktemp("image_lmdb_hdf5")
    # The documented command: it also copies the recipe's prototxts into the folder it trains in.
    assert make_dataset.main([str(out), "--count", "256"]) == 0
    labels = make_dataset.make_images(str(tmp_path_factory.mktemp("labels_again")), 256)
    solver = (out / "solver.prototxt").read_text()
    solver = solver.replace("max_iter: 200", "max_iter: 120").replace("snapshot_after_train: false",
                                                                       "snapshot_after_train: true")
    (out / "solver.prototxt").write_text(solver)
    return out, labels


def test_data_and_hdf5data_stay_aligned(lmdb_hdf5_data, monkeypatch):
    """Row i of the HDF5 labels is image i's: the labels can be read off the pixels."""
    out, labels = lmdb_hdf5_data
    monkeypatch.chdir(str(out))
    net = caffe.Net("train.prototxt", caffe.TEST)
    for batch in range(2):
        net.forward()
        data, label = net.blobs["data"].data, net.blobs["label"].data
        # Quadrant c is coloured when class c is present: its mean brightness tells.
        corners = [(0, 0), (0, 8), (8, 0), (8, 8)]
        lit = np.stack([data[:, :, r:r + 8, q:q + 8].mean(axis=(1, 2, 3)) for r, q in corners], axis=1) > 0.2
        np.testing.assert_array_equal(lit, label.astype(bool))
        np.testing.assert_array_equal(label, labels[32 * batch:32 * (batch + 1)])


def test_caffe_train_then_test_with_data_and_hdf5data(lmdb_hdf5_data):
    """`caffe train` trains our softmax loss on the recipe; `caffe test` scores the snapshot."""
    out, _ = lmdb_hdf5_data
    log = _run("caffe", ["train", "--solver", "solver.prototxt"], out, cwd=out)
    losses = [float(loss) for _, loss in LOSS_LINE.findall(log)]
    assert len(losses) >= 6, log[-3000:]
    # Start near log(4) = 1.39 (uniform); the floor is the mean entropy of the
    # 1/M targets (about 0.35 here); a trained net gets close to it.
    assert 1.1 < losses[0] < 1.7, losses
    assert losses[-1] < 0.75, losses
    weights = out / "image_lmdb_hdf5_iter_120.caffemodel"
    assert weights.exists(), sorted(os.listdir(str(out)))
    log = _run("caffe", ["test", "--model", "train.prototxt", "--weights", weights, "--iterations", "4"], out, cwd=out)
    match = re.search(r"\] loss = ([0-9.eE+-]+)", log)
    # The trained weights are used: the test loss is the trained one, not log(4).
    assert match and float(match.group(1)) < 0.75, log[-3000:]


def test_caffe_time_runs_our_loss(lmdb_hdf5_data):
    out, _ = lmdb_hdf5_data
    log = _run("caffe", ["time", "--model", "train.prototxt", "--iterations", "3"], out, cwd=out)
    assert "Average Forward-Backward" in log, log[-3000:]
    assert re.search(r"loss\s+forward: [0-9.]+ ms", log), log[-3000:]
    assert re.search(r"loss\s+backward: [0-9.]+ ms", log), log[-3000:]
