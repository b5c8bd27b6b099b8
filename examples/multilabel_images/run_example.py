#!/usr/bin/env python
"""Multi-label digits from JPEG files: write the images and lists, train with `caffe train` through
MultilabelImageDataLayer and SoftmaxMultilabelLossLayer, then score the test images (mAP).

    .venv/bin/python examples/multilabel_images/run_example.py [--out output/multilabel_images]

The committed prototxt/multilabel_images/{solver,train_val}.prototxt are copied into --out with their
"output/multilabel_images" paths pointing there.
"""
import argparse
import os
import re
import subprocess
import sys
from collections.abc import Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
from make_images import make_images  # noqa: E402

DEFAULT_OUT = "output/multilabel_images"


def write_prototxts(out: str, max_iter: int | None = None) -> dict[str, str]:
    out = os.path.abspath(out)
    paths: dict[str, str] = {}
    for name in ("train_val", "solver"):
        with open(os.path.join(ROOT, "prototxt", "multilabel_images", name + ".prototxt")) as f:
            text = f.read().replace(DEFAULT_OUT, out)
        text = text.replace("prototxt/multilabel_images/train_val.prototxt", os.path.join(out, "train_val.prototxt"))
        if name == "solver":
            text = text.replace("snapshot_after_train: false", 'snapshot_prefix: "%s/snap"' % out)
            if max_iter:
                text = re.sub(r"max_iter: \d+", "max_iter: %d" % max_iter, text)
                text = re.sub(r"test_interval: \d+", "test_interval: %d" % max_iter, text)
                text = re.sub(r"display: \d+", "display: %d" % max(1, max_iter // 5), text)
        paths[name] = os.path.join(out, name + ".prototxt")
        with open(paths[name], "w") as f:
            f.write(text)
    return paths


def train(solver: str, out: str) -> tuple[list[tuple[int, float]], list[float]]:
    caffe_bin = os.path.join(ROOT, ".venv", "bin", "caffe")
    log_path = os.path.join(out, "train.log")
    print("%s train --solver %s   (log: %s)" % (caffe_bin, solver, log_path), flush=True)
    with open(log_path, "w") as log:
        done = subprocess.run([caffe_bin, "train", "--solver", solver], stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0"))
    with open(log_path) as f:
        text = f.read()
    if done.returncode != 0:
        raise SystemExit("caffe train failed (exit %d); last lines of %s:\n%s"
                         % (done.returncode, log_path, "\n".join(text.splitlines()[-30:])))
    losses = [(int(i), float(v)) for i, v in re.findall(r"Iteration (\d+)(?: \(.*?\))?, loss = ([\d.eE+-]+)", text)]
    tests = [float(v) for v in re.findall(r"Test net output #0: loss = ([\d.eE+-]+)", text)]
    return losses, tests


def evaluate(train_val: str, weights: str, batches: int) -> float:
    """mAP (mean over classes of average precision) of the trained net's scores on the TEST list."""
    import caffe
    from sklearn.metrics import average_precision_score
    caffe.set_mode_cpu()
    net = caffe.Net(train_val, caffe.TEST, weights=weights)
    scores, labels = [], []
    for _ in range(batches):
        net.forward()
        scores.append(net.blobs["scores"].data.copy())
        labels.append(net.blobs["label"].data.copy())
    net.layers[0].close()
    return float(average_precision_score(np.concatenate(labels), np.concatenate(scores), average="macro"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=500, help="validation images, for calibrating thresholds")
    p.add_argument("--max-iter", type=int, help="override the solver's max_iter (default 500)")
    args = p.parse_args(argv)
    counts = make_images(args.out, args.n_train, args.n_test, n_val=args.n_val)
    print("wrote %d train, %d val and %d test JPEGs and list files to %s"
          % (counts["train"], counts.get("val", 0), counts["test"], args.out))
    paths = write_prototxts(args.out, args.max_iter)
    losses, tests = train(paths["solver"], os.path.abspath(args.out))
    last = losses[-1][0]
    print("training loss: iteration %d %.3f -> iteration %d %.3f; test loss %s"
          % (losses[0][0], losses[0][1], last, losses[-1][1], ", ".join("%.3f" % t for t in tests)))
    test_batches = (args.n_test + 99) // 100
    m_ap = evaluate(paths["train_val"], os.path.join(os.path.abspath(args.out), "snap_iter_%d.caffemodel" % last),
                    test_batches)
    print("test mAP over the 10 classes: %.3f (%d test images)" % (m_ap, test_batches * 100))
    return 0


if __name__ == "__main__":
    sys.exit(main())
