"""Label sets from scores: decision rules, per-class threshold calibration, and ``softmax-multilabel predict``.

The rules and the calibration are numpy only (no Caffe import)::

    >>> import numpy as np
    >>> p = np.array([[0.6, 0.3, 0.1], [0.4, 0.35, 0.25]])
    >>> predict_labels(p, mass(0.9)).astype(int)       # smallest top set with probability >= 0.9
    array([[1, 1, 0],
           [1, 1, 1]])
    >>> predict_labels(p, parse_rule("top-k:1")).astype(int)
    array([[1, 0, 0],
           [1, 0, 0]])

``threshold`` and ``class_thresholds`` predict a label when its score is >= the
threshold. ``top_k`` and ``mass`` break ties in scores by the lower class index.
"""
import json
import math
import sys
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .metrics import check_labels, check_scores, top_k_labels
from .params import MultilabelLossError

RULE_SYNTAX = "top-k:K, threshold:T, thresholds:FILE.json or mass:Q"


@dataclass(frozen=True)
class top_k:
    """The k top-scored labels of each sample (ties: lower class index first)."""
    k: int

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise MultilabelLossError("rule top-k: k must be an integer >= 1, got %r" % (self.k,))

    def __call__(self, scores):
        return top_k_labels(scores, self.k)

    def __str__(self):
        return "top-k:%d" % self.k


@dataclass(frozen=True)
class threshold:
    """Every label whose score is >= t."""
    t: float

    def __post_init__(self):
        if isinstance(self.t, bool) or not isinstance(self.t, (int, float)) or not math.isfinite(self.t):
            raise MultilabelLossError("rule threshold: t must be a finite number, got %r" % (self.t,))

    def __call__(self, scores):
        return scores >= self.t

    def __str__(self):
        return "threshold:%g" % self.t


class class_thresholds:
    """Label c when its score is >= thresholds[c]; ``values`` is an array or a JSON file written by
    :func:`save_thresholds` (``null`` = never predict the class)."""

    def __init__(self, values):
        self.source = values if isinstance(values, str) else None
        t = load_thresholds(values) if isinstance(values, str) else np.asarray(values, dtype=np.float64)
        if t.ndim != 1 or np.isnan(t).any():
            raise MultilabelLossError("rule thresholds: expected one number per class, got %r" % (values,))
        self.thresholds = t

    def __call__(self, scores):
        if scores.shape[1] != len(self.thresholds):
            raise MultilabelLossError("rule thresholds%s: %d thresholds but the scores have C=%d classes"
                                      % (":" + self.source if self.source else "", len(self.thresholds),
                                         scores.shape[1]))
        return scores >= self.thresholds[None, :]

    def __str__(self):
        return "thresholds:%s" % (self.source or "<%d values>" % len(self.thresholds))


@dataclass(frozen=True)
class mass:
    """The smallest set of top-ranked labels whose probabilities sum to >= q (softmax outputs; the natural
    rule for targets 1/M: a sample with M equally likely labels gets them all for q <= 1 - (other mass))."""
    q: float

    def __post_init__(self):
        if isinstance(self.q, bool) or not isinstance(self.q, (int, float)) or not 0 < self.q <= 1:
            raise MultilabelLossError("rule mass: q must be in (0, 1], got %r" % (self.q,))

    def __call__(self, scores):
        sums = scores.sum(axis=1, dtype=np.float64)
        if len(sums) and (np.abs(sums - 1) > 1e-3).any():
            i = int(np.argmax(np.abs(sums - 1)))
            raise MultilabelLossError("rule mass: needs softmax probabilities (rows summing to 1), sample %d sums "
                                      "to %.6g; use it on a Softmax output" % (i, sums[i]))
        ranked = np.cumsum(-np.sort(-scores.astype(np.float64), axis=1), axis=1)
        k = np.minimum(1 + np.count_nonzero(ranked < self.q * sums[:, None] - 1e-12, axis=1), scores.shape[1])
        return top_k_labels(scores, k)

    def __str__(self):
        return "mass:%g" % self.q


def parse_rule(text):
    """A rule from its command-line text: ``top-k:3``, ``threshold:0.5``, ``thresholds:FILE``, ``mass:0.9``."""
    if not isinstance(text, str):
        return text
    name, sep, value = text.partition(":")
    try:
        if sep and name == "top-k":
            return top_k(int(value))
        if sep and name == "threshold":
            return threshold(float(value))
        if sep and name == "thresholds":
            return class_thresholds(value)
        if sep and name == "mass":
            return mass(float(value))
    except ValueError as exc:
        if isinstance(exc, MultilabelLossError):
            raise
        raise MultilabelLossError("rule %r: %s is not a number; expected %s" % (text, value, RULE_SYNTAX)) from None
    raise MultilabelLossError("unknown rule %r; expected %s" % (text, RULE_SYNTAX))


def predict_labels(scores, rule):
    """N x C bool label sets from N x C scores under ``rule`` (a rule object or its text, see :func:`parse_rule`)."""
    s = check_scores("predict_labels", scores)
    return np.asarray(parse_rule(rule)(s), dtype=bool)


# ---------------------------------------------------------------------------------------------------------------
# per-class thresholds

