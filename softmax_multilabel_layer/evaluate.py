"""``softmax-multilabel evaluate``: every metric of :mod:`.metrics` over a whole test set.

Caffe's solver averages per-batch test outputs, so a per-batch mAP is wrong, and ``Accuracy`` is
single-label. This command runs the TEST phase of the user's own net (whatever its data layers) for
``--iters`` batches, collects a scores blob and a labels blob (default: the loss layer's bottoms),
applies the softmax or sigmoid the loss implies, and computes the metrics once over all samples::

    softmax-multilabel evaluate --net train_val.prototxt --weights snap_iter_3000.caffemodel --iters 20
    softmax-multilabel evaluate --scores scores.npy --labels labels.npy --rule mass:0.9 --json out.json
    softmax-multilabel evaluate --net train_val.prototxt --snapshots output/run --iters 20 --plot map.png
"""
import argparse
import csv
import json
import os
import re
import sys

import numpy as np

from . import metrics as M
from .deploy import loss_probability, read_net
from .params import MultilabelLossError
from .predict import RULE_SYNTAX, _class_names, calibrate_thresholds, parse_rule, save_thresholds

# ---------------------------------------------------------------------------------------------------------------
# Caffe side

def _import_caffe():
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    caffe.set_mode_cpu()
    return caffe


def _blob_dims(blob):
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def check_weights(net, weights):
    """A one-line error unless every learnable layer of ``net`` is in the .caffemodel with the same shapes
    (Caffe itself aborts the process on a mismatch)."""
    if not os.path.isfile(weights):
        raise MultilabelLossError("weights file %s does not exist" % weights)
    if weights.endswith((".h5", ".hdf5")):
        return                                      # HDF5 weights: left to Caffe
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError
    model = caffe_pb2.NetParameter()
    try:
        with open(weights, "rb") as f:
            model.ParseFromString(f.read())
    except DecodeError:
        raise MultilabelLossError("weights file %s is not a .caffemodel (NetParameter binary proto)"
                                  % weights) from None
    saved = {layer.name: [_blob_dims(b) for b in layer.blobs] for layer in list(model.layer) + list(model.layers)}
    for name, params in net.params.items():
        if name not in saved or not saved[name]:
            raise MultilabelLossError("weights %s do not fit the net: no weights for layer %r (layers with weights "
                                      "in the file: %s)" % (weights, name, ", ".join(k for k, v in saved.items() if v)))
        if len(saved[name]) != len(params):
            raise MultilabelLossError("weights %s do not fit the net: layer %r has %d weight blobs in the net and %d "
                                      "in the file" % (weights, name, len(params), len(saved[name])))
        for i, (param, dims) in enumerate(zip(params, saved[name], strict=True)):
            shape = tuple(param.data.shape)
            legacy = (1,) * (4 - len(shape)) + shape if len(dims) == 4 and len(shape) <= 4 else shape
            if dims != shape and dims != legacy:
                raise MultilabelLossError("weights %s do not fit the net: layer %r param %d has shape %s in the file, "
                                          "%s in the net" % (weights, name, i, dims, shape))


def load_net(model, weights, phase="test"):
    """``caffe.Net(model, weights, phase)`` with the prototxt and the weights checked first (one-line errors)."""
    read_net(model)
    caffe = _import_caffe()
    net = caffe.Net(model, caffe.TEST if phase == "test" else caffe.TRAIN)
    if weights:
        check_weights(net, weights)
        net.copy_from(weights)
    return net


def find_loss(net_param):
    """The TEST-phase loss layer whose probabilities we evaluate: (layer, "Softmax" or "Sigmoid")."""
    from caffe.proto import caffe_pb2

    from .deploy import _in_phase
    for layer in net_param.layer:
        kind, axis = loss_probability(layer)
        if kind is not None and _in_phase(layer, caffe_pb2.TEST):
            if axis != 1:
                raise MultilabelLossError("loss layer %r uses axis %d; only axis 1 (N x C scores) is supported"
                                          % (layer.name, axis))
            return layer, kind
    return None, None


