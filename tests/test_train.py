"""softmax_multilabel_layer.tools.train: the caffe train runner and log reader the examples share.

The runner is tested with a stand-in ``caffe`` (a small script printing glog lines), so no net is trained here;
tests/test_digits_pipeline.py and test_digits_resume.py run the real ``caffe train`` through it.
"""
import os
import stat
import sys

import numpy as np
import pytest

from softmax_multilabel_layer.params import MultilabelLossError
from softmax_multilabel_layer.tools import train as T

# Lines as Caffe's solver writes them (glog prefix, throughput in the train line), a resume repeating
# iteration 20, a test pass, learning rates and snapshots.
LOG = """\
I1203 13:00:00.000001 1 solver.cpp:60] Initializing solver from parameters:
I1203 13:00:01.000000 1 solver.cpp:464] Iteration 0, Testing net (#0)
I1203 13:00:01.100000 1 solver.cpp:537]     Test net output #0: loss = 2.30 (* 1 = 2.30 loss)
I1203 13:00:01.200000 1 solver.cpp:243] Iteration 0 (0 iter/s, 0.2s/10 iters), loss = 2.31
I1203 13:00:01.200001 1 sgd_solver.cpp:138] Iteration 0, lr = 0.01
I1203 13:00:02.000000 1 solver.cpp:243] Iteration 10 (12.5 iter/s, 0.8s/10 iters), loss = 1.75
I1203 13:00:02.000001 1 sgd_solver.cpp:138] Iteration 10, lr = 0.01
I1203 13:00:03.000000 1 solver.cpp:243] Iteration 20 (10 iter/s, 1s/10 iters), loss = 1.5
I1203 13:00:03.500000 1 solver.cpp:635] Snapshotting to binary proto file run/snap_iter_20.caffemodel
I1203 13:00:04.000000 1 solver.cpp:300] Resuming from run/snap_iter_20.solverstate
I1203 13:00:05.000000 1 solver.cpp:243] Iteration 20 (10 iter/s, 1s/10 iters), loss = 1.25
I1203 13:00:05.000001 1 sgd_solver.cpp:138] Iteration 20, lr = 0.001
I1203 13:00:06.000000 1 solver.cpp:464] Iteration 30, Testing net (#0)
I1203 13:00:06.100000 1 solver.cpp:537]     Test net output #0: loss = 1.125 (* 1 = 1.125 loss)
I1203 13:00:06.200000 1 solver.cpp:635] Snapshotting to binary proto file run/snap_iter_30.caffemodel
I1203 13:00:06.200000 1 solver.cpp:635] Snapshotting to binary proto file run/snap_iter_30.caffemodel
I1203 13:00:06.300000 1 solver.cpp:466] Optimization Done.
"""


def test_parse_log_reads_curves_rates_and_snapshots():
    log = T.parse_log(LOG)
    assert log["train"] == [(0, 2.31), (10, 1.75), (20, 1.25)]          # the resumed value of iteration 20 wins
    assert log["test"] == [(0, 2.30), (30, 1.125)]                      # at the iteration of "Testing net"
    assert log["lr"] == [(0, 0.01), (10, 0.01), (20, 0.001)]
    assert log["snapshots"] == ["run/snap_iter_20.caffemodel", "run/snap_iter_30.caffemodel"]   # once each
    assert T.parse_log("") == {"train": [], "test": [], "lr": [], "snapshots": []}


def test_progress_filter_keeps_losses_ends_and_errors():
    progress = T.ProgressFilter(train_every=10)
    kept = [text for text in map(progress, LOG.splitlines()) if text]
    assert kept == ["iter     0  test loss  2.30", "iter     0  train loss 2.31", "iter    10  train loss 1.75",
                    "iter    20  train loss 1.5", "Resuming from run/snap_iter_20.solverstate",
                    "iter    20  train loss 1.25", "iter    30  test loss  1.125", "Optimization Done."]
    assert T.ProgressFilter(20)(LOG.splitlines()[5]) is None             # iteration 10: not a multiple of 20
    assert progress("F1203 13:00:00 1 net.cpp:1] Check failed: x") == "F1203 13:00:00 1 net.cpp:1] Check failed: x"
    assert progress("Traceback (most recent call last):") == "Traceback (most recent call last):"
    assert progress("I1203 13:00:00 1 net.cpp:1] Setting up conv1") is None


def test_set_solver_field_replaces_the_first_or_appends():
    text = "net: \"a\"\nmax_iter: 10\n# max_iter: 5\ntest_iter: 3\n"
    assert T.set_solver_field(text, "max_iter", 20) == "net: \"a\"\nmax_iter: 20\n# max_iter: 5\ntest_iter: 3\n"
    assert T.set_solver_field(text, "iter", 1) == text + "iter: 1\n"     # a prefix of another key is not it
    assert T.set_solver_field("base_lr: 0.1", "snapshot_prefix", '"r/s"') == "base_lr: 0.1\nsnapshot_prefix: \"r/s\"\n"
    assert T.set_solver_field("lr: 1\nlr: 2\n", "lr", 3) == "lr: 3\nlr: 2\n"