def calibrate_thresholds(labels, scores):
    """One threshold per class maximizing that class's F1 on a validation set.

    For class c the candidates are its distinct scores (predict c when score >= t); the best F1 is
    taken (the highest threshold among equals) and t is moved half-way to the next lower score so
    new data near the boundary is not decided by float noise. A class with no true label gets
    ``inf`` (never predicted; F1 0).

    Shape: (N, C), (N, C) -> thresholds (C,), F1 at those thresholds (C,).
    """
    owner = "calibrate_thresholds"
    y = check_labels(owner, labels)
    s = check_scores(owner, scores, y.shape)
    n, c = y.shape
    best_t = np.full(c, np.inf)
    best_f1 = np.zeros(c)
    step = max(1, (1 << 22) // max(n, 1))
    for c0 in range(0, c, step):
        sc = np.ascontiguousarray(s[:, c0:c0 + step].T)
        order = np.argsort(-sc, axis=1, kind="stable")
        ss = np.take_along_axis(sc, order, axis=1)
        tp = np.cumsum(np.take_along_axis(y[:, c0:c0 + step].T, order, axis=1), axis=1, dtype=np.float64)
        positives = tp[:, -1:]
        last = np.ones_like(ss, dtype=bool)
        last[:, :-1] = ss[:, :-1] != ss[:, 1:]
        f1 = np.where(last, 2 * tp / (np.arange(1, n + 1)[None, :] + positives), -1.0)
        i = np.argmax(f1, axis=1)
        rows = np.arange(len(sc))
        t = ss[rows, i]
        below = ss[rows, np.minimum(i + 1, n - 1)]
        mid = 0.5 * (t + below)
        t = np.where((i + 1 < n) & (mid > below) & (mid <= t), mid, t)
        has = positives[:, 0] > 0
        best_t[c0:c0 + step] = np.where(has, t, np.inf)
        best_f1[c0:c0 + step] = np.where(has, f1[rows, i], 0.0)
    return best_t, best_f1


def save_thresholds(path, thresholds, f1=None, class_names=None):
    """Write thresholds (``null`` for a never-predicted class) as JSON, read back by :func:`load_thresholds`."""
    data = {"thresholds": [None if not np.isfinite(t) else float(t) for t in thresholds]}
    if f1 is not None:
        data["f1"] = [float(v) for v in f1]
    if class_names is not None:
        data["class_names"] = list(class_names)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def load_thresholds(path):
    """Thresholds from a JSON file: a list of numbers, or an object with a ``thresholds`` list (null = never)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise MultilabelLossError("thresholds file %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise MultilabelLossError("thresholds file %s: not JSON (%s)" % (path, exc)) from None
    values = data.get("thresholds") if isinstance(data, dict) else data
    if not isinstance(values, list) or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                               for v in values):
        raise MultilabelLossError("thresholds file %s: expected a list of numbers (or null) or "
                                  "{\"thresholds\": [...]}" % path)
    return np.array([np.inf if v is None else v for v in values], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# images

def preprocess_image(path: str, shape: tuple[int, int, int], resize: tuple[int, int] | None = None,
                     mean: ArrayLike | None = None, scale: float = 1.0, bgr: bool = True) -> NDArray[np.float32]:
    """One image file -> a C x H x W float32 array, exactly as the data layers prepare it in TEST.

    Decoding and resizing are :func:`.image_data.load_image` (OpenCV, as Caffe's ``ImageData``), the
    arithmetic is :class:`.image_data.Transform` (Caffe's ``DataTransformer``), so a net trained with
    ``MultilabelImageDataLayer`` or ``ImageData`` sees the same values at prediction time.

    Args:
        path: image file (any format OpenCV reads).
        shape: (C, H, W) of the net input; C = 1 reads grey, C = 3 colour.
        resize: (H, W) to resize to first (default: (H, W) of ``shape``); then a centre crop to (H, W).
        mean: per-channel values (in the output channel order) subtracted after the channel swap.
        scale: multiplies the result: ``(x - mean) * scale``, as Caffe's ``transform_param``.
        bgr: colour channels in BGR order (Caffe's convention); False gives RGB.

    Values are 0-255 before mean and scale.
    """
    from .image_data import ImageDecodeError, Transform, load_image

    channels, height, width = shape
    rh, rw = resize or (height, width)
    try:
        img = load_image(path, is_color=channels != 1, new_height=rh, new_width=rw)
    except ImageDecodeError:
        raise MultilabelLossError("cannot read image %s: missing, unreadable or not an image format OpenCV knows"
                                  % path) from None
    if img.shape[0] < height or img.shape[1] < width:
        raise MultilabelLossError("image %s resized to %dx%d is smaller than the net input %dx%d"
                                  % (path, img.shape[0], img.shape[1], height, width))
    top, left = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
    img = img[top:top + height, left:left + width]
    if not bgr and channels == 3:
        img = np.ascontiguousarray(img[:, :, ::-1])
    out = np.empty((channels, height, width), np.float32)
    return Transform(channels, mean_value=mean, scale=scale, train=False)(img, out, np.random.default_rng(0))


def _class_names(path, num_classes=None):
    if not path:
        return None
    try:
        with open(path) as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise MultilabelLossError("class names file %s: %s" % (path, exc.strerror)) from None
    if num_classes is not None and len(names) != num_classes:
        raise MultilabelLossError("class names file %s has %d names but the net has C=%d classes"
                                  % (path, len(names), num_classes))
    return names


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
    from .evaluate import load_net
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
            names = _class_names(args.class_names, scores.shape[1]) or [str(c) for c in range(scores.shape[1])]
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


__all__ = ["calibrate_thresholds", "class_thresholds", "load_thresholds", "mass", "parse_rule", "predict_labels",
           "preprocess_image", "save_thresholds", "threshold", "top_k"]
