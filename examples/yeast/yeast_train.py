"""Train the yeast MLP with one loss by ``.venv/bin/caffe train``, and score rows with pycaffe.

A run folder gets train.h5 (+ its list file), copies of prototxt/yeast/<variant>_train.prototxt
and solver.prototxt with the run's hyper-parameters written in, the Caffe log and the
snapshots. Running the Caffe CLI and rewriting solver fields use the package's
softmax_multilabel_layer.tools.train.
"""
import math
import os
import re

import h5py
import numpy as np

from softmax_multilabel_layer.tools.train import list_snapshots, set_solver_field, train

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTOTXT_DIR = os.path.join(REPO, "prototxt", "yeast")
VARIANTS = ("softmax_multilabel", "sigmoid_bce", "sigmoid_focal", "sigmoid_asl", "sigmoid_native", "zlpr", "two_way")
LOSS_NAMES = {
    "softmax_multilabel": "ours: softmax, 1/M targets",
    "sigmoid_bce": "ours: sigmoid BCE",
    "sigmoid_focal": "ours: focal, gamma 2",
    "sigmoid_asl": "ours: ASL (gamma_neg 4, clip 0.05)",
    "sigmoid_native": "Caffe SigmoidCrossEntropyLoss",
    "zlpr": "ours: ZLPR",
    "two_way": "ours: two-way (tp 4, tn 1)",
}
# How scores become probabilities for the thresholded decision (Hamming loss). ZLPR: sigmoid, so its own
# threshold s > 0 is 0.5 on the grid; two-way: its ranking scores have no threshold, sigmoid is a monotone map
# onto the grid, and the threshold is chosen on validation data as for the others.
PROBABILITY = {"softmax_multilabel": "softmax", "sigmoid_bce": "sigmoid", "sigmoid_focal": "sigmoid",
               "sigmoid_asl": "sigmoid", "sigmoid_native": "sigmoid", "zlpr": "sigmoid", "two_way": "sigmoid"}
DEFAULT_LIST = "output/yeast/data/train_list.txt"


def prototxt_path(variant):
    if variant not in VARIANTS:
        raise ValueError("unknown yeast variant %r, expected one of %s" % (variant, ", ".join(VARIANTS)))
    return os.path.join(PROTOTXT_DIR, "%s_train.prototxt" % variant)


def set_net_fields(text, hidden, dropout, batch_size=None, source=None, where="net"):
    """Rewrite the MLP's hidden width and dropout (and the data layer) in a prototxt text."""
    text, n = re.subn(r'(name: "fc1".*?num_output: )\d+', lambda m: m.group(1) + str(int(hidden)),
                      text, count=1, flags=re.S)
    text, k = re.subn(r"dropout_ratio: [\d.eE+-]+", "dropout_ratio: %r" % float(dropout), text, count=1)
    if n != 1 or k != 1:
        raise ValueError("%s: fc1 num_output or dropout_ratio not found" % where)
    if source is not None:
        if '"%s"' % DEFAULT_LIST not in text:
            raise ValueError("%s: HDF5 source %s not found" % (where, DEFAULT_LIST))
        text = text.replace('"%s"' % DEFAULT_LIST, '"%s"' % source)
    if batch_size is not None:
        text, n = re.subn(r"batch_size: \d+", "batch_size: %d" % int(batch_size), text, count=1)
        if n != 1:
            raise ValueError("%s: batch_size not found" % where)
    return text


def iterations(n_rows, batch_size, epochs):
    """Solver iterations for ``epochs`` passes over ``n_rows`` (last batch wraps around)."""
    return int(math.ceil(n_rows * float(epochs) / batch_size))