def label_format(layer):
    """"indices" for SoftmaxWithLoss labels and our softmax loss with label_format "indices", else "dense"."""
    if layer is None:
        return "dense"
    if layer.type == "SoftmaxWithLoss":
        return "indices"
    if layer.type == "Python" and layer.python_param.param_str:
        from .deploy import _param_dict
        return _param_dict(layer).get("label_format", "dense")
    return "dense"


def probabilities(scores, kind):
    """float64 softmax over classes, sigmoid, or the scores themselves (kind None)."""
    s = np.asarray(scores, dtype=np.float64)
    if kind == "Softmax":
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if kind == "Sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * s))
    return s


def progress(label, i, total, stream=None):
    """A one-line progress bar on stderr (rewritten in place)."""
    stream = stream or sys.stderr
    width = 30
    done = int(width * i / max(total, 1))
    stream.write("\r%s [%s%s] %d/%d" % (label, "#" * done, "." * (width - done), i, total))
    if i == total:
        stream.write("\n")
    stream.flush()


def collect(net_path, weights, iters, scores_blob=None, labels_blob=None, activation="auto", label="forward"):
    """Run the TEST phase ``iters`` times; returns (probabilities N x C float64, labels N x C bool, info)."""
    if iters is None or iters < 1:
        raise MultilabelLossError("--iters must be >= 1 with --net (batches to run)")
    net_param = read_net(net_path)
    loss, kind = find_loss(net_param)
    if loss is None and (scores_blob is None or labels_blob is None):
        raise MultilabelLossError("%s has no multi-label loss layer in the TEST phase; give --scores-blob and "
                                  "--labels-blob" % net_path)
    scores_blob = scores_blob or loss.bottom[0]
    labels_blob = labels_blob or loss.bottom[1]
    if activation == "auto":
        activation = kind if loss is not None and scores_blob == loss.bottom[0] else None
    fmt = label_format(loss) if loss is not None and labels_blob == loss.bottom[1] else "dense"
    net = load_net(net_path, weights)
    for option, blob in (("--scores-blob", scores_blob), ("--labels-blob", labels_blob)):
        if blob not in net.blobs:
            raise MultilabelLossError("%s %s: no such blob in the TEST net; blobs: %s"
                                      % (option, blob, ", ".join(net.blobs)))
    scores, labels = [], []
    for i in range(iters):
        net.forward()
        s = net.blobs[scores_blob].data
        if s.ndim > 2 and np.prod(s.shape[2:]) != 1:
            raise MultilabelLossError("scores blob %s has shape %s; expected N x C (or N x C x 1 x 1)"
                                      % (scores_blob, s.shape))
        scores.append(s.reshape(len(s), -1).copy())
        labels.append(net.blobs[labels_blob].data.reshape(len(s), -1).copy())
        progress(label, i + 1, iters)
    scores, raw = np.concatenate(scores), np.concatenate(labels)
    if fmt == "indices":
        y = M.indices_to_multi_hot(raw, scores.shape[1], owner="labels blob %s" % labels_blob)
    else:
        if raw.shape != scores.shape:
            raise MultilabelLossError("labels blob %s is %s per batch but scores blob %s is %s; expected the same "
                                      "N x C (dense multi-hot) or a loss with label_format \"indices\""
                                      % (labels_blob, raw.shape, scores_blob, scores.shape))
        y = M.check_labels("labels blob %s" % labels_blob, raw)
    M.check_scores("scores blob %s" % scores_blob, scores)
    info = {"net": net_path, "weights": weights, "iters": iters, "scores_blob": scores_blob,
            "labels_blob": labels_blob, "activation": activation or "none", "label_format": fmt}
    return probabilities(scores, activation), y, info


# ---------------------------------------------------------------------------------------------------------------
# reports

def format_table(report):
    lines = ["%-34s %s" % ("metric", "value")]
    for key, value in report.items():
        if isinstance(value, float):
            lines.append("%-34s %.6f" % (key, value))
    missing = report["missing_positives"]
    lines.append("%-34s %d samples, %d classes%s" % (
        "no true label (left out of AP)", missing["samples"], len(missing["classes"]),
        (": " + ", ".join(map(str, missing["classes"][:10])) + (" ..." if len(missing["classes"]) > 10 else ""))
        if missing["classes"] else ""))
    lines.append("%-34s %s (%d samples x %d classes)" % ("decision rule", report["rule"], report["samples"],
                                                        report["classes"]))
    return "\n".join(lines)


