#!/usr/bin/env python
"""Float32 precision of our loss layers against Caffe's own C++ layers, both against float64 truth.

Each row runs two ``caffe.Net``s in float32 on the same inputs: our layer and
Caffe's (``SoftmaxWithLoss`` for the softmax loss with one positive per
sample, ``SigmoidCrossEntropyLoss`` for the sigmoid loss), and compares both
with the float64 value of the same formula on the same float32 inputs:

* ``loss rel err``: |loss - truth| / truth;
* ``grad max abs err``: max over elements of |gradient - truth|;
* ``grad max rel err``: the same relative to max(|truth|, 1e-30) (the tails).

Inputs look like a trained model: N samples, C classes; softmax: scores
N(0, 0.5) plus ``margin`` on the one true class; sigmoid: ``+margin`` on the 3
positives per sample and ``-margin`` elsewhere, plus N(0, 0.5). The float64
truth is written so that it keeps full relative precision in the tails
(log1p of the sum of the other classes; softplus of -|x|).

    .venv/bin/python scripts/precision.py                 # the default table
    .venv/bin/python scripts/precision.py --loss softmax --margins 12,25,50 --classes 1000,17000

ZLPR and the two-way loss have no Caffe layer: their comparison row is a float32
log-sum-exp written the stable way in numpy (shifted by the maximum, ``u + log(sum e^(t - u))``,
the loss and gradient of the same formula all in float32); inputs as for the sigmoid loss.

    .venv/bin/python scripts/precision.py --loss zlpr,two_way

Exit status 1 if one of our rows is less precise than Caffe's (or the stable float32) row for the
same input (loss or gradient, with a 2x allowance for the rounding of single
elements), or if a loss is negative or not finite.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("GLOG_minloglevel", "2")


def net(text):
    import caffe
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text)
    try:
        caffe.set_mode_cpu()
        return caffe.Net(f.name, caffe.TRAIN)
    finally:
        os.unlink(f.name)


def inputs(shapes):
    return "".join('layer { name: "%s" type: "Input" top: "%s" input_param { shape { %s } } }\n'
                   % (name, name, " ".join("dim: %d" % d for d in shape)) for name, shape in shapes)


def python_loss(layer, shapes):
    return net('force_backward: true\n' + inputs(shapes) + (
        'layer { name: "loss" type: "Python" %s top: "loss" loss_weight: 1\n'
        '  python_param { module: "softmax_multilabel_layer.layers" layer: "%s" } }\n'
        % (" ".join('bottom: "%s"' % n for n, _ in shapes), layer)))


def native_loss(layer_type, shapes, param=""):
    return net('force_backward: true\n' + inputs(shapes) + (
        'layer { name: "loss" type: "%s" %s top: "loss" loss_weight: 1 %s }\n'
        % (layer_type, " ".join('bottom: "%s"' % n for n, _ in shapes), param)))


def run(n, feeds):
    for name, value in feeds.items():
        n.blobs[name].data[...] = value
    n.forward()
    n.backward()
    return float(n.blobs["loss"].data), n.blobs[next(iter(feeds))].diff.astype(np.float64)


def softmax_truth(scores, labels):
    """Loss ("count" targets, "batch_size") and gradient in float64 on the given values, precise in the tails.

    With m = max s and r = sum over the other classes of exp(s_c - m):
    L = log1p(r) + sum_c t_c (m - s_c), and T p - t at the argmax is (T - t - t r) / (1 + r), formed without
    cancellation. For one-hot labels this is SoftmaxWithLoss with normalization BATCH_SIZE.
    """
    s, y = np.asarray(scores, np.float64), np.asarray(labels, np.float64)
    n = s.shape[0]
    rows = np.arange(n)
    top = s.argmax(axis=1)
    m = s[rows, top]
    e = np.exp(s - m[:, None])
    e[rows, top] = 0
    r = e.sum(axis=1)
    t = y / (y != 0).sum(axis=1, keepdims=True)
    loss = np.log1p(r) + (t * (m[:, None] - s)).sum(axis=1)
    grad = e / (1 + r)[:, None] - t
    grad[rows, top] = (1 - t[rows, top] - t[rows, top] * r) / (1 + r)
    return loss.sum() / n, grad / n


def sigmoid_truth(x, y):
    """Loss and gradient of SigmoidCrossEntropyLoss (divided by N) in float64, for 0/1 targets."""
    x = x.astype(np.float64)
    softplus = lambda z: np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)   # noqa: E731
    loss = np.where(y > 0, softplus(-x), softplus(x))
    p = 1 / (1 + np.exp(-x))
    grad = np.where(y > 0, -1 / (1 + np.exp(x)), p)         # p - 1 = -sigmoid(-x)
    n = x.shape[0]
    return loss.sum() / n, grad / n


def _masked_lse(t, keep, axis, with_zero, dtype):
    """Log-sum-exp over the kept entries along axis, the stable way, in ``dtype``: (value, softmax weights).

    With ``with_zero`` a term e^0 joins the sum (ZLPR). Groups with no kept entry and no zero term: -inf, weights 0.
    In float64 (the truth) the value where the shift is 0 is log1p of the sum, so a tiny ZLPR term is kept; in
    float32 it is u + log(total), the stable way one writes it.
    """
    t = np.where(keep, t, -np.inf).astype(dtype)
    u = t.max(axis=axis, keepdims=True)
    u = np.maximum(u, 0) if with_zero else np.where(np.isfinite(u), u, 0)
    e = np.exp(t - u)
    esum = e.sum(axis=axis, keepdims=True, dtype=dtype)
    total = esum + (np.exp(-u) if with_zero else 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = u + np.log(total)
        if with_zero and dtype == np.float64:
            value = np.where(u == 0, np.log1p(esum), value)
        weight = np.where(total > 0, e / total, 0)
    return value.astype(dtype), weight.astype(dtype)


def zlpr_loss(x, y, dtype):
    """ZLPR (batch mean) and its gradient, the stable way in ``dtype``."""
    n = x.shape[0]
    neg, q_neg = _masked_lse(x.astype(dtype), y == 0, 1, True, dtype)
    pos, q_pos = _masked_lse(-x.astype(dtype), y > 0, 1, True, dtype)
    return float((neg.sum(dtype=dtype) + pos.sum(dtype=dtype)) / dtype(n)), (q_neg - q_pos) / dtype(n)


def two_way_loss(x, y, dtype, tp=4.0, tn=1.0):
    """The two-way loss and its gradient, the stable way in ``dtype`` (softplus(z) = max(z, 0) + log1p(e^-|z|))."""
    x = x.astype(dtype)
    loss, grad = dtype(0), np.zeros_like(x)
    for axis in (1, 0):
        n_val, q_n = _masked_lse(x / dtype(tn), y == 0, axis, False, dtype)
        p_val, q_p = _masked_lse(-x / dtype(tp), y > 0, axis, False, dtype)
        has = (y > 0).any(axis=axis, keepdims=True)
        z = np.where(has, dtype(tn) * n_val + dtype(tp) * p_val, -np.inf).astype(dtype)
        count = dtype(max(1, int(has.sum())))
        with np.errstate(invalid="ignore", over="ignore"):
            softplus = np.where(np.isfinite(z), np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))), 0).astype(dtype)
            sigma = np.where(np.isfinite(z), 1 / (1 + np.exp(-z)), 0).astype(dtype)
        loss += softplus.sum(dtype=dtype) / count
        grad += sigma / count * (q_n - q_p)
    return float(loss), grad


def errors(loss, grad, truth_loss, truth_grad):
    abs_err = np.abs(grad - truth_grad)
    return {"loss": loss, "loss_rel_err": abs(loss - truth_loss) / abs(truth_loss) if truth_loss else abs(loss),
            "grad_max_abs_err": float(abs_err.max()),
            "grad_max_rel_err": float((abs_err / np.maximum(np.abs(truth_grad), 1e-30)).max())}


def softmax_rows(n, classes, margin, seed):
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 0.5, (n, classes))
    label = rng.integers(0, classes, n)
    s[np.arange(n), label] += margin
    s = s.astype(np.float32)
    onehot = np.zeros((n, classes), np.float32)
    onehot[np.arange(n), label] = 1
    truth = softmax_truth(s, onehot)
    ours = run(python_loss("SoftmaxMultilabelLossLayer", [("scores", (n, classes)), ("labels", (n, classes))]),
               {"scores": s, "labels": onehot})
    theirs = run(native_loss("SoftmaxWithLoss", [("scores", (n, classes)), ("label", (n,))],
                             "loss_param { normalization: BATCH_SIZE }"),
                 {"scores": s, "label": label.astype(np.float32)})
    return truth[0], errors(*ours, *truth), errors(*theirs, *truth)


def confident_inputs(n, classes, margin, seed):
    """float32 scores +margin on 3 positives per sample and -margin elsewhere, plus N(0, 0.5); 0/1 labels."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, classes), np.float32)
    for i in range(n):
        y[i, rng.choice(classes, 3, replace=False)] = 1
    return (np.where(y > 0, margin, -margin) + rng.normal(0, 0.5, (n, classes))).astype(np.float32), y


