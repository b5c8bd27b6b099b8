"""Sparse multi-labels end to end: an HDF5 file in the indices format -> HDF5Data -> InnerProduct -> our loss.

    python examples/sparse_labels/run_sparse_labels.py [--out output/sparse_labels] [--iters 60] [--cli]

1. Makes a small synthetic problem: 32 features, C = 500 classes, 1-3 labels
   per sample (the classes whose prototypes best match the features), with a
   real-valued weight per label.
2. Writes it with :func:`softmax_multilabel_layer.data.hdf5_labels.write_index_labels`
   (datasets ``data``, ``label`` = N x 3 class indices padded with -1, and
   ``label_weight``) plus the list file HDF5Data reads.
3. Trains ``HDF5Data -> InnerProduct -> SoftmaxMultilabelLossLayer`` with
   ``label_format: "indices"`` by SGD through pycaffe (or, with ``--cli``, the
   ``.venv/bin/caffe train`` wrapper), printing the loss; then forwards one
   batch and checks the loss against the dense labels rebuilt from the file.

The label blob is batch x 3 floats instead of batch x 500: the indices format
suits many classes with few positives each.
"""
import argparse
import json
import os
import sys

import numpy as np

from softmax_multilabel_layer.data.hdf5_labels import (
    dense_from_indices,
    read_index_labels,
    write_index_labels,
    write_list_file,
)
from softmax_multilabel_layer.tools.train import train

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FEATURES, CLASSES, K, SAMPLES, BATCH = 32, 500, 3, 1024, 64


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(CLASSES, FEATURES))
    x = rng.normal(size=(SAMPLES, FEATURES)).astype(np.float32)
    affinity = x @ prototypes.T
    counts = rng.integers(1, K + 1, SAMPLES)
    lists = [list(np.argsort(-row)[:m].tolist()) for row, m in zip(affinity, counts, strict=True)]
    weights = [list((0.5 + rng.random(m)).round(2).tolist()) for m in counts]
    return x, lists, weights


def net_text(list_file, batch):
    return """name: "sparse_labels"
layer { name: "data" type: "HDF5Data" top: "data" top: "label" top: "label_weight"
  hdf5_data_param { source: "%s" batch_size: %d shuffle: true } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "scores"
  inner_product_param { num_output: %d weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "Python" bottom: "scores" bottom: "label" bottom: "label_weight" top: "loss"
  loss_weight: 1
  python_param { module: "softmax_multilabel_layer.layers" layer: "SoftmaxMultilabelLossLayer"
                 param_str: '%s' } }
""" % (list_file, batch, CLASSES, json.dumps({"label_format": "indices", "normalize_targets": "sum"}))


def solver_text(net_path, iters, prefix):
    return ('net: "%s"\nbase_lr: 0.5\nmomentum: 0.9\nlr_policy: "fixed"\nmax_iter: %d\ndisplay: 10\n'
            'snapshot: 0\nsnapshot_prefix: "%s"\nsolver_mode: CPU\nrandom_seed: 1\n' % (net_path, iters, prefix))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO, "output", "sparse_labels"))
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--cli", action="store_true", help="train with .venv/bin/caffe (CAFFE_BIN) instead of pycaffe")
    args = parser.parse_args()
    if args.iters < 1:
        parser.error("--iters must be at least 1, got %d" % args.iters)
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("GLOG_minloglevel", "2")

    x, lists, weights = make_data()
    h5 = os.path.join(args.out, "train.h5")
    write_index_labels(h5, x, lists, CLASSES, max_labels=K, weights=weights)
    list_file = os.path.join(args.out, "train_h5.txt")
    write_list_file(list_file, [h5])
    net_path = os.path.join(args.out, "train.prototxt")
    with open(net_path, "w") as f:
        f.write(net_text(list_file, BATCH))
    solver_path = os.path.join(args.out, "solver.prototxt")
    with open(solver_path, "w") as f:
        f.write(solver_text(net_path, args.iters, os.path.join(args.out, "snap")))
    print("wrote %s (data %s, label %s x %d indices + label_weight) and %s" % (h5, x.shape, SAMPLES, K, solver_path))

    if args.cli:
        log_path = os.path.join(args.out, "train.log")
        code = train(solver_path, log_path, on_progress=print, caffe=os.environ.get("CAFFE_BIN"))
        if code:
            with open(log_path) as f:
                sys.stderr.write(f.read()[-3000:])
            return code
        return 0

    import caffe
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(solver_path)
    losses = []
    for it in range(args.iters):
        solver.step(1)
        loss = float(solver.net.blobs["loss"].data)
        losses.append(loss)
        if it % 10 == 0 or it == args.iters - 1:
            print("iteration %3d  loss %.4f" % (it, loss))

    # Forward one batch and compare with the dense labels rebuilt from the file.
    net = solver.net
    net.forward()
    stored = read_index_labels(h5)
    dense = dense_from_indices(net.blobs["label"].data, CLASSES, net.blobs["label_weight"].data)
    from softmax_multilabel_layer.losses import functional as F
    dense_loss, _ = F.softmax_multilabel_loss(net.blobs["scores"].data, dense, normalize_targets="sum")
    print("forward: indices-format loss %.6f, dense-label loss %.6f (same batch); %d samples, %d classes, K=%d"
          % (float(net.blobs["loss"].data), dense_loss, stored.data.shape[0], stored.num_classes or CLASSES, K))
    if not np.isclose(float(net.blobs["loss"].data), dense_loss, rtol=1e-5):
        raise SystemExit("indices and dense losses differ")
    print("loss went from %.4f to %.4f over %d SGD iterations" % (losses[0], losses[-1], args.iters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
