"""Killing `caffe train` and resuming with --snapshot X.solverstate carries the run on
exactly: same loss at every iteration and the same final weights as an uninterrupted run.

The train set is 128 images = 2 batches, so every even snapshot iteration is an epoch
boundary, where HDF5Data (no shuffle) restarts reading at row 0 as a resumed run does.
"""
import filecmp
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "multilabel_digits"))
import digits_data  # noqa: E402
import digits_train  # noqa: E402

MAX_ITER, SNAPSHOT = 150, 50
FIELDS = dict(max_iter=MAX_ITER, snapshot=SNAPSHOT, display=1, test_interval=100000, test_iter=1,
              stepsize=100)      # the learning-rate step happens after the resume


def losses(log_path):
    with open(log_path) as f:
        return dict(digits_train.parse_log(f.read())["train"])


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    data = str(tmp_path / "data")
    digits_data.make_dataset(data, n_train=128, n_test=100, seed=1, log=lambda s: None)
    variant = "softmax_multilabel"

    # uninterrupted
    a = str(tmp_path / "a")
    solver_a = digits_train.prepare_run(variant, a, data, seed=7, **FIELDS)
    assert digits_train.train(solver_a, os.path.join(a, "train.log")) == 0
    full = losses(os.path.join(a, "train.log"))
    assert sorted(full) == list(range(MAX_ITER + 1))
    assert full[MAX_ITER - 1] < 0.9 * full[0]       # it trains, so equal losses mean something

    # interrupted: SIGKILL a few iterations after the first snapshot is on disk
    b = str(tmp_path / "b")
    solver_b = digits_train.prepare_run(variant, b, data, seed=7, **FIELDS)
    log_b = os.path.join(b, "train.log")
    proc = subprocess.Popen([digits_train.caffe_bin(), "train", "--solver", solver_b],
                            cwd=digits_train.REPO, env=digits_train.caffe_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_at = None
    assert proc.stdout is not None
    with open(log_b, "w") as log:
        for line in proc.stdout:
            log.write(line)
            m = re.search(r"\] Iteration (\d+), loss", line)
            if m and int(m.group(1)) >= SNAPSHOT + 5:
                killed_at = int(m.group(1))
                proc.kill()
                break
    proc.wait()
    proc.stdout.close()
    assert killed_at is not None and killed_at < MAX_ITER and proc.returncode == -9
    state = os.path.join(b, "snap_iter_%d.solverstate" % SNAPSHOT)
    assert os.path.exists(state)
    assert not os.path.exists(os.path.join(b, "snap_iter_%d.caffemodel" % MAX_ITER))

    # resumed
    log_r = os.path.join(b, "resume.log")
    assert digits_train.train(solver_b, log_r, snapshot=state) == 0
    with open(log_r) as f:
        assert "Resuming from %s" % state in f.read()
    resumed = losses(log_r)
    assert sorted(resumed) == list(range(SNAPSHOT, MAX_ITER + 1))
    for it in resumed:
        assert resumed[it] == full[it], "iteration %d: resumed %r, uninterrupted %r" % (
            it, resumed[it], full[it])
    final = "snap_iter_%d.caffemodel" % MAX_ITER
    assert filecmp.cmp(os.path.join(a, final), os.path.join(b, final), shallow=False)
