"""Score a trained snapshot on the test set with pycaffe.

    python examples/multilabel_digits/digits_eval.py DEPLOY CAFFEMODEL TEST_H5

loads the deploy net with the snapshot's weights, forwards the test set and prints
mAP, precision@M and exact-set accuracy (softmax_multilabel_layer.evaluation.metrics) as JSON.
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np

from softmax_multilabel_layer.evaluation import metrics as M
from softmax_multilabel_layer.tools.train import forward_in_batches

_caffe = None


def import_caffe():
    """Import pycaffe quietly (no glog INFO spam), once."""
    global _caffe
    if _caffe is None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import caffe
        caffe.set_mode_cpu()
        _caffe = caffe
    return _caffe


def load_split(h5_path):
    with h5py.File(h5_path, "r") as f:
        return f["data"][()], f["label"][()]


def predict(deploy, weights, data, output="prob", batch_size=100):
    """Forward data (N x 1 x H x W) through deploy+weights -> N x C scores of ``output``."""
    caffe = import_caffe()
    net = caffe.Net(deploy, weights, caffe.TEST)
    return forward_in_batches(net, data, (output,), batch_size)[output]


def all_metrics(scores, labels):
    """mAP, precision@M and exact-set accuracy of the top-M classes (M = the image's number of digits;
    images with M = 0 left out), also by M, and the per-class AP."""
    m = labels.sum(axis=1).astype(int)
    top_m = M.top_k_labels(scores, m)
    exact = {int(k): M.exact_match(labels[m == k], top_m[m == k]) for k in np.unique(m[m > 0])}
    return {"mAP": M.average_precision(labels, scores),
            "precision_at_m": M.precision_at_k(labels, scores, m),
            "exact_set_accuracy": M.exact_match(labels[m > 0], top_m[m > 0]),
            "exact_set_accuracy_by_m": exact,
            "per_class_ap": M.average_precision(labels, scores, None).tolist(),
            "examples": int(len(labels))}


def evaluate(deploy, weights, data, labels):
    scores = predict(deploy, weights, data)
    if scores.shape != labels.shape:
        raise ValueError("scores %s vs labels %s" % (scores.shape, labels.shape))
    return all_metrics(scores, labels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("deploy", help="deploy prototxt")
    parser.add_argument("weights", help=".caffemodel snapshot")
    parser.add_argument("h5_path", help="the test split's HDF5 file (data, label)")
    args = parser.parse_args(argv)
    deploy, weights, h5_path = args.deploy, args.weights, args.h5_path
    data, labels = load_split(h5_path)
    metrics = evaluate(deploy, weights, data, labels)
    metrics.pop("per_class_ap")
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
