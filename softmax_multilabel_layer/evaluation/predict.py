"""``softmax-multilabel predict``: label sets for images from a deploy net (the rules are in :mod:`.rules`)."""

import json
import sys

import numpy as np

from softmax_multilabel_layer.evaluation.netio import class_names, load_net, preprocess_image
from softmax_multilabel_layer.evaluation.rules import RULE_SYNTAX, parse_rule, predict_labels
from softmax_multilabel_layer.params import MultilabelLossError

# ---------------------------------------------------------------------------------------------------------------
# per-class thresholds


# ---------------------------------------------------------------------------------------------------------------
# images


# ---------------------------------------------------------------------------------------------------------------
# softmax-multilabel predict

PREDICT_EXAMPLES = """examples:
  %(prog)s --model deploy.prototxt --weights snap_iter_3000.caffemodel a.jpg b.png --rule top-k:3
  %(prog)s --model deploy.prototxt --weights W.caffemodel --list images.txt --rule thresholds:th.json --format jsonl
"""


def add_predict_parser(sub):
    p = sub.add_parser("predict", help="label sets for images from a deploy net",
                       description="Run a deploy net (see `deploy`) on images and print each image's label set "
                       "under a decision rule, with the scores.",
                       epilog=PREDICT_EXAMPLES % {"prog": "softmax-multilabel predict"},
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--model", required=True, help="deploy prototxt")
    p.add_argument("--weights", required=True, help=".caffemodel")
    p.add_argument("--list", help="a file with one image path per line (instead of or besides IMAGE...)")
    p.add_argument("--rule", default="top-k:1", help="%s (default top-k:1)" % RULE_SYNTAX)
    p.add_argument("--class-names", help="a file with one class name per line")
    p.add_argument("--output-blob", default=None, help='scores blob (default "prob", else the last output)')
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format (default csv)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    image = p.add_argument_group("preprocessing (as Caffe's transform_param)")
    image.add_argument("--resize", help="H,W to resize to before the centre crop (default: the net input size)")
    image.add_argument("--mean", help="per-channel mean, e.g. 104,117,123 (after the channel swap)")
    image.add_argument("--scale", type=float, default=1.0, help="multiply (x - mean) by this (e.g. 0.00390625)")
    image.add_argument("--rgb", action="store_true", help="keep RGB order (default: BGR, Caffe's)")
    p.set_defaults(run=run_predict)
    return p


def _ints(text, owner):
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise MultilabelLossError("%s: expected comma-separated integers, got %r" % (owner, text)) from None


def run_predict(args, out=None):
    out = out or sys.stdout
    paths = list(args.images)
    if args.list:
        try:
            with open(args.list) as f:
                paths += [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise MultilabelLossError("--list %s: %s" % (args.list, exc.strerror)) from None
    if not paths:
        raise MultilabelLossError("no images: give IMAGE... or --list FILE")
    rule = parse_rule(args.rule)
    net = load_net(args.model, args.weights, phase="test")
    data = net.inputs[0]
    output = args.output_blob or ("prob" if "prob" in net.blobs else net.outputs[-1])
    if output not in net.blobs:
        raise MultilabelLossError("--output-blob %s: no such blob; blobs: %s" % (output, ", ".join(net.blobs)))
    shape = net.blobs[data].data.shape[1:]
    resize = _ints(args.resize, "--resize") if args.resize else None
    mean = [float(v) for v in args.mean.split(",")] if args.mean else None
    names = None
    writer = None
    if args.format == "csv":
        import csv
        writer = csv.writer(out)
        writer.writerow(["path", "labels", "scores"])
    for start in range(0, len(paths), args.batch_size):
        batch = paths[start:start + args.batch_size]
        x = np.stack([preprocess_image(p, shape, resize, mean, args.scale, not args.rgb) for p in batch])
        net.blobs[data].reshape(*x.shape)
        net.reshape()
        net.blobs[data].data[...] = x
        net.forward()
        scores = net.blobs[output].data.reshape(len(batch), -1).astype(np.float64)
        if names is None:
            names = class_names(args.class_names, scores.shape[1]) or [str(c) for c in range(scores.shape[1])]
        chosen = predict_labels(scores, rule)
        for path, row, mask in zip(batch, scores, chosen, strict=True):
            idx = np.flatnonzero(mask)
            idx = idx[np.argsort(-row[idx], kind="stable")]
            labels, values = [names[i] for i in idx], [round(float(row[i]), 6) for i in idx]
            if writer:
                writer.writerow([path, " ".join(labels), " ".join("%.6g" % v for v in values)])
            else:
                out.write(json.dumps({"path": path, "labels": labels, "scores": values}) + "\n")
    return 0


__all__ = ["add_predict_parser", "run_predict"]