def write_h5(run_dir, X, Y):
    """train.h5 (data float32 N x 103, label float32 N x 14) + train_list.txt -> list path."""
    os.makedirs(run_dir, exist_ok=True)
    h5 = os.path.join(run_dir, "train.h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("data", data=np.asarray(X, np.float32))
        f.create_dataset("label", data=np.asarray(Y, np.float32))
    lst = os.path.join(run_dir, "train_list.txt")
    with open(lst, "w") as f:
        f.write(h5 + "\n")
    return lst


def prepare_run(variant, run_dir, list_path, n_rows, hp, seed=1, snapshot_every=None):
    """Write train.prototxt + solver.prototxt for one run -> (solver path, max_iter).

    hp: {"hidden", "dropout", "batch_size", "base_lr", "weight_decay", "epochs"}.
    snapshot_every: also snapshot every this many epochs (for choosing the epoch
    count); default: only at the end.
    """
    run_dir = os.path.abspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    with open(prototxt_path(variant)) as f:
        net = set_net_fields(f.read(), hp["hidden"], hp["dropout"], hp["batch_size"],
                             source=os.path.abspath(list_path), where=prototxt_path(variant))
    net_path = os.path.join(run_dir, "train.prototxt")
    with open(net_path, "w") as f:
        f.write(net)
    max_iter = iterations(n_rows, hp["batch_size"], hp["epochs"])
    snap = iterations(n_rows, hp["batch_size"], snapshot_every) if snapshot_every else max_iter
    with open(os.path.join(PROTOTXT_DIR, "solver.prototxt")) as f:
        solver = f.read()
    for key, value in (("net", '"%s"' % net_path), ("snapshot_prefix", '"%s"' % os.path.join(run_dir, "snap")),
                       ("base_lr", repr(float(hp["base_lr"]))), ("weight_decay", repr(float(hp["weight_decay"]))),
                       ("max_iter", max_iter), ("snapshot", snap), ("display", max(1, max_iter // 5)),
                       ("random_seed", int(seed))):
        solver = set_solver_field(solver, key, value)
    solver_path = os.path.join(run_dir, "solver.prototxt")
    with open(solver_path, "w") as f:
        f.write(solver)
    return solver_path, max_iter


def run_caffe(solver_path, log_path):
    """``caffe train --solver`` with the log in log_path; raises with the log's tail on failure."""
    rc = train(solver_path, log_path, cwd=REPO)
    if rc != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-15:])
        raise RuntimeError("caffe train --solver %s exited with %d; last lines of %s:\n%s"
                           % (solver_path, rc, log_path, tail))


def train_run(variant, run_dir, list_path, n_rows, hp, snapshot_every=None):
    """prepare_run + run_caffe in run_dir, after removing its old snapshots -> [(iter, caffemodel)]."""
    if os.path.isdir(run_dir):
        for ext in ("caffemodel", "solverstate"):
            for _, old in list_snapshots(run_dir, ext):
                os.remove(old)
    solver, _ = prepare_run(variant, run_dir, list_path, n_rows, hp, snapshot_every=snapshot_every)
    run_caffe(solver, os.path.join(run_dir, "train.log"))
    return list_snapshots(run_dir)


class Scorer:
    """Scores rows with a trained MLP in pycaffe (TEST phase: dropout off).

    ``Scorer(hidden, dropout, work_dir).scores(caffemodel, X)`` -> float64 (N, 14) raw scores; the
    deploy prototxt with that width is written into work_dir.
    """

    def __init__(self, hidden, dropout, work_dir):
        import caffe  # noqa: F401  (pycaffe, from the venv)
        caffe.set_mode_cpu()
        self.caffe = caffe
        with open(os.path.join(PROTOTXT_DIR, "mlp_deploy.prototxt")) as f:
            text = set_net_fields(f.read(), hidden, dropout, where="mlp_deploy.prototxt")
        os.makedirs(work_dir, exist_ok=True)
        self.deploy = os.path.join(work_dir, "deploy.prototxt")
        with open(self.deploy, "w") as f:
            f.write(text)

    def scores(self, caffemodel, X):
        net = self.caffe.Net(self.deploy, 1, weights=caffemodel)   # 1 = caffe.TEST
        net.blobs["data"].reshape(*X.shape)
        net.blobs["data"].data[...] = X
        net.forward()
        return np.array(net.blobs["scores"].data, dtype=np.float64)


def probabilities(variant, scores):
    """Scores -> probabilities the decision threshold applies to (softmax or sigmoid)."""
    if PROBABILITY[variant] == "softmax":
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-scores))