def per_class_rows(labels, scores, names=None):
    ap = M.average_precision(labels, scores, None)
    thresholds, f1 = calibrate_thresholds(labels, scores)
    support = labels.sum(axis=0)
    names = names or [str(c) for c in range(labels.shape[1])]
    return [{"class": c, "name": names[c], "AP": ap[c], "support": int(support[c]),
             "best_threshold": thresholds[c], "F1": f1[c]} for c in range(labels.shape[1])], thresholds, f1


def write_per_class(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "name", "AP", "support", "best_threshold", "F1"])
        for r in rows:
            w.writerow([r["class"], r["name"], "%.6f" % r["AP"] if np.isfinite(r["AP"]) else "",
                        r["support"], "%.6g" % r["best_threshold"] if np.isfinite(r["best_threshold"]) else "",
                        "%.6f" % r["F1"]])


def plot(path, labels, scores, names=None, history=None):
    """PNG: micro-averaged PR curve, PR curves of the 5 worst classes, histogram of per-class AP,
    and mAP against iteration when ``history`` [(iteration, mAP)] is given."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = names or [str(c) for c in range(labels.shape[1])]
    ap = M.average_precision(labels, scores, None)
    panels = 4 if history else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4))
    recall, precision = M.precision_recall_curve(labels.ravel(), scores.ravel())
    axes[0].step(recall, precision, where="post")
    axes[0].set(title="micro-averaged PR (AP %.4f)" % M.average_precision(labels, scores, "micro"),
                xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    worst = [c for c in np.argsort(np.where(np.isnan(ap), np.inf, ap), kind="stable")[:5] if np.isfinite(ap[c])]
    for c in worst:
        r, p = M.precision_recall_curve(labels[:, c], scores[:, c])
        axes[1].step(r, p, where="post", label="%s (AP %.3f)" % (names[c], ap[c]))
    axes[1].set(title="5 worst classes", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axes[1].legend(fontsize=8, loc="lower left")
    axes[2].hist(ap[np.isfinite(ap)], bins=20, range=(0, 1))
    axes[2].set(title="per-class AP (mAP %.4f)" % np.nanmean(ap), xlabel="AP", ylabel="classes")
    if history:
        its, maps = zip(*history, strict=True)
        axes[3].plot(its, maps, "o-")
        axes[3].set(title="test mAP by snapshot", xlabel="iteration", ylabel="mAP")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def snapshot_iteration(path):
    m = re.search(r"_iter_(\d+)\.caffemodel$", path)
    return int(m.group(1)) if m else -1


def _load_npy(path, option):
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise MultilabelLossError("%s %s: %s" % (option, path, exc)) from None


# ---------------------------------------------------------------------------------------------------------------
# command line

EXAMPLES = """examples:
  %(prog)s --net train_val.prototxt --weights snap_iter_3000.caffemodel --iters 20 --plot pr.png
  %(prog)s --net train_val.prototxt --snapshots output/run --iters 20 --json metrics.json --plot map.png
  %(prog)s --scores scores.npy --labels labels.npy --rule thresholds:th.json --per-class classes.csv
