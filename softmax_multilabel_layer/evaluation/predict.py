"""``softmax-multilabel predict MODEL/ IMAGES...``: label sets and probabilities for images, a thin wrapper over
:class:`.model.Model` (the preprocessing is the TEST phase's, read from the model folder; the rules are in
:mod:`.rules`).

The older form ``predict --model deploy.prototxt --weights W.caffemodel IMAGES...`` (preprocessing given with
``--resize``, ``--mean``, ``--scale``, ``--rgb``) keeps working.
"""

import argparse
import csv
import json
import os
import sys
from typing import Any, TextIO

import numpy as np

from softmax_multilabel_layer.evaluation.model import ENGINES, Model, image_paths, is_model_folder
from softmax_multilabel_layer.evaluation.netio import class_names, load_net, read_net
from softmax_multilabel_layer.evaluation.rules import RULE_SYNTAX, parse_rule
from softmax_multilabel_layer.params import MultilabelLossError

PREDICT_EXAMPLES = """examples:
  %(prog)s model/ a.jpg b.png photos/
  %(prog)s model/ --list test.txt --root-folder images/ --format jsonl
  %(prog)s model/ a.jpg --rule top-k:3 --engine opencv
  %(prog)s --model deploy.prototxt --weights W.caffemodel a.jpg --resize 64,64 --scale 0.0078125   (older form)
The rule defaults to the model folder's (its calibrated thresholds once `evaluate MODEL/ --calibrate` ran).
csv: path, labels (a JSON list of class names), then one probability column per class (headed by its name).
jsonl: {"path": ..., "labels": [...], "scores": [their probabilities], "probabilities": {class: p}}.
exit status: 0 done, 2 bad input (one line on stderr)
"""


def add_predict_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="label sets for images from a model folder (see `deploy --out`)",
                       description="Run a model folder (written by `deploy --weights W --out MODEL/`) on images and "
                       "print each image's label set under a decision rule, with the probabilities. The images are "
                       "prepared exactly as the TEST phase of the train net prepared them.",
                       epilog=PREDICT_EXAMPLES % {"prog": "softmax-multilabel predict"},
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="MODEL/ IMAGE", help="the model folder, then image files or folders "
                   "(searched recursively)")
    p.add_argument("--list", help="a list file in the training-list format (path, then labels, which are ignored)")
    p.add_argument("--root-folder", default="", help="joined to the relative paths of --list (as the data layers)")
    p.add_argument("--rule", default=None, help="%s (default: the model folder's)" % RULE_SYNTAX)
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="caffe (pycaffe) or opencv (OpenCV's DNN, no Caffe needed); default caffe when it imports")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format (default csv)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    old = p.add_argument_group("the older form: a deploy prototxt and weights, the preprocessing given by hand")
    old.add_argument("--model", help="deploy prototxt (instead of a model folder)")
    old.add_argument("--weights", help=".caffemodel, with --model")
    old.add_argument("--class-names", help="a file with one class name per line, with --model")
    old.add_argument("--output-blob", default=None, help='scores blob, with --model (default "prob", else the last)')
    old.add_argument("--resize", help="H,W to resize to before the centre crop (default: the net input size)")
    old.add_argument("--mean", help="per-channel mean, e.g. 104,117,123 (after the channel swap)")
    old.add_argument("--scale", type=float, default=1.0, help="multiply (x - mean) by this (e.g. 0.00390625)")
    old.add_argument("--rgb", action="store_true", help="keep RGB order (default: BGR, Caffe's)")
    p.set_defaults(run=run_predict)
    return p