def sigmoid_rows(n, classes, margin, seed):
    x, y = confident_inputs(n, classes, margin, seed)
    truth = sigmoid_truth(x, y)
    shapes = [("scores", (n, classes)), ("targets", (n, classes))]
    ours = run(python_loss("SigmoidMultilabelLossLayer", shapes), {"scores": x, "targets": y})
    theirs = run(native_loss("SigmoidCrossEntropyLoss", shapes), {"scores": x, "targets": y})
    return truth[0], errors(*ours, *truth), errors(*theirs, *truth)


def family_rows(loss_name):
    """Rows for ZLPR or the two-way loss: our layer in caffe.Net and a stable float32 numpy log-sum-exp."""
    layer, reference = (("ZLPRLossLayer", zlpr_loss) if loss_name == "zlpr" else ("TwoWayLossLayer", two_way_loss))

    def rows(n, classes, margin, seed):
        x, y = confident_inputs(n, classes, margin, seed)
        truth = reference(x.astype(np.float64), y, np.float64)
        ours = run(python_loss(layer, [("scores", (n, classes)), ("labels", (n, classes))]),
                   {"scores": x, "labels": y})
        stable = reference(x, y, np.float32)
        return truth[0], errors(*ours, *truth), errors(stable[0], stable[1].astype(np.float64), *truth)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", default="both",
                        help="softmax, sigmoid, both (the two), zlpr, two_way, or a comma list (default %(default)s)")
    parser.add_argument("--margins", help="comma list (default: 12,25,50 softmax; 8,14,20 sigmoid; 5,12,25,50 "
                                          "zlpr; 4,12,25 two_way)")
    parser.add_argument("--classes", default="1000,17000", help="comma list of C (default %(default)s)")
    parser.add_argument("--batch", type=int, default=64, help="N (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the inputs' seed (default %(default)s)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    losses = ["softmax", "sigmoid"] if args.loss == "both" else args.loss.split(",")
    for name in losses:
        if name not in ("softmax", "sigmoid", "zlpr", "two_way"):
            parser.error("--loss: unknown loss %r; expected softmax, sigmoid, both, zlpr or two_way" % name)
    default_margins = {"softmax": "12,25,50", "sigmoid": "8,14,20", "zlpr": "5,12,25,50", "two_way": "4,12,25"}
    comparison = {"softmax": "Caffe SoftmaxWithLoss", "sigmoid": "Caffe SigmoidCrossEntropyLoss",
                  "zlpr": "float32 stable log-sum-exp (numpy)", "two_way": "float32 stable log-sum-exp (numpy)"}
    rows, failures = [], []
    print("float32 inside caffe.Net, N = %d, seed %d; errors against float64 truth on the same float32 inputs"
          % (args.batch, args.seed))
    print("| loss | C | margin | truth loss | layer | loss | loss rel err | grad max abs err | grad max rel err |")
    print("|---|---|---|---|---|---|---|---|---|")
    for loss_name in losses:
        for classes in (int(c) for c in args.classes.split(",")):
            for margin in (float(m) for m in (args.margins or default_margins[loss_name]).split(",")):
                make = {"softmax": softmax_rows, "sigmoid": sigmoid_rows}.get(loss_name) or family_rows(loss_name)
                truth, ours, theirs = make(args.batch, classes, margin, args.seed)
                for name, e in (("ours", ours), (comparison[loss_name], theirs)):
                    print("| %s | %d | %g | %.6g | %s | %.6g | %.2e | %.2e | %.2e |"
                          % (loss_name, classes, margin, truth, name, e["loss"], e["loss_rel_err"],
                             e["grad_max_abs_err"], e["grad_max_rel_err"]))
                rows.append(dict(loss=loss_name, classes=classes, margin=margin, truth=truth, ours=ours,
                                 caffe=theirs))
                if not (np.isfinite(ours["loss"]) and ours["loss"] >= 0):
                    failures.append("%s C=%d margin %g: loss %r" % (loss_name, classes, margin, ours["loss"]))
                for key in ("loss_rel_err", "grad_max_abs_err"):
                    if ours[key] > 2 * theirs[key] + 1e-30:
                        failures.append("%s C=%d margin %g: %s %.3g > Caffe's %.3g"
                                        % (loss_name, classes, margin, key, ours[key], theirs[key]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    for failure in failures:
        print("LESS PRECISE THAN CAFFE: " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
