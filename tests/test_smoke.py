"""Smoke tests of the set-up: pycaffe imports with Python layers, and the
.venv/bin/caffe wrapper written by `make setup` trains the smoke net
(prototxt/smoke/: synthetic data layer + SoftmaxMultilabelLossLayer) with no
environment prepared by the caller.
"""
import os
import re
import subprocess

import caffe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAFFE_WRAPPER = os.path.join(REPO, ".venv", "bin", "caffe")
SMOKE_DIR = os.path.join(REPO, "prototxt", "smoke")
LOSS_LINE = re.compile(r"Iteration (\d+), loss = ([-+0-9.eE]+|nan|inf)")


def test_pycaffe_has_python_layers():
    assert "Python" in caffe.layer_type_list()


def test_layers_importable():
    from softmax_multilabel_layer import layers
    from softmax_multilabel_layer.data import synthetic_data
    assert issubclass(layers.SoftmaxMultilabelLossLayer, caffe.Layer)
    assert issubclass(synthetic_data.SyntheticMultilabelDataLayer, caffe.Layer)


def test_synthetic_data_is_deterministic_and_multilabel():
    from softmax_multilabel_layer.data.synthetic_data import SyntheticBatches, parse_params
    params = parse_params('{"batch_size": 8, "num_classes": 5, "dim": 6, "seed": 3}')
    first = [SyntheticBatches(**params).next_batch() for _ in range(2)]
    data, labels = first[0]
    assert data.shape == (8, 6) and labels.shape == (8, 5)
    assert set(labels.ravel().tolist()) <= {0.0, 1.0}
    assert ((labels.sum(axis=1) >= 1) & (labels.sum(axis=1) <= 3)).all()
    assert (first[0][0] == first[1][0]).all() and (first[0][1] == first[1][1]).all()


def _solver_copy(tmp_path):
    """The smoke solver with absolute net path and outputs under tmp_path."""
    with open(os.path.join(SMOKE_DIR, "solver.prototxt")) as f:
        text = f.read()
    text = re.sub(r'(?m)^net: ".*"$', 'net: "%s"' % os.path.join(SMOKE_DIR, "train.prototxt"), text)
    text = re.sub(r'(?m)^snapshot_prefix: ".*"$', 'snapshot_prefix: "%s"' % (tmp_path / "smoke"), text)
    path = tmp_path / "solver.prototxt"
    path.write_text(text)
    return path


def _clean_env(tmp_path):
    """The caller's environment without anything that would help Caffe find
    Python or its libraries: the wrapper must do that on its own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "VIRTUAL_ENV")}
    env.update(GLOG_minloglevel="0", GLOG_logtostderr="1", GLOG_log_dir=str(tmp_path))
    return env


def test_caffe_wrapper_trains_smoke_net(tmp_path):
    assert os.access(CAFFE_WRAPPER, os.X_OK), "%s missing: run `make setup`" % CAFFE_WRAPPER
    solver = _solver_copy(tmp_path)
    proc = subprocess.run([CAFFE_WRAPPER, "train", "--solver", str(solver)], cwd=str(tmp_path),
                          env=_clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    log = proc.stdout
    (tmp_path / "train.log").write_text(log)
    assert proc.returncode == 0, "caffe train failed (exit %d):\n%s" % (proc.returncode, log[-4000:])
    assert "Optimization Done." in log, log[-4000:]
    losses = [(int(it), float(loss)) for it, loss in LOSS_LINE.findall(log)]
    assert [it for it, _ in losses] == list(range(0, 101, 10)), log[-4000:]
    first, last = losses[0][1], losses[-1][1]
    # Initial loss ~ log(10) = 2.30 (near-uniform softmax); the floor is the
    # mean entropy of the 1/M targets, (0 + log 2 + log 3) / 3 = 0.60.
    assert 2.0 < first < 2.6, losses
    assert last < 0.5 * first, losses
    assert not list(tmp_path.glob("smoke*.caffemodel")), "snapshot_after_train should be off"