exit status: 0 done, 2 bad input (one line on stderr)
"""


def add_evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="multi-label metrics (mAP, F1, ranking) over a whole test set",
                       description="Every metric of softmax_multilabel_layer.metrics over a whole test set: from a "
                       "trained net's TEST phase, from every snapshot in a folder, or from saved arrays.",
                       epilog=EXAMPLES % {"prog": "softmax-multilabel evaluate"},
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input: a net and weights (or --snapshots), or arrays")
    src.add_argument("--net", help="train_val prototxt; its TEST phase is run")
    src.add_argument("--weights", help=".caffemodel")
    src.add_argument("--snapshots", metavar="DIR", help="evaluate every .caffemodel in DIR (by iteration)")
    src.add_argument("--iters", type=int, help="TEST batches to run (e.g. test set size / batch size)")
    src.add_argument("--scores-blob", help="scores blob (default: the loss layer's first bottom)")
    src.add_argument("--labels-blob", help="labels blob (default: the loss layer's second bottom)")
    src.add_argument("--activation", choices=("auto", "softmax", "sigmoid", "none"), default="auto",
                     help="applied to the scores blob (default auto: as the loss implies, none for another blob)")
    src.add_argument("--scores", metavar="X.npy", help="N x C scores (probabilities) instead of a net")
    src.add_argument("--labels", metavar="Y.npy", help="N x C multi-hot labels, with --scores")
    out = p.add_argument_group("output")
    out.add_argument("--rule", default="top-k:1", help="label sets for F1 / Hamming / exact match: %s "
                     "(default top-k:1)" % RULE_SYNTAX)
    out.add_argument("--class-names", help="a file with one class name per line")
    out.add_argument("--json", help="write every metric (and the snapshots' mAP) here")
    out.add_argument("--per-class", metavar="CSV", help="per class: AP, support, best threshold, F1 at it")
    out.add_argument("--plot", metavar="PNG", help="PR curves, per-class AP histogram (and mAP by snapshot)")
    out.add_argument("--thresholds-out", metavar="JSON", help="per-class thresholds maximizing F1 (for predict)")
    p.set_defaults(run=run_evaluate)
    return p


def run_evaluate(args, stdout=None):
    stdout = stdout or sys.stdout
    rule = parse_rule(args.rule)
    activation = {"softmax": "Softmax", "sigmoid": "Sigmoid", "none": None}.get(args.activation, "auto")
    history, info = [], {}
    if args.scores or args.labels:
        if not (args.scores and args.labels) or args.net or args.snapshots:
            raise MultilabelLossError("give --scores and --labels together, without --net / --snapshots")
        y = M.check_labels("--labels %s" % args.labels, _load_npy(args.labels, "--labels"))
        s = M.check_scores("--scores %s" % args.scores, _load_npy(args.scores, "--scores"), y.shape)
        s = probabilities(s, activation if activation != "auto" else None)
        info = {"scores": args.scores, "labels": args.labels}
    elif args.net and args.snapshots:
        models = sorted((os.path.join(args.snapshots, f) for f in os.listdir(args.snapshots)
                         if f.endswith(".caffemodel")), key=lambda p: (snapshot_iteration(p), p))
        if not models:
            raise MultilabelLossError("no .caffemodel in %s" % args.snapshots)
        rows = []
        for i, model in enumerate(models):
            s, y, info = collect(args.net, model, args.iters, args.scores_blob, args.labels_blob, activation,
                                 label="snapshot %d/%d %s" % (i + 1, len(models), os.path.basename(model)))
            mean_ap = M.average_precision(y, s)
            history.append((snapshot_iteration(model), mean_ap))
            rows.append({"iteration": snapshot_iteration(model), "caffemodel": model, "mAP": mean_ap})
        stdout.write("%-10s %-8s %s\n" % ("iteration", "mAP", "caffemodel"))
        for r in rows:
            stdout.write("%-10d %.6f %s\n" % (r["iteration"], r["mAP"], r["caffemodel"]))
        stdout.write("\nlast snapshot:\n")
        info["snapshots"] = rows
    elif args.net:
        if not args.weights:
            raise MultilabelLossError("--net needs --weights W.caffemodel (or --snapshots DIR)")
        s, y, info = collect(args.net, args.weights, args.iters, args.scores_blob, args.labels_blob, activation)
    else:
        raise MultilabelLossError("give --net (with --weights or --snapshots) or --scores and --labels")
    names = _class_names(args.class_names, y.shape[1])
    report = M.report(y, s, rule)
    stdout.write(format_table(report) + "\n")
    if args.per_class or args.thresholds_out:
        rows, thresholds, f1 = per_class_rows(y, s, names)
        if args.per_class:
            write_per_class(args.per_class, rows)
        if args.thresholds_out:
            save_thresholds(args.thresholds_out, thresholds, f1, names)
    if args.plot:
        plot(args.plot, y, s, names, history)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(report, **info), f, indent=1)
            f.write("\n")
    for option in ("json", "per_class", "plot", "thresholds_out"):
        if getattr(args, option):
            stdout.write("wrote %s\n" % getattr(args, option))
    return 0


__all__ = ["check_weights", "collect", "load_net", "plot", "probabilities", "run_evaluate"]