def test_snapshots_listed_by_iteration(tmp_path):
    for name in ("snap_iter_100.caffemodel", "snap_iter_20.caffemodel", "snap_iter_20.solverstate",
                 "snap_iter_5.caffemodel.h5", "notes.caffemodel", "train.log"):
        (tmp_path / name).write_text("")
    assert T.list_snapshots(str(tmp_path)) == [(20, str(tmp_path / "snap_iter_20.caffemodel")),
                                               (100, str(tmp_path / "snap_iter_100.caffemodel"))]
    assert T.list_snapshots(str(tmp_path), "solverstate") == [(20, str(tmp_path / "snap_iter_20.solverstate"))]
    assert T.snapshot_iteration("x/snap_iter_5.caffemodel.h5") == 5
    assert T.snapshot_iteration("snap_iter_5.caffemodel.bak") is None


def fake_caffe(folder, exit_code=0):
    """A stand-in caffe executable: prints LOG on stderr, its arguments and working folder on stdout."""
    path = folder / "caffe"
    path.write_text("#!%s\nimport os, sys\nprint('ARGS', sys.argv[1:], os.getcwd(), os.environ['PYTHONPATH'])\n"
                    "sys.stdout.flush()\nsys.stderr.write(%r)\nsys.exit(%d)\n" % (sys.executable, LOG, exit_code))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_train_runs_caffe_writes_the_log_and_reports_progress(tmp_path):
    caffe = fake_caffe(tmp_path)
    seen: list[str] = []
    log = tmp_path / "train.log"
    code = T.train("s.prototxt", str(log), on_progress=seen.append, progress_every=10, caffe=caffe,
                   cwd=str(tmp_path), extra_args=["--iterations", "3"])
    assert code == 0
    text = log.read_text()
    assert text.startswith("# %s train --solver s.prototxt --iterations 3\n" % caffe)
    assert "ARGS ['train', '--solver', 's.prototxt', '--iterations', '3'] %s %s" % (tmp_path, T.PACKAGE_PARENT) \
        in text
    assert T.parse_log(text)["train"] == [(0, 2.31), (10, 1.75), (20, 1.25)]          # the whole log is kept
    assert seen[0] == "iter     0  test loss  2.30" and seen[-1] == "Optimization Done."
    # resuming appends to the log and passes --snapshot; a failing caffe's exit code comes back
    assert T.train("s.prototxt", str(log), snapshot="snap_iter_20.solverstate", caffe=fake_caffe(tmp_path, 3)) == 3
    text = log.read_text()
    assert text.count("# %s train" % caffe) == 2 and "--snapshot snap_iter_20.solverstate" in text


def test_caffe_env_and_binary(monkeypatch, tmp_path):
    env = T.caffe_env({"PYTHONPATH": "/x", "OPENBLAS_NUM_THREADS": "2"})
    assert env["PYTHONPATH"] == T.PACKAGE_PARENT + os.pathsep + "/x"
    assert env["OPENBLAS_NUM_THREADS"] == "2" and env["GLOG_minloglevel"] == "0" and env["GLOG_logtostderr"] == "1"
    assert T.caffe_env({})["OPENBLAS_NUM_THREADS"] == "1"
    assert os.path.isfile(os.path.join(T.PACKAGE_PARENT, "softmax_multilabel_layer", "__init__.py"))
    assert T.caffe_binary() == os.path.join(os.path.dirname(sys.executable), "caffe")     # make setup's wrapper
    monkeypatch.setattr(T.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MultilabelLossError, match="no caffe executable"):
        T.caffe_binary()


class FakeNet:
    """The pycaffe surface forward_in_batches uses: blobs with data/reshape, reshape(), forward()."""

    class Blob:
        def __init__(self, shape):
            self.data = np.zeros(shape, np.float32)

        def reshape(self, *shape):
            self.data = np.zeros(shape, np.float32)

    def __init__(self):
        self.blobs = {"data": self.Blob((4, 2, 3)), "scores": self.Blob((4, 5)), "fc": self.Blob((4, 2, 2))}
        self.batches = []

    def reshape(self):
        n = self.blobs["data"].data.shape[0]
        self.blobs["scores"].reshape(n, 5)
        self.blobs["fc"].reshape(n, 2, 2)

    def forward(self):
        x = self.blobs["data"].data
        self.batches.append(len(x))
        self.blobs["scores"].data[...] = x.reshape(len(x), -1)[:, :5] * 2
        self.blobs["fc"].data[...] = x.reshape(len(x), -1)[:, :4].reshape(-1, 2, 2) + 1


def test_forward_in_batches_covers_every_row_in_order():
    data = np.arange(11 * 6, dtype=np.float32).reshape(11, 2, 3)           # 11 % 4 != 0: a short last batch
    net = FakeNet()
    out = T.forward_in_batches(net, data, ("scores", "fc"), batch_size=4)
    assert net.batches == [4, 4, 3]
    np.testing.assert_array_equal(out["scores"], data.reshape(11, -1)[:, :5] * 2)
    np.testing.assert_array_equal(out["fc"], data.reshape(11, -1)[:, :4] + 1)


def test_run_statistics():
    s = T.run_statistics([1.0, 2.0, 6.0])
    assert s == {"mean": 3.0, "std": pytest.approx(np.std([1, 2, 6], ddof=1)), "min": 1.0, "max": 6.0, "n": 3}
    assert T.run_statistics([0.5])["std"] == 0.0
    with pytest.raises(MultilabelLossError, match="no values"):
        T.run_statistics([])