def _ints(text: str, owner: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise MultilabelLossError("%s: expected comma-separated integers, got %r" % (owner, text)) from None


def _old_model(args: argparse.Namespace) -> Model:
    """A Model from --model deploy.prototxt --weights W and the preprocessing options."""
    if not args.weights:
        raise MultilabelLossError("--model needs --weights W.caffemodel")
    net = read_net(args.model)
    inputs = [layer for layer in net.layer if layer.type == "Input"]
    if not inputs and not net.input:
        raise MultilabelLossError("--model %s has no Input layer: it is not a deploy net; write a model folder with "
                                  "`softmax-multilabel deploy %s --weights W.caffemodel --out MODEL/`"
                                  % (args.model, args.model))
    cnet = load_net(args.model, args.weights)           # checks the weights (Caffe aborts on a mismatch)
    blob = cnet.inputs[0]
    shape = cnet.blobs[blob].data.shape
    if len(shape) != 4:
        raise MultilabelLossError("--model %s: the input %s is %s, not images (N x C x H x W); predict takes "
                                  "images" % (args.model, blob, "x".join(map(str, shape))))
    output = args.output_blob or ("prob" if "prob" in cnet.blobs else cnet.outputs[-1])
    if output not in cnet.blobs:
        raise MultilabelLossError("--output-blob %s: no such blob; blobs: %s" % (output, ", ".join(cnet.blobs)))
    num_classes = int(np.prod(cnet.blobs[output].data.shape[1:]))
    names = class_names(args.class_names, num_classes) or [str(c) for c in range(num_classes)]
    channels, height, width = (int(d) for d in shape[1:])
    resize = _ints(args.resize, "--resize") if args.resize else (height, width)
    mean = None
    if args.mean:
        try:
            mean = [float(v) for v in args.mean.split(",")]
        except ValueError:
            raise MultilabelLossError("--mean %r: expected numbers V or V,V,V" % args.mean) from None
    spec = {"input": {"blob": blob, "kind": "image", "shape": [channels, height, width], "resize": list(resize),
                      "crop": tuple(resize) != (height, width), "mean_value": mean, "mean_file": None,
                      "scale": args.scale, "channel_order": "RGB" if args.rgb else "BGR"},
            "output": output, "class_names": names, "rule": "top-k:1"}
    return Model(args.model, args.weights, spec, args.engine)


def write_predictions(out: TextIO, fmt: str, paths: list[str], proba: Any, labels: list[list[str]],
                      names: list[str], header: bool = True) -> None:
    """CSV (path, labels as a JSON list, one probability column per class) or JSON lines."""
    index = {n: i for i, n in enumerate(names)}
    if fmt == "csv":
        writer = csv.writer(out)
        if header:
            writer.writerow(["path", "labels"] + names)
        for path, row, chosen in zip(paths, proba, labels, strict=True):
            writer.writerow([path, json.dumps(chosen)] + ["%.8g" % v for v in row])
        return
    for path, row, chosen in zip(paths, proba, labels, strict=True):
        out.write(json.dumps({"path": path, "labels": chosen,
                              "scores": [round(float(row[index[n]]), 8) for n in chosen],
                              "probabilities": {n: round(float(v), 8) for n, v in zip(names, row, strict=True)}})
                  + "\n")


def run_predict(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from softmax_multilabel_layer.data.image_data import list_image_paths
    out = out or sys.stdout
    if isinstance(args.batch_size, bool) or args.batch_size < 1:
        raise MultilabelLossError("--batch-size %d: expected an integer >= 1" % args.batch_size)
    inputs = list(args.inputs)
    if args.model is None:
        if not inputs:
            raise MultilabelLossError("give the model folder: predict MODEL/ IMAGE... (see `deploy --out`)")
        folder = inputs.pop(0)
        if not is_model_folder(folder):
            hint = (" (for a deploy prototxt: predict --model %s --weights W.caffemodel IMAGE...)" % folder
                    if folder.endswith(".prototxt") else "")
            raise MultilabelLossError("%s is not a model folder (no model.json written by `softmax-multilabel deploy "
                                      "--out`)%s" % (folder, hint))
    else:
        folder = args.model
        if not args.weights:
            raise MultilabelLossError("--model needs --weights W.caffemodel")
        for what, path in (("--model", args.model), ("weights file", args.weights)):
            if not os.path.isfile(path):
                raise MultilabelLossError("%s %s does not exist" % (what, path))
    paths = image_paths(inputs)
    if args.list:
        paths += list_image_paths(args.list, args.root_folder)
    if not paths:
        raise MultilabelLossError("no images: give IMAGE... (files or folders) or --list FILE")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise MultilabelLossError("%d of %d images do not exist: %s%s" % (len(missing), len(paths),
                                                                          ", ".join(missing[:5]),
                                                                          ", ..." if len(missing) > 5 else ""))
    if args.rule and args.rule != "thresholds":
        parse_rule(args.rule)                             # a bad rule fails before any net is built
    model = _old_model(args) if args.model else Model.load(folder, args.engine)
    if model.input.get("kind", "image") != "image":
        raise MultilabelLossError("%s takes arrays of shape %s, not images; use the Python API "
                                  "(Model.predict_proba)" % (folder, tuple(model.input["shape"])))
    model.decision_rule(args.rule)                        # a rule that cannot apply fails before any image is read
    for start in range(0, len(paths), args.batch_size):
        batch = paths[start:start + args.batch_size]
        proba = model.predict_proba(batch, args.batch_size)
        write_predictions(out, args.format, batch, proba, model.label_sets(proba, args.rule), model.class_names,
                          header=start == 0)
    return 0


__all__ = ["add_predict_parser", "run_predict", "write_predictions"]
